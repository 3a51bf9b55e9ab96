"""params.yaml sections as typed values, and the project's fixed paths.

Each stage reads its own section plus the shared `task`, `data`, `models` and `seed`. params.yaml lists the
`tasks` of a run; a per-task stage sees the params of one task (`for_task`): `task` set to it and that task's
`task_settings` entry written over the sections, so the stage code reads one task's values in the usual places.
"""

from __future__ import annotations

import copy
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


# A task_settings entry's keys and the section values each replaces for that task (null: keep the section's).
TASK_SETTINGS: dict[str, tuple[str, ...]] = {
    "max_train_examples": ("data.max_train_examples",),
    "max_dev_examples": ("data.max_dev_examples",),
    "max_seq_length": ("data.max_seq_length",),
    "finetuned_teacher": ("models.finetuned_teacher",),
    "label_mapping": ("models.label_mapping",),
    "teacher_epochs": ("finetune_teacher.epochs",),
    "n_aug": ("augment.n_aug",),
    "stage1_epochs": ("task_distill.stage1.epochs",),
    "stage2_epochs": ("task_distill.stage2.epochs",),
    "batch_size": ("task_distill.stage1.batch_size", "task_distill.stage2.batch_size"),
}


def load_params(
    path: Path | str | None = None, overrides: dict[str, Any] | None = None, validate: bool = True,
    task: str | None = None,
) -> dict[str, Any]:
    """params.yaml as a dict, with dotted-key `overrides` ({"task_distill.stage1.epochs": 1}) applied; with
    `task`, as that task's stages see it (`for_task`).

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
    return for_task(params, task, path) if task is not None else params


def for_task(params: dict[str, Any], task: str, path: Path | str = PARAMS_FILE) -> dict[str, Any]:
    """The params one task's stages run with: `task` set, its task_settings values over the sections'."""
    if task not in params["tasks"]:
        raise ParamsError(path, [f"tasks: {task!r} is not listed (listed: {', '.join(params['tasks'])})"])
    params = copy.deepcopy(params)
    params["task"] = task
    for key, value in (params["task_settings"].get(task) or {}).items():
        if value is not None:
            for dotted in TASK_SETTINGS[key]:
                set_dotted(params, dotted, value, path)
    return params


def only_task(params: dict[str, Any], path: Path | str = PARAMS_FILE) -> str:
    """The task a per-task stage runs when none is named: the only one listed."""
    if len(params["tasks"]) != 1:
        raise ParamsError(path, [f"tasks: {len(params['tasks'])} tasks listed ({', '.join(params['tasks'])}): name one with --task"])
    return params["tasks"][0]


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
    """The student's numbers from models.student (its `family` and `init` are passed on separately)."""
    return StudentShape(**{k: v for k, v in models["student"].items() if k not in ("family", "init")})


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

# Each stage's output folder (a DVC `outs` entry), in pipeline order: outputs/<folder> for the stages every task
# shares, outputs/<task>/<folder> for the stages DVC runs once per task (`foreach` in dvc.yaml).
SHARED_STAGES = ("prepare_corpus", "general_distill", "glue_report")
STAGE_FOLDERS: dict[str, str] = {
    "prepare_corpus": "corpus",
    "prepare_task": "task_data",
    "general_distill": "general_student",
    "finetune_teacher": "teacher",
    "augment": "augmented",
    "task_intermediate": "student_intermediate",
    "teacher_logits": "teacher_logits",
    "task_prediction": "student",
    "evaluate": "eval",
    "export": "export",
    "glue_report": "glue_report",
}
TASK_STAGES = tuple(name for name in STAGE_FOLDERS if name not in SHARED_STAGES)
METRICS = OUTPUTS / "metrics"  # <task>/scores.json and timings.json of every task: the GLUE report reads this folder


def stage_output(name: str, task: str | None = None) -> Path:
    """The output folder of stage `name` (of `task`, for a per-task stage)."""
    if name in SHARED_STAGES:
        return OUTPUTS / STAGE_FOLDERS[name]
    if task is None:
        raise ValueError(f"{name} runs once per task: name the task")
    return OUTPUTS / task / STAGE_FOLDERS[name]


def dvc_stage_name(name: str, task: str | None = None) -> str:
    """The stage as dvc.yaml's foreach names it: finetune_teacher@sst2 (shared stages keep their names)."""
    return name if name in SHARED_STAGES or task is None else f"{name}@{task}"
