"""Our network's weights inside Hugging Face's own sequence-classification model, exactly or not at all.

MultiTaskModel computes ``head(dropout(tanh(dense(h[:, 0]))))``: the pooler (the encoder's
pretrained one when it has one) and a linear layer per task. Two Hugging Face heads compute
the same thing in eval mode, where dropout is the identity:

- ``pooler_classifier`` (BERT and its kin): the base model's ``pooler`` (dense + tanh on the
  first token), then ``classifier`` (linear). Our pooler goes to ``<base>.pooler``, the
  task's head to ``classifier``.
- ``dense_out_proj`` (RoBERTa and its kin): ``classifier.dense``, tanh, ``classifier.out_proj``
  on the first token. Our pooler's dense layer goes to ``classifier.dense``, the head to
  ``classifier.out_proj``.

The structure alone does not prove the arithmetic (ELECTRA's head has the same two layers
with GELU instead of tanh), so every mapping is checked on a probe batch: a model whose logits
differ from ours is refused with one line, never exported approximately.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from mt_dnn.errors import ConfigError

POOLER_CLASSIFIER = "pooler_classifier"
DENSE_OUT_PROJ = "dense_out_proj"
# Relative to the logits' scale: float32 sums taken in another order differ by ~1e-6.
PROBE_TOLERANCE = 1e-4
PROBE_PAIRS = (("A man is playing a guitar on stage.", "A person is making music."),
               ("Two dogs run through the snow.", "The animals are asleep indoors."))


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def classification_config(*, encoder_config, task):
    """The encoder's config with the task's labels: what from_pretrained needs to rebuild the classifier."""
    config = copy.deepcopy(encoder_config)
    # regression (STS-B): one output, the score itself; problem_type makes pipeline() return it raw
    names = ["score"] if task.is_regression else list(task.label_names or task.labels)
    config.num_labels = task.n_class
    config.id2label = {index: name for index, name in enumerate(names)}
    config.label2id = {name: index for index, name in enumerate(names)}
    config.problem_type = "regression" if task.is_regression else "single_label_classification"
    # The head's dropout as the task trained it, so that fine-tuning the export further keeps it.
    config.classifier_dropout = task.dropout_p
    return config


def head_layout(hf_model: nn.Module) -> str | None:
    """Which of the two exact layouts ``hf_model`` has, or None."""
    classifier = getattr(hf_model, "classifier", None)
    pooler = getattr(hf_model.base_model, "pooler", None)
    if isinstance(classifier, nn.Linear) and isinstance(getattr(pooler, "dense", None), nn.Linear):
        return POOLER_CLASSIFIER
    if isinstance(getattr(classifier, "dense", None), nn.Linear) and isinstance(getattr(classifier, "out_proj", None),
                                                                              nn.Linear):
        return DENSE_OUT_PROJ
    return None


def name_map(*, model, task_name: str, hf_model: nn.Module, layout: str) -> dict[str, str]:
    """Our state-dict names -> ``hf_model``'s: the encoder under its base prefix, pooler and head as ``layout``.

    Other tasks' heads are not in it (each task is its own exported model).
    """
    prefix = hf_model.base_model_prefix
    names = {f"encoder.{key}": f"{prefix}.{key}" for key in model.encoder.state_dict()}
    pooler = list(model.pooler.state_dict())
    head = list(model.heads[task_name].classifier.state_dict())
    if layout == POOLER_CLASSIFIER:
        names.update({f"pooler.{key}": f"{prefix}.pooler.{key}" for key in pooler})
        names.update({f"heads.{task_name}.classifier.{key}": f"classifier.{key}" for key in head})
        return names
    unexpected = [key for key in pooler if not key.startswith("dense.")]
    if unexpected:
        raise ConfigError(f"the pooler holds {unexpected[0]}, which RoBERTa's classification head has no place for")
    names.update({f"pooler.{key}": f"classifier.{key}" for key in pooler})
    names.update({f"heads.{task_name}.classifier.{key}": f"classifier.out_proj.{key}" for key in head})
    return names


def mapped_state_dict(*, model, task_name: str, hf_model: nn.Module, layout: str) -> dict[str, torch.Tensor]:
    """Our weights under ``hf_model``'s names (see :func:`name_map`)."""
    ours = model.state_dict()
    return {theirs: ours[name] for name, theirs in name_map(model=model, task_name=task_name, hf_model=hf_model,
                                                            layout=layout).items()}


def probe_logits(*, model, task_name: str, hf_model: nn.Module, tokenizer) -> tuple[torch.Tensor, torch.Tensor]:
    """(our logits, the Hugging Face model's) on the probe pairs, both in eval mode."""
    encoded = tokenizer([p for p, _ in PROBE_PAIRS], [h for _, h in PROBE_PAIRS], padding=True, return_tensors="pt")
    with torch.no_grad():
        ours = model(task=task_name, input_ids=encoded["input_ids"], attention_mask=encoded["attention_mask"],
                     token_type_ids=encoded.get("token_type_ids"))
        theirs = hf_model(**encoded).logits
    return ours.float(), theirs.float()


def build_classifier(*, model, task, tokenizer):
    """A Hugging Face ``AutoModelForSequenceClassification`` computing ``model``'s logits for ``task``.

    Raises ConfigError (one line) when the encoder's architecture has no sequence-classification
    model, or one whose head is not our pooler and head.
    """
    from transformers import AutoModelForSequenceClassification

    config = classification_config(encoder_config=model.encoder.config, task=task)
    kind = getattr(config, "model_type", "?")
    try:
        hf_model = AutoModelForSequenceClassification.from_config(config)
    except (ValueError, KeyError) as exc:
        raise ConfigError(f"model type {kind}: Hugging Face has no sequence-classification model for it "
                          f"({first_line(exc)})") from None
    architecture = type(hf_model).__name__
    layout = head_layout(hf_model)
    if layout is None:
        raise ConfigError(f"{architecture}: its classification head is neither a pooler + linear classifier (BERT) "
                          "nor classifier.dense + classifier.out_proj (RoBERTa); our pooler and head cannot be "
                          "mapped onto it exactly")
    state = mapped_state_dict(model=model, task_name=task.name, hf_model=hf_model, layout=layout)
    try:
        hf_model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ConfigError(f"{architecture}: our weights do not fit its parameters ({first_line(exc)})") from None
    hf_model.eval()
    model.eval()
    ours, theirs = probe_logits(model=model, task_name=task.name, hf_model=hf_model, tokenizer=tokenizer)
    difference = float((ours - theirs).abs().max())
    if not difference <= PROBE_TOLERANCE * max(1.0, float(ours.abs().max())):
        raise ConfigError(f"{architecture}: its classification head does not compute tanh(dense(first token)) "
                          f"then a linear layer as ours does (logits differ by {difference:.3g} on a probe "
                          "batch); cannot export this encoder exactly")
    return hf_model
