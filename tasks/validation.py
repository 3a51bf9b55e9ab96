"""params.yaml checked before any stage does work: every key known, every value of the right type and range,
every named file present. All problems are reported at once, each with its dotted key and the params file.

Stages run in their own processes, one after another; without this a typo in the export section would surface
only after an hour of training, and `epochs: 0` would "complete" with an untrained model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

# A field checker returns None when the value is fine, else what is wrong with it.
Check = Callable[[Any], "str | None"]


class ParamsError(ValueError):
    """params.yaml (or an override) holds values the pipeline cannot run with; lists every problem found."""

    def __init__(self, path: Path | str, problems: list[str]):
        self.path, self.problems = str(path), problems
        listed = "\n".join(f"  - {problem}" for problem in problems)
        super().__init__(f"{path}: {len(problems)} invalid parameter(s):\n{listed}")


@dataclass(frozen=True)
class Field:
    check: Check
    optional: bool = False  # null allowed


def _number(
    kind: type, low: float | None = None, high: float | None = None, low_open: bool = False, high_open: bool = False
) -> Check:
    def check(value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else int):
            return f"must be {'a number' if kind is float else 'an integer'}, got {value!r}"
        if kind is float and not math.isfinite(value):
            return f"must be finite, got {value!r}"
        if low is not None and (value <= low if low_open else value < low):
            return f"must be {'>' if low_open else '>='} {low}, got {value!r}"
        if high is not None and (value >= high if high_open else value > high):
            return f"must be {'<' if high_open else '<='} {high}, got {value!r}"
        return None

    return check


def _choice(*allowed: Any) -> Check:
    return lambda value: None if value in allowed else f"must be one of {list(allowed)}, got {value!r}"


def _of_type(kind: type, what: str) -> Check:
    def check(value: Any) -> str | None:
        # bool is an int subclass in Python, and YAML's `yes`/`no` are bools: only a flag may be one.
        right = isinstance(value, bool) if kind is bool else isinstance(value, kind) and not isinstance(value, bool)
        return None if right else f"must be {what}, got {value!r}"

    return check


def _int_list(value: Any) -> str | None:
    if not isinstance(value, list) or not value or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value):
        return f"must be a non-empty list of layer numbers >= 1, got {value!r}"
    return None


def _str_mapping(value: Any) -> str | None:
    if not isinstance(value, dict) or not value or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        return f"must map label names to label names, e.g. {{LABEL_0: negative}}, got {value!r}"
    return None


def _str_list(value: Any) -> str | None:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        return f"must be a non-empty list of names, got {value!r}"
    return None


POSITIVE_INT = Field(_number(int, 1))
POSITIVE_FLOAT = Field(_number(float, 0, low_open=True))
FRACTION = Field(_number(float, 0, 1))
TEXT = Field(_of_type(str, "text"))
FLAG = Field(_of_type(bool, "true or false"))

TRAINING = {  # the keys of every training section (general_distill, finetune_teacher, task_distill.stage1/2)
    "epochs": POSITIVE_FLOAT,
    "batch_size": POSITIVE_INT,
    "learning_rate": POSITIVE_FLOAT,
    "warmup_proportion": Field(_number(float, 0, 1)),
    "weight_decay": Field(_number(float, 0)),
    "max_grad_norm": POSITIVE_FLOAT,
    "save_every": Field(_number(int, 0)),
    "dropout": Field(_number(float, 0, 1, high_open=True), optional=True),  # null: the model config's
}

EVAL_EVERY = Field(_number(int, 0))  # for the sections that train against labelled dev data

def _task_list(value: Any) -> str | None:
    if (wrong := _str_list(value)) is not None:
        return wrong
    repeated = sorted({name for name in value if value.count(name) > 1})
    return f"lists {', '.join(repeated)} more than once" if repeated else None


SCHEMA: dict[str, Any] = {
    "tasks": Field(_task_list),
    "task_settings": Field(lambda value: None if isinstance(value, dict) else f"must map task names to settings, got {value!r}"),
    "seed": Field(_number(int, 0)),
    "data": {
        "glue_dir": Field(_of_type(str, "a folder path"), optional=True),
        "missing_tasks": Field(_choice("error", "skip")),
        "max_train_examples": Field(_number(int, 1), optional=True),
        "max_dev_examples": Field(_number(int, 1), optional=True),
        "polarity_dev_examples": Field(_number(int, 1)),
        "max_seq_length": Field(_number(int, 8), optional=True),
    },
    "models": {
        "teacher": TEXT,
        "finetuned_teacher": Field(_of_type(str, "a model folder or hub id"), optional=True),
        "label_mapping": Field(_str_mapping, optional=True),
        "general_student": Field(_of_type(str, "a model folder or hub id"), optional=True),
        "attention_loss": FLAG,
        "student": {
            "family": TEXT,
            "init": Field(_choice("random", "teacher")),  # recipe.STUDENT_INITS
            "num_layers": POSITIVE_INT,
            "hidden_size": POSITIVE_INT,
            "intermediate_size": POSITIVE_INT,
            "num_heads": POSITIVE_INT,
        },
        "layer_map": Field(_int_list, optional=True),
    },
    "prepare_corpus": {
        "sources": Field(_str_list),
        "document_mode": Field(_choice("line", "blank_line")),
        "max_seq_length": Field(_number(int, 16)),
        "max_sequences": Field(_number(int, 1), optional=True),
    },
    "general_distill": TRAINING,
    "finetune_teacher": {**TRAINING, "eval_every": EVAL_EVERY},
    "augment": {
        "enabled": FLAG,
        "p_t": FRACTION,
        "n_aug": Field(_number(int, 0)),
        "k": POSITIVE_INT,
        "pair_sides": Field(_choice("one", "both")),
        "masked_lm": Field(_of_type(str, "a model folder or hub id"), optional=True),
        "word_vectors": Field(_of_type(str, "a vector file path"), optional=True),
        "word_vectors_limit": Field(_number(int, 1), optional=True),
        "num_shards": POSITIVE_INT,
        "task_runner": Field(_choice("thread", "dask", "ray")),
    },
    "task_distill": {
        "temperature": POSITIVE_FLOAT,
        "teacher_precision": Field(_choice("auto", "bf16", "fp32")),
        "stage1": {
            "enabled": FLAG, "teacher_cache_mb": Field(_number(float, 0)), "schedule": Field(_choice("linear", "constant")), **TRAINING,
        },
        "stage2": {**TRAINING, "eval_every": EVAL_EVERY},
        "general_student": FLAG,
    },
    "evaluate": {
        "batch_size": POSITIVE_INT,
        "speed_repeats": POSITIVE_INT,
        "speed_seq_length": Field(_number(int, 8)),
        "bootstrap_resamples": POSITIVE_INT,
        "confidence": Field(_number(float, 0, 1, low_open=True)),
    },
    "export": {
        "onnx": FLAG,
        "fp32_max_abs_logit_diff": POSITIVE_FLOAT,
        "fp32_min_label_agreement": FRACTION,
        "int8_min_label_agreement": FRACTION,
        "registered_model_name": TEXT,
        "alias": TEXT,
        "alias_collapsed": FLAG,
    },
}


def schema_problems(params: Any, schema: dict[str, Any] = SCHEMA, prefix: str = "") -> list[str]:
    """Every missing, unknown or ill-typed key of `params` against `schema`, as "dotted.key: what is wrong"."""
    if not isinstance(params, dict):
        return [f"{prefix.rstrip('.') or 'the file'}: must be a section (a mapping), got {params!r}"]
    problems = [f"{prefix}{key}: unknown parameter (known here: {', '.join(schema)})" for key in params if key not in schema]
    for key, spec in schema.items():
        dotted = f"{prefix}{key}"
        if key not in params:
            problems.append(f"{dotted}: missing")
        elif isinstance(spec, dict):
            problems += schema_problems(params[key], spec, f"{dotted}.")
        elif params[key] is None:
            if not spec.optional:
                problems.append(f"{dotted}: must be set (null is not allowed here)")
        elif (wrong := spec.check(params[key])) is not None:
            problems.append(f"{dotted}: {wrong}")
    return problems


def _field(dotted: str) -> Field:
    spec: Any = SCHEMA
    for key in dotted.split("."):
        spec = spec[key]
    return spec


def task_settings_problems(params: dict[str, Any]) -> list[str]:
    """Every listed task is a known task with a task_settings entry holding every setting (null: the section's
    value; DVC tracks each setting as a parameter, so each must be there), of the type of the value it replaces."""
    from tasks.params import TASK_SETTINGS
    from tinybert_core.glue_tasks import get_task

    problems = []
    settings = params["task_settings"]
    for name in dict.fromkeys([*params["tasks"], *settings]):
        try:
            get_task(name)
        except ValueError as error:
            problems.append(f"{'tasks' if name in params['tasks'] else 'task_settings'}: {error}")
            continue
        entry = settings.get(name)
        if entry is None and name in params["tasks"]:
            problems.append(f"task_settings.{name}: missing (every listed task needs an entry; null values keep the sections')")
            continue
        if not isinstance(entry, dict):
            problems.append(f"task_settings.{name}: must be a mapping of {', '.join(TASK_SETTINGS)}, got {entry!r}")
            continue
        problems += [f"task_settings.{name}.{key}: unknown setting (known: {', '.join(TASK_SETTINGS)})" for key in entry if key not in TASK_SETTINGS]
        for key, targets in TASK_SETTINGS.items():
            dotted = f"task_settings.{name}.{key}"
            if key not in entry:
                problems.append(f"{dotted}: missing (null: the value of {targets[0]})")
            elif entry[key] is not None and (wrong := _field(targets[0]).check(entry[key])) is not None:
                problems.append(f"{dotted}: {wrong}")
    return problems


def task_data_problems(params: dict[str, Any], project_root: Path) -> list[str]:
    """The files one task's data needs (`params` as that task's stages see them, `tasks.params.for_task`)."""
    from tinybert_core.glue_tasks import get_task

    spec, data = get_task(params["task"]), params["data"]
    if spec.name == "polarity":  # embedded
        return []
    if not data["glue_dir"]:
        return [f"data.glue_dir: task {spec.name!r} needs a classic glue_data folder; only 'polarity' is embedded"]
    folder = project_root / Path(data["glue_dir"]).expanduser() / spec.glue_dir_name
    return [f"data.glue_dir: {folder / f'{split}.tsv'} not found (task {spec.name})"
            for split in ("train", *spec.dev_splits) if not (folder / f"{split}.tsv").is_file()]


def present_tasks(params: dict[str, Any], project_root: Path) -> tuple[list[str], dict[str, list[str]]]:
    """The listed tasks whose data is there, and for each other one what is missing."""
    from tasks.params import for_task

    present, missing = [], {}
    for task in params["tasks"]:
        problems = task_data_problems(for_task(params, task), project_root)
        (missing.__setitem__(task, problems) if problems else present.append(task))
    return present, missing


def meaning_problems(params: dict[str, Any], project_root: Path) -> list[str]:
    """What the types cannot say, for every listed task: files exist, sizes fit the teacher. Runs after
    `schema_problems` and `task_settings_problems`. A task without data is an error unless data.missing_tasks is
    "skip" (run the tasks that exist) and at least one task is left."""
    from tasks.params import for_task

    present, missing = present_tasks(params, project_root)
    problems = [] if params["data"]["missing_tasks"] == "skip" and present else [p for ps in missing.values() for p in ps]
    for task in params["tasks"]:
        problems += _task_problems(for_task(params, task), project_root)
    return list(dict.fromkeys(problems))


def _task_problems(params: dict[str, Any], project_root: Path) -> list[str]:
    problems, models = [], params["models"]
    problems += _vector_problems(params["augment"]["word_vectors"], project_root)
    student = models["student"]
    if student["hidden_size"] % student["num_heads"]:
        problems.append(
            f"models.student.hidden_size: {student['hidden_size']} is not divisible by models.student.num_heads "
            f"({student['num_heads']})"
        )
    if models["layer_map"] and len(models["layer_map"]) != student["num_layers"]:
        problems.append(
            f"models.layer_map: {models['layer_map']} names {len(models['layer_map'])} teacher layers, the student has "
            f"{student['num_layers']}"
        )
    problems += _source_problems(params["prepare_corpus"]["sources"], project_root)
    problems += _position_problems(params, project_root)
    return problems


def _vector_problems(vectors: str | None, project_root: Path) -> list[str]:
    import importlib.util

    from tinybert_core.augment.word_vectors import PACKAGED_VECTORS

    if not vectors:
        return []
    if vectors in PACKAGED_VECTORS:
        package = PACKAGED_VECTORS[vectors][0]
        found = importlib.util.find_spec(package) is not None
        return [] if found else [f"augment.word_vectors: {vectors!r} needs the package {package.replace('_', '-')}"]
    path = project_root / Path(vectors).expanduser()
    return [] if path.is_file() else [f"augment.word_vectors: {path} not found (packaged: {', '.join(PACKAGED_VECTORS)})"]


def _source_problems(sources: list[str], project_root: Path) -> list[str]:
    from tasks.params import resolve_source

    problems = []
    for name in sources:
        try:
            resolve_source(name, project_root)
        except FileNotFoundError as error:
            problems.append(f"prepare_corpus.sources: {error}")
    return problems


def _position_problems(params: dict[str, Any], project_root: Path) -> list[str]:
    """Sequence lengths must fit the teacher's position embeddings (else a tensor-size error an hour later)."""
    from transformers import AutoConfig

    from tinybert_core.models import ModelLoadError, resolve_model_source

    teacher = params["models"]["finetuned_teacher"] or params["models"]["teacher"]
    try:
        config = AutoConfig.from_pretrained(resolve_model_source(teacher), trust_remote_code=False)
    except ModelLoadError as error:
        return [f"models.teacher: {error}"]
    except (OSError, ValueError):
        return []  # a hub id offline: the stage that loads it says so with the full story
    from tinybert_core.families import FamilyError, usable_positions

    try:
        usable = usable_positions(config)
    except FamilyError as error:
        return [f"models.teacher: {error}"]
    problems = []
    for key, value in (("data.max_seq_length", params["data"]["max_seq_length"] or 0),
                       ("prepare_corpus.max_seq_length", params["prepare_corpus"]["max_seq_length"]),
                       ("evaluate.speed_seq_length", params["evaluate"]["speed_seq_length"])):
        if value > usable:
            problems.append(f"{key}: {value} tokens exceed the teacher's {usable} positions ({teacher})")
    return problems


def validate(params: dict[str, Any], path: Path | str, project_root: Path) -> None:
    """Raise ParamsError listing every problem of `params` (read from `path`); return quietly when all is well."""
    problems = schema_problems(params)
    if not problems:
        problems = task_settings_problems(params)
    if not problems:
        problems = meaning_problems(params, project_root)
    if problems:
        raise ParamsError(path, problems)
