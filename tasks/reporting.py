"""What a training stage leaves for people: final metrics in MLflow, step logs as CSV for `dvc plots`.

No images here: the evaluate stage draws every stage's curves, so a change to plots.py reruns no training
(MLflow charts each run's per-step metrics itself)."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import mlflow
from prefect.artifacts import create_markdown_artifact

from tinybert_core.distiller import TrainResult


def jsonl_to_csv(source: Path, target: Path) -> Path:
    """One CSV row per JSON line, columns in first-seen order (what `dvc plots` reads)."""
    records = [json.loads(line) for line in source.read_text().splitlines() if line.strip()]
    columns = list(dict.fromkeys(key for record in records for key in record))
    with open(target, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(records)
    return target


def finish_training_stage(result: TrainResult, out_dir: Path) -> None:
    """Final losses and dev metrics to MLflow; step logs to CSV (and as MLflow artifacts)."""
    mlflow.log_metrics({f"final/{k}": v for k, v in result.final_losses.items()})
    mlflow.log_metrics({f"dev/{k}": v for k, v in result.eval_metrics.items()})
    for log in sorted(out_dir.glob("*.jsonl")):
        jsonl_to_csv(log, log.with_name(log.name.replace(".jsonl", ".csv")))
        mlflow.log_artifact(str(log), artifact_path="logs")
    rows = [("final " + k, v) for k, v in result.final_losses.items()] + [("dev " + k, v) for k, v in result.eval_metrics.items()]
    table = "\n".join(["| metric | value |", "|---|---|", *(f"| {name} | {value:.4g} |" for name, value in rows)])
    name = out_dir.name  # the staging folder: the stage's name, "@task" added for a per-task stage
    create_markdown_artifact(
        markdown=f"### {name}: {result.state.step} optimizer steps\n\n{table}\n", key=re.sub(r"[^a-z0-9]+", "-", name.lower()),
        description=f"{name} training summary",
    )
