"""Stage 2's teacher logits, computed once per (teacher, augmented training set) and kept in a folder DVC tracks.

    build_logit_cache(teacher, encoded_train, "outputs/teacher_logits")            # runs the teacher once
    logits = load_logit_cache("outputs/teacher_logits", teacher, encoded_train)    # (N, C), checks the key
    train(objective, encoded_train, config, run_dir, teacher_logits=logits)       # the teacher never runs

A cache folder holds
    logits.safetensors   "logits": (N, C) float32; row i is the teacher's output on row i of the dataset
    cache.json           {"format_version", "key": {...}, "rows", "classes"}; written last
The key hashes what the logits depend on: the teacher's weights and config, the dataset's encoded inputs, the
teacher precision, and the torch/transformers versions. Loading a cache whose key differs raises
`StaleCacheError` naming what changed; it is never reused silently (`logit_cache` recomputes instead).

Logits are stored exactly as the teacher produced them (bf16 autocast outputs are exact in float32), so
training on the cache is training on the live teacher's logits, up to the last-bit differences float32
matrix products may show between batch compositions.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
import transformers
from datasets import Dataset
from safetensors.torch import load_file, save_file
from transformers import PreTrainedModel

from tinybert_core.batching import padded_rows, sequence_lengths
from tinybert_core.teacher_targets import LiveTeacher, resolve_teacher_precision

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
LOGITS_FILE = "logits.safetensors"
KEY_FILE = "cache.json"
INPUT_COLUMNS = ("input_ids", "token_type_ids")


class StaleCacheError(RuntimeError):
    """A teacher cache was made from another teacher, dataset, precision or software version."""


def teacher_fingerprint(teacher: PreTrainedModel) -> str:
    """sha256 of the teacher's config (without paths and bookkeeping) and of every weight, in name order."""
    digest = hashlib.sha256()
    config = {k: v for k, v in teacher.config.to_dict().items() if not k.startswith("_") and k != "transformers_version"}
    digest.update(json.dumps(config, sort_keys=True, default=str).encode())
    for name, tensor in sorted(teacher.state_dict().items()):
        flat = tensor.detach().cpu().contiguous().view(-1)
        digest.update(f"{name}:{flat.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def dataset_fingerprint(dataset: Dataset) -> str:
    """sha256 of the encoded inputs (row count, then each input column's lengths and values as int64)."""
    digest = hashlib.sha256(str(len(dataset)).encode())
    for column in INPUT_COLUMNS:
        if column not in dataset.column_names:
            continue
        values = dataset.data.column(column).combine_chunks()  # a list<int> array
        digest.update(column.encode())
        digest.update(np.asarray(pc.list_value_length(values).fill_null(-1), dtype=np.int64).tobytes())
        digest.update(np.asarray(pc.cast(pc.list_flatten(values), pa.int64()), dtype=np.int64).tobytes())
    return digest.hexdigest()


def logit_cache_key(teacher: PreTrainedModel, dataset: Dataset, precision: str = "auto") -> dict[str, str]:
    device = next(teacher.parameters()).device
    return {
        "teacher": teacher_fingerprint(teacher),
        "data": dataset_fingerprint(dataset),
        "precision": resolve_teacher_precision(precision, device),
        "software": f"torch {torch.__version__}, transformers {transformers.__version__}",
    }


def compute_teacher_logits(
    teacher: PreTrainedModel,
    dataset: Dataset,
    precision: str = "auto",
    batch_size: int = 64,
    batches: Iterable[Sequence[int]] | None = None,
) -> torch.Tensor:
    """The teacher's logits (N, C) float32 on CPU for every row of an encoded dataset.

    Rows go through the teacher in length-sorted batches of `batch_size` (the least padding), or in the
    given `batches` of row indices, which must cover every row once.
    """
    live = LiveTeacher(teacher, precision=precision)
    device = live.device
    if batches is None:
        order = sorted(range(len(dataset)), key=sequence_lengths(dataset).__getitem__)
        batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    logits: torch.Tensor | None = None
    seen = torch.zeros(len(dataset), dtype=torch.bool)
    for indices in batches:
        batch = {k: v.to(device) for k, v in padded_rows(dataset, indices).items()}
        out = live(batch).logits
        if out is None:
            raise ValueError(f"teacher {type(teacher).__name__} has no prediction head: it gives no logits to cache")
        if logits is None:
            logits = torch.empty(len(dataset), out.size(-1), dtype=torch.float32)
        logits[list(indices)] = out.float().cpu()
        seen[list(indices)] = True
    if logits is None or not bool(seen.all()):
        raise ValueError(f"the batches cover {int(seen.sum())} of the dataset's {len(dataset)} rows")
    return logits


def write_logit_cache(folder: str | Path, logits: torch.Tensor, key: dict[str, str]) -> Path:
    """Write `logits` (N, C) and their key into `folder`; cache.json goes last, so a half-written cache has none."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / KEY_FILE).unlink(missing_ok=True)
    tmp = folder / f".{LOGITS_FILE}.tmp-{os.getpid()}"
    save_file({"logits": logits.float().contiguous()}, str(tmp))
    os.replace(tmp, folder / LOGITS_FILE)
    payload = {"format_version": FORMAT_VERSION, "key": key, "rows": logits.size(0), "classes": logits.size(1)}
    tmp = folder / f".{KEY_FILE}.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, folder / KEY_FILE)
    return folder


def build_logit_cache(
    teacher: PreTrainedModel, dataset: Dataset, folder: str | Path, precision: str = "auto", batch_size: int = 64
) -> torch.Tensor:
    """Run the teacher once over `dataset`, write the cache to `folder`, return the logits (N, C)."""
    key = logit_cache_key(teacher, dataset, precision)
    logits = compute_teacher_logits(teacher, dataset, precision, batch_size)
    write_logit_cache(folder, logits, key)
    return logits


def load_logit_cache(
    folder: str | Path, teacher: PreTrainedModel, dataset: Dataset, precision: str = "auto"
) -> torch.Tensor:
    """The cached logits (N, C) if `folder` was built from this teacher, dataset and precision; else an error."""
    folder = Path(folder)
    key_path = folder / KEY_FILE
    if not key_path.is_file():
        raise FileNotFoundError(f"{folder} holds no complete teacher-logit cache ({KEY_FILE} is missing)")
    saved = json.loads(key_path.read_text())
    if saved.get("format_version") != FORMAT_VERSION:
        raise StaleCacheError(f"{key_path} has format {saved.get('format_version')}, expected {FORMAT_VERSION}")
    expected = logit_cache_key(teacher, dataset, precision)
    changed = [name for name in expected if saved["key"].get(name) != expected[name]]
    if changed:
        raise StaleCacheError(
            f"teacher-logit cache {folder} is stale: {', '.join(changed)} changed since it was built "
            f"(saved key {saved['key']}, now {expected}); rebuild it with build_logit_cache"
        )
    logits = load_file(str(folder / LOGITS_FILE))["logits"]
    if logits.size(0) != len(dataset):
        raise StaleCacheError(f"{folder} holds {logits.size(0)} rows of logits, the dataset has {len(dataset)}")
    return logits


def logit_cache(
    folder: str | Path, teacher: PreTrainedModel, dataset: Dataset, precision: str = "auto", batch_size: int = 64
) -> torch.Tensor:
    """Load the cache in `folder` when it is fresh; otherwise (missing or stale) rebuild it, saying why."""
    try:
        return load_logit_cache(folder, teacher, dataset, precision)
    except (FileNotFoundError, StaleCacheError) as why:
        log.info("computing teacher logits: %s", why)
        return build_logit_cache(teacher, dataset, folder, precision, batch_size)
