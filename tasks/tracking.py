"""MLflow tracking for the pipeline: where the store lives, one parent run per pipeline run, a child per stage.

Store: SQLite at <project>/mlflow.db with artifacts in <project>/mlartifacts, unless MLFLOW_TRACKING_URI and
MLFLOW_DEFAULT_ARTIFACT_ROOT say otherwise. Experiment: MLFLOW_EXPERIMENT_NAME or "tinybert-pipeline".

Parent runs: the `tinybert_pipeline` flow creates one, passes it to its stages in TINYBERT_PARENT_RUN_ID and
closes it (FINISHED or FAILED) when it ends. Under `dvc repro` every stage is its own process, so they find their
parent by a key, the hash of params.yaml and the git commit: every stage run made with the same params and code
is a child of one parent, which is RUNNING while one of its stages runs, FAILED after a stage failed and FINISHED
after a stage succeeded.

No run stays RUNNING for ever: each run records its host and process id, and a stage that starts marks the runs of
processes that no longer exist (a killed stage) KILLED; a rerun of a stage links the attempt it follows
(`tinybert.previous_attempt`).

Under `dvc exp run --temp` or `--queue` the project is a throwaway copy in .dvc/tmp/exps/; the store stays the
project's own, so those runs are kept.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
import logging
import os
import socket
import subprocess
import time
import warnings
from pathlib import Path
from typing import Any, Iterator

import mlflow
import yaml
from datasets import Dataset
from filelock import FileLock
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

from tasks.params import PARAMS_FILE, PROJECT_ROOT

log = logging.getLogger(__name__)

PARENT_ENV = "TINYBERT_PARENT_RUN_ID"
_PARENT: contextvars.ContextVar[str | None] = contextvars.ContextVar("tinybert_parent_run", default=None)
TASK_TAG = "tinybert.task"
PIPELINE_KEY_TAG = "tinybert.pipeline_key"
EXPERIMENT_KIND_TAG, MODEL_TRAINING = "mlflow.experimentKind", "custom_model_development"
PROCESS_TAG = "tinybert.process"  # host:pid of the process a run belongs to, to find runs whose process died
RUN_POINTER = "mlflow_run.json"  # written into each stage's output folder: downstream lineage tags read it


def store_root(project_root: Path = PROJECT_ROOT) -> Path:
    """The folder holding the default MLflow store: the project, also when DVC runs it in a temporary copy.

    `dvc exp run --temp` and queued experiments run in <repo>/.dvc/tmp/exps/<tmp>; a store there would be deleted
    with the copy, and with it every run of the experiment.
    """
    parts = project_root.parts
    for i in range(len(parts) - 2):
        if parts[i : i + 3] == (".dvc", "tmp", "exps"):
            return Path(*parts[:i])
    return project_root


def configure() -> str:
    """Point MLflow at the project's store and return the experiment id (created on first use).

    The first use of a new SQLite store creates its schema; stages starting at the same moment would race on
    that (`table _alembic_tmp_experiments already exists`), so first use is serialised by a file lock.
    """
    root = store_root()
    mlflow.set_tracking_uri(os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{root / 'mlflow.db'}")
    name = os.environ.get("MLFLOW_EXPERIMENT_NAME", "tinybert-pipeline")
    with _store_lock(mlflow.get_tracking_uri()):
        experiment = mlflow.get_experiment_by_name(name)
        if experiment is not None:
            return experiment.experiment_id
        artifacts = os.environ.get("MLFLOW_DEFAULT_ARTIFACT_ROOT")
        if not artifacts and not mlflow.get_tracking_uri().startswith(("http://", "https://")):
            artifacts = (root / "mlartifacts").as_uri()  # a tracking server keeps its own artifact root, shared by all
        # Without the kind, MLflow 3's UI guesses "GenAI" and opens the experiment on its (empty) traces page.
        return mlflow.create_experiment(name, artifact_location=artifacts, tags={EXPERIMENT_KIND_TAG: MODEL_TRAINING})


def _store_lock(uri: str) -> contextlib.AbstractContextManager:
    if uri.startswith("sqlite:///"):
        return FileLock(uri.removeprefix("sqlite:///") + ".lock", timeout=600)
    return contextlib.nullcontext()  # a tracking server serialises its own schema set-up


def git_tags() -> dict[str, str]:
    def git(*args: str) -> str:
        result = subprocess.run(["git", *args], cwd=PROJECT_ROOT, capture_output=True, text=True)
        return result.stdout.strip() if result.returncode == 0 else ""

    commit = git("rev-parse", "HEAD")
    # Code only (what makes a run unreproducible from its commit): params.yaml and dvc.lock change with every
    # experiment and the runs log their params anyway; DVC's own files change as it works.
    dirty = bool(git("status", "--porcelain", "--untracked-files=no", "--", "*.py", "dvc.yaml", "pyproject.toml"))
    return {"git.commit": commit or "unknown", "git.dirty": str(dirty).lower()}


def dvc_dependency_tags(stage: str) -> dict[str, str]:
    """Content hashes of the stage's DVC dependencies as they are now (what this run consumes)."""
    try:
        from dvc.repo import Repo

        with Repo(str(PROJECT_ROOT)) as repo:
            (dvc_stage,) = repo.stage.collect(stage)
            return {f"dvc.dep.{dep.def_path}": _hash_text(dep.get_hash().value) for dep in dvc_stage.deps}
    except Exception as error:  # no DVC repository (a notebook, a plain checkout): lineage tags are optional
        log.info("no DVC dependency hashes for %s: %s", stage, error)
        return {}


