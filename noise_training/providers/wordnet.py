"""WordNet synonyms (paper Experiment 3): ``wordnet_1.0`` and ``wordnet_0.5``.

Each perturbable token that is a whole word (not a piece of a longer one, see
:mod:`noise_training.word_boundaries`) and has WordNet synonyms among the vocabulary's
whole-word tokens moves toward one of them, drawn at random per occurrence: noise_size 1.0 feeds the synonym
itself, 0.5 the midpoint. Tokens without a synonym are left unchanged (the paper: about 30%
of BERT's tokens find one).
"""

from __future__ import annotations

from pathlib import Path

import torch

from noise_training.base import Perturbation, PerturbationProvider, StepContext, delta_toward
from noise_training.options import ADV_ALPHA
from noise_training.registry import Option, ProviderSpec, register_provider
from noise_training.word_boundaries import whole_word_positions


WORDNET_LOOKUP = Option(
    "wordnet_lookup", str, "exact",
    "which words have WordNet synonyms: exact (the written form is a lemma; the paper's ≈30%/40% replaced) "
    "or morphy (NLTK's wn.synsets(word) with morphological reduction: 'is' gets 'be''s synonyms)",
    check=lambda value: None if value in ("exact", "morphy") else "one of exact, morphy",
)


class WordNetNoise(PerturbationProvider):
    # Synonyms depend on the ids alone: the noise can be built before step 1.
    depends_on_step1 = False

    def __init__(self, *, options, model, tokenizer, cache_dir) -> None:
        from noise_training.synonyms import load_or_build_synonym_table
        from noise_training.word_boundaries import word_piece_rules

        super().__init__(options=options, model=model, tokenizer=tokenizer, cache_dir=cache_dir)
        self.noise_size = float(options["noise_size"])
        self.embedding = model.encoder.get_input_embeddings()
        table = load_or_build_synonym_table(tokenizer=tokenizer, cache_dir=Path(cache_dir) / "synonyms",
                                            lookup=options["wordnet_lookup"])
        self.table = table.to(self.embedding.weight.device)
        self.word_rules = word_piece_rules(tokenizer=tokenizer).to(self.embedding.weight.device)

    def perturb(self, ctx: StepContext) -> Perturbation:
        with torch.no_grad():
            synonym_ids, has_synonym = self.table.sample(ctx.input_ids)
            whole_words = whole_word_positions(input_ids=ctx.input_ids, real_tokens=ctx.perturbable_mask,
                                               rules=self.word_rules)
            changed = whole_words & has_synonym
            delta = delta_toward(original=ctx.token_embeddings, target_ids=synonym_ids, weight=self.embedding.weight,
                                 changed=changed, size=self.noise_size)
        return Perturbation(embeddings=ctx.token_embeddings + delta, delta=delta, changed=changed)


register_provider(ProviderSpec(
    name="wordnet_1.0", factory=WordNetNoise, aliases=("wordnet-replace",), options=(ADV_ALPHA, WORDNET_LOOKUP),
    fixed={"noise_size": 1.0},
    summary="each token with WordNet synonyms is replaced by one drawn at random",
))
register_provider(ProviderSpec(
    name="wordnet_0.5", factory=WordNetNoise, aliases=("wordnet-half",), options=(ADV_ALPHA, WORDNET_LOOKUP),
    fixed={"noise_size": 0.5},
    summary="each token with WordNet synonyms moves halfway toward one drawn at random",
))
