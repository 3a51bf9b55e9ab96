"""Full training state on disk, written atomically as safetensors + JSON, so a killed run resumes exactly.

Layout of one checkpoint, `<run>/checkpoints/step-00000120/`:
    trainable.safetensors   student + projections (the whole objective module)
    optimizer.safetensors   AdamW moments; param groups and scalar state in its JSON metadata
    rng.safetensors         every process's torch CPU (and CUDA) generator states, "rank<r>.cpu", "rank<r>.cuda<i>"
    state.json              step, data position, schedule, every process's Python/NumPy RNG, run config; last
Each process of a multi-process run has its own dropout stream, so all of them are saved (gathered by the main
process, which alone writes) and each restores its own: a resumed run continues exactly on any process count
it was written with.
A checkpoint is first written to a hidden temporary folder and renamed into place, and `latest` is updated
after the rename, so a crash at any moment leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, load_model, save_file, save_model
from torch import nn

FORMAT_VERSION = 2  # 2: RNG states of every process
STATE_FILE = "state.json"
LATEST_FILE = "latest"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupted or does not fit the model it is loaded into."""


@dataclass
class TrainingState:
    """Where training stands: optimizer steps done, and the data position inside the current epoch."""

    step: int = 0
    epoch: int = 0
    batches_in_epoch: int = 0  # micro-batches of `epoch` already consumed
    schedule: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)


def save_checkpoint(
    run_dir: Path,
    objective: nn.Module,
    optimizer: torch.optim.Optimizer,
    state: TrainingState,
    keep_last: int = 2,
    rng_states: list[dict] | None = None,
) -> Path:
    """Write a complete checkpoint for `state.step` and point `latest` at it; returns its folder.

    `rng_states` holds `capture_rng()` of every process in rank order (default: this process only).
    """
    rng_states = rng_states if rng_states is not None else [capture_rng()]
    checkpoints = Path(run_dir) / "checkpoints"
    checkpoints.mkdir(parents=True, exist_ok=True)
    name = f"step-{state.step:08d}"
    tmp = checkpoints / f".{name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()

    save_model(objective, str(tmp / "trainable.safetensors"))
    _save_optimizer(optimizer, tmp / "optimizer.safetensors")
    save_file(
        {f"rank{rank}.{name}": t for rank, rng in enumerate(rng_states) for name, t in rng["torch"].items()},
        str(tmp / "rng.safetensors"),
    )
    payload = {
        "format_version": FORMAT_VERSION,
        **asdict(state),
        "world_size": len(rng_states),
        "host_rng": [{"python": rng["python"], "numpy": rng["numpy"]} for rng in rng_states],
    }
    _write_json_synced(tmp / STATE_FILE, payload)

    final = checkpoints / name
    if final.exists():  # re-reaching a step after resuming from an older checkpoint
        shutil.rmtree(final)
    os.replace(tmp, final)
    _write_json_synced(checkpoints / f".{LATEST_FILE}.tmp", name, replace_into=checkpoints / LATEST_FILE)
    _prune(checkpoints, keep_last)
    return final


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint of a run, or None when it has none."""
    checkpoints = Path(run_dir) / "checkpoints"
    pointer = checkpoints / LATEST_FILE
    if pointer.is_file():
        candidate = checkpoints / json.loads(pointer.read_text())
        if (candidate / STATE_FILE).is_file():
            return candidate
    complete = sorted(p for p in checkpoints.glob("step-*") if (p / STATE_FILE).is_file())
    return complete[-1] if complete else None


def load_checkpoint(
    path: Path, objective: nn.Module, optimizer: torch.optim.Optimizer | None, rank: int = 0, world_size: int = 1
) -> TrainingState:
    """Restore weights, optimizer and process `rank`'s RNG from `path`; returns the training state to continue from."""
    path = Path(path)
    try:
        payload = json.loads((path / STATE_FILE).read_text())
        if payload.get("format_version") != FORMAT_VERSION:
            raise CheckpointError(f"checkpoint {path} has format {payload.get('format_version')}, expected {FORMAT_VERSION}")
        if payload["world_size"] != world_size:
            raise CheckpointError(
                f"checkpoint {path} was written by {payload['world_size']} process(es) and this run has {world_size}: "
                f"each process's random stream is restored, so resume with {payload['world_size']} or start afresh"
            )
        missing, unexpected = load_model(objective, str(path / "trainable.safetensors"), strict=False)
        if missing or unexpected:
            raise CheckpointError(
                f"checkpoint {path} does not fit this model: missing {sorted(missing)[:5]}, "
                f"unexpected {sorted(unexpected)[:5]}"
            )
        if optimizer is not None:
            _load_optimizer(optimizer, path / "optimizer.safetensors")
        prefix = f"rank{rank}."
        torch_rng = {k[len(prefix) :]: t for k, t in load_file(str(path / "rng.safetensors")).items() if k.startswith(prefix)}
        _restore_torch_rng(torch_rng)
        host_rng = payload["host_rng"][rank]
    except CheckpointError:
        raise
    except (OSError, SafetensorError, json.JSONDecodeError, KeyError, RuntimeError, ValueError) as error:
        raise CheckpointError(f"checkpoint {path} is corrupted or incompatible: {type(error).__name__}: {error}") from error
    random.setstate(_as_tuple(host_rng["python"]))
    np.random.set_state(_numpy_state(host_rng["numpy"]))
    fields = TrainingState.__dataclass_fields__
    return TrainingState(**{k: v for k, v in payload.items() if k in fields})


