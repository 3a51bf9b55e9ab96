"""What every stage flow does around its own work: read and check params, build its output in a staging folder
that replaces the old output only once the stage succeeded, and track it all in an MLflow child run.
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import datasets
import yaml

from tasks.params import (
    PARAMS_FILE, PROJECT_ROOT, RUNS, SHARED_STAGES, config_digest, dvc_stage_name, for_task, load_params, only_task,
    stage_output,
)
from tasks.tracking import record_run, stage_run, upstream_runs

SHARED_SECTIONS = ("task", "seed", "data", "models")  # `task` only in a per-task stage's params
STAGING = RUNS / "staging"  # beside the training scratch: same filesystem as outputs/, so the final move is a rename


@dataclass
class Stage:
    name: str
    task: str | None  # None for the stages every task shares
    params: dict[str, Any]
    logged: dict[str, Any]  # the params sections this stage reads
    out_dir: Path  # where the stage writes: a staging folder, moved to `final_dir` when the stage succeeds
    final_dir: Path
    upstream: dict[str, Path]
    published: list[tuple[str, Path]] = field(default_factory=list)

    def scratch_dir(self) -> Path:
        """Training scratch for exactly this code, configuration and these inputs: reruns of it resume there.

        The code is part of the key: a changed loss or schedule must train afresh, not resume a finished run of
        the old code. The stage clears its scratch once it succeeded, so `dvc repro -f` trains from the start.
        """
        code = code_digest(self.name)
        return scratch_root(self.name, self.task) / config_digest(self.logged, sorted(upstream_runs(self.upstream).items()), code)

    def publish(self, file: str, destination: Path) -> None:
        """Move `file` of the output to `destination` once the stage succeeded (metrics other stages read)."""
        self.published.append((file, destination))


def scratch_root(name: str, task: str | None) -> Path:
    return RUNS / name if task is None else RUNS / task / name


def stage_code_files(name: str, dvc_file: Path | None = None) -> list[Path]:
    """The code (not data) files a stage's DVC entry depends on: its `deps` outside outputs/, folders expanded."""
    dvc_file = dvc_file or PROJECT_ROOT / "dvc.yaml"
    if not dvc_file.is_file():
        return []
    entry = (yaml.safe_load(dvc_file.read_text()) or {}).get("stages", {}).get(name, {})
    entry = entry.get("do", entry)  # a per-task stage: its `foreach` template
    files: list[Path] = []
    for dep in entry.get("deps", []):
        path = dvc_file.parent / dep
        if dep.startswith("outputs/") or "${" in dep or not path.exists():
            continue
        files += sorted(p for p in path.rglob("*.py")) if path.is_dir() else [path]
    return files


def code_digest(name: str, dvc_file: Path | None = None) -> str:
    """A hash of the contents of the stage's code dependencies (what DVC hashes for it too)."""
    digest = hashlib.sha256()
    root = (dvc_file or PROJECT_ROOT / "dvc.yaml").parent
    for path in stage_code_files(name, dvc_file):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


@contextlib.contextmanager
def stage(
    name: str,
    params_file: str | None,
    overrides: dict[str, Any] | None,
    sections: tuple[str, ...] = (),
    upstream: tuple[str, ...] = (),
    task: str | None = None,
) -> Iterator[Stage]:
    """Run one stage (of `task`, for a per-task stage: by default the only listed one): checked params, a staging
    output folder, and a child MLflow run logging the stage's sections.

    The previous output stays in place until the stage has finished; then the staging folder replaces it in one
    rename. A failed stage leaves the old output as it was (under `dvc repro`, DVC itself clears outputs before a
    stage starts; `dvc checkout <stage>` restores the last recorded ones).
    """
    params = load_params(params_file, overrides)  # raises ParamsError before anything is written
    task = None if name in SHARED_STAGES else task or only_task(params, params_file or PARAMS_FILE)
    if task is not None:
        params = for_task(params, task, params_file or PARAMS_FILE)
    # `datasets` would otherwise write map() caches into upstream stages' output folders, changing their
    # DVC hashes after the fact.
    datasets.disable_caching()
    final_dir = stage_output(name, task)
    existed = final_dir.exists()
    staging = STAGING / dvc_stage_name(name, task)
    shutil.rmtree(staging, ignore_errors=True)  # a killed earlier attempt's leftovers
    staging.mkdir(parents=True)
    logged = {key: params[key] for key in (*SHARED_SECTIONS, *sections) if key in params}
    inputs = {u: stage_output(u, task) for u in upstream}
    current = Stage(name, task, params, logged, staging, final_dir, inputs)
    label = dvc_stage_name(name, task)
    try:
        with stage_run(name, logged, upstream=inputs, task=task):
            yield current
            record_run(staging, label)
    except BaseException as error:
        shutil.rmtree(staging, ignore_errors=True)
        # A note, not a wrapper: callers and retry policies still see the original exception type.
        kept = f"its previous output {final_dir} is unchanged" if existed else f"{final_dir} did not exist when it started"
        error.add_note(f"stage {label} failed and wrote nothing: {kept}")
        raise
    _replace(staging, final_dir)
    for file, destination in current.published:
        _publish(final_dir / file, destination)
    shutil.rmtree(scratch_root(name, task), ignore_errors=True)  # training scratch of a finished stage: see Stage.scratch_dir


def _publish(source: Path, destination: Path) -> None:
    """Move a file of the output into place in one rename (outputs/ is one filesystem), so a reader sees the old
    file or the new one, never half of one; it is DVC's output there, not in the stage's folder."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    source.replace(destination)


def _replace(staging: Path, final_dir: Path) -> None:
    """Move the finished output into place; the old one is removed only after the new one is there."""
    final_dir.parent.mkdir(parents=True, exist_ok=True)
    old = staging.with_name(staging.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if final_dir.exists():
        final_dir.rename(old)
    staging.rename(final_dir)
    shutil.rmtree(old, ignore_errors=True)
