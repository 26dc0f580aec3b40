"""The perturbation providers inside Hugging Face's ``Trainer``: :class:`PerturbationTrainer`.

Most people fine-tune with ``transformers.Trainer``; this subclass gives them the methods of
this project with a two-argument change::

    trainer = PerturbationTrainer(model=AutoModelForSequenceClassification..., args=TrainingArguments(...),
                                  train_dataset=..., processing_class=tokenizer,
                                  perturbation="1-1", perturbation_options={"noise_size": 0.5})
    trainer.train()

Each micro-batch goes through the project's own training step
(:func:`mt_dnn.training_step.run_training_step`), not a re-implementation: the same step 1,
the same provider call, the same task loss + α · symmetric KL, the same fused pass for
providers that allow it, and the same statistics, which are averaged between two logging
steps and logged through the Trainer's own ``log`` (so its console, TensorBoard or any other
``report_to`` target shows them): ``task_loss``, ``adv_loss``, ``changed_share``,
``noise_share``, ``skipped_steps``, passes per step. The loss is each micro-batch's mean
divided by the accumulation steps, as ``Trainer`` itself scales it, and the backward pass is
``accelerator.backward`` (mixed precision and DDP as accelerate sets them up).

``perturbation="neftune"`` is NEFTune as ``TrainingArguments(neftune_noise_alpha=...)`` computes it
(the same bound and draw as transformers' hook), through the same training step; evaluation and
prediction never call the provider, so they see no noise, as with the hook.

Layering: this is an integration module on top of both packages, the one place in
noise_training that imports mt_dnn; the providers and the registry never do, and nothing in
the project imports this module (it needs the ``hf`` extra: ``pip install -e .[hf]``).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from transformers import Trainer

from noise_training.registry import build_provider, resolve_options

@dataclass(frozen=True)
class _Task:
    """What run_training_step reads of a task: its name and the names of its two losses."""

    name: str = "task"
    loss: str = "cross_entropy"
    adv_loss: str = "symmetric_kl"
    task_type: str = "classification"


def task_of(config) -> _Task:
    """The losses of a Hugging Face classifier's task: a regression model (``num_labels=1`` or
    ``problem_type="regression"``, as Hugging Face decides it) takes MSE for both terms, as STS-B."""
    if getattr(config, "problem_type", None) == "regression" or (
            getattr(config, "problem_type", None) is None and getattr(config, "num_labels", 2) == 1):
        return _Task(loss="mse", adv_loss="mse", task_type="regression")
    return _Task()


class TaskModelView:
    """A Hugging Face sequence classifier seen through MultiTaskModel's interface.

    run_training_step and the providers call ``model(task=..., inputs_embeds=..., ...)``,
    ``token_embeddings``, ``embedding_output`` and ``model.encoder``; this maps them onto the
    classifier (``model``, possibly DDP-wrapped, runs the passes; ``bare`` is the module itself).
    """

    def __init__(self, model: torch.nn.Module, bare: torch.nn.Module | None = None) -> None:
        self.model = model
        self.bare = bare if bare is not None else model
        self.encoder = self.bare.base_model
        self.config = self.bare.config
        # As MultiTaskModel: encoders that number positions from the padding index (RoBERTa)
        # derive them from input_ids; from embeddings they would count padding too.
        self._position_padding_idx = getattr(getattr(self.encoder, "embeddings", None), "padding_idx", None)

    def _segment_kwargs(self, token_type_ids):
        if token_type_ids is not None and getattr(self.config, "type_vocab_size", 0) > 1:
            return {"token_type_ids": token_type_ids}
        return {}

    def token_embeddings(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.bare.get_input_embeddings()(input_ids)

    def embedding_output(self, *, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        return self.encoder.embeddings(input_ids=input_ids, **self._segment_kwargs(token_type_ids))

    def __call__(self, *, task: str, input_ids=None, inputs_embeds=None, attention_mask: torch.Tensor,
                 token_type_ids=None, position_numbering: str = "padding_aware") -> torch.Tensor:
        if inputs_embeds is None:
            inputs_embeds = self.token_embeddings(input_ids)
        kwargs = self._segment_kwargs(token_type_ids)
        if position_numbering == "padding_aware" and self._position_padding_idx is not None:
            mask = attention_mask.long()
            kwargs["position_ids"] = torch.cumsum(mask, dim=1) * mask + self._position_padding_idx
        return self.model(inputs_embeds=inputs_embeds, attention_mask=attention_mask, return_dict=True,
                          **kwargs).logits


@dataclass
class _RunningStats:
    """Per-step figures since the last log, averaged when the Trainer logs."""

    steps: int = 0
    task_loss: float = 0.0
    adv_loss: float = 0.0
    adv_steps: int = 0
    perturbed: int = 0
    skipped: int = 0
    forwards: int = 0
    backwards: int = 0
    seconds: float = 0.0
    shares: dict = field(default_factory=dict)

    def add(self, outcome, seconds: float) -> None:
        self.steps += 1
        self.task_loss += outcome.task_loss
        self.forwards += outcome.forwards
        self.backwards += outcome.backwards
        self.seconds += seconds
        self.skipped += int(outcome.adv_skipped)
        if outcome.adv_loss is not None:
            self.adv_loss += outcome.adv_loss
            self.adv_steps += 1
        if outcome.stats:
            self.perturbed += 1
            for name, value in outcome.stats.items():
                if name not in ("changed_tokens", "perturbable_tokens"):
                    self.shares[name] = self.shares.get(name, 0.0) + value

    def means(self) -> dict[str, float]:
        if not self.steps:
            return {}
        logs = {"task_loss": self.task_loss / self.steps, "forward_passes_per_step": self.forwards / self.steps,
                "backward_passes_per_step": self.backwards / self.steps, "seconds_per_step": self.seconds / self.steps}
        if self.perturbed:
            logs["skipped_steps"] = float(self.skipped)
            logs.update({name: value / self.perturbed for name, value in sorted(self.shares.items())})
        if self.adv_steps:
            logs["adv_loss"] = self.adv_loss / self.adv_steps
        return logs


class PerturbationTrainer(Trainer):
    """``transformers.Trainer`` whose training step is the project's: task loss + α · symmetric KL.

    ``perturbation``: a registered provider's name (``noise_training.registry.provider_names()``);
    ``perturbation_options``: its options by name (e.g. ``{"noise_size": 0.3}``), checked as
    ``train.py`` checks its flags; ``cache_dir``: where neighbour and synonym tables are cached
    (default: train.py's). The tokenizer is the Trainer's ``processing_class``. A regression
    model (one output, e.g. STS-B) trains on MSE with an MSE adversarial term.
    """

    def __init__(self, *args, perturbation: str = "none", perturbation_options: dict[str, Any] | None = None,
                 cache_dir=None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        tokenizer = self.processing_class
        if tokenizer is None or not hasattr(tokenizer, "all_special_ids"):
            raise ValueError("PerturbationTrainer: pass the tokenizer as processing_class (the providers need its "
                             "vocabulary and special tokens)")
        if self.args.n_gpu > 1:
            raise ValueError("PerturbationTrainer: one process per GPU (torchrun or accelerate launch); "
                             "torch.nn.DataParallel over several GPUs is not supported")
        if self.args.label_smoothing_factor:
            raise ValueError("PerturbationTrainer: label_smoothing_factor is not supported (the task loss is "
                             "plain cross-entropy, as in train.py)")
        if cache_dir is None:
            from mt_dnn.run_setup import default_cache_dir

            cache_dir = default_cache_dir()
        spec, options = resolve_options(name=perturbation, given=dict(perturbation_options or {}))
        if getattr(self.args, "neftune_noise_alpha", None) is not None and spec.name != "none":
            # Trainer's own hook would add its noise to every pass of the provider's step too
            raise ValueError("PerturbationTrainer: TrainingArguments.neftune_noise_alpha together with a perturbation "
                             "is not supported; use perturbation='neftune', perturbation_options="
                             "{'neftune_noise_alpha': ...} instead")
        self.perturbation = spec.name
        self.perturbation_options = options
        self.adv_alpha = float(options.get("adv_alpha", 0.0))
        self.provider = build_provider(name=spec.name, options=options, model=TaskModelView(self.model),
                                       tokenizer=tokenizer, cache_dir=cache_dir)
        device = self.model.get_input_embeddings().weight.device
        self.special_ids = torch.tensor(sorted(set(tokenizer.all_special_ids)), device=device)
        self._task = task_of(self.model.config)
        self._stats = _RunningStats()

    def training_step(self, model: torch.nn.Module, inputs: dict[str, Any], num_items_in_batch=None) -> torch.Tensor:
        """One micro-batch through run_training_step; returns the objective (scaled as Trainer scales it)."""
        from mt_dnn.training_step import run_training_step

        model.train()
        inputs = self._prepare_inputs(inputs)
        labels = inputs.get("labels", inputs.get("label"))
        if labels is None:
            raise ValueError("PerturbationTrainer: the batch has no 'labels'")
        batch = {"input_ids": inputs["input_ids"], "attention_mask": inputs["attention_mask"], "labels": labels}
        if inputs.get("token_type_ids") is not None:
            batch["token_type_ids"] = inputs["token_type_ids"]
        bare = self.accelerator.unwrap_model(model)
        accumulation = getattr(self, "current_gradient_accumulation_steps", None) or self.args.gradient_accumulation_steps
        started = time.perf_counter()
        outcome = run_training_step(
            model=TaskModelView(model, bare), forward_model=TaskModelView(bare), provider=self.provider,
            batch=batch, task=self._task, adv_alpha=self.adv_alpha, special_ids=self.special_ids.to(labels.device),
            normaliser=labels.shape[0] * accumulation, autocast=self.compute_loss_context_manager,
            backward=self.accelerator.backward,
            # step 2 through the bare module, as our trainer does: DDP sees one forward per backward
            adv_model=TaskModelView(bare),
        )
        self._stats.add(outcome, time.perf_counter() - started)
        return outcome.loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs:  # a training log: add what the steps since the last one did
            logs.update(self._merged_stats().means())
            self._stats = _RunningStats()
        super().log(logs, start_time)

    def _merged_stats(self) -> _RunningStats:
        """The figures of every process added up (all of them log at the same step, as for Trainer's loss)."""
        if self.accelerator.num_processes == 1:
            return self._stats
        from accelerate.utils import gather_object

        total = _RunningStats()
        for part in gather_object([asdict(self._stats)]):
            shares = part.pop("shares")
            for name, value in part.items():
                setattr(total, name, getattr(total, name) + value)
            for name, value in shares.items():
                total.shares[name] = total.shares.get(name, 0.0) + value
        return total
