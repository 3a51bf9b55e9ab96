"""What each training mode minimises, as one module holding every trainable parameter.

Keeping the student and the projections in one `nn.Module` lets DistributedDataParallel synchronise all of
their gradients with a single wrapper.

Modes:
- "general":           embedding + hidden + attention losses against a general teacher (no labels)
- "finetune":          cross-entropy / MSE on labels; the model trained is the teacher itself
- "task_intermediate": embedding + hidden + attention losses against a fine-tuned teacher (stage 1)
- "task_prediction":   soft cross-entropy (or MSE) on the teacher's logits (stage 2)
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel

from tinybert_core.batching import BatchCounts
from tinybert_core.layer_map import LayerMap
from tinybert_core.losses import Projections, attention_mse, hidden_mse, mean_squared_error, prediction_loss
from tinybert_core.models import Intermediates, forward_intermediates, joint_mask
from tinybert_core.teacher_targets import LiveTeacher

Mode = Literal["general", "finetune", "task_intermediate", "task_prediction"]
MODES: tuple[str, ...] = ("general", "finetune", "task_intermediate", "task_prediction")
INTERMEDIATE_MODES = ("general", "task_intermediate")


class DistillationObjective(nn.Module):
    """Computes the loss of one mode for a padded batch; returns {"loss": total, <component>: value}.

    With `counts` (the rows, real tokens and real pairs of the whole optimizer step, over every micro-batch
    and process) each loss is this batch's sum divided by those counts, so the losses of micro-batches and
    processes add up to the step's loss; without, each is this batch's own mean.
    """

    def __init__(
        self,
        student: PreTrainedModel,
        mode: Mode,
        layer_map: LayerMap | None = None,
        projections: Projections | None = None,
        temperature: float = 1.0,
        regression: bool = False,
        attention_loss: bool = True,
    ):
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"unknown training mode {mode!r}; expected one of {MODES}")
        if mode in INTERMEDIATE_MODES and (layer_map is None or projections is None):
            raise ValueError(f"mode {mode!r} needs a layer map and projections")
        self.student = student
        self.mode = mode
        self.layer_map = layer_map
        self.projections = projections if mode in INTERMEDIATE_MODES else None
        self.temperature = temperature
        self.regression = regression
        self.attention_loss = attention_loss  # False: no attention loss (student and teacher heads differ)

    @property
    def needs_teacher(self) -> bool:
        return self.mode != "finetune"

    def teacher_request(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """(hidden layers, score layers) the teacher must expose for this mode."""
        if self.mode not in INTERMEDIATE_MODES:
            return (), ()
        teacher_layers = self.layer_map.teacher_layers
        return (0, *teacher_layers), teacher_layers if self.attention_loss else ()

    def forward(
        self, batch: dict[str, torch.Tensor], teacher: Intermediates | None = None, counts: BatchCounts | None = None
    ) -> dict[str, torch.Tensor]:
        if self.mode in INTERMEDIATE_MODES:
            return self._intermediate_losses(batch, teacher, counts)
        rows = counts.rows if counts is not None else None
        student = forward_intermediates(self.student, batch)
        if self.mode == "task_prediction":
            loss = prediction_loss(student.logits, teacher.logits, self.temperature, self.regression, rows)
            return {"loss": loss, "prediction": loss.detach()}
        labels = batch["labels"]
        if self.regression:
            loss = mean_squared_error(student.logits.squeeze(-1), labels, rows)
        else:
            loss = F.cross_entropy(student.logits.float(), labels, reduction="sum") / (rows or labels.size(0))
        return {"loss": loss, "label": loss.detach()}

    def _intermediate_losses(
        self, batch: dict[str, torch.Tensor], teacher: Intermediates, counts: BatchCounts | None
    ) -> dict[str, torch.Tensor]:
        student_layers = self.layer_map.student_layers
        score_layers = student_layers if self.attention_loss else ()
        student = forward_intermediates(self.student, batch, hidden_layers=(0, *student_layers), score_layers=score_layers)
        mask = batch["attention_mask"]
        tokens, pairs = (counts.tokens, counts.pairs) if counts is not None else (None, None)
        embedding = hidden_mse(self.projections(student.hidden[0], layer=0), teacher.hidden[0], mask, tokens)
        hidden = sum(
            hidden_mse(self.projections(student.hidden[m], layer=m), teacher.hidden[n], mask, tokens)
            for m, n in self.layer_map.pairs
        )
        attention = embedding.new_zeros(())
        if self.attention_loss:
            attention = sum(
                attention_mse(
                    student.scores[m], teacher.scores[n], mask, pairs,
                    joint_mask(student.score_masks.get(m), teacher.score_masks.get(n)),
                )
                for m, n in self.layer_map.pairs
            )
        total = embedding + hidden + attention
        return {
            "loss": total,
            "embedding": embedding.detach(),
            "hidden": hidden.detach(),
            "attention": attention.detach(),
        }


def teacher_intermediates(
    teacher: PreTrainedModel, objective: DistillationObjective, batch: dict, precision: str = "fp32"
) -> Intermediates | None:
    """The teacher's side of the loss for one batch (the training loop keeps a `LiveTeacher` instead)."""
    if not objective.needs_teacher:
        return None
    return LiveTeacher(teacher, *objective.teacher_request(), precision=precision)(batch)
