"""Where the pipeline's models live between stages, and task data encoded for them."""

from __future__ import annotations

import json
from pathlib import Path

from datasets import Dataset

from tinybert_core import recipe
from tinybert_core.glue_tasks import TaskSpec
from tinybert_core.export import export_hf
from tinybert_core.models import load_tokenizer
from tasks.params import PROJECT_ROOT, stage_output

TEACHER_POINTER = "teacher.json"
GENERAL_POINTER = "general_student.json"


def _project_relative(source: str | Path) -> str:
    # Relative inside the project so a pointer (a DVC output) does not depend on where the clone lives.
    return str(Path(source).relative_to(PROJECT_ROOT)) if Path(source).is_relative_to(PROJECT_ROOT) else str(source)


def _resolved(source: str) -> str:
    return str(PROJECT_ROOT / source) if (PROJECT_ROOT / source).exists() else source


def write_teacher_pointer(out_dir: Path, source: str | Path, fine_tuned_here: bool) -> None:
    """The task teacher is either trained by finetune_teacher or named in params; later stages read this."""
    (out_dir / TEACHER_POINTER).write_text(json.dumps({"source": _project_relative(source), "fine_tuned_here": fine_tuned_here}) + "\n")


def write_general_pointer(out_dir: Path, source: str | Path, distilled_here: bool) -> None:
    """The General TinyBERT is either distilled by general_distill or named in params (models.general_student)."""
    (out_dir / GENERAL_POINTER).write_text(json.dumps({"source": _project_relative(source), "distilled_here": distilled_here}) + "\n")


def general_student_source() -> str:
    """The General TinyBERT task distillation starts from, as a path or hub id."""
    return _resolved(json.loads((stage_output("general_distill") / GENERAL_POINTER).read_text())["source"])


def load_task_teacher(teacher_dir: Path, spec: TaskSpec, label_mapping: dict[str, str] | None = None):
    """The task teacher with its classifier rows in the task's label order.

    A teacher fine-tuned here already is; one from elsewhere is matched to the task's labels by name, or by
    `label_mapping` ({its label: task label}) when its names are generic (LABEL_0, ...). `teacher_dir` is the
    task's finetune_teacher output.
    """
    pointer = json.loads((teacher_dir / TEACHER_POINTER).read_text())
    return recipe.task_model(_resolved(pointer["source"]), spec, label_mapping=None if pointer["fine_tuned_here"] else label_mapping)


def task_teacher_name(teacher_dir: Path) -> str:
    """The task teacher as the pointer names it: relative inside the project, the same in every clone."""
    return json.loads((teacher_dir / TEACHER_POINTER).read_text())["source"]


def task_teacher_source(teacher_dir: Path) -> str:
    """The task teacher as a path or name to load it from."""
    return _resolved(task_teacher_name(teacher_dir))


def save_model(model, tokenizer_source: str | Path, out_dir: Path) -> Path:
    """A trained model with the teacher's tokenizer as `<out_dir>/model` (HF format, safetensors); returns it."""
    model_dir = out_dir / "model"
    export_hf(model, load_tokenizer(tokenizer_source), model_dir)
    return model_dir


def encode_splits(splits: dict[str, Dataset], tokenizer_source: str | Path, spec: TaskSpec, max_seq_length: int) -> dict[str, Dataset]:
    tokenizer = load_tokenizer(tokenizer_source)
    return {name: recipe.encode_task(split, tokenizer, spec, max_seq_length) for name, split in splits.items()}
