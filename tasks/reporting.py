"""What a training stage leaves for people: final metrics in MLflow, step logs as CSV for `dvc plots`,
learning-curve images as MLflow artifacts."""

from __future__ import annotations

import csv
from pathlib import Path

import mlflow
from prefect.artifacts import create_markdown_artifact

from tinybert_core.distiller import TrainResult
from tinybert_core.plots import plot_eval_curve, plot_learning_curves, read_jsonl


def jsonl_to_csv(source: Path, target: Path) -> Path:
    """One CSV row per JSON line, columns in first-seen order (what `dvc plots` reads)."""
    records = read_jsonl(source)
    columns = list(dict.fromkeys(key for record in records for key in record))
    with open(target, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(records)
    return target


def finish_training_stage(result: TrainResult, out_dir: Path) -> None:
    """Final losses and dev metrics to MLflow; step logs to CSV; curves to PNG artifacts."""
    mlflow.log_metrics({f"final/{k}": v for k, v in result.final_losses.items()})
    mlflow.log_metrics({f"dev/{k}": v for k, v in result.eval_metrics.items()})
    train_logs: dict[str, Path] = {}
    for log in sorted(out_dir.glob("*.jsonl")):
        target = log.with_name(log.name.replace(".jsonl", ".csv"))
        jsonl_to_csv(log, target)
        mlflow.log_artifact(str(log), artifact_path="logs")
        if log.name.endswith("train_log.jsonl"):
            train_logs[log.name.removesuffix("train_log.jsonl").rstrip("_") or out_dir.name] = log
        elif log.name.endswith("eval_log.jsonl"):
            mlflow.log_artifact(str(plot_eval_curve(log, "score", out_dir / log.name.replace(".jsonl", ".png"))), "plots")
    if train_logs:
        mlflow.log_artifact(str(plot_learning_curves(train_logs, out_dir / "learning_curves.png")), "plots")
    rows = [("final " + k, v) for k, v in result.final_losses.items()] + [("dev " + k, v) for k, v in result.eval_metrics.items()]
    table = "\n".join(["| metric | value |", "|---|---|", *(f"| {name} | {value:.4g} |" for name, value in rows)])
    create_markdown_artifact(
        markdown=f"### {out_dir.name}: {result.state.step} optimizer steps\n\n{table}\n", key=out_dir.name.replace("_", "-"),
        description=f"{out_dir.name} training summary",
    )
