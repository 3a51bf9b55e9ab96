"""Where the pipeline's models live between stages, and task data encoded for them."""

from __future__ import annotations

import json
from pathlib import Path

from datasets import Dataset

from tinybert_core import recipe
from tinybert_core.glue_tasks import TaskSpec
from tinybert_core.models import load_tokenizer
from tasks.params import PROJECT_ROOT, STAGE_OUTPUTS

TEACHER_POINTER = "teacher.json"


def write_teacher_pointer(out_dir: Path, source: str | Path, fine_tuned_here: bool) -> None:
    """The task teacher is either trained by finetune_teacher or named in params; later stages read this."""
    # Relative inside the project so the pointer (a DVC output) does not depend on where the clone lives.
    source = str(Path(source).relative_to(PROJECT_ROOT)) if Path(source).is_relative_to(PROJECT_ROOT) else str(source)
    (out_dir / TEACHER_POINTER).write_text(json.dumps({"source": source, "fine_tuned_here": fine_tuned_here}) + "\n")


def task_teacher_name() -> str:
    """The task teacher as the pointer names it: relative inside the project, the same in every clone."""
    return json.loads((STAGE_OUTPUTS["finetune_teacher"] / TEACHER_POINTER).read_text())["source"]


def task_teacher_source() -> str:
    """The task teacher as a path or name to load it from."""
    source = task_teacher_name()
    return str(PROJECT_ROOT / source) if (PROJECT_ROOT / source).exists() else source


def encode_splits(splits: dict[str, Dataset], tokenizer_source: str | Path, spec: TaskSpec, max_seq_length: int) -> dict[str, Dataset]:
    tokenizer = load_tokenizer(tokenizer_source)
    return {name: recipe.encode_task(split, tokenizer, spec, max_seq_length) for name, split in splits.items()}
