"""Which teacher layer each student layer mimics (the paper's mapping function n = g(m))."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from transformers import PretrainedConfig

from tinybert_core.families import num_layers


class LayerMapError(ValueError):
    """The student and teacher cannot be paired as asked."""


@dataclass(frozen=True)
class LayerMap:
    """Student layer m (1..M) mimics teacher layer `teacher_of[m - 1]`; the embeddings (layer 0) map to 0."""

    teacher_of: tuple[int, ...]
    teacher_layers_total: int

    @property
    def pairs(self) -> tuple[tuple[int, int], ...]:
        """(student layer, teacher layer) for every transformer layer, in order."""
        return tuple((m, n) for m, n in enumerate(self.teacher_of, start=1))

    @property
    def student_layers(self) -> tuple[int, ...]:
        return tuple(range(1, len(self.teacher_of) + 1))

    @property
    def teacher_layers(self) -> tuple[int, ...]:
        return self.teacher_of


def uniform_layer_map(student_layers: int, teacher_layers: int) -> LayerMap:
    """g(m) = m * N / M: every (N/M)-th teacher layer, ending on the last one."""
    if student_layers < 1 or teacher_layers < 1:
        raise LayerMapError("student and teacher need at least one layer each")
    if teacher_layers % student_layers:
        raise LayerMapError(
            f"uniform mapping needs the teacher's {teacher_layers} layers to be a multiple of the student's "
            f"{student_layers}; give an explicit layer map (one teacher layer per student layer), "
            f"for example {_suggest(student_layers, teacher_layers)}"
        )
    step = teacher_layers // student_layers
    return LayerMap(tuple(m * step for m in range(1, student_layers + 1)), teacher_layers)


def explicit_layer_map(teacher_of: Sequence[int], student_layers: int, teacher_layers: int) -> LayerMap:
    """A user-chosen mapping: `teacher_of[i]` is the teacher layer (1..N) for student layer i + 1."""
    teacher_of = tuple(int(n) for n in teacher_of)
    if len(teacher_of) != student_layers:
        raise LayerMapError(
            f"explicit layer map {list(teacher_of)} has {len(teacher_of)} entries; the student has "
            f"{student_layers} layers and needs one teacher layer (1..{teacher_layers}) for each"
        )
    bad = [n for n in teacher_of if not 1 <= n <= teacher_layers]
    if bad:
        raise LayerMapError(f"explicit layer map {list(teacher_of)}: layers {bad} are outside 1..{teacher_layers}")
    return LayerMap(teacher_of, teacher_layers)


def build_layer_map(
    student_config: PretrainedConfig,
    teacher_config: PretrainedConfig,
    explicit: Sequence[int] | None = None,
    attention_loss: bool = True,
) -> LayerMap:
    """The layer map for a student/teacher pair, layers counted by each family's adapter (ALBERT's shared
    layers once per repetition). The attention loss compares heads one to one, so it needs equal head counts;
    `attention_loss=False` (the loss switched off) lifts that condition."""
    if attention_loss and student_config.num_attention_heads != teacher_config.num_attention_heads:
        raise LayerMapError(
            f"attention distillation compares heads one to one, but the student has "
            f"{student_config.num_attention_heads} heads and the teacher {teacher_config.num_attention_heads}; "
            f"give the student {teacher_config.num_attention_heads} heads, or switch the attention loss off "
            f"(attention_loss=False)"
        )
    m, n = num_layers(student_config), num_layers(teacher_config)
    if explicit:
        return explicit_layer_map(explicit, m, n)
    return uniform_layer_map(m, n)


def _suggest(student_layers: int, teacher_layers: int) -> list[int]:
    return [math.ceil(m * teacher_layers / student_layers) for m in range(1, student_layers + 1)]
