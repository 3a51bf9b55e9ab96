"""Faults the pipeline must survive: changed code, failing and killed stages, racing first use of the MLflow
store, a busy machine, DVC's temporary experiment workspaces, deterministic errors that must not be retried."""

import json
import os
import signal
import subprocess
import sys
import time

import httpx
import mlflow
import pytest
from mlflow import MlflowClient
from prefect import flow, task
from prefect.testing.utilities import prefect_test_harness

from flows.stage import code_digest, stage_code_files
from tasks.retries import IO_TASK, is_transient
from tests.conftest import REPO_ROOT
from tests.pipeline.conftest import make_project, run

DVC = os.path.join(os.path.dirname(sys.executable), "dvc")


@pytest.fixture
def fresh_project(tmp_path):
    return make_project(tmp_path / "project")


def runs_of(tracking_uri: str) -> list:
    mlflow.set_tracking_uri(tracking_uri)
    client = MlflowClient()
    experiment = client.get_experiment_by_name("tinybert-pipeline")
    return client.search_runs([experiment.experiment_id]) if experiment else []


# -- code changes retrain --------------------------------------------------------------------------------------


def test_the_scratch_key_follows_the_code_a_stage_depends_on(tmp_path):
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "loss.py").write_text("LR = 1e-3\n")
    (tmp_path / "flow.py").write_text("import lib.loss\n")
    (tmp_path / "dvc.yaml").write_text("stages:\n  train:\n    cmd: x\n    deps: [flow.py, lib, outputs/corpus]\n")
    files = stage_code_files("train", tmp_path / "dvc.yaml")
    assert [f.name for f in files] == ["flow.py", "loss.py"]  # data deps (outputs/) are keyed by run ids instead
    before = code_digest("train", tmp_path / "dvc.yaml")
    (tmp_path / "lib" / "loss.py").write_text("LR = 5e-4\n")
    assert code_digest("train", tmp_path / "dvc.yaml") != before


# -- retries -----------------------------------------------------------------------------------------------------


def test_deterministic_errors_are_not_retried_and_transient_ones_are():
    attempts = {"value": 0, "connection": 0}

    @task(**{**IO_TASK, "retry_delay_seconds": 0})
    def failing(kind: str) -> None:
        attempts[kind] += 1
        raise ValueError("bad row") if kind == "value" else ConnectionResetError(104, "reset by peer")

    @flow
    def both() -> None:
        for kind in attempts:
            failing.submit(kind).wait()

    with prefect_test_harness(server_startup_timeout=600):
        both(return_state=True)
    assert attempts == {"value": 1, "connection": 3}
    assert not is_transient(OSError(28, "No space left on device")) and not is_transient(FileNotFoundError("x"))


# -- a failing stage ---------------------------------------------------------------------------------------------

FAILING_STAGE = """
from flows.stage import stage
with stage("prepare_task", None, None) as s:
    (s.out_dir / "half-written").write_text("x")
    raise RuntimeError("disk trouble halfway")
"""


