"""The command line: `--help` helps and runs nothing, `--set` values arrive typed, bad usage exits 2."""

import os
import subprocess
import sys
import tomllib

import pytest

from flows import arguments, cli
from tests.conftest import REPO_ROOT

STAGE_MODULES = [
    "prepare_corpus", "prepare_task", "general_distill", "finetune_teacher", "augment", "task_intermediate", "teacher_logits",
    "task_prediction", "evaluate", "export", "glue_report",
]

# One interpreter for every stage module: each runs as `python -m flows.<stage> --help` would run it.
HELP_OF_EVERY_STAGE = """
import runpy, sys
for name in sys.argv[1:]:
    sys.argv = [name, "--help"]
    try:
        runpy.run_module(f"flows.{name}", run_name="__main__")
    except SystemExit as done:
        assert done.code == 0, (name, done.code)
    else:
        raise AssertionError(f"flows.{name} --help returned instead of exiting")
"""


@pytest.fixture
def project_with_outputs(tmp_path):
    """A project folder whose every stage output holds a file that a stage run would wipe."""
    (tmp_path / "params.yaml").write_text((REPO_ROOT / "params.yaml").read_text())
    markers = []
    for name in ("corpus", "task_data", "general_student", "teacher", "augmented", "student_intermediate", "teacher_logits",
                 "student", "eval", "export"):
        marker = tmp_path / "outputs" / name / "keep.txt"
        marker.parent.mkdir(parents=True)
        marker.write_text(name)
        markers.append(marker)
    # COLUMNS: argparse wraps usage lines at the terminal width; one line per usage keeps the check simple.
    env = {**os.environ, "TINYBERT_PROJECT_DIR": str(tmp_path), "PYTHONPATH": str(REPO_ROOT), "HF_HUB_OFFLINE": "1",
           "COLUMNS": "200"}
    return env, markers


def test_help_of_every_stage_module_exits_0_and_leaves_its_output(project_with_outputs):
    env, markers = project_with_outputs
    result = subprocess.run(
        [sys.executable, "-c", HELP_OF_EVERY_STAGE, *STAGE_MODULES], env=env, cwd=REPO_ROOT,
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for name in STAGE_MODULES:
        assert f"usage: python -m flows.{name} [-h] [--params FILE] [--set KEY=VALUE]" in result.stdout
    assert all(marker.is_file() for marker in markers)
    assert "Running stage" not in result.stdout + result.stderr and "flow run" not in result.stderr.lower()


def test_tinybert_help_lists_the_commands_and_each_stage(project_with_outputs, capsys):
    env, markers = project_with_outputs
    result = subprocess.run([sys.executable, "-m", "flows.cli", "--help"], env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "stage" in result.stdout and "pipeline" in result.stdout, result.stderr
    for argv in (["stage", "--help"], ["pipeline", "--help"]):
        with pytest.raises(SystemExit) as done:
            cli.main(argv)
        assert done.value.code == 0
    stage_help = capsys.readouterr().out
    assert "{prepare_corpus,prepare_task," in stage_help and "--force" in stage_help
    assert all(marker.is_file() for marker in markers)


def test_the_console_script_is_the_cli():
    scripts = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"tinybert": "flows.cli:main"}


@pytest.mark.parametrize(
    ("argv", "message"),
    [(["stage", "no_such_stage"], "invalid choice: 'no_such_stage'"), (["pipeline", "--set", "task"], "expected KEY=VALUE")],
)
def test_bad_usage_exits_2_with_the_reason(argv, message, capsys):
    with pytest.raises(SystemExit) as done:
        cli.main(argv)
    assert done.value.code == 2 and message in capsys.readouterr().err


def test_set_values_arrive_typed_at_the_stage(monkeypatch):
    received = {}
    # Parsing only: no params check and no Prefect server for a flow that is not one.
    monkeypatch.setattr(arguments, "run_with_api", lambda call, params_file, overrides: call())

    def stage_flow(params_file, overrides):
        received.update(params_file=params_file, overrides=overrides)
        return "done"

    argv = ["--params", "other.yaml", "--set", "task_distill.stage2.learning_rate=3e-4", "--set", "tasks=[sst2]",
            "--set", "models.finetuned_teacher=null", "--set", "prepare_corpus.sources=[a.txt, b.txt]", "--set", "augment.n_aug=4"]
    assert arguments.stage_main("task_distill", stage_flow, argv) == "done"
    assert received == {
        "params_file": "other.yaml",
        "overrides": {"task_distill.stage2.learning_rate": 3e-4, "tasks": ["sst2"], "models.finetuned_teacher": None,
                      "prepare_corpus.sources": ["a.txt", "b.txt"], "augment.n_aug": 4},
    }
