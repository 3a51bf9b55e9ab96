"""params.yaml sections as typed values, and the project's fixed paths.

Each stage reads its own section plus the shared `task`, `data`, `models` and `seed`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from pathlib import Path
from typing import Any

import yaml

from tinybert_core.distiller import TrainConfig
from tinybert_core.models import StudentShape
from tasks.validation import ParamsError
from tasks.validation import validate as check_params

# The project folder the pipeline reads params from and writes outputs to: this checkout, unless a Prefect
# worker or a test points TINYBERT_PROJECT_DIR at another one.
PROJECT_ROOT = Path(os.environ.get("TINYBERT_PROJECT_DIR") or Path(__file__).resolve().parents[1]).resolve()
PARAMS_FILE = PROJECT_ROOT / "params.yaml"
OUTPUTS = PROJECT_ROOT / "outputs"  # stage outputs, versioned by DVC
RUNS = PROJECT_ROOT / "runs"  # resumable training scratch (checkpoints), neither in git nor in DVC

# Keys of a stage's training section that map onto TrainConfig fields under another name.
_TRAIN_KEYS = {"epochs": "num_epochs"}


def load_params(
    path: Path | str | None = None, overrides: dict[str, Any] | None = None, validate: bool = True
) -> dict[str, Any]:
    """params.yaml as a dict, with dotted-key `overrides` ({"task_distill.stage1.epochs": 1}) applied.

    With `validate` (the default) every section is checked before anything runs (`tasks.validation`): a bad
    value anywhere stops the first stage, with one message listing every problem.
    """
    path = Path(path or PARAMS_FILE)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run from the project root or pass the params file")
    try:
        params = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ParamsError(path, [f"not valid YAML: {error}"]) from error
    for dotted, value in (overrides or {}).items():
        set_dotted(params, dotted, value, path)
    if validate:
        check_params(params, path, PROJECT_ROOT)
    return params


def set_dotted(params: dict[str, Any], dotted: str, value: Any, path: Path | str = PARAMS_FILE) -> None:
    """params["a"]["b"]["c"] = value for "a.b.c"; only an existing parameter can be set (typos fail loudly)."""
    section = params
    *parents, leaf = dotted.split(".")
    for key in parents:
        if not isinstance(section.get(key), dict):
            raise KeyError(f"override {dotted!r}: {key!r} is not a section of {path}")
        section = section[key]
    if leaf not in section:
        raise KeyError(f"override {dotted!r}: {path} has no parameter {leaf!r} there")
    section[leaf] = value


def train_config(section: dict[str, Any], seed: int, **fixed: Any) -> TrainConfig:
    """A training section of params.yaml (epochs, batch_size, learning_rate, ...) as a TrainConfig.

    `enabled` is the section's on/off switch, not a training knob; any other key TrainConfig lacks is an error
    (params validation rejects it first, this guards callers that build sections in code).
    """
    known = set(TrainConfig.__dataclass_fields__)
    values = {_TRAIN_KEYS.get(k, k): v for k, v in section.items() if k != "enabled"}
    unknown = sorted(k for k in values if k not in known)
    if unknown:
        raise KeyError(f"training section has unknown keys {unknown}; known: {sorted(known)}")
    return TrainConfig(seed=seed, **values, **fixed)


def student_shape(models: dict[str, Any]) -> StudentShape:
    """The student's numbers from models.student (its `family` is passed to `build_student` separately)."""
    return StudentShape(**{k: v for k, v in models["student"].items() if k != "family"})


def seq_length(params: dict[str, Any], spec) -> int:
    """Task inputs are truncated to data.max_seq_length, or by default to the task's own (64 single, 128 pairs)."""
    return params["data"]["max_seq_length"] or spec.max_seq_length


def resolve_source(name: str, project_root: Path | None = None) -> Path:
    """A corpus source path; "gensim:<file>" names a file of gensim's bundled test data."""
    if name.startswith("gensim:"):
        spec = importlib.util.find_spec("gensim")
        path = Path(spec.origin).parent / "test" / "test_data" / name.removeprefix("gensim:")
    else:
        path = Path(name).expanduser()
        path = path if path.is_absolute() else (project_root or PROJECT_ROOT) / path
    if not path.exists():
        raise FileNotFoundError(f"corpus source {name!r} not found at {path}")
    return path


def config_digest(*parts: Any) -> str:
    """A short stable hash of JSON-able values: names a training scratch folder per configuration."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]

# Each stage's output folder (a DVC `outs` entry), in pipeline order.
STAGE_OUTPUTS: dict[str, Path] = {
    "prepare_corpus": OUTPUTS / "corpus",
    "prepare_task": OUTPUTS / "task_data",
    "general_distill": OUTPUTS / "general_student",
    "finetune_teacher": OUTPUTS / "teacher",
    "augment": OUTPUTS / "augmented",
    "task_intermediate": OUTPUTS / "student_intermediate",
    "teacher_logits": OUTPUTS / "teacher_logits",
    "task_prediction": OUTPUTS / "student",
    "evaluate": OUTPUTS / "eval",
    "export": OUTPUTS / "export",
}
