"""MLflow tracking for the pipeline: where the store lives, one parent run per pipeline run, a child per stage.

Store: SQLite at <project>/mlflow.db with artifacts in <project>/mlartifacts, unless MLFLOW_TRACKING_URI and
MLFLOW_DEFAULT_ARTIFACT_ROOT say otherwise. Experiment: MLFLOW_EXPERIMENT_NAME or "tinybert-pipeline".

Parent runs: the `tinybert_pipeline` flow creates one and passes it to its stages in TINYBERT_PARENT_RUN_ID.
Under `dvc repro` every stage is its own process, so they find their parent by a key: the hash of params.yaml
and the git commit. A parent stays RUNNING until the last stage (export) ends it; the next pipeline run with
the same key then opens a new one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import subprocess
import warnings
from pathlib import Path
from typing import Any, Iterator

import mlflow
from datasets import Dataset
from mlflow.tracking import MlflowClient

from tasks.params import PARAMS_FILE, PROJECT_ROOT

log = logging.getLogger(__name__)

PARENT_ENV = "TINYBERT_PARENT_RUN_ID"
PIPELINE_KEY_TAG = "tinybert.pipeline_key"
RUN_POINTER = "mlflow_run.json"  # written into each stage's output folder: downstream lineage tags read it


def configure() -> str:
    """Point MLflow at the project's store and return the experiment id (created on first use)."""
    mlflow.set_tracking_uri(os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{PROJECT_ROOT / 'mlflow.db'}")
    name = os.environ.get("MLFLOW_EXPERIMENT_NAME", "tinybert-pipeline")
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    artifacts = os.environ.get("MLFLOW_DEFAULT_ARTIFACT_ROOT") or (PROJECT_ROOT / "mlartifacts").as_uri()
    return mlflow.create_experiment(name, artifact_location=artifacts)


def git_tags() -> dict[str, str]:
    def git(*args: str) -> str:
        result = subprocess.run(["git", *args], cwd=PROJECT_ROOT, capture_output=True, text=True)
        return result.stdout.strip() if result.returncode == 0 else ""

    commit = git("rev-parse", "HEAD")
    dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    return {"git.commit": commit or "unknown", "git.dirty": str(dirty).lower()}


def dvc_dependency_tags(stage: str) -> dict[str, str]:
    """Content hashes of the stage's DVC dependencies as they are now (what this run consumes)."""
    try:
        from dvc.repo import Repo

        with Repo(str(PROJECT_ROOT)) as repo:
            (dvc_stage,) = repo.stage.collect(stage)
            return {f"dvc.dep.{dep.def_path}": str(dep.get_hash().value) for dep in dvc_stage.deps}
    except Exception as error:  # no DVC repository (a notebook, a plain checkout): lineage tags are optional
        log.info("no DVC dependency hashes for %s: %s", stage, error)
        return {}


def pipeline_parent(experiment_id: str) -> str:
    """The parent run of the current pipeline run: given in the environment, found by key, or new."""
    if os.environ.get(PARENT_ENV):
        return os.environ[PARENT_ENV]
    params = PARAMS_FILE.read_bytes() if PARAMS_FILE.is_file() else b""
    key = hashlib.sha256(params + git_tags()["git.commit"].encode()).hexdigest()[:16]
    runs = MlflowClient().search_runs(
        [experiment_id], filter_string=f"tags.`{PIPELINE_KEY_TAG}` = '{key}' and attributes.status = 'RUNNING'",
        max_results=1, order_by=["attributes.start_time DESC"],
    )
    if runs:
        return runs[0].info.run_id
    return start_parent(experiment_id, tags={PIPELINE_KEY_TAG: key})


def start_parent(experiment_id: str, tags: dict[str, str] | None = None) -> str:
    run = MlflowClient().create_run(experiment_id, run_name="tinybert-pipeline", tags={**git_tags(), **(tags or {})})
    return run.info.run_id


def finish_parent(run_id: str | None = None, status: str = "FINISHED") -> None:
    """Close a pipeline's parent run: `run_id`, or the current pipeline's (the last stage calls this)."""
    experiment_id = configure()
    MlflowClient().set_terminated(run_id or pipeline_parent(experiment_id), status=status)


@contextlib.contextmanager
def stage_run(stage: str, params: dict[str, Any], upstream: dict[str, Path] | None = None) -> Iterator[mlflow.ActiveRun]:
    """A child run for one stage: params, params.yaml, git/DVC/Prefect tags and upstream run ids."""
    experiment_id = configure()
    tags = {
        "mlflow.parentRunId": pipeline_parent(experiment_id),
        "tinybert.stage": stage,
        **git_tags(),
        **dvc_dependency_tags(stage),
        **_prefect_tags(),
        **lineage(upstream or {}),
    }
    with mlflow.start_run(experiment_id=experiment_id, run_name=stage, tags=tags) as run:
        mlflow.log_params(_flatten(params))
        if PARAMS_FILE.is_file():
            mlflow.log_artifact(str(PARAMS_FILE))
        yield run


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
