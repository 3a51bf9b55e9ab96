"""What every stage flow does around its own work: read and check params, build its output in a staging folder
that replaces the old output only once the stage succeeded, and track it all in an MLflow child run.
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import datasets
import yaml

from tasks.params import PROJECT_ROOT, RUNS, STAGE_OUTPUTS, config_digest, load_params
from tasks.tracking import record_run, stage_run, upstream_runs

SHARED_SECTIONS = ("task", "seed", "data", "models")
STAGING = RUNS / "staging"  # beside the training scratch: same filesystem as outputs/, so the final move is a rename


@dataclass
class Stage:
    name: str
    params: dict[str, Any]
    logged: dict[str, Any]  # the params sections this stage reads
    out_dir: Path  # where the stage writes: a staging folder, moved to `final_dir` when the stage succeeds
    final_dir: Path
    upstream: dict[str, Path]

    def scratch_dir(self) -> Path:
        """Training scratch for exactly this code, configuration and these inputs: reruns of it resume there.

        The code is part of the key: a changed loss or schedule must train afresh, not resume a finished run of
        the old code. The stage clears its scratch once it succeeded, so `dvc repro -f` trains from the start.
        """
        code = code_digest(self.name)
        return RUNS / self.name / config_digest(self.logged, sorted(upstream_runs(self.upstream).items()), code)


def stage_code_files(name: str, dvc_file: Path | None = None) -> list[Path]:
    """The code (not data) files a stage's DVC entry depends on: its `deps` outside outputs/, folders expanded."""
    dvc_file = dvc_file or PROJECT_ROOT / "dvc.yaml"
    if not dvc_file.is_file():
        return []
    entry = (yaml.safe_load(dvc_file.read_text()) or {}).get("stages", {}).get(name, {})
    files: list[Path] = []
    for dep in entry.get("deps", []):
        path = dvc_file.parent / dep
        if dep.startswith("outputs/") or not path.exists():
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
) -> Iterator[Stage]:
    """Run one stage: checked params, a staging output folder, and a child MLflow run logging the stage's sections.

    The previous output stays in place until the stage has finished; then the staging folder replaces it in one
    rename. A failed stage leaves the old output as it was (under `dvc repro`, DVC itself clears outputs before a
    stage starts; `dvc checkout <stage>` restores the last recorded ones).
    """
    params = load_params(params_file, overrides)  # raises ParamsError before anything is written
    # `datasets` would otherwise write map() caches into upstream stages' output folders, changing their
    # DVC hashes after the fact.
    datasets.disable_caching()
    final_dir = STAGE_OUTPUTS[name]
    existed = final_dir.exists()
    staging = STAGING / name
    shutil.rmtree(staging, ignore_errors=True)  # a killed earlier attempt's leftovers
    staging.mkdir(parents=True)
    logged = {key: params[key] for key in (*SHARED_SECTIONS, *sections) if key in params}
    inputs = {u: STAGE_OUTPUTS[u] for u in upstream}
    current = Stage(name, params, logged, staging, final_dir, inputs)
    try:
        with stage_run(name, logged, upstream=inputs):
            yield current
            record_run(staging, name)
    except BaseException as error:
        shutil.rmtree(staging, ignore_errors=True)
        # A note, not a wrapper: callers and retry policies still see the original exception type.
        kept = f"its previous output {final_dir} is unchanged" if existed else f"{final_dir} did not exist when it started"
        error.add_note(f"stage {name} failed and wrote nothing: {kept}")
        raise
    _replace(staging, final_dir)
    shutil.rmtree(RUNS / name, ignore_errors=True)  # training scratch of a finished stage: see Stage.scratch_dir


def _replace(staging: Path, final_dir: Path) -> None:
    """Move the finished output into place; the old one is removed only after the new one is there."""
    final_dir.parent.mkdir(parents=True, exist_ok=True)
    old = staging.with_name(staging.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if final_dir.exists():
        final_dir.rename(old)
    staging.rename(final_dir)
    shutil.rmtree(old, ignore_errors=True)