def _hash_text(value: object) -> str:
    """A DVC hash as a tag; for a params file DVC's "hash" is the dict of the values used, so hash that."""
    if isinstance(value, dict):
        return "params-" + hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return str(value)


def given_parent() -> str | None:
    """The parent run a flow handed its stages: this thread's (a task's chain, `parent_run`), else the process's."""
    return _PARENT.get() or os.environ.get(PARENT_ENV) or None


@contextlib.contextmanager
def parent_run(run_id: str) -> Iterator[None]:
    """Stages started inside the block (in this thread or tasks it submits) are children of `run_id`."""
    token = _PARENT.set(run_id)
    try:
        yield
    finally:
        _PARENT.reset(token)


def pipeline_parent(experiment_id: str) -> str:
    """The parent run of the current pipeline run: given by the flow, found by key, or new."""
    if given := given_parent():
        return given
    params = PARAMS_FILE.read_bytes() if PARAMS_FILE.is_file() else b""
    key = hashlib.sha256(params + git_tags()["git.commit"].encode()).hexdigest()[:16]
    with _store_lock(mlflow.get_tracking_uri()):  # two stages starting together must not open two parents
        runs = MlflowClient().search_runs(
            [experiment_id], filter_string=f"tags.`{PIPELINE_KEY_TAG}` = '{key}'",
            max_results=1, order_by=["attributes.start_time DESC"],
        )
        if runs:
            return runs[0].info.run_id
        return start_parent(experiment_id, tags={PIPELINE_KEY_TAG: key})


def start_parent(experiment_id: str, tags: dict[str, str] | None = None, name: str = "tinybert-pipeline") -> str:
    """A new parent run carrying the whole params.yaml as its params (the stages' children log their sections)."""
    client = MlflowClient()
    run = client.create_run(experiment_id, run_name=name, tags={**git_tags(), **_process_tags(), **(tags or {})})
    if PARAMS_FILE.is_file():
        flat = _flatten(yaml.safe_load(PARAMS_FILE.read_text()) or {})
        params = [Param(key, str(value)[:6000]) for key, value in flat.items()]
        for start in range(0, len(params), 100):  # MLflow takes at most 100 params per batch
            client.log_batch(run.info.run_id, params=params[start : start + 100])
    return run.info.run_id


def log_to_parent(metrics: dict[str, float]) -> None:
    """Put headline numbers (teacher, student, retention) on the pipeline's parent run, where people look first."""
    run = mlflow.active_run()
    parent = run.data.tags.get("mlflow.parentRunId") if run else None
    if parent:
        now = int(time.time() * 1000)
        MlflowClient().log_batch(parent, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()])


def finish_parent(run_id: str, status: str = "FINISHED") -> None:
    """Close a pipeline's parent run with `status` (FINISHED, FAILED or KILLED)."""
    configure()
    MlflowClient().set_terminated(run_id, status=status)


def _process_tags() -> dict[str, str]:
    return {PROCESS_TAG: f"{socket.gethostname()}:{os.getpid()}"}


def _process_alive(process: str) -> bool:
    host, _, pid = process.rpartition(":")
    if host != socket.gethostname():
        return True  # another machine's run: only that machine can tell
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError):
        return True
    return True


def close_dead_runs(experiment_id: str) -> list[str]:
    """Mark KILLED the RUNNING runs whose process on this machine is gone (a stage killed mid-run)."""
    client = MlflowClient()
    closed = []
    mine = f"tags.`{PROCESS_TAG}` LIKE '{socket.gethostname()}:%'"  # only this machine can tell whether a pid lives
    for run in client.search_runs([experiment_id], filter_string=f"attributes.status = 'RUNNING' and {mine}", max_results=500):
        process = run.data.tags.get(PROCESS_TAG)
        if process and not _process_alive(process):
            client.set_tag(run.info.run_id, "tinybert.ended", f"process {process} was gone; marked KILLED")
            client.set_terminated(run.info.run_id, status="KILLED")
            closed.append(run.info.run_id)
    return closed


