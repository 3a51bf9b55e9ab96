"""The whole recipe as Prefect flows, for deployments on GPU workers (see prefect.yaml).

`tinybert_pipeline` runs the shared stages (corpus, General TinyBERT) once, then every listed task's chain of
stages (prepare_task ... export), the chains side by side, then glue_report. The chains run as concurrent
Prefect tasks in this process, or, given `task_deployment`, as one `tinybert_task` flow run per task on a work
pool, so several GPU workers (each in its own clone, sharing a DVC remote and an MLflow server) share the work.

DVC still decides: a stage runs only if `dvc status` says it is stale (or `force`), as a subflow; a stale stage
whose exact inputs the shared DVC remote already has is checked out from there instead (`flows.dvc_record`);
`dvc commit` records what ran in dvc.lock, exactly as `dvc repro` would have. MLflow: one parent run, a child
run per task holding that task's stage runs, and the shared stages' and the report's runs under the parent.

Overrides belong to one run only. They are written into params.yaml for the run (so DVC records what ran), the
finished run is saved as a DVC experiment (`dvc exp show` lists it, `dvc exp apply <name>` brings it back), and
params.yaml is restored afterwards, so the worker's clone is left as it was and the next run inherits nothing.
Runs with overrides in one clone take turns (a lock beside params.yaml).
"""

from __future__ import annotations

import contextlib
import contextvars
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterator

from filelock import FileLock

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run
from prefect.task_runners import ThreadPoolTaskRunner

from flows import (
    augment, evaluate, export, finetune_teacher, general_distill, glue_report, prepare_corpus, prepare_task,
    task_intermediate, task_prediction, teacher_logits,
)
from flows.dvc_record import DvcRecord
from tasks.params import METRICS, PARAMS_FILE, PROJECT_ROOT, dvc_stage_name, load_params, set_dotted
from tasks.tracking import TASK_TAG, configure, finish_parent, parent_run, start_parent
from tasks.validation import present_tasks

TASK_RUN_TAG = "tinybert.task_run"  # on the MLflow run holding one task's stage runs

SHARED_CHAIN: list[tuple[str, Callable[..., str]]] = [
    ("prepare_corpus", prepare_corpus.prepare_corpus),
    ("general_distill", general_distill.general_distill),
]
TASK_CHAIN: list[tuple[str, Callable[..., str]]] = [
    ("prepare_task", prepare_task.prepare_task),
    ("finetune_teacher", finetune_teacher.finetune_teacher),
    ("augment", augment.run),  # picks the task runner (threads, Dask, Ray) from params
    ("task_intermediate", task_intermediate.task_intermediate),
    ("teacher_logits", teacher_logits.teacher_logits),
    ("task_prediction", task_prediction.task_prediction),
    ("evaluate", evaluate.evaluate),
    ("export", export.export),
]
REPORT = ("glue_report", glue_report.glue_report)
STAGES = [*SHARED_CHAIN, *TASK_CHAIN, REPORT]


@contextlib.contextmanager
def overrides_for_this_run(record: DvcRecord, overrides: dict[str, Any] | None, name: str) -> Iterator[None]:
    """params.yaml with `overrides` inside the block, as it was after it; the run is saved as experiment `name`."""
    if not overrides:
        yield
        return
    with FileLock(f"{PARAMS_FILE}.lock", timeout=-1):
        original = PARAMS_FILE.read_bytes()
        write_overrides(overrides)
        try:
            yield
            if record.repo is not None:
                try:
                    record.repo.experiments.save(name=name, force=True)
                except Exception as error:  # the run itself succeeded and is in MLflow and the DVC cache
                    get_run_logger().warning("could not save the run as DVC experiment %s: %s", name, error)
        finally:
            PARAMS_FILE.write_bytes(original)


def write_overrides(overrides: dict[str, Any]) -> None:
    """Set dotted keys in params.yaml, keeping its comments (what `dvc exp run -S` does)."""
    from dvc.utils.serialize import modify_yaml

    load_params(PARAMS_FILE, overrides)  # validates every key before anything is written
    with modify_yaml(str(PARAMS_FILE)) as params:
        for dotted, value in overrides.items():
            set_dotted(params, dotted, value)


