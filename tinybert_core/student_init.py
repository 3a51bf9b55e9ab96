"""A BERT student that starts as a pruned copy of its BERT teacher, instead of from random weights.

    student = build_student(shape, teacher.config)                         # random, then overwritten:
    projections = copy_from_teacher(student, teacher, calibration_batches, layer_map.teacher_of)

The paper starts general distillation from a random student. With a small budget (minutes on a CPU), a student
that starts from the teacher's own weights begins close to the teacher and spends its steps closing the rest
of the gap (DistilBERT takes every other layer; Minitron also cuts width by activation importance):
- depth: student layer m starts as the teacher layer it mimics (the layer map's g(m));
- width: the hidden channels, each head's query/key and value channels and the FFN neurons with the largest
  mean activation on a few calibration batches are kept, the rest cut;
- W_e/W_h start as the selection that puts each kept channel back where it was in the teacher's width, so the
  hidden-state loss begins as the loss on the cut channels alone.

Both models must be BERTs (`model_type` "bert") with as many heads each: a head's channels are cut, not its heads.
"""

from __future__ import annotations

import math
from typing import Iterable

import torch
from transformers import BertModel, PreTrainedModel

from tinybert_core.losses import Projections
from tinybert_core.families import model_inputs
from tinybert_core.models import StudentShape, encoder_of


RANDOM_HINT = 'start the student at random instead (student_init="random"; in params.yaml models.student.init: random)'


class PrunedInitError(ValueError):
    """A teacher or student shape that a pruned copy cannot be made from."""


def copy_from_teacher(
    student: PreTrainedModel,
    teacher: PreTrainedModel,
    calibration: Iterable[dict[str, torch.Tensor]],
    teacher_of: tuple[int, ...],
) -> Projections:
    """Overwrite `student`'s weights with those cut from `teacher`; returns W_e/W_h that map it back to the
    teacher's width.

    `calibration`: padded batches of general text, on which channel importance is measured. `teacher_of`: the
    teacher layer (1..N) each student layer mimics.
    """
    bert, student = encoder_of(teacher), encoder_of(student)
    shape = StudentShape(student.config.num_hidden_layers, student.config.hidden_size,
                         student.config.intermediate_size, student.config.num_attention_heads)
    _check(bert, student, shape, teacher_of)
    importance = _importance(bert, calibration)
    hidden = _top(importance["hidden"], shape.hidden_size)
    head_width = bert.config.hidden_size // bert.config.num_attention_heads
    student_head_width = shape.hidden_size // shape.num_heads
    with torch.no_grad():
        _copy_embeddings(bert, student, hidden)
        for m, n in enumerate(teacher_of):
            layer = n - 1  # teacher_of counts layers from 1
            query_key = _per_head(importance[f"query_key.{layer}"], head_width, student_head_width)
            value = _per_head(importance[f"value.{layer}"], head_width, student_head_width)
            neurons = _top(importance[f"neurons.{layer}"], shape.intermediate_size)
            # The student's scores divide by sqrt(its head width), the teacher's by sqrt(its own): scaling the
            # queries keeps each kept channel's share of a score what it was in the teacher.
            query_scale = math.sqrt(student_head_width / head_width)
            _copy_layer(bert.encoder.layer[layer], student.encoder.layer[m], hidden, query_key, value, neurons, query_scale)
        if student.pooler is not None and bert.pooler is not None:
            _copy_linear(bert.pooler.dense, student.pooler.dense, rows=hidden, columns=hidden)
    return _selection_projections(hidden, shape.hidden_size, bert.config.hidden_size)


def _check(bert: PreTrainedModel, student: PreTrainedModel, shape: StudentShape, teacher_of: tuple[int, ...]) -> None:
    config = bert.config
    for role, model in (("teacher", bert), ("student", student)):
        if not isinstance(model, BertModel):
            raise PrunedInitError(
                f"a pruned copy needs a BERT {role}; {type(model).__name__} (model type {model.config.model_type!r}) "
                f"has other weights: {RANDOM_HINT}"
            )
    if shape.num_heads != config.num_attention_heads:
        raise PrunedInitError(
            f"a pruned copy keeps the teacher's {config.num_attention_heads} heads; the student shape has "
            f"{shape.num_heads}: give it {config.num_attention_heads} heads or {RANDOM_HINT}"
        )
    wider = [name for name, student, teacher in (
        ("hidden_size", shape.hidden_size, config.hidden_size),
        ("intermediate_size", shape.intermediate_size, config.intermediate_size),
        ("num_layers", shape.num_layers, config.num_hidden_layers),
    ) if student > teacher]
    if wider:
        raise PrunedInitError(f"a pruned copy cannot be larger than its teacher: the student's {', '.join(wider)} is")
    if len(teacher_of) != shape.num_layers:
        raise PrunedInitError(f"layer map {list(teacher_of)} has {len(teacher_of)} entries for {shape.num_layers} student layers")