def _previous_attempt(experiment_id: str, parent: str, stage: str, task: str | None) -> str | None:
    """The latest unfinished (FAILED or KILLED) run of `stage` (of `task`) under `parent`: what a rerun continues."""
    of_task = f" and tags.`{TASK_TAG}` = '{task}'" if task else ""
    runs = MlflowClient().search_runs(
        [experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{parent}' and tags.`tinybert.stage` = '{stage}'{of_task} "
        "and attributes.status != 'FINISHED' and attributes.status != 'RUNNING'",
        max_results=1, order_by=["attributes.start_time DESC"],
    )
    return runs[0].info.run_id if runs else None


@contextlib.contextmanager
def stage_run(
    stage: str, params: dict[str, Any], upstream: dict[str, Path] | None = None, task: str | None = None
) -> Iterator[mlflow.ActiveRun]:
    """A child run for one stage (of `task`): params, params.yaml, git/DVC/Prefect tags and upstream run ids."""
    from tasks.params import dvc_stage_name

    experiment_id = configure()
    close_dead_runs(experiment_id)
    owned_parent = not given_parent()  # a pipeline flow's parent is closed by the flow itself
    parent = pipeline_parent(experiment_id)
    client = MlflowClient()
    name = dvc_stage_name(stage, task)
    tags = {
        "mlflow.parentRunId": parent,
        "tinybert.stage": stage,
        **({TASK_TAG: task} if task else {}),
        **git_tags(),
        **dvc_dependency_tags(name),
        **_prefect_tags(),
        **_process_tags(),
        "tinybert.clone": str(PROJECT_ROOT),  # which worker's clone ran it, when several share one tracking server
        **lineage(upstream or {}),
    }
    if previous := _previous_attempt(experiment_id, parent, stage, task):
        tags["tinybert.previous_attempt"] = previous
    if owned_parent:
        client.update_run(parent, status="RUNNING")
    try:
        with mlflow.start_run(experiment_id=experiment_id, run_name=name, tags=tags) as run:
            # The parent links its stages (tag keys cannot hold the "@" of a per-task stage's name).
            client.set_tag(parent, f"tinybert.stage_run.{name.replace('@', '.')}", run.info.run_id)
            mlflow.log_params(_flatten(params))
            if PARAMS_FILE.is_file():
                mlflow.log_artifact(str(PARAMS_FILE))
            yield run
    except BaseException as error:
        if owned_parent:
            client.set_terminated(parent, status="KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED")
        raise
    if owned_parent:
        client.set_terminated(parent, status="FINISHED")


def record_run(out_dir: Path, stage: str) -> None:
    """Leave the active run's id in a stage output so later stages can tag their lineage."""
    run = mlflow.active_run()
    (Path(out_dir) / RUN_POINTER).write_text(json.dumps({"stage": stage, "run_id": run.info.run_id}) + "\n")


def log_metrics(metrics: dict[str, float], step: int | None = None) -> None:
    """The distiller's metrics callback: names may contain '/', which MLflow shows as groups."""
    mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step)


def log_dataset(dataset: Dataset, name: str, source: Path | str, context: str) -> None:
    """Record a dataset (name, digest, schema, where it lives) as an input of the active run."""
    with warnings.catch_warnings():
        # MLflow's schema inference hints that integer columns cannot hold missing values; ours never do.
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer column")
        mlflow.log_input(mlflow.data.from_huggingface(dataset, path=str(source), name=name), context=context)


def lineage(upstream: dict[str, Path]) -> dict[str, str]:
    """MLflow run ids of the stages that produced `upstream` folders, as lineage tags."""
    return {f"lineage.{name}": run_id for name, run_id in upstream_runs(upstream).items()}


def upstream_runs(upstream: dict[str, Path]) -> dict[str, str]:
    """MLflow run id of each upstream stage whose folder holds a run pointer."""
    found = {}
    for name, folder in upstream.items():
        pointer = Path(folder) / RUN_POINTER
        if pointer.is_file():
            found[name] = json.loads(pointer.read_text())["run_id"]
    return found


def _prefect_tags() -> dict[str, str]:
    from prefect.runtime import flow_run

    return {"prefect.flow_run_id": str(flow_run.id)} if flow_run.id else {}


def _flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
