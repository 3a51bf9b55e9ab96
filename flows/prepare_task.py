"""Stage 2: the task's training and dev splits, from a glue_data folder or the embedded polarity data."""

from __future__ import annotations

from typing import Any

import mlflow
from prefect import flow

from flows.arguments import stage_main
from flows.stage import stage
from tasks.data import load_task_splits, save_task_splits
from tasks.tracking import log_dataset


@flow(name="prepare_task")
def prepare_task(
    params_file: str | None = None, overrides: dict[str, Any] | None = None, task: str | None = None
) -> str:
    with stage("prepare_task", params_file, overrides, task=task) as s:
        spec, splits = load_task_splits(s.params["task"], s.params["data"], s.params["seed"])
        save_task_splits(spec, splits, s.out_dir)
        for name, split in splits.items():
            log_dataset(split, f"{spec.name}-{name}", s.final_dir / name, context=name)
            mlflow.log_metric(f"rows_{name}", len(split))
    return str(s.final_dir)


if __name__ == "__main__":
    stage_main("prepare_task", prepare_task)
