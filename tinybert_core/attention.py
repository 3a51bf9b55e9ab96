"""Pre-softmax attention scores for the layers distillation reads, the fast kernel for all the others.

TinyBERT's attention loss compares the student's and the teacher's attention *scores*: the logits that enter
each layer's softmax (QK^T / sqrt(d), plus whatever position terms the family adds), before masking. Rather
than forking modeling code we register one more attention implementation, "tinybert", with transformers'
`AttentionInterface`; families whose attention does not go through that interface (MPNet, DeBERTa) route
their own attention modules into the same `attend` function with a small patch in `families.py`.

Which layers are read is said per forward pass, by the caller:

    with record_scores({1, 3}) as recording:      # 0-based layer indices
        model(**inputs)
    recording.scores[3]                           # (B, nh, T, T) pre-softmax logits of the 4th layer

Layers are identified by the order of their attention calls within one forward pass, not by a `layer_idx`
attribute: DistilBERT's and ALBERT's modules have none, and ALBERT runs one shared module for every layer.
Outside a recording (plain inference, evaluation, export) every layer runs SDPA.
"""

from __future__ import annotations

import contextlib
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Iterator

import torch
from torch import nn
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

ATTN_IMPLEMENTATION = "tinybert"


@dataclass
class ScoreRecording:
    """What one forward pass recorded. Layers are numbered 0.. in the order their attention runs.

    scores[l]: (B, nh, T, T) pre-softmax logits; masks[l]: boolean (B or 1, 1, T, T), True where the layer's
    softmax may attend (padding and, for local-attention layers, the window), or None when nothing is masked.
    """

    layers: frozenset[int]
    scores: dict[int, torch.Tensor] = field(default_factory=dict)
    masks: dict[int, torch.Tensor | None] = field(default_factory=dict)
    calls: int = 0  # attention calls seen so far in this forward pass


_recording: ContextVar[ScoreRecording | None] = ContextVar("tinybert_score_recording", default=None)


@contextlib.contextmanager
def record_scores(layers: set[int] | frozenset[int]) -> Iterator[ScoreRecording]:
    """Record the pre-softmax scores of `layers` (0-based) during the forward passes inside the block."""
    recording = ScoreRecording(frozenset(layers))
    token = _recording.set(recording)
    try:
        yield recording
    finally:
        _recording.reset(token)


def boolean_mask(mask: torch.Tensor | None) -> torch.Tensor | None:
    """A model's attention mask as booleans, True = may attend: from SDPA's boolean, an additive float
    (0 / large negative) or DeBERTa's 0/1 integer masks."""
    if mask is None or mask.dtype == torch.bool:
        return mask
    if mask.is_floating_point():
        return mask > torch.finfo(mask.dtype).min / 2
    return mask != 0


def attend(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    position_bias: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One layer's attention; returns (output (B, T, nh, hs), pre-softmax scores (B, nh, T, T) or None).

    query/key/value: (B, nh, T, hs); `position_bias`: (B or 1, nh, T, T) added to the scaled dot products
    (MPNet's relative position bias, DeBERTa's c2p + p2c terms); `attention_mask`: boolean, additive or 0/1.
    """
    recording = _recording.get()
    layer = None
    if recording is not None:
        layer, recording.calls = recording.calls, recording.calls + 1
    mask = boolean_mask(attention_mask)
    if recording is None or layer not in recording.layers:
        # Encoders are never causal; modules without an `is_causal` attribute would otherwise count as causal.
        return sdpa_attention_forward(
            module, query, key, value, mask, dropout=dropout, scaling=scaling, is_causal=False, position_bias=position_bias
        )

    scores = torch.matmul(query, key.transpose(2, 3)) * scaling
    if position_bias is not None:
        scores = scores + position_bias
    recording.scores[layer], recording.masks[layer] = scores, mask
    masked = scores if mask is None else scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    probs = masked.softmax(dim=-1, dtype=torch.float32).to(value.dtype)
    probs = nn.functional.dropout(probs, p=dropout, training=module.training)
    output = torch.matmul(probs, value).transpose(1, 2).contiguous()
    return output, scores


def score_returning_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The "tinybert" entry of transformers' AttentionInterface (BERT, RoBERTa, ELECTRA, DistilBERT, ALBERT,
    ModernBERT...). Extra keywords (a local layer's `sliding_window`, already applied by its mask) are unused."""
    return attend(module, query, key, value, attention_mask, query.size(-1) ** -0.5 if scaling is None else scaling, dropout)


AttentionInterface.register(ATTN_IMPLEMENTATION, score_returning_attention)
# Without a registered mask function transformers builds no padding mask for an unknown implementation.
AttentionMaskInterface.register(ATTN_IMPLEMENTATION, sdpa_mask)
