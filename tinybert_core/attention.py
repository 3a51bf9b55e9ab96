"""An attention implementation that returns pre-softmax scores for the layers distillation reads.

TinyBERT's attention loss compares the student's and teacher's attention *scores* (QK^T / sqrt(d), before
the mask and the softmax). transformers' BERT looks its attention function up by
`config._attn_implementation`, so we register one more implementation, "tinybert", instead of forking the
modeling code. A forward call names the layers whose scores it needs with the keyword `score_layers`; those
layers compute attention explicitly and return the raw scores as their attention weights (which
`output_attentions=True` collects), every other layer keeps the fused SDPA kernel.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

ATTN_IMPLEMENTATION = "tinybert"


def score_returning_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    score_layers: frozenset[int] = frozenset(),
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Attention for one layer; returns (output (B, T, nh, hs), scores (B, nh, T, T) or None).

    `attention_mask` is SDPA's boolean mask (B, 1, T, T), True where a key may be attended, or None when
    nothing is padded.
    """
    kwargs.pop("output_attentions", None)  # SDPA warns on it; the flag is handled by the output recorder
    if module.layer_idx not in score_layers:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )

    if scaling is None:
        scaling = query.size(-1) ** -0.5
    scores = torch.matmul(query, key.transpose(2, 3)) * scaling  # (B, nh, T, T)
    masked = scores
    if attention_mask is not None:
        masked = scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
    probs = nn.functional.dropout(masked.softmax(dim=-1), p=dropout, training=module.training)
    output = torch.matmul(probs, value).transpose(1, 2).contiguous()  # (B, T, nh, hs)
    return output, scores


AttentionInterface.register(ATTN_IMPLEMENTATION, score_returning_attention)
# Without a registered mask function transformers builds no padding mask for an unknown implementation.
AttentionMaskInterface.register(ATTN_IMPLEMENTATION, sdpa_mask)
