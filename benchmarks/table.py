"""The plain-text table every benchmark prints: left-aligned columns under a dashed rule."""

from __future__ import annotations

from typing import Sequence


def print_table(header: Sequence[object], rows: Sequence[Sequence[object]]) -> None:
    widths = [max(len(str(row[i])) for row in (header, *rows)) for i in range(len(header))]
    for row in (header, tuple("-" * w for w in widths), *rows):
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)))
