"""Two Prefect workers in two clones share one run: a DVC directory remote, one `mlflow server`, one Prefect server.

    python benchmarks/two_workers.py [--keep]

A driver clone runs `tinybert_pipeline(task_deployment=...)`: the shared stages (corpus, General TinyBERT) there,
pushed to the DVC remote; then one `tinybert_task` flow run per task (polarity and SST-2, tiny sizes) on the work
pool `gpu`, where two process workers (`--limit 1`, each in its own git clone) take one each. Each worker finds
the shared stages stale in its clone, finds their exact inputs in the remote's run cache and checks the General
TinyBERT out instead of distilling it again; every run lands under one parent in the tracking server. The script
checks that and prints what it saw; it exits 1 if a check fails. Servers bind to 127.0.0.1 and stop at the end.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.pipeline.conftest import make_project, run, set_params  # noqa: E402
from tests.pipeline.test_pipeline import TWO_TASKS  # noqa: E402

BIN = Path(sys.executable).parent
DRIVER = """
import json
from flows.tinybert_pipeline import tinybert_pipeline
print("OUTCOME", json.dumps(tinybert_pipeline(task_deployment="tinybert_task/tinybert-task")))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, what: str, timeout: float = 600) -> None:
    """Poll until `url` answers (a busy machine takes minutes to start a server)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=5)
            return
        except OSError:
            time.sleep(2)
    raise TimeoutError(f"{what} did not answer at {url} within {timeout:.0f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="leave the temporary folder (clones, stores, logs)")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="two-workers-"))
    started = time.monotonic()
    driver, env = make_project(root / "driver")
    set_params(driver / "params.yaml", TWO_TASKS)
    run(["git", "add", "-A"], driver, env)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "two tasks"], driver, env)
    workers = [root / "worker-a", root / "worker-b"]
    for clone in workers:
        run(["git", "clone", "-q", str(driver), str(clone)], root, env)
    mlflow_port, prefect_port = free_port(), free_port()
    env = {key: value for key, value in env.items() if key not in ("MLFLOW_DEFAULT_ARTIFACT_ROOT", "TINYBERT_PROJECT_DIR", "PYTHONPATH")}
    env.update(
        MLFLOW_TRACKING_URI=f"http://127.0.0.1:{mlflow_port}", PREFECT_API_URL=f"http://127.0.0.1:{prefect_port}/api",
        PREFECT_HOME=str(root / "prefect-home"),
    )
    for clone in (driver, *workers):
        run([str(BIN / "dvc"), "remote", "add", "-d", "--local", "shared", str(root / "dvc-remote")], clone, env)

    logs, processes = root / "logs", []
    logs.mkdir()

    def start(name: str, command: list[str], cwd: Path, extra: dict | None = None) -> subprocess.Popen:
        out = open(logs / f"{name}.log", "w")
        process = subprocess.Popen(command, cwd=cwd, env={**env, **(extra or {})}, stdout=out, stderr=subprocess.STDOUT)
        processes.append(process)
        return process

    ok = True
    try:
        start("mlflow-server", [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(mlflow_port),
                                "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
                                "--artifacts-destination", str(root / "mlartifacts"), "--workers", "1"], root)
        start("prefect-server", [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(prefect_port)], root)
        wait_for(f"http://127.0.0.1:{mlflow_port}/health", "mlflow server")
        wait_for(f"http://127.0.0.1:{prefect_port}/api/health", "prefect server")
        run([str(BIN / "prefect"), "work-pool", "create", "gpu", "--type", "process"], driver, env)
        # TINYBERT_PROJECT_DIR stays unset here, so the pull step's {{ $TINYBERT_PROJECT_DIR }} is each worker's.
        run([str(BIN / "prefect"), "--no-prompt", "deploy", "--name", "tinybert-task"], driver, env)
        for clone in workers:
            start(clone.name, [str(BIN / "prefect"), "worker", "start", "--pool", "gpu", "--limit", "1", "--name", clone.name],
                  clone, {"TINYBERT_PROJECT_DIR": str(clone), "PYTHONPATH": str(clone)})
        result = run([sys.executable, "-c", DRIVER], driver, {**env, "TINYBERT_PROJECT_DIR": str(driver), "PYTHONPATH": str(driver)}, timeout=3600)
        outcome = json.loads(result.stdout.split("OUTCOME ", 1)[1].splitlines()[0])
        ok &= report(root, driver, workers, outcome, env)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
    print(f"wall time {time.monotonic() - started:.0f} s; logs in {logs}" + ("" if args.keep else " (deleted)"))
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    return 0 if ok else 1


def report(root: Path, driver: Path, workers: list[Path], outcome: dict, env: dict) -> bool:
    """Check and print: the General TinyBERT distilled once (by the driver), pulled by both workers; each worker ran
    one task; all runs under one parent in the tracking server; the driver's GLUE table has both tasks."""
    import mlflow
    from mlflow import MlflowClient

    checks = []
    checks.append(("driver distilled the General TinyBERT", outcome.get("general_distill") == "ran"))
    pulled = {w.name: "checked out, not recomputed" in (root / "logs" / f"{w.name}.log").read_text() for w in workers}
    checks.append((f"each worker checked it out of the DVC remote {pulled}", all(pulled.values())))
    for clone in workers:
        lock = (clone / "dvc.lock").read_text() if (clone / "dvc.lock").is_file() else ""
        checks.append((f"{clone.name}: dvc.lock records general_distill", "general_distill:" in lock))
    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    client = MlflowClient()
    experiment = client.get_experiment_by_name("tinybert-pipeline")
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    distilled = [r for r in runs if r.data.tags.get("tinybert.stage") == "general_distill"]
    checks.append((f"one general_distill run in the tracking server (found {len(distilled)})", len(distilled) == 1))
    evaluations = {r.data.tags["tinybert.task"]: r for r in runs if r.data.tags.get("tinybert.stage") == "evaluate"}
    clones = {task: Path(r.data.tags["tinybert.clone"]).name for task, r in evaluations.items()}
    checks.append((f"the two tasks ran in the two worker clones {clones}", sorted(clones.values()) == [w.name for w in workers]))
    (parent,) = [r for r in runs if r.info.run_name == "tinybert-pipeline"]
    task_runs = [r for r in runs if "tinybert.task_run" in r.data.tags]
    checks.append(("both task runs under the one pipeline run",
                   len(task_runs) == 2 and all(r.data.tags["mlflow.parentRunId"] == parent.info.run_id for r in task_runs)))
    table = json.loads((driver / "outputs" / "glue_table.json").read_text())
    checks.append(("the driver's GLUE table has both tasks", [c["label"] for c in table["columns"]] == ["polarity", "SST-2"]))
    print((driver / "outputs" / "glue_report" / "glue_table.md").read_text())
    for what, passed in checks:
        print(f"{'PASS' if passed else 'FAIL'}  {what}")
    return all(passed for _, passed in checks)


if __name__ == "__main__":
    sys.exit(main())
