"""Noise toward a similar word (paper Experiment 1): ``1-1``, ``1-2`` and ``1-1_1.0``.

Every perturbable token embedding E moves toward E_similar, the embedding of a word close
to it in the input-embedding space: E_new = E + noise_size · (E_similar − E). ``1-1`` takes
the most similar word, ``1-2`` one of the 10 most similar drawn uniformly per occurrence,
``1-1_1.0`` feeds the most similar word itself. One table gather per step, no backward.
"""

from __future__ import annotations

from pathlib import Path

import torch

from noise_training.base import Perturbation, PerturbationProvider, StepContext, delta_toward
from noise_training.options import ADV_ALPHA, NOISE_SIZE, TOP_K
from noise_training.registry import ProviderSpec, register_provider

# The table is built with at least this many neighbours, so 1-1 and 1-2 share one cache file.
MIN_TABLE_K = 10


class SimilarWordNoise(PerturbationProvider):
    """E + s·(E_neighbour − E) on the perturbable positions of ``positions_to_change``."""

    # The noise needs only the ids and the token embeddings: it can be built before step 1.
    depends_on_step1 = False

    def __init__(self, *, options, model, tokenizer, cache_dir) -> None:
        from noise_training.neighbors import load_or_build_neighbor_table, never_neighbor_token_ids

        super().__init__(options=options, model=model, tokenizer=tokenizer, cache_dir=cache_dir)
        self.noise_size = float(options["noise_size"])
        self.sampling = options.get("sampling", "top1")
        self.top_k = int(options.get("top_k", 1)) if self.sampling == "uniform_top_k" else 1
        self.embedding = model.encoder.get_input_embeddings()
        table = load_or_build_neighbor_table(
            embeddings=self.embedding.weight.detach(), k=max(MIN_TABLE_K, self.top_k),
            cache_dir=Path(cache_dir) / "neighbors", excluded_ids=never_neighbor_token_ids(tokenizer=tokenizer),
        )
        self.neighbors = table.indices[:, : self.top_k].to(self.embedding.weight.device).contiguous()
        self._top1 = self.neighbors[:, 0].contiguous()  # a 1-D lookup is cheaper than 2-D indexing

    def choose_neighbors(self, input_ids: torch.Tensor) -> torch.Tensor:
        if self.top_k == 1:
            return self._top1[input_ids]
        rank = torch.randint(0, self.top_k, input_ids.shape, device=input_ids.device)
        return self.neighbors[input_ids, rank]

    def positions_to_change(self, ctx: StepContext) -> torch.Tensor:
        return ctx.perturbable_mask

    def direct(self, delta: torch.Tensor) -> torch.Tensor:
        """The noise given its step toward the chosen words: that step itself (a control redirects it)."""
        return delta

    def perturb(self, ctx: StepContext) -> Perturbation:
        changed = self.positions_to_change(ctx)
        toward = delta_toward(original=ctx.token_embeddings, target_ids=self.choose_neighbors(ctx.input_ids),
                              weight=self.embedding.weight, changed=changed, size=self.noise_size)
        delta = self.direct(toward)
        if self.noise_size == 0:
            changed = torch.zeros_like(changed)
        return Perturbation(embeddings=ctx.token_embeddings + delta, delta=delta, changed=changed)


register_provider(ProviderSpec(
    name="1-1", factory=SimilarWordNoise, aliases=("similar-top1",), options=(NOISE_SIZE, ADV_ALPHA),
    fixed={"sampling": "top1"},
    summary="every token moves noise_size of the way toward its most similar vocabulary word",
))
register_provider(ProviderSpec(
    name="1-2", factory=SimilarWordNoise, aliases=("similar-random-top10",), options=(NOISE_SIZE, TOP_K, ADV_ALPHA),
    fixed={"sampling": "uniform_top_k"},
    summary="as 1-1, toward a word drawn uniformly from the top_k most similar, per occurrence",
))
register_provider(ProviderSpec(
    name="1-1_1.0", factory=SimilarWordNoise, aliases=("similar-top1-replace",), options=(ADV_ALPHA,),
    fixed={"sampling": "top1", "noise_size": 1.0},
    summary="1-1 with noise_size 1.0: the most similar word itself is fed",
))
