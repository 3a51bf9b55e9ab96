"""The whole recipe as one Prefect flow, for deployments on GPU workers (see prefect.yaml).

DVC still decides: a stage runs only if `dvc status` says it is stale (or `force`), as a subflow, and
`dvc commit` then records it in dvc.lock, exactly as `dvc repro` would have. Overrides are written into
params.yaml first, as `dvc exp run -S` does, so what DVC records is what ran. One MLflow parent run holds
a child run per stage.
"""

from __future__ import annotations

import os
from typing import Any, Callable

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from flows import augment, evaluate, export, finetune_teacher, general_distill, prepare_corpus, prepare_task, task_distill
from tasks.params import PARAMS_FILE, PROJECT_ROOT, load_params, set_dotted
from tasks.prefect_api import prefect_api
from tasks.tracking import PARENT_ENV, configure, finish_parent, start_parent

STAGES: list[tuple[str, Callable[..., str]]] = [
    ("prepare_corpus", prepare_corpus.prepare_corpus),
    ("prepare_task", prepare_task.prepare_task),
    ("general_distill", general_distill.general_distill),
    ("finetune_teacher", finetune_teacher.finetune_teacher),
    ("augment", augment.run),  # picks the task runner (threads, Dask, Ray) from params
    ("task_distill", task_distill.task_distill),
    ("evaluate", evaluate.evaluate),
    ("export", export.export),
]


def write_overrides(overrides: dict[str, Any]) -> None:
    """Set dotted keys in params.yaml, keeping its comments (what `dvc exp run -S` does)."""
    from dvc.utils.serialize import modify_yaml

    load_params(PARAMS_FILE, overrides)  # validates every key before anything is written
    with modify_yaml(str(PARAMS_FILE)) as params:
        for dotted, value in overrides.items():
            set_dotted(params, dotted, value)


def _dvc_repo():
    try:
        from dvc.repo import Repo

        return Repo(str(PROJECT_ROOT))
    except Exception:  # no DVC repository here: every stage runs
        return None


@flow(name="tinybert_pipeline")
def tinybert_pipeline(overrides: dict[str, Any] | None = None, force: bool = False) -> dict[str, str]:
    """Run every stale stage in order; returns each stage's outcome ("ran" or "up to date")."""
    logger = get_run_logger()
    if overrides:
        write_overrides(overrides)
        logger.info("params.yaml updated with %s", overrides)
    repo = _dvc_repo()
    if repo is None:
        logger.warning("no DVC repository at %s: running every stage, nothing recorded in dvc.lock", PROJECT_ROOT)

    parent = start_parent(configure(), tags={"prefect.flow_run_id": str(flow_run.id)})
    os.environ[PARENT_ENV] = parent
    outcome: dict[str, str] = {}
    try:
        for name, stage_flow in STAGES:
            if repo is not None and not force and not repo.status(targets=[name]):
                logger.info("%s: up to date (DVC), skipped", name)
                outcome[name] = "up to date"
                continue
            stage_flow()
            if repo is not None:
                repo.commit(name, force=True)
            outcome[name] = "ran"
    except BaseException:
        finish_parent(parent, "FAILED")
        raise
    finally:
        os.environ.pop(PARENT_ENV, None)
    finish_parent(parent)
    return outcome


if __name__ == "__main__":
    with prefect_api():
        tinybert_pipeline()
