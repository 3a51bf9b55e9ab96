"""Stage 11: every task's dev scores in one table, laid out as the paper's Table 1 (markdown and JSON), logged to
the pipeline's MLflow parent run and shown as a Prefect markdown artifact."""

from __future__ import annotations

import json
from typing import Any

import mlflow
from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from flows.arguments import stage_main
from flows.stage import stage
from tinybert_core.glue_table import flat_table_metrics, glue_markdown, glue_table
from tasks.params import METRICS, OUTPUTS, PROJECT_ROOT
from tasks.tracking import log_to_parent
from tasks.validation import present_tasks

TABLE_METRICS = OUTPUTS / "glue_table.json"  # a DVC metrics file: `dvc metrics show` lists every task's scores


@flow(name="glue_report")
def glue_report(params_file: str | None = None, overrides: dict[str, Any] | None = None) -> str:
    with stage("glue_report", params_file, overrides) as s:
        tasks, skipped = present_tasks(s.params, PROJECT_ROOT)
        scores = {task: _read(METRICS / task / "scores.json") for task in tasks}
        timings = {task: _read(METRICS / task / "timings.json") for task in tasks}
        table = glue_table(scores, timings, skipped)
        markdown = glue_markdown(table)
        (s.out_dir / "glue_table.json").write_text(json.dumps(table, indent=2) + "\n")
        (s.out_dir / "glue_table.md").write_text(markdown)
        s.publish("glue_table.json", TABLE_METRICS)
        metrics = flat_table_metrics(table)
        mlflow.log_metrics(metrics)
        log_to_parent(metrics)
        mlflow.log_artifact(str(s.out_dir / "glue_table.md"))
        create_markdown_artifact(markdown=markdown, key="glue-report", description="teacher vs student on every task")
        get_run_logger().info("\n%s", markdown)
    return str(s.final_dir)


def _read(path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run that task's evaluate stage first (dvc repro evaluate@<task>)")
    return json.loads(path.read_text())


if __name__ == "__main__":
    stage_main("glue_report", glue_report)