def test_a_failed_stage_keeps_the_old_output_and_leaves_no_running_run(fresh_project):
    project, env = fresh_project
    old = project / "outputs" / "polarity" / "task_data"
    old.mkdir(parents=True)
    (old / "task.json").write_text("{}")
    result = subprocess.run([sys.executable, "-c", FAILING_STAGE], cwd=project, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode != 0 and "disk trouble halfway" in result.stderr
    assert f"stage prepare_task@polarity failed and wrote nothing: its previous output {old} is unchanged" in result.stderr
    assert sorted(p.name for p in old.iterdir()) == ["task.json"]
    statuses = {r.info.run_name: r.info.status for r in runs_of(env["MLFLOW_TRACKING_URI"])}
    assert statuses == {"prepare_task@polarity": "FAILED", "tinybert-pipeline": "FAILED"}


KILLED_STAGE = """
import time
from flows.stage import stage
with stage("prepare_task", None, None) as s:
    print("STARTED", flush=True)
    time.sleep(600)
"""


def test_a_killed_stage_is_marked_killed_and_linked_by_its_rerun(fresh_project):
    project, env = fresh_project
    process = subprocess.Popen([sys.executable, "-c", KILLED_STAGE], cwd=project, env=env, stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "STARTED"
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert {r.info.status for r in runs_of(env["MLFLOW_TRACKING_URI"])} == {"RUNNING"}  # nobody closed them

    run([sys.executable, "-m", "flows.prepare_task"], project, env)
    runs = {(r.info.run_name, r.info.status): r for r in runs_of(env["MLFLOW_TRACKING_URI"])}
    assert set(runs) == {("prepare_task@polarity", "KILLED"), ("prepare_task@polarity", "FINISHED"), ("tinybert-pipeline", "FINISHED")}
    killed = runs["prepare_task@polarity", "KILLED"]
    assert runs["prepare_task@polarity", "FINISHED"].data.tags["tinybert.previous_attempt"] == killed.info.run_id


# -- MLflow store --------------------------------------------------------------------------------------------------

FIRST_USE = """
import sys
from tasks.tracking import stage_run
with stage_run(sys.argv[1], {"seed": 1}):
    pass
"""


def test_three_stages_starting_at_once_on_a_new_sqlite_store_all_succeed(fresh_project):
    project, env = fresh_project
    env = {**env, "MLFLOW_TRACKING_URI": f"sqlite:///{project / 'new-store.db'}"}
    processes = [
        subprocess.Popen([sys.executable, "-c", FIRST_USE, name], cwd=project, env=env, stderr=subprocess.PIPE, text=True)
        for name in ("prepare_corpus", "prepare_task", "general_distill")
    ]
    errors = [p.communicate(timeout=600)[1] for p in processes]
    assert [p.returncode for p in processes] == [0, 0, 0], errors
    runs = runs_of(env["MLFLOW_TRACKING_URI"])
    stages = sorted(r.info.run_name for r in runs if r.info.run_name != "tinybert-pipeline")
    assert stages == ["general_distill", "prepare_corpus", "prepare_task"]
    assert len({r.data.tags["mlflow.parentRunId"] for r in runs if "mlflow.parentRunId" in r.data.tags}) == 1


def test_a_temporary_dvc_experiment_keeps_its_runs_in_the_projects_store(fresh_project):
    project, env = fresh_project
    # As a user runs it: the project (and its default store) is wherever the code runs, here DVC's temporary copy.
    unset = ("MLFLOW_TRACKING_URI", "MLFLOW_DEFAULT_ARTIFACT_ROOT", "TINYBERT_PROJECT_DIR", "PYTHONPATH")
    env = {k: v for k, v in env.items() if k not in unset}
    run([DVC, "exp", "run", "--temp", "prepare_task@polarity"], project, env)
    runs = runs_of(f"sqlite:///{project / 'mlflow.db'}")
    assert [(r.info.run_name, r.info.status) for r in runs if r.info.run_name == "prepare_task@polarity"] == [("prepare_task@polarity", "FINISHED")]
    assert not list((project / ".dvc" / "tmp").rglob("mlflow.db"))


# -- Prefect on a busy machine ---------------------------------------------------------------------------------


def test_the_first_stage_completes_with_four_cpu_bound_processes_beside_it(fresh_project):
    project, env = fresh_project
    env = {k: v for k, v in env.items() if not k.startswith("PREFECT_API")}  # the stage starts its own server
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(4)]
    try:
        started = time.monotonic()
        result = run([sys.executable, "-m", "flows.prepare_task"], project, env)
        assert (project / "outputs" / "polarity" / "task_data" / "task.json").is_file(), result.stdout
    finally:
        for burner in burners:
            burner.kill()
    print(f"prepare_task beside 4 busy processes: {time.monotonic() - started:.0f} s")


SERVER_HOLDER = """
import time
from tasks.prefect_api import prefect_api
with prefect_api() as url:
    print(url, flush=True)
    time.sleep(600)
"""


FLOW_THEN_EXIT = """
from prefect import flow, get_run_logger
from tasks.prefect_api import prefect_api

@flow
def said_last():
    get_run_logger().info("the flow's last line")

with prefect_api():
    said_last()
"""


def test_a_flow_s_last_log_lines_reach_the_server_before_it_stops(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env.update(PREFECT_HOME=str(tmp_path), PYTHONPATH=str(REPO_ROOT))
    result = subprocess.run([sys.executable, "-c", FLOW_THEN_EXIT], env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "the flow's last line" in result.stdout + result.stderr
    assert "Error logging to API" not in result.stdout + result.stderr


def test_a_killed_flow_process_leaves_no_prefect_server_behind(fresh_project):
    project, env = fresh_project
    env = {k: v for k, v in env.items() if not k.startswith("PREFECT_API")}
    holder = subprocess.Popen([sys.executable, "-c", SERVER_HOLDER], cwd=project, env=env, stdout=subprocess.PIPE, text=True)
    url = holder.stdout.readline().strip()
    assert httpx.get(f"{url}/health", timeout=10).status_code == 200
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{url}/health", timeout=2)
        except httpx.HTTPError:
            return
        time.sleep(0.5)
    pytest.fail(f"the Prefect server at {url} outlived its killed parent")


def test_stage_outputs_are_replaced_only_when_complete_and_scratch_is_cleared(fresh_project):
    project, env = fresh_project
    run([sys.executable, "-m", "flows.prepare_task"], project, env)
    info = json.loads((project / "outputs" / "polarity" / "task_data" / "task.json").read_text())
    assert info["task"] == "polarity"
    assert not (project / "runs" / "staging" / "prepare_task@polarity").exists()
    assert not (project / "runs" / "staging" / "prepare_task@polarity.old").exists()