def run_stage(record: DvcRecord, name: str, stage_flow: Callable[..., str], task_name: str | None, force: bool) -> str:
    """One stage, if DVC finds it stale: "up to date", "pulled" (from the DVC remote) or "ran"."""
    target = dvc_stage_name(name, task_name)
    logger = get_run_logger()
    if not force and record.repo is not None and not record.stale(target):
        logger.info("%s: up to date (DVC), skipped", target)
        return "up to date"
    if not force and record.restore(target):
        logger.info("%s: its outputs for these inputs were in the DVC remote: checked out, not recomputed", target)
        return "pulled"
    stage_flow(task=task_name) if task_name else stage_flow()
    record.record(target)
    return "ran"


def run_chain(record: DvcRecord, task_name: str, force: bool, pipeline_run: str) -> dict[str, str]:
    """One task's stages in order, as children of a task run under the pipeline's parent run."""
    experiment = configure()
    tags = {"mlflow.parentRunId": pipeline_run, TASK_RUN_TAG: task_name, TASK_TAG: task_name}
    run = start_parent(experiment, tags=tags, name=f"task {task_name}")
    try:
        with parent_run(run):
            outcome = {dvc_stage_name(n, task_name): run_stage(record, n, f, task_name, force) for n, f in TASK_CHAIN}
    except BaseException as error:
        finish_parent(run, "KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED")
        raise
    finish_parent(run)
    return outcome


@task(task_run_name="chain-{task_name}", cache_policy=NO_CACHE)  # a chain is DVC's to skip, not Prefect's
def task_chain(record: DvcRecord, task_name: str, force: bool, pipeline_run: str) -> dict[str, str]:
    return run_chain(record, task_name, force, pipeline_run)


def run_shared(record: DvcRecord, force: bool) -> dict[str, str]:
    return {name: run_stage(record, name, stage_flow, None, force) for name, stage_flow in SHARED_CHAIN}


@flow(name="tinybert_task")
def tinybert_task(
    task_name: str, pipeline_run: str, overrides: dict[str, Any] | None = None, force: bool = False
) -> dict[str, str]:
    """One task's chain, on whichever worker picks it up: the shared stages first (from the DVC remote when
    another machine has made them), then the task's stages; its MLflow runs go under `pipeline_run`."""
    record = DvcRecord(PROJECT_ROOT)
    with overrides_for_this_run(record, overrides, f"prefect-{flow_run.name or 'run'}"), parent_run(pipeline_run):
        outcome = run_shared(record, force=False)  # forced once by the pipeline, not again per worker
        return {**outcome, **run_chain(record, task_name, force, pipeline_run)}


@flow(name="tinybert_pipeline", task_runner=ThreadPoolTaskRunner(max_workers=4))
def tinybert_pipeline(
    overrides: dict[str, Any] | None = None, force: bool = False, task_deployment: str | None = None,
) -> dict[str, str]:
    """Run every stale stage; returns each stage's outcome ("ran", "pulled" or "up to date").

    `task_deployment` ("tinybert_task/<deployment>"): run each task's chain as a flow run of that deployment
    (on a work pool's workers) instead of in this process.
    """
    logger = get_run_logger()
    if overrides:
        load_params(PARAMS_FILE, overrides)  # every key and value checked before anything is written or run
    record = DvcRecord(PROJECT_ROOT)
    if record.repo is None:
        logger.warning("no DVC repository at %s: running every stage, nothing recorded in dvc.lock", PROJECT_ROOT)

    experiment = f"prefect-{flow_run.name or 'run'}"
    tags = {"prefect.flow_run_id": str(flow_run.id), "tinybert.overrides": json.dumps(overrides or {}, sort_keys=True)}
    with overrides_for_this_run(record, overrides, experiment):
        if overrides:
            logger.info("params.yaml holds %s for this run; it is restored afterwards (DVC experiment %s)", overrides, experiment)
        params = load_params(PARAMS_FILE)
        tasks, skipped = present_tasks(params, PROJECT_ROOT)
        for name, why in skipped.items():
            logger.warning("task %s skipped (data.missing_tasks: skip): %s", name, "; ".join(why))
        parent = start_parent(configure(), tags=tags)
        try:
            with parent_run(parent):
                outcome = run_shared(record, force)
                if task_deployment:
                    outcome.update(_on_workers(task_deployment, tasks, parent, overrides, force))
                else:
                    chains = [task_chain.submit(record, name, force, parent) for name in tasks]
                    for chain in chains:
                        outcome.update(chain.result())
                outcome[REPORT[0]] = run_stage(record, *REPORT, None, force)
        except BaseException as error:
            finish_parent(parent, "KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED")
            raise
        finish_parent(parent)
    for warning in evaluation_warnings(tasks):
        logger.warning(warning)
    return outcome


