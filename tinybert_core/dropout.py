"""The student's dropout for one training run, apart from the rate its saved config holds.

    with dropout_rate(student, 0.0):   # every dropout of the student off; restored on leaving
        ...train...

The reference code distils with the student's config dropout (0.1) on. Distillation's targets are the teacher's
own outputs on every row, not noisy labels, and a student this small underfits its teacher rather than overfits:
the quality report measures the reference's dropout against none (README, "Dropout while distilling").

Families keep their rates in two places: `nn.Dropout` modules (BERT, RoBERTa, MPNet, DeBERTa, ...) and plain
float attributes read at forward time (ModernBERT's `attention_dropout`). Both are set; tests/test_families.py
checks on every supported family that a student in training mode then gives the same output twice.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

from torch import nn


def check_dropout(rate: float | None) -> None:
    """A dropout setting is a rate in [0, 1) or None (the model config's own)."""
    if rate is not None and not 0.0 <= rate < 1.0:
        raise ValueError(f"dropout must be in [0, 1) or None (the model config's), got {rate!r}")


@contextlib.contextmanager
def dropout_rate(model: nn.Module, rate: float | None) -> Iterator[None]:
    """Every dropout probability in `model` set to `rate` inside the block (None: left as it is)."""
    if rate is None:
        yield
        return
    check_dropout(rate)
    saved: list[tuple[nn.Module, str, float]] = []
    for module in model.modules():
        names = ["p"] if isinstance(module, nn.Dropout) else []
        names += [name for name, value in vars(module).items() if "dropout" in name and isinstance(value, float)]
        for name in names:
            saved.append((module, name, getattr(module, name)))
            setattr(module, name, rate)
    try:
        yield
    finally:
        for module, name, value in saved:
            setattr(module, name, value)
