"""Prefect tasks around the recipe's training steps.

Each trains in a scratch folder named after its configuration (runs/<stage>/<digest>), so a retry or a rerun
of the same configuration resumes from the last checkpoint, and a changed configuration starts afresh.
Metrics stream to the active MLflow run; the trained model is saved in HF format with its tokenizer.
"""

from __future__ import annotations

import math
import shutil
import time
from pathlib import Path

from datasets import Dataset
from prefect import get_run_logger, task
from transformers import PreTrainedModel

from tinybert_core import recipe
from tinybert_core.distiller import TrainConfig, TrainResult
from tinybert_core.augment import load_augmented
from tinybert_core.general_student import save_projections
from tinybert_core.glue_tasks import TaskSpec
from tinybert_core.models import StudentShape
from tasks.data import first_dev_split, read_task_splits
from tasks.models import encode_splits, save_model
from tasks.params import seq_length
from tasks.retries import TRAIN_TASK
from tasks.tracking import log_dataset, log_metrics

LOG_FILES = ("train_log.jsonl", "eval_log.jsonl")


def planned_steps(config: TrainConfig, examples: int) -> int:
    """Optimizer steps a run of `config` over `examples` rows takes (what the progress lines count towards)."""
    return config.max_steps or math.ceil(config.num_epochs * math.ceil(examples / config.batch_size))


class TrainingProgress:
    """The distiller's metrics callback in the pipeline: every record to MLflow, and per log window a line in the
    Prefect flow run's log with the step, loss, examples/s and the time left, so a long stage is visible there.

    `totals` maps a metrics prefix ("" for one-stage training, "stage1"/"stage2" for task distillation) to the
    steps that stage plans.
    """

    def __init__(self, totals: dict[str, int]):
        self.totals = totals
        self.first_seen: dict[str, tuple[float, int]] = {}

    def __call__(self, metrics: dict[str, float], step: int) -> None:
        log_metrics(metrics, step)
        loss_key = next((key for key in metrics if key.endswith("train/loss")), None)
        if loss_key is None:  # dev metrics
            get_run_logger().info("step %d: %s", step, ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
            return
        prefix = loss_key.removesuffix("train/loss").rstrip("/")
        total = self.totals.get(prefix)
        started, first_step = self.first_seen.setdefault(prefix, (time.monotonic(), step))
        done, left = step - first_step, (total - step if total else None)
        eta = f"{(time.monotonic() - started) / done * left:.0f} s" if done and left is not None else "after the next window"
        speed = metrics.get(loss_key.replace("loss", "examples_per_s"), float("nan"))
        get_run_logger().info(
            "%s step %d/%s: loss %.4f, %.1f examples/s, ETA %s", prefix or "training", step, total or "?",
            metrics[loss_key], speed, eta,
        )


def keep_logs(run_dir: Path, out_dir: Path, prefix: str = "") -> None:
    """Copy a run's step logs next to the model it produced (the scratch folder is not versioned)."""
    for name in LOG_FILES:
        if (run_dir / name).is_file():
            shutil.copy(run_dir / name, out_dir / f"{prefix}{name}")


@task(**TRAIN_TASK)
def finetune_teacher_task(
    teacher: str, spec: TaskSpec, train: Dataset, dev: Dataset, config: TrainConfig, run_dir: Path, out_dir: Path
) -> TrainResult:
    get_run_logger().info("fine-tuning %s on %s (%d examples)", teacher, spec.name, len(train))
    progress = TrainingProgress({"": planned_steps(config, len(train))})
    result = recipe.finetune_teacher(teacher, spec, train, dev, config, run_dir, on_log=progress)
    save_model(result.student, teacher, out_dir)
    keep_logs(Path(run_dir), out_dir)
    return result


@task(**TRAIN_TASK)
def general_distill_task(
    teacher: str, corpus: Dataset, shape: StudentShape, config: TrainConfig, run_dir: Path, out_dir: Path,
    layer_map: list[int] | None = None, student_family: str = "bert", attention_loss: bool = True,
    student_init: str = "random",
) -> TrainResult:
    get_run_logger().info("general distillation of %s into %s (init: %s) on %d sequences", teacher, shape, student_init, len(corpus))
    progress = TrainingProgress({"": planned_steps(config, len(corpus))})
    result = recipe.general_distill(
        teacher, corpus, shape, config, run_dir, layer_map=layer_map, on_log=progress, student_family=student_family,
        attention_loss=attention_loss, student_init=student_init,
    )
    save_projections(result.projections, save_model(result.student, teacher, out_dir))  # task stage 1 starts from them
    keep_logs(Path(run_dir), out_dir)
    return result


def distillation_data(
    params: dict, teacher_source: str | Path, upstream: dict[str, Path]
) -> tuple[TaskSpec, dict[str, Dataset]]:
    """The task and its augmented training rows and first dev split, encoded with the teacher's tokenizer
    (`upstream`: the task's prepare_task and augment outputs)."""
    spec, splits = read_task_splits(upstream["prepare_task"])
    augmented = load_augmented(upstream["augment"] / "train")
    log_dataset(augmented, "augmented-train", upstream["augment"] / "train", context="task_distillation")
    dev = splits[first_dev_split(splits)]
    return spec, encode_splits({"train": augmented, "dev": dev}, teacher_source, spec, seq_length(params, spec))


@task(**TRAIN_TASK)
def task_intermediate_task(
    teacher: PreTrainedModel, student: PreTrainedModel, tokenizer_source: str | Path, train: Dataset,
    config: TrainConfig, run_dir: Path, out_dir: Path, layer_map: list[int] | None = None, projections=None,
    attention_loss: bool = True,
) -> TrainResult:
    get_run_logger().info("task distillation, stage 1 (intermediate layers) on %d examples", len(train))
    result = recipe.task_distill_intermediate(
        teacher, student, train, config, run_dir, layer_map, TrainingProgress({"": planned_steps(config, len(train))}),
        projections=projections, attention_loss=attention_loss,
    )
    save_model(result.student, tokenizer_source, out_dir)
    keep_logs(Path(run_dir), out_dir)
    return result


@task(**TRAIN_TASK)
def task_prediction_task(
    student: PreTrainedModel, tokenizer_source: str | Path, spec: TaskSpec, train: Dataset, dev: Dataset,
    config: TrainConfig, temperature: float, teacher_logits, run_dir: Path, out_dir: Path,
) -> TrainResult:
    get_run_logger().info("task distillation, stage 2 (predictions) on %d examples, from cached teacher logits", len(train))
    result = recipe.task_distill_prediction(
        student, spec, train, dev, config, run_dir, temperature, teacher_logits=teacher_logits,
        on_log=TrainingProgress({"": planned_steps(config, len(train))}),
    )
    save_model(result.student, tokenizer_source, out_dir)
    keep_logs(Path(run_dir), out_dir)
    return result
