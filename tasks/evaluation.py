"""Prefect tasks of the evaluate stage: the teacher/student comparison and what it leaves behind."""

from __future__ import annotations

from pathlib import Path

import mlflow
from datasets import Dataset
from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from transformers import PreTrainedModel

from tinybert_core.comparison import compare, flat_metrics, markdown_table, report_json, scores_and_timings
from tinybert_core.glue_tasks import TaskSpec
from tinybert_core.plots import plot_eval_curve, plot_learning_curves, plot_teacher_vs_student
from tasks.retries import IO_TASK
from tasks.tracking import log_to_parent


@task(cache_policy=NO_CACHE)
def compare_task(
    teacher: PreTrainedModel, student: PreTrainedModel, spec: TaskSpec, dev_sets: dict[str, Dataset],
    teacher_dir: Path, student_dir: Path, section: dict, train_labels: list, seed: int,
) -> dict:
    return compare(
        teacher, student, spec, dev_sets, teacher_dir, student_dir, batch_size=section["batch_size"],
        speed_repeats=section["speed_repeats"], speed_seq_length=section["speed_seq_length"],
        train_labels=train_labels, resamples=section["bootstrap_resamples"], seed=seed, confidence=section["confidence"],
    )


def write_metrics(report: dict, out_dir: Path) -> tuple[Path, Path]:
    """The report as two DVC metrics files: scores.json (what the models are worth, the same on every run of the
    same models and data) and timings.json (its "speed": this machine, this moment). Export reads the scores
    only, so a rerun that changes nothing but the timings does not register the model again."""
    paths = out_dir / "scores.json", out_dir / "timings.json"
    for path, values in zip(paths, scores_and_timings(report)):
        path.write_text(report_json(values))
    return paths


@task(**IO_TASK)
def publish_report(report: dict, out_dir: Path, stage_dirs: dict[str, Path]) -> str:
    """scores.json and timings.json for DVC, report.md, plots, MLflow metrics/artifacts and a Prefect markdown
    artifact; every warning (a collapsed or baseline-level model) is logged too. `stage_dirs`: the training stages'
    outputs, whose logs become the learning curves."""
    logger = get_run_logger()
    for warning in report["scores"]["warnings"]:
        logger.warning(warning)
    metrics_files = write_metrics(report, out_dir)
    markdown = markdown_table(report)
    (out_dir / "report.md").write_text(markdown)

    plots = out_dir / "plots"
    plots.mkdir(exist_ok=True)
    plot_teacher_vs_student(report, plots / "teacher_vs_student.png")
    train_logs = {
        name: path for name, path in (
            ("general distillation", stage_dirs["general_distill"] / "train_log.jsonl"),
            ("teacher fine-tuning", stage_dirs["finetune_teacher"] / "train_log.jsonl"),
            ("task distillation stage 1", stage_dirs["task_intermediate"] / "train_log.jsonl"),
            ("task distillation stage 2", stage_dirs["task_prediction"] / "train_log.jsonl"),
        ) if path.is_file()
    }
    plot_learning_curves(train_logs, plots / "learning_curves.png")
    # The training stages draw nothing (their outputs must not depend on plots.py): their dev curves are drawn here.
    for stage in ("general_distill", "finetune_teacher", "task_prediction"):
        for log in sorted(stage_dirs[stage].glob("*eval_log.jsonl")):
            plot_eval_curve(log, "score", plots / f"{stage}_{log.stem}.png")

    mlflow.log_metrics(flat_metrics(report))
    log_to_parent(headline(report))
    mlflow.log_artifacts(str(plots), artifact_path="plots")
    mlflow.log_artifact(str(out_dir / "report.md"))
    for path in metrics_files:
        mlflow.log_artifact(str(path))
    create_markdown_artifact(markdown=markdown, key=f"evaluation-{report['task']}".replace("_", "-"), description="teacher vs student")
    return markdown


def headline(report: dict) -> dict[str, float]:
    """What the pipeline's parent run shows: per dev split the teacher's and student's task score and retention."""
    numbers = {}
    for split, scored in report["scores"]["splits"].items():
        for role in ("baseline", "teacher", "student"):
            numbers[f"{split}/{role}_score"] = scored[role]["metrics"]["score"]
        if scored["retention"]["value"] is not None:
            numbers[f"{split}/retention"] = scored["retention"]["value"]
    return {k: v for k, v in numbers.items() if v == v}  # nan (an undefined correlation) is left out
