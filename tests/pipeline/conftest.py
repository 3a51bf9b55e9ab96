"""A throwaway copy of the project (git + DVC repository) with tiny params, for end-to-end pipeline tests."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tasks.params import set_dotted
from tests.conftest import REPO_ROOT

# Small enough for minutes on 2 CPU cores, large enough that every stage does real work.
TINY_PARAMS = {
    "data.max_train_examples": 48,
    "data.max_dev_examples": 24,
    "data.max_seq_length": 48,
    "models.student": {"family": "bert", "init": "teacher", "num_layers": 3, "hidden_size": 48, "intermediate_size": 96, "num_heads": 12},
    "prepare_corpus.max_sequences": 48,
    "prepare_corpus.max_seq_length": 64,
    "general_distill.epochs": 1.0,
    "general_distill.batch_size": 16,
    "finetune_teacher.epochs": 1.0,
    "augment.n_aug": 2,
    "task_distill.stage1.epochs": 1.0,
    "task_distill.stage2.epochs": 1.0,
    "evaluate.speed_repeats": 2,
    "evaluate.speed_seq_length": 32,
    "evaluate.bootstrap_resamples": 200,
    # 48 training sentences may well give a constant student; the alias rule itself is tested on its own.
    "export.alias_collapsed": True,
}


def set_params(params_file: Path, values: dict) -> None:
    params = yaml.safe_load(params_file.read_text())
    for dotted, value in values.items():
        set_dotted(params, dotted, value, params_file)
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))


def run(command: list[str], project: Path, env: dict, timeout: int = 900) -> subprocess.CompletedProcess:
    result = subprocess.run(command, cwd=project, env=env, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout[-4000:]}\n{result.stderr[-8000:]}")
    return result


@pytest.fixture(scope="session")
def project(tmp_path_factory) -> tuple[Path, dict]:
    """The project's tracked and new files copied into a fresh git + DVC repository, and its environment."""
    return make_project(tmp_path_factory.mktemp("project"))


def make_project(project: Path) -> tuple[Path, dict]:
    """A copy of the project with tiny params in `project` (a git + DVC repository), and its environment."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    for name in listed:
        if name.startswith(("outputs/", "tests/")) or name in ("dvc.lock",):
            continue
        target = project / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / name, target)
    set_params(project / "params.yaml", TINY_PARAMS)
    env = {
        **os.environ,
        "TINYBERT_PROJECT_DIR": str(project),
        "PYTHONPATH": str(project),
        "MLFLOW_TRACKING_URI": f"sqlite:///{project / 'test-mlflow.db'}",
        "MLFLOW_DEFAULT_ARTIFACT_ROOT": (project / "test-artifacts").as_uri(),
        "PREFECT_HOME": str(project / ".prefect"),
        "HF_HUB_OFFLINE": "1",
        "PYTHONUNBUFFERED": "1",
    }
    for command in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "copy"]):
        run(command, project, env)
    if not (project / ".dvc").is_dir():
        run([sys.executable, "-m", "dvc", "init", "-q"], project, env)
    return project, env
