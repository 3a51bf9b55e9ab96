"""The augmented dataset as task distillation reads it: its columns, joining shards, saving and loading.

Layout: the input's columns (`idx`, `text_a`, optional `text_b`, `label`, any others) plus `source_idx`,
the `idx` of the input example a row came from. Rows come grouped by source example in input order, the
original row first, then its augmented rows; `idx` numbers the rows 0..n-1 in that order. On disk it is
a `datasets` Arrow directory written by `saved_datasets.save_dataset`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from datasets import Dataset, concatenate_datasets, load_from_disk

from tinybert_core.saved_datasets import save_dataset

SOURCE_IDX = "source_idx"
REQUIRED_COLUMNS = ("idx", "text_a", "label")


def renumber(dataset: Dataset) -> Dataset:
    """`dataset` with `idx` replaced by 0..n-1 in row order, columns kept in their order."""
    columns = dataset.column_names
    return dataset.remove_columns("idx").add_column("idx", list(range(len(dataset)))).select_columns(columns)


def concatenate_shards(shards: Sequence[Dataset]) -> Dataset:
    """Join augmented shards in shard order and renumber `idx`; equals augmenting the unsharded input."""
    if not shards:
        raise ValueError("no shards to concatenate")
    return renumber(concatenate_datasets(list(shards)))


def save_augmented(dataset: Dataset, path: str | Path) -> None:
    """Write an augmented dataset as an Arrow directory (`saved_datasets.save_dataset`)."""
    _check_columns(dataset, str(path))
    save_dataset(dataset, path)


def load_augmented(path: str | Path) -> Dataset:
    """Read an augmented dataset written by `save_augmented`, checking it has the expected columns."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"no augmented dataset at {path}")
    dataset = load_from_disk(str(path))
    if not isinstance(dataset, Dataset):
        raise ValueError(f"{path} holds a {type(dataset).__name__}, expected a single augmented Dataset")
    _check_columns(dataset, str(path))
    return dataset


def _check_columns(dataset: Dataset, where: str) -> None:
    missing = [c for c in (*REQUIRED_COLUMNS, SOURCE_IDX) if c not in dataset.column_names]
    if missing:
        raise ValueError(f"{where}: not an augmented dataset, missing columns {missing}")
