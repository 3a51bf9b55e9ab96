"""What DVC decides and records for the pipeline flows: whether a stage is stale, its outputs restored from a
shared DVC remote instead of recomputed, and the record of what ran (dvc.lock, the cache, the remote).

Several machines share work through a DVC remote (`dvc remote add -d`): after each stage its outputs and DVC's
run cache (stage inputs -> outputs) are pushed; a stale stage on another machine first looks its inputs up in
the remote's run cache and checks the outputs out from there. That is how the General TinyBERT is distilled
once and every worker's clone gets it.

One clone's DVC repository is not safe to use from several threads: every call here holds one lock.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

log = logging.getLogger(__name__)


class DvcRecord:
    def __init__(self, root: Path):
        self._lock = threading.Lock()
        try:
            from dvc.repo import Repo

            self.repo = Repo(str(root))
        except Exception:  # no DVC repository here: every stage runs, nothing is recorded
            self.repo = None
        self.remote = self.repo.config["core"].get("remote") if self.repo is not None else None
        self._run_cache_fetched = False

    def stale(self, target: str) -> bool:
        if self.repo is None:
            return True
        with self._lock:
            return bool(self.repo.status(targets=[target]))

    def restore(self, target: str) -> bool:
        """Check a stale stage's outputs out of the remote when its run cache holds these exact inputs."""
        if self.repo is None or not self.remote:
            return False
        from dvc.repo import lock_repo
        from dvc.stage.cache import RunCacheNotFoundError

        with self._lock:
            with lock_repo(self.repo):  # what `dvc repro` holds around the same calls
                if not self._run_cache_fetched:  # the remote's run cache: which inputs gave which outputs
                    self.repo.stage_cache.pull(None)
                    self._run_cache_fetched = True
                (stage,) = self.repo.stage.collect(target)
                try:
                    self.repo.stage_cache.restore(stage, pull=True)
                except RunCacheNotFoundError:
                    return False
            self.repo.commit(target, force=True)
            return True

    def record(self, target: str) -> None:
        """dvc commit (dvc.lock, cache, run cache), then dvc push when the clone has a default remote."""
        if self.repo is None:
            return
        with self._lock:
            self.repo.commit(target, force=True)
            if self.remote:
                self.repo.push(targets=[target], run_cache=True)
                self._run_cache_fetched = False
