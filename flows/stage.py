"""What every stage flow does around its own work: read params, reset its output folder, track it in MLflow."""

from __future__ import annotations

import contextlib
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import datasets

from tasks.params import RUNS, STAGE_OUTPUTS, config_digest, load_params
from tasks.tracking import record_run, stage_run, upstream_runs

SHARED_SECTIONS = ("task", "seed", "data", "models")


@dataclass
class Stage:
    name: str
    params: dict[str, Any]
    logged: dict[str, Any]  # the params sections this stage reads
    out_dir: Path
    upstream: dict[str, Path]

    def scratch_dir(self) -> Path:
        """Training scratch for exactly this configuration and these inputs: reruns of it resume there."""
        return RUNS / self.name / config_digest(self.logged, sorted(upstream_runs(self.upstream).items()))


@contextlib.contextmanager
def stage(
    name: str,
    params_file: str | None,
    overrides: dict[str, Any] | None,
    sections: tuple[str, ...] = (),
    upstream: tuple[str, ...] = (),
) -> Iterator[Stage]:
    """Run one stage: a fresh output folder, and a child MLflow run logging the stage's params sections."""
    params = load_params(params_file, overrides)
    # `datasets` would otherwise write map() caches into upstream stages' output folders, changing their
    # DVC hashes after the fact.
    datasets.disable_caching()
    out_dir = STAGE_OUTPUTS[name]
    shutil.rmtree(out_dir, ignore_errors=True)  # DVC does the same before it runs a stage
    out_dir.mkdir(parents=True)
    logged = {key: params[key] for key in (*SHARED_SECTIONS, *sections) if key in params}
    inputs = {u: STAGE_OUTPUTS[u] for u in upstream}
    with stage_run(name, logged, upstream=inputs):
        yield Stage(name, params, logged, out_dir, inputs)
        record_run(out_dir, name)
