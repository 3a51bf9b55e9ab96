"""One small adapter per encoder family: what distillation must know about a teacher (or student) architecture.

    family = family_of(model.config)        # FamilyError naming the model type and listing the supported ones
    prepare(model)                          # route its attention through `attention.attend` (idempotent)
    inputs = model_inputs(model, batch)     # only the inputs this family takes

Supported: BERT, RoBERTa / XLM-RoBERTa / CamemBERT, ELECTRA, DistilBERT, ALBERT, MPNet, DeBERTa-v2/v3 and
ModernBERT. Most run their attention through transformers' AttentionInterface, where the "tinybert"
implementation (attention.py) records the pre-softmax logits, rotary positions (ModernBERT) already applied
to the queries and keys and local-attention windows part of the mask. MPNet (relative position bias) and
DeBERTa (disentangled content/position terms) compute their own probabilities, so their adapters patch their
self-attention modules to hand the same logits, position terms included, to `attention.attend`.

Sizes are read through the config's own names (DistilBERT's n_layers/dim/n_heads are reachable as
num_hidden_layers/hidden_size/num_attention_heads through its attribute map).
"""

from __future__ import annotations

import types
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel
from transformers.models.deberta_v2.modeling_deberta_v2 import DisentangledSelfAttention
from transformers.models.mpnet.modeling_mpnet import MPNetSelfAttention

from tinybert_core.attention import ATTN_IMPLEMENTATION, attend


class FamilyError(ValueError):
    """A model of an encoder family this project has no adapter for, or a setting the adapter cannot handle."""


@dataclass(frozen=True)
class Family:
    """How one encoder family exposes its layers, inputs and attention logits."""

    name: str
    model_types: tuple[str, ...]  # `config.model_type` values of this family
    # Repeated layer outputs per configured layer: ALBERT runs each of its shared layer groups'
    # `inner_group_num` layers once per `num_hidden_layers`.
    layers_per_step: Callable[[PretrainedConfig], int] = lambda config: 1
    # Position ids start after the pad id (RoBERTa, MPNet: pad_token_id + 1), so fewer positions are usable.
    offsets_positions_by_pad: bool = False
    ffn_attribute: str = "intermediate_size"
    # For families whose attention bypasses AttentionInterface: route their modules into `attend`.
    patch: Callable[[nn.Module], None] | None = None
    # Config changes a student of this family needs beyond its shape.
    student_overrides: Callable[[PretrainedConfig], dict] = lambda config: {}


# -- MPNet: scores = QK^T / sqrt(d) + relative position bias (computed once per forward by its encoder) -------


def _mpnet_self_attention_forward(self, hidden_states, attention_mask=None, position_bias=None, output_attentions=False, **kwargs):
    """MPNetSelfAttention.forward through `attend`: same projections, same bias, same softmax."""
    input_shape = hidden_states.shape[:-1]
    heads = (*input_shape, -1, self.attention_head_size)
    query = self.q(hidden_states).view(heads).transpose(1, 2)
    key = self.k(hidden_states).view(heads).transpose(1, 2)
    value = self.v(hidden_states).view(heads).transpose(1, 2)
    dropout = self.dropout.p if self.training else 0.0
    output, scores = attend(self, query, key, value, attention_mask, self.attention_head_size**-0.5, dropout, position_bias)
    output = self.o(output.reshape(*input_shape, -1))
    return (output, scores) if output_attentions else (output,)


# -- DeBERTa-v2/v3: scores = (c2c + c2p + p2c) / sqrt(d * (1 + number of position terms)) ----------------------


def _deberta_self_attention_forward(
    self, hidden_states, attention_mask, output_attentions=False, query_states=None, relative_pos=None, rel_embeddings=None
):
    """DisentangledSelfAttention.forward through `attend`, reusing DeBERTa's own c2p/p2c computation."""
    if query_states is not None:
        raise FamilyError("DeBERTa's enhanced mask decoder (query_states, z_steps > 1) is a pre-training head; "
                          "distillation reads the encoder only")
    batch, length, _ = hidden_states.shape
    nh = self.num_attention_heads
    # DeBERTa works on (B * nh, T, hs); `attend` on (B, nh, T, hs).
    query = self.transpose_for_scores(self.query_proj(hidden_states), nh)
    key = self.transpose_for_scores(self.key_proj(hidden_states), nh)
    value = self.transpose_for_scores(self.value_proj(hidden_states), nh)
    scale_factor = 1 + ("c2p" in self.pos_att_type) + ("p2c" in self.pos_att_type)
    position_bias = None
    if self.relative_attention:
        position_bias = self.disentangled_attention_bias(
            query, key, relative_pos, self.pos_dropout(rel_embeddings), scale_factor
        ).view(batch, nh, length, length)
    query, key, value = (x.view(batch, nh, length, -1) for x in (query, key, value))
    dropout = self.dropout.p if self.training else 0.0
    # DeBERTa's mask is 0/1 (B, 1, T, T), padded queries masked too; nonzero means "may attend".
    mask = attention_mask.bool()
    scaling = (query.size(-1) * scale_factor) ** -0.5
    output, scores = attend(self, query, key, value, mask, scaling, dropout, position_bias)
    return output.reshape(batch, length, -1), scores


