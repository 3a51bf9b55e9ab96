"""Transformer-distillation losses (paper eqs. 7-10) and the learnable width projections.

Unlike the reference implementation, padding never contributes: hidden-state losses average over real
tokens only, and attention losses over (query, key) pairs where both are real tokens.
All losses are computed in float32 whatever precision the forward pass ran in.

Each loss is a sum divided by a count: by default this batch's own count (a per-batch mean). The training loop
passes the count of the whole optimizer step instead (`total_tokens`, `total_pairs`, `total_rows`, over every
micro-batch and process), so that micro-batches and processes of unequal lengths add up to exactly the loss
one process would compute on the whole batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def hidden_mse(
    student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor, total_tokens: int | None = None
) -> torch.Tensor:
    """Mean squared error over real tokens. student, teacher: (B, T, H) (already projected); mask: (B, T)."""
    token_mask = mask.to(torch.float32).unsqueeze(-1)  # (B, T, 1)
    squared = (student.float() - teacher.float()).pow(2) * token_mask
    tokens = token_mask.sum() if total_tokens is None else total_tokens
    return squared.sum() / _at_least_one(tokens * teacher.size(-1))


def attention_mse(
    student: torch.Tensor,
    teacher: torch.Tensor,
    mask: torch.Tensor,
    total_pairs: int | None = None,
    allowed: torch.Tensor | None = None,
) -> torch.Tensor:
    """MSE of pre-softmax attention scores over real (query, key) pairs. scores: (B, nh, T, T); mask: (B, T).

    `allowed` (boolean, broadcastable to (B, 1, T, T)) further limits the pairs to those the layers' softmax
    sees: a local-attention layer (ModernBERT) never uses the logits outside its window. `total_pairs`, when
    given, is the real-pair count of the whole optimizer step (all micro-batches and processes), so the step's
    gradient is one mean whatever the split; with `allowed` it still counts all real pairs.
    """
    real = mask.to(torch.float32)
    pair_mask = (real[:, :, None] * real[:, None, :]).unsqueeze(1)  # (B, 1, T, T)
    if allowed is not None:
        pair_mask = pair_mask * allowed.to(torch.float32)
    squared = (student.float() - teacher.float()).pow(2) * pair_mask
    pairs = pair_mask.sum() if total_pairs is None else total_pairs
    return squared.sum() / _at_least_one(pairs * teacher.size(1))


def soft_cross_entropy(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0, total_rows: int | None = None
) -> torch.Tensor:
    """Cross-entropy of the student's tempered distribution against the teacher's, averaged over the batch.

    student_logits, teacher_logits: (B, C).
    """
    teacher_probs = F.softmax(teacher_logits.float() / temperature, dim=-1)
    student_log_probs = F.log_softmax(student_logits.float() / temperature, dim=-1)
    return -(teacher_probs * student_log_probs).sum() / _rows(student_logits, total_rows)


def prediction_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: float,
    regression: bool,
    total_rows: int | None = None,
) -> torch.Tensor:
    """Soft cross-entropy for classification; MSE between the two outputs for regression (B, 1)."""
    if regression:
        return mean_squared_error(student_logits, teacher_logits, total_rows)
    return soft_cross_entropy(student_logits, teacher_logits, temperature, total_rows)


def mean_squared_error(prediction: torch.Tensor, target: torch.Tensor, total_rows: int | None = None) -> torch.Tensor:
    """F.mse_loss of (B, ...) outputs, with `total_rows` rows in place of B in the mean."""
    per_row = prediction.numel() // max(prediction.size(0), 1)
    return (prediction.float() - target.float()).pow(2).sum() / (_rows(prediction, total_rows) * per_row)


def _rows(logits: torch.Tensor, total_rows: int | None) -> int:
    return _at_least_one(logits.size(0) if total_rows is None else total_rows)


def _at_least_one(count):
    return count.clamp_min(1.0) if torch.is_tensor(count) else max(count, 1)


class Projections(nn.Module):
    """W_e and W_h: map student widths to the teacher's so hidden states can be compared.

    One W_h is shared by all mapped layers, as in the paper; W_e is separate. With `identity_if_same_width`
    and equal widths, both are identities (no parameters).
    """

    def __init__(self, student_width: int, teacher_width: int, identity_if_same_width: bool = False):
        super().__init__()
        if identity_if_same_width and student_width == teacher_width:
            self.embedding: nn.Module = nn.Identity()
            self.hidden: nn.Module = nn.Identity()
        else:
            self.embedding = nn.Linear(student_width, teacher_width)
            self.hidden = nn.Linear(student_width, teacher_width)

    def forward(self, student_hidden: torch.Tensor, layer: int) -> torch.Tensor:
        """Project (B, T, H_s) -> (B, T, H_t); layer 0 is the embedding output."""
        return self.embedding(student_hidden) if layer == 0 else self.hidden(student_hidden)