# -- pieces -------------------------------------------------------------------------------------------------


def _save_optimizer(optimizer: torch.optim.Optimizer, path: Path) -> None:
    state_dict = optimizer.state_dict()
    tensors, scalars = {}, {}
    for param_id, param_state in state_dict["state"].items():
        for key, value in param_state.items():
            if torch.is_tensor(value):
                tensors[f"{param_id}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{param_id}.{key}"] = value
    metadata = {"param_groups": json.dumps(state_dict["param_groups"]), "scalars": json.dumps(scalars)}
    save_file(tensors, str(path), metadata=metadata)


def _load_optimizer(optimizer: torch.optim.Optimizer, path: Path) -> None:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    state: dict[int, dict] = {}
    for flat, value in [*tensors.items(), *json.loads(metadata["scalars"]).items()]:
        param_id, key = flat.split(".", 1)
        state.setdefault(int(param_id), {})[key] = value
    optimizer.load_state_dict({"state": state, "param_groups": json.loads(metadata["param_groups"])})


def capture_rng() -> dict:
    """This process's random generators: torch CPU/CUDA states (tensors), Python's and NumPy's (JSON-able)."""
    torch_states = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        torch_states.update({f"cuda{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    numpy_state = [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)]
    return {"torch": torch_states, "python": random.getstate(), "numpy": numpy_state}


def _restore_torch_rng(states: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(states["cpu"])
    cuda = [states[k] for k in sorted(states) if k.startswith("cuda")]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def _numpy_state(saved: list) -> tuple:
    kind, keys, pos, has_gauss, cached = saved
    return kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached


def _as_tuple(value):
    return tuple(_as_tuple(v) for v in value) if isinstance(value, list) else value


def _write_json_synced(path: Path, payload, replace_into: Path | None = None) -> None:
    with open(path, "w") as handle:
        json.dump(payload, handle)
        handle.flush()
        os.fsync(handle.fileno())
    if replace_into is not None:
        os.replace(path, replace_into)


def _prune(checkpoints: Path, keep_last: int) -> None:
    complete = sorted(p for p in checkpoints.glob("step-*") if (p / STATE_FILE).is_file())
    for old in complete[: max(0, len(complete) - keep_last)]:
        shutil.rmtree(old, ignore_errors=True)