def _patcher(module_class: type[nn.Module], forward: Callable) -> Callable[[nn.Module], None]:
    def patch(model: nn.Module) -> None:
        for module in model.modules():
            if isinstance(module, module_class):
                module.forward = types.MethodType(forward, module)

    return patch


FAMILIES: tuple[Family, ...] = (
    Family("bert", ("bert",)),
    Family("roberta", ("roberta", "xlm-roberta", "camembert"), offsets_positions_by_pad=True),
    Family("electra", ("electra",)),
    Family("distilbert", ("distilbert",), ffn_attribute="hidden_dim"),
    Family(
        "albert", ("albert",), layers_per_step=lambda config: config.inner_group_num,
        # One layer group of one layer: a student with its own weights per layer, as TinyBERT's are.
        student_overrides=lambda config: {"num_hidden_groups": 1, "inner_group_num": 1},
    ),
    Family("mpnet", ("mpnet",), offsets_positions_by_pad=True, patch=_patcher(MPNetSelfAttention, _mpnet_self_attention_forward)),
    Family("deberta-v2", ("deberta-v2",), patch=_patcher(DisentangledSelfAttention, _deberta_self_attention_forward)),
    # layer_types (which layers are local) is derived from the layer count; a shallower student re-derives it.
    Family("modernbert", ("modernbert",), student_overrides=lambda config: {"layer_types": None}),
)
_BY_MODEL_TYPE = {model_type: family for family in FAMILIES for model_type in family.model_types}
SUPPORTED_MODEL_TYPES: tuple[str, ...] = tuple(_BY_MODEL_TYPE)


def family_of(config: PretrainedConfig | PreTrainedModel) -> Family:
    """The adapter for a model or config; FamilyError for model types without one."""
    config = getattr(config, "config", config)
    model_type = getattr(config, "model_type", None)
    family = _BY_MODEL_TYPE.get(model_type)
    if family is None:
        raise FamilyError(
            f"no distillation adapter for model type {model_type!r} ({type(config).__name__}); supported model "
            f"types: {', '.join(SUPPORTED_MODEL_TYPES)}. Its attention scores cannot be read exactly, so it cannot "
            "be a teacher or student here"
        )
    return family


def num_layers(config: PretrainedConfig) -> int:
    """Transformer layer outputs per forward pass (ALBERT: its shared layers counted each time they run)."""
    return config.num_hidden_layers * family_of(config).layers_per_step(config)


def uses_token_types(config: PretrainedConfig) -> bool:
    """Whether the model reads token_type_ids: DistilBERT, MPNet and ModernBERT have no such input, and a
    RoBERTa or DeBERTa-v3 with at most one type (type_vocab_size 1 or 0) must not be fed a pair's 1s."""
    return getattr(config, "type_vocab_size", 0) > 1


def usable_positions(config: PretrainedConfig) -> int:
    """Tokens per sequence the position embeddings cover (RoBERTa's 514 rows hold 512 positions)."""
    offset = config.pad_token_id + 1 if family_of(config).offsets_positions_by_pad else 0
    return config.max_position_embeddings - offset


def prepare(model: PreTrainedModel) -> PreTrainedModel:
    """Make `model` record pre-softmax scores inside `attention.record_scores`; idempotent, returns `model`."""
    family = family_of(model.config)
    if family.patch is not None:
        if not getattr(model, "_tinybert_patched", False):
            family.patch(model)
            model._tinybert_patched = True
    elif model.config._attn_implementation != ATTN_IMPLEMENTATION:
        model.set_attn_implementation(ATTN_IMPLEMENTATION)
    return model


def model_inputs(model: PreTrainedModel, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """input_ids, attention_mask and, where the model takes them, token_type_ids of a padded batch.

    Padding positions get the model's own pad id: batches are padded with 0, which is a real token
    (RoBERTa's <s>) for some vocabularies.
    """
    config = model.config
    input_ids, attention_mask = batch["input_ids"], batch["attention_mask"]
    if config.pad_token_id is not None and config.pad_token_id != 0:
        input_ids = input_ids.masked_fill(attention_mask == 0, config.pad_token_id)
    inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
    if uses_token_types(config) and batch.get("token_type_ids") is not None:
        inputs["token_type_ids"] = batch["token_type_ids"]
    return inputs


def student_config(teacher_config: PretrainedConfig, layers: int, width: int, ffn: int, heads: int) -> PretrainedConfig:
    """A config of the teacher's own family and tokenizer settings, with the student's shape."""
    family = family_of(teacher_config)
    values = teacher_config.to_dict()
    for key in ("architectures", "id2label", "label2id", "num_labels", "problem_type", "_name_or_path", "transformers_version"):
        values.pop(key, None)
    shape = {"num_hidden_layers": layers, "hidden_size": width, "num_attention_heads": heads, family.ffn_attribute: ffn}
    own_names = {teacher_config.attribute_map.get(key, key): value for key, value in shape.items()}  # DistilBERT: n_layers...
    return type(teacher_config).from_dict({**values, **family.student_overrides(teacher_config), **own_names})