def _importance(bert: BertModel, calibration: Iterable[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Mean |activation| per channel over the calibration tokens (padding left out): hidden channels summed over
    the embeddings and every layer; per layer, FFN neurons, query x key channels and value x output channels."""
    sums: dict[str, torch.Tensor] = {}
    tokens = 0
    mask = None

    def add(name: str, values: torch.Tensor) -> None:  # values (B, T, C)
        total = (values.abs().float() * mask).sum(dim=(0, 1))
        sums[name] = sums.get(name, 0) + total

    hooks = []
    for i, layer in enumerate(bert.encoder.layer):
        attention = layer.attention.self
        hooks.append(layer.intermediate.register_forward_hook(lambda _m, _i, out, i=i: add(f"neurons.{i}", out)))
        for part in ("query", "key", "value"):
            hooks.append(getattr(attention, part).register_forward_hook(
                lambda _m, _i, out, i=i, part=part: add(f"{part}.{i}", out)))
    was_training = bert.training
    bert.eval()
    try:
        with torch.no_grad():
            for batch in calibration:
                mask = batch["attention_mask"].unsqueeze(-1).float()
                tokens += int(mask.sum())
                outputs = bert(**model_inputs(bert, batch), output_hidden_states=True)
                for state in outputs.hidden_states:
                    add("hidden", state)
    finally:
        for hook in hooks:
            hook.remove()
        bert.train(was_training)
    if tokens == 0:
        raise PrunedInitError("the calibration batches hold no tokens: channel importance cannot be measured")
    mean = {name: total / tokens for name, total in sums.items()}
    for i, layer in enumerate(bert.encoder.layer):
        mean[f"query_key.{i}"] = mean.pop(f"query.{i}") * mean.pop(f"key.{i}")
        # a value channel matters as much as it moves the attention output: its mean size times its column's norm
        mean[f"value.{i}"] = mean.pop(f"value.{i}") * layer.attention.output.dense.weight.norm(dim=0)
    return mean


def _top(scores: torch.Tensor, keep: int) -> torch.Tensor:
    """Indices of the `keep` largest scores, in their original order (kept channels stay in the teacher's order)."""
    return torch.topk(scores, keep).indices.sort().values


def _per_head(scores: torch.Tensor, head_width: int, keep: int) -> torch.Tensor:
    """The `keep` most important channels of every head, as indices into the whole width."""
    per_head = scores.view(-1, head_width)
    offsets = torch.arange(per_head.shape[0]).unsqueeze(1) * head_width
    return torch.stack([_top(row, keep) for row in per_head]).add(offsets).flatten()


def _copy_linear(source: torch.nn.Linear, target: torch.nn.Linear, rows: torch.Tensor, columns: torch.Tensor, scale: float = 1.0) -> None:
    target.weight.copy_(source.weight[rows][:, columns] * scale)
    target.bias.copy_(source.bias[rows] * scale)


def _copy_norm(source: torch.nn.LayerNorm, target: torch.nn.LayerNorm, channels: torch.Tensor) -> None:
    target.weight.copy_(source.weight[channels])
    target.bias.copy_(source.bias[channels])


def _copy_embeddings(bert: BertModel, student: BertModel, hidden: torch.Tensor) -> None:
    for name in ("word_embeddings", "position_embeddings", "token_type_embeddings"):
        source, target = getattr(bert.embeddings, name).weight, getattr(student.embeddings, name).weight
        target.copy_(source[: target.shape[0]][:, hidden])  # the student may have fewer positions or token types
    _copy_norm(bert.embeddings.LayerNorm, student.embeddings.LayerNorm, hidden)


def _copy_layer(source, target, hidden, query_key, value, neurons, query_scale: float) -> None:
    _copy_linear(source.attention.self.query, target.attention.self.query, query_key, hidden, query_scale)
    _copy_linear(source.attention.self.key, target.attention.self.key, query_key, hidden)
    _copy_linear(source.attention.self.value, target.attention.self.value, value, hidden)
    _copy_linear(source.attention.output.dense, target.attention.output.dense, hidden, value)
    _copy_norm(source.attention.output.LayerNorm, target.attention.output.LayerNorm, hidden)
    _copy_linear(source.intermediate.dense, target.intermediate.dense, neurons, hidden)
    _copy_linear(source.output.dense, target.output.dense, hidden, neurons)
    _copy_norm(source.output.LayerNorm, target.output.LayerNorm, hidden)


def _selection_projections(hidden: torch.Tensor, student_width: int, teacher_width: int) -> Projections:
    projections = Projections(student_width, teacher_width)
    with torch.no_grad():
        for layer in (projections.embedding, projections.hidden):
            layer.weight.zero_()
            layer.weight[hidden, torch.arange(student_width)] = 1.0
            layer.bias.zero_()
    return projections
