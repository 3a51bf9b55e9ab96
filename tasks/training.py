"""Prefect tasks around the recipe's training steps.

Each trains in a scratch folder named after its configuration (runs/<stage>/<digest>), so a retry or a rerun
of the same configuration resumes from the last checkpoint, and a changed configuration starts afresh.
Metrics stream to the active MLflow run; the trained model is saved in HF format with its tokenizer.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from datasets import Dataset
from prefect import get_run_logger, task
from transformers import PreTrainedModel

from tinybert_core import recipe
from tinybert_core.distiller import TrainConfig, TrainResult
from tinybert_core.export import export_hf
from tinybert_core.glue_tasks import TaskSpec
from tinybert_core.models import StudentShape, load_tokenizer
from tasks.retries import TRAIN_TASK
from tasks.tracking import log_metrics

LOG_FILES = ("train_log.jsonl", "eval_log.jsonl")


def keep_logs(run_dir: Path, out_dir: Path, prefix: str = "") -> None:
    """Copy a run's step logs next to the model it produced (the scratch folder is not versioned)."""
    for name in LOG_FILES:
        if (run_dir / name).is_file():
            shutil.copy(run_dir / name, out_dir / f"{prefix}{name}")


def _save(model: PreTrainedModel, teacher_source: str | Path, out_dir: Path) -> Path:
    model_dir = out_dir / "model"
    export_hf(model, load_tokenizer(teacher_source), model_dir)
    return model_dir


@task(**TRAIN_TASK)
def finetune_teacher_task(
    teacher: str, spec: TaskSpec, train: Dataset, dev: Dataset, config: TrainConfig, run_dir: Path, out_dir: Path
) -> TrainResult:
    get_run_logger().info("fine-tuning %s on %s (%d examples)", teacher, spec.name, len(train))
    result = recipe.finetune_teacher(teacher, spec, train, dev, config, run_dir, on_log=log_metrics)
    _save(result.student, teacher, out_dir)
    keep_logs(Path(run_dir), out_dir)
    return result


@task(**TRAIN_TASK)
def general_distill_task(
    teacher: str, corpus: Dataset, shape: StudentShape, config: TrainConfig, run_dir: Path, out_dir: Path,
    layer_map: list[int] | None = None,
) -> TrainResult:
    get_run_logger().info("general distillation of %s into %s on %d sequences", teacher, shape, len(corpus))
    result = recipe.general_distill(teacher, corpus, shape, config, run_dir, layer_map=layer_map, on_log=log_metrics)
    _save(result.student, teacher, out_dir)
    keep_logs(Path(run_dir), out_dir)
    return result


@task(**TRAIN_TASK)
def task_distill_task(
    teacher: PreTrainedModel, student: PreTrainedModel, tokenizer_source: str | Path, spec: TaskSpec,
    train: Dataset, dev: Dataset, stage1: TrainConfig | None, stage2: TrainConfig, temperature: float,
    run_dir: Path, out_dir: Path, layer_map: list[int] | None = None,
) -> TrainResult:
    logger = get_run_logger()
    logger.info("task distillation on %d examples: %s", len(train), "stage 1 + stage 2" if stage1 else "stage 2 only")
    result = recipe.task_distill(
        teacher, student, spec, train, dev, stage1, stage2, run_dir, temperature=temperature,
        layer_map=layer_map, on_log=log_metrics,
    )
    _save(result.student, tokenizer_source, out_dir)
    for stage in ("stage1", "stage2"):
        keep_logs(Path(run_dir) / stage, out_dir, prefix=f"{stage}_")
    return result
