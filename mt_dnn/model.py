"""The multi-task network: one pretrained encoder, one classification head per task.

As in MT-DNN, the first token's final hidden state goes through a pooler (dense + tanh)
shared by all tasks, then each task's head applies dropout and a linear layer. ``forward``
accepts either token ids or *token* embeddings (what ``get_input_embeddings()`` returns,
before position and segment embeddings are added), so perturbation providers can feed a
modified copy of exactly what the ids would have produced.
"""

from __future__ import annotations

import torch
from torch import nn

from mt_dnn.errors import ConfigError
from mt_dnn.task_def import TaskDef


POSITION_NUMBERINGS = ("padding_aware", "encoder_default")


class TaskHead(nn.Module):
    def __init__(self, *, hidden_size: int, n_class: int, dropout_p: float) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout_p)
        self.classifier = nn.Linear(hidden_size, n_class)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(pooled))


class MultiTaskModel(nn.Module):
    def __init__(self, *, encoder: nn.Module, tasks: dict[str, TaskDef]) -> None:
        super().__init__()
        self.encoder = encoder
        hidden_size = encoder.config.hidden_size
        pretrained_pooler = getattr(encoder, "pooler", None)
        if pretrained_pooler is not None:
            # Reuse the pretrained pooler (BERT's is trained) and stop the encoder from
            # computing it a second time on every forward pass.
            self.pooler = pretrained_pooler
            encoder.pooler = None
        else:
            self.pooler = _Pooler(hidden_size=hidden_size)
        self.heads = nn.ModuleDict({
            name: TaskHead(hidden_size=hidden_size, n_class=task.n_class, dropout_p=task.dropout_p)
            for name, task in tasks.items()
        })
        # Encoders that number positions from the padding index (RoBERTa) derive position ids
        # from input_ids; from embeddings they would count padding too, so we pass them.
        embeddings = getattr(encoder, "embeddings", None)
        self._position_padding_idx = getattr(embeddings, "padding_idx", None)

    def token_embeddings(self, input_ids: torch.Tensor) -> torch.Tensor:
        """What the providers perturb: the token embedding lookup, nothing added yet."""
        return self.encoder.get_input_embeddings()(input_ids)

    def embedding_output(self, *, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        """The encoder's embedding block on ``input_ids``: what MT-DNN's ``embed_encode`` returns.

        Token + position + segment embeddings, LayerNorm and dropout, with positions numbered
        from the ids as the encoder's own forward pass numbers them.
        """
        block = getattr(self.encoder, "embeddings", None)
        if block is None:
            raise ConfigError("this encoder has no `embeddings` block (MT-DNN's SMART perturbs its output)")
        kwargs = {}
        if token_type_ids is not None and getattr(self.encoder.config, "type_vocab_size", 0) > 1:
            kwargs["token_type_ids"] = token_type_ids
        return block(input_ids=input_ids, **kwargs)

    def _position_ids(self, attention_mask: torch.Tensor) -> torch.Tensor | None:
        if self._position_padding_idx is None:
            return None
        mask = attention_mask.long()
        return torch.cumsum(mask, dim=1) * mask + self._position_padding_idx

    def encode(
        self, *, input_ids: torch.Tensor | None = None, inputs_embeds: torch.Tensor | None = None,
        attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None,
        output_hidden_states: bool = False, position_numbering: str = "padding_aware",
    ):
        """The encoder's outputs. ``position_numbering``: "padding_aware" numbers positions as
        the ids would be numbered (RoBERTa: real tokens from padding_idx + 1, padding at
        padding_idx), so ids and their embeddings give the same result; "encoder_default"
        passes no position ids and lets Hugging Face number ``inputs_embeds`` sequentially,
        padding included, as MT-DNN's SMART calls the encoder. The two agree for BERT."""
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids and inputs_embeds")
        if position_numbering not in POSITION_NUMBERINGS:
            raise ValueError(f"position_numbering: expected one of {POSITION_NUMBERINGS}, got {position_numbering!r}")
        if inputs_embeds is None:
            inputs_embeds = self.token_embeddings(input_ids)
        kwargs = {}
        if token_type_ids is not None and getattr(self.encoder.config, "type_vocab_size", 0) > 1:
            kwargs["token_type_ids"] = token_type_ids
        position_ids = self._position_ids(attention_mask) if position_numbering == "padding_aware" else None
        if position_ids is not None:
            kwargs["position_ids"] = position_ids
        return self.encoder(
            inputs_embeds=inputs_embeds, attention_mask=attention_mask,
            output_hidden_states=output_hidden_states, return_dict=True, **kwargs,
        )

    def forward(
        self, *, task: str, input_ids: torch.Tensor | None = None, inputs_embeds: torch.Tensor | None = None,
        attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None,
        position_numbering: str = "padding_aware",
    ) -> torch.Tensor:
        """Logits of ``task``'s head, from token ids or from token embeddings."""
        hidden = self.encode(
            input_ids=input_ids, inputs_embeds=inputs_embeds,
            attention_mask=attention_mask, token_type_ids=token_type_ids, position_numbering=position_numbering,
        ).last_hidden_state
        return self.heads[task](self.pooler(hidden))


class _Pooler(nn.Module):
    def __init__(self, *, hidden_size: int) -> None:
        super().__init__()
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.activation = nn.Tanh()

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.activation(self.dense(hidden_states[:, 0]))


def build_model(*, model_name: str, tasks: dict[str, TaskDef], tokenizer=None, from_config_only: bool = False):
    """The encoder of ``model_name`` (a hub name or a folder) with heads for ``tasks``."""
    from transformers import AutoConfig, AutoModel

    if from_config_only:
        encoder = AutoModel.from_config(AutoConfig.from_pretrained(model_name))
    else:
        encoder = AutoModel.from_pretrained(model_name)
    if encoder.get_input_embeddings() is None:
        raise ConfigError(f"--model {model_name}: the encoder exposes no token embeddings (get_input_embeddings)")
    if tokenizer is not None:
        rows = encoder.get_input_embeddings().num_embeddings
        if len(tokenizer) > rows:
            raise ConfigError(
                f"--model {model_name}: the tokenizer has {len(tokenizer)} tokens but the embedding matrix "
                f"has {rows} rows; the tokenizer does not belong to this model"
            )
    return MultiTaskModel(encoder=encoder, tasks=tasks)
