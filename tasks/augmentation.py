"""Prefect tasks for data augmentation: word vectors once, then one mapped task per shard of the training set.

Shards are contiguous, so joining their outputs in shard order equals augmenting the whole set. Each shard
task builds its augmenter from paths (not objects), so it can run on a Dask or Ray worker elsewhere.
"""

from __future__ import annotations

import itertools
import threading
from pathlib import Path
from typing import Any

from datasets import Dataset
from prefect import get_run_logger, task
from prefect.task_runners import ThreadPoolTaskRunner

from tinybert_core.augment import AugmentConfig, Augmenter, build_augmenter, train_word_vectors
from tinybert_core.corpus import iter_documents
from tasks.params import resolve_source
from tasks.retries import IO_TASK

WORD_VECTORS_FILE = "word_vectors.txt"
MAX_CORPUS_DOCUMENTS = 20_000  # enough text for useful neighbours, bounded time on CPU


def task_runner(name: str):
    """The Prefect task runner that executes the shard tasks: threads here, or a Dask / Ray cluster."""
    if name == "thread":
        return ThreadPoolTaskRunner()
    if name == "dask":
        from prefect_dask import DaskTaskRunner  # optional: pip install prefect-dask

        return DaskTaskRunner()
    if name == "ray":
        from prefect_ray import RayTaskRunner  # optional: pip install prefect-ray

        return RayTaskRunner()
    raise ValueError(f"augment.task_runner must be thread, dask or ray, not {name!r}")


@task(**IO_TASK)
def train_vectors_task(corpus_section: dict[str, Any], train: Dataset, out_path: Path, seed: int) -> Path:
    """Word2vec vectors from the general corpus and the task's own sentences, saved in word2vec text format."""
    logger = get_run_logger()
    logger.warning("no word vector file given (augment.word_vectors): training word2vec on the pipeline's corpus")
    documents = (
        doc for name in corpus_section["sources"]
        for doc in iter_documents(resolve_source(name), corpus_section["document_mode"])
    )
    task_texts = [text for column in ("text_a", "text_b") if column in train.column_names for text in train[column]]
    texts = [*itertools.islice(documents, MAX_CORPUS_DOCUMENTS), *task_texts]
    vectors = train_word_vectors(texts, seed=seed)
    vectors.save_word2vec_format(str(out_path), binary=False)  # plain text: no pickle
    logger.info("trained %d word vectors on %d texts", len(vectors), len(texts))
    return out_path


_AUGMENTERS: dict[str, Augmenter] = {}
_AUGMENTERS_LOCK = threading.Lock()


def _augmenter(config: AugmentConfig, vectors: str | None, vectors_limit: int | None, masked_lm: str | None) -> Augmenter:
    """One augmenter per process and configuration: shard tasks on the same worker share the loaded models."""
    key = repr((config, vectors, vectors_limit, masked_lm))
    with _AUGMENTERS_LOCK:
        if key not in _AUGMENTERS:
            _AUGMENTERS[key] = build_augmenter(config, masked_lm=masked_lm, vectors=vectors, vectors_limit=vectors_limit)
        return _AUGMENTERS[key]


def augment_config(section: dict[str, Any], seed: int) -> AugmentConfig:
    return AugmentConfig(
        p_t=section["p_t"], n_aug=section["n_aug"], k=section["k"], seed=seed, pair_sides=section["pair_sides"]
    )


@task(**IO_TASK)
def augment_shard_task(
    train: Dataset, shard_index: int, num_shards: int, config: AugmentConfig, vectors: str | None,
    vectors_limit: int | None, masked_lm: str | None,
) -> Dataset:
    augmenter = _augmenter(config, vectors, vectors_limit, masked_lm)
    shard = augmenter.augment_shard(train, shard_index, num_shards, progress=False)
    get_run_logger().info("shard %d/%d: %d rows", shard_index + 1, num_shards, len(shard))
    return shard