def _on_workers(deployment: str, tasks: list[str], parent: str, overrides: dict | None, force: bool) -> dict[str, str]:
    """One flow run per task on the deployment's work pool, side by side; then each task's metrics fetched from
    its evaluate run in the (shared) MLflow store, for the report here."""
    from prefect.deployments import run_deployment

    def one(task_name: str) -> dict[str, str]:
        parameters = {"task_name": task_name, "pipeline_run": parent, "overrides": overrides or {}, "force": force}
        run = run_deployment(deployment, parameters=parameters, timeout=None, flow_run_name=f"tinybert-{task_name}")
        if not run.state.is_completed():
            raise RuntimeError(f"task {task_name}: flow run {run.name} ended {run.state.name}: {run.state.message}")
        fetch_task_metrics(parent, task_name)
        return {f"{task_name} (flow run {run.name})": "ran on a worker"}

    with ThreadPoolExecutor(max_workers=max(len(tasks), 1)) as pool:  # each thread in this flow's context: subflows
        results = [f.result() for f in [pool.submit(contextvars.copy_context().run, one, name) for name in tasks]]
    return {key: value for result in results for key, value in result.items()}


def fetch_task_metrics(pipeline_run: str, task_name: str) -> Path:
    """The task's scores.json and timings.json from its latest finished evaluate run under `pipeline_run`."""
    import mlflow
    from mlflow import MlflowClient

    client = MlflowClient()
    experiment = configure()
    latest = {"max_results": 1, "order_by": ["attributes.start_time DESC"]}
    task_runs = client.search_runs(
        [experiment], f"tags.`mlflow.parentRunId` = '{pipeline_run}' and tags.`{TASK_RUN_TAG}` = '{task_name}'", **latest
    )
    runs = task_runs and client.search_runs(
        [experiment], f"tags.`mlflow.parentRunId` = '{task_runs[0].info.run_id}' and tags.`tinybert.stage` = 'evaluate' "
        "and attributes.status = 'FINISHED'", **latest,
    )
    if not runs:
        raise RuntimeError(f"task {task_name}: no finished evaluate run under the pipeline's MLflow run {pipeline_run}")
    target = METRICS / task_name
    target.mkdir(parents=True, exist_ok=True)
    for name in ("scores.json", "timings.json"):
        mlflow.artifacts.download_artifacts(run_id=runs[0].info.run_id, artifact_path=name, dst_path=str(target))
    return target


def evaluation_warnings(tasks: list[str] | None = None) -> list[str]:
    """The evaluations' warnings (a collapsed or baseline-level model, retention withheld), for the run's last words."""
    if tasks is None:
        tasks = load_params(PARAMS_FILE, validate=False)["tasks"]
    warnings = []
    for name in tasks:
        scores = METRICS / name / "scores.json"
        if scores.is_file():
            warnings += [f"{name}: {w}" for w in json.loads(scores.read_text())["scores"]["warnings"]]
    return warnings


if __name__ == "__main__":
    from flows.arguments import run_with_api

    run_with_api(tinybert_pipeline, None, {})
