"""The whole recipe as one Prefect flow, for deployments on GPU workers (see prefect.yaml).

DVC still decides: a stage runs only if `dvc status` says it is stale (or `force`), as a subflow, and
`dvc commit` then records it in dvc.lock, exactly as `dvc repro` would have. One MLflow parent run holds a child
run per stage.

Overrides belong to one run only. They are written into params.yaml for the run (so DVC records what ran), the
finished run is saved as a DVC experiment (`dvc exp show` lists it, `dvc exp apply <name>` brings it back), and
params.yaml is restored afterwards, so the worker's clone is left as it was and the next run inherits nothing.
Runs with overrides in one clone take turns (a lock beside params.yaml).
"""

from __future__ import annotations

import contextlib
import json
import os
from typing import Any, Callable, Iterator

from filelock import FileLock

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from flows import (
    augment, evaluate, export, finetune_teacher, general_distill, prepare_corpus, prepare_task, task_intermediate,
    task_prediction, teacher_logits,
)
from tasks.params import PARAMS_FILE, PROJECT_ROOT, STAGE_OUTPUTS, load_params, set_dotted
from tasks.tracking import PARENT_ENV, configure, finish_parent, start_parent

STAGES: list[tuple[str, Callable[..., str]]] = [
    ("prepare_corpus", prepare_corpus.prepare_corpus),
    ("prepare_task", prepare_task.prepare_task),
    ("general_distill", general_distill.general_distill),
    ("finetune_teacher", finetune_teacher.finetune_teacher),
    ("augment", augment.run),  # picks the task runner (threads, Dask, Ray) from params
    ("task_intermediate", task_intermediate.task_intermediate),
    ("teacher_logits", teacher_logits.teacher_logits),
    ("task_prediction", task_prediction.task_prediction),
    ("evaluate", evaluate.evaluate),
    ("export", export.export),
]


@contextlib.contextmanager
def overrides_for_this_run(repo, overrides: dict[str, Any] | None, name: str) -> Iterator[None]:
    """params.yaml with `overrides` inside the block, as it was after it; the run is saved as experiment `name`."""
    if not overrides:
        yield
        return
    with FileLock(f"{PARAMS_FILE}.lock", timeout=-1):
        original = PARAMS_FILE.read_bytes()
        write_overrides(overrides)
        try:
            yield
            if repo is not None:
                try:
                    repo.experiments.save(name=name, force=True)
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
        load_params(PARAMS_FILE, overrides)  # every key and value checked before anything is written or run
    repo = _dvc_repo()
    if repo is None:
        logger.warning("no DVC repository at %s: running every stage, nothing recorded in dvc.lock", PROJECT_ROOT)

    experiment = f"prefect-{flow_run.name or 'run'}"
    tags = {"prefect.flow_run_id": str(flow_run.id), "tinybert.overrides": json.dumps(overrides or {}, sort_keys=True)}
    outcome: dict[str, str] = {}
    with overrides_for_this_run(repo, overrides, experiment):
        if overrides:
            logger.info("params.yaml holds %s for this run; it is restored afterwards (DVC experiment %s)", overrides, experiment)
        parent = start_parent(configure(), tags=tags)
        os.environ[PARENT_ENV] = parent
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
        except BaseException as error:
            finish_parent(parent, "KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED")
            raise
        finally:
            os.environ.pop(PARENT_ENV, None)
        finish_parent(parent)
    for warning in evaluation_warnings():
        logger.warning(warning)
    return outcome


def evaluation_warnings() -> list[str]:
    """The evaluation's warnings (a collapsed or baseline-level model, retention withheld), for the run's last words."""
    scores = STAGE_OUTPUTS["evaluate"] / "scores.json"
    return json.loads(scores.read_text())["scores"]["warnings"] if scores.is_file() else []


if __name__ == "__main__":
    from flows.arguments import run_with_api

    run_with_api(tinybert_pipeline, None, {})
