"""End to end with two tasks (tiny sizes): the embedded polarity task and SST-2 from ../shared/data/glue, through
the Prefect pipeline flow, then DVC's view of it.

1. `tinybert_pipeline` under prefect_test_harness runs the shared stages once, both tasks' chains side by side and
   the GLUE report, and records them all in dvc.lock;
2. `dvc repro` then has nothing to do;
3. a changed stage-2 setting of one task reruns that task's task_prediction, evaluate and export (and the report)
   only: not stage 1, not the teacher logits, nothing of the other task;
4. forcing stages whose outputs come out the same leaves the later stages up to date.
MLflow writes to a temporary SQLite store inside the project copy.
"""

import json
import re
import shutil
import sys
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from tests.conftest import SHARED_DATA
from tests.pipeline.conftest import run, set_params

TASKS = ["polarity", "sst2"]
PER_TASK = ["prepare_task", "finetune_teacher", "augment", "task_intermediate", "teacher_logits", "task_prediction", "evaluate", "export"]
STAGES = ["prepare_corpus", "general_distill", *(f"{stage}@{task}" for task in TASKS for stage in PER_TASK), "glue_report"]
# SST-2 as small as the tiny polarity run: its settings left to the (tiny) sections'.
TWO_TASKS = {
    "tasks": TASKS,
    "data.glue_dir": str(SHARED_DATA / "glue"),
    "task_settings.sst2": {key: None for key in (
        "max_train_examples", "max_dev_examples", "max_seq_length", "finetuned_teacher", "label_mapping", "teacher_epochs",
        "n_aug", "stage1_epochs", "stage2_epochs", "batch_size")},
}
DVC = str(Path(sys.executable).with_name("dvc"))
DRIVER = """
import json, sys
from prefect.testing.utilities import prefect_test_harness
from flows.tinybert_pipeline import tinybert_pipeline
with prefect_test_harness(server_startup_timeout=600):  # a busy machine takes longer than 30 s
    print("OUTCOME", json.dumps(tinybert_pipeline(overrides=json.loads(sys.argv[1]) if len(sys.argv) > 1 else None)))
"""


@pytest.fixture(scope="module")
def pipeline_run(project):
    project_dir, env = project
    set_params(project_dir / "params.yaml", TWO_TASKS)
    result = run([sys.executable, "-c", DRIVER], project_dir, env)
    outcome = json.loads(re.search(r"OUTCOME (.*)", result.stdout).group(1))
    return project_dir, env, outcome


def test_pipeline_flow_runs_every_stage_and_leaves_all_outputs(pipeline_run):
    project, _, outcome = pipeline_run
    assert outcome == {stage: "ran" for stage in STAGES}
    table = json.loads((project / "outputs" / "glue_table.json").read_text())
    assert [c["label"] for c in table["columns"]] == ["polarity", "SST-2"]
    assert all(table["rows"]["teacher"][label]["value"] is not None for label in ("polarity", "SST-2"))
    assert "| student |" in (project / "outputs" / "glue_report" / "glue_table.md").read_text()
    assert (project / "outputs" / "sst2" / "export" / "hf" / "model.safetensors").is_file()
    outputs = project / "outputs" / "polarity"
    scores = json.loads((project / "outputs" / "metrics" / "polarity" / "scores.json").read_text())
    timings = json.loads((project / "outputs" / "metrics" / "polarity" / "timings.json").read_text())
    assert scores["task"] == "polarity" and "speed" not in scores
    dev = scores["scores"]["splits"]["dev"]
    for role in ("baseline", "teacher", "student"):
        low, high = dev[role]["intervals"]["accuracy"]["low"], dev[role]["intervals"]["accuracy"]["high"]
        assert 0.0 <= low <= dev[role]["metrics"]["accuracy"] <= high <= 1.0
    assert scores["size"]["compression"] > 1.0 and timings["speed"]["batch1"]["speedup"] > 0
    card = (outputs / "export" / "hf" / "README.md").read_text()
    assert str(project) not in card and "speed on" not in card
    assert (outputs / "eval" / "plots" / "teacher_vs_student.png").stat().st_size > 0
    assert (outputs / "augmented" / "train").is_dir()
    export = outputs / "export"
    assert (export / "hf" / "model.safetensors").is_file() and (export / "hf" / "README.md").is_file()
    assert (export / "onnx" / "model.onnx").is_file() and (export / "onnx" / "model.int8.onnx").is_file()
    assert (outputs / "student_intermediate" / "train_log.csv").is_file() and (outputs / "student" / "train_log.csv").is_file()
    assert (outputs / "teacher_logits" / "logits.safetensors").is_file()
    # Augmentation takes the packaged GloVe vectors by default: no word2vec was trained on the corpus.
    assert not (outputs / "augmented" / "word_vectors.txt").exists()
    # A finished stage clears its training scratch: a forced rerun trains afresh instead of resuming the old run.
    assert not [p for p in (project / "runs").rglob("*") if p.is_file()]


def test_mlflow_holds_a_parent_run_with_a_child_per_stage_and_the_registered_student(pipeline_run):
    project, env, _ = pipeline_run
    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    client = MlflowClient()
    experiment = client.get_experiment_by_name("tinybert-pipeline")
    runs = client.search_runs([experiment.experiment_id])
    children = {r.info.run_name: r for r in runs if "tinybert.stage" in r.data.tags}
    assert sorted(children) == sorted(STAGES)
    # The shared stages and the report under the pipeline's run; each task's stages under that task's run, under it.
    (pipeline,) = {children[name].data.tags["mlflow.parentRunId"] for name in ("prepare_corpus", "general_distill", "glue_report")}
    for task in TASKS:
        (task_run,) = {children[f"{stage}@{task}"].data.tags["mlflow.parentRunId"] for stage in PER_TASK}
        task_run = client.get_run(task_run)
        assert task_run.data.tags["mlflow.parentRunId"] == pipeline and task_run.info.status == "FINISHED"
        assert task_run.data.metrics["dev/teacher_score"] >= 0  # the task's headline numbers
    parent = client.get_run(pipeline)
    assert parent.info.status == "FINISHED" and "glue/teacher/SST-2" in parent.data.metrics

    distill = children["task_intermediate@polarity"]
    assert distill.info.status == "FINISHED"
    assert distill.data.tags["git.commit"] != "unknown" and distill.data.tags["prefect.flow_run_id"]
    assert distill.data.tags["lineage.general_distill"] == children["general_distill"].info.run_id
    assert any(tag.startswith("dvc.dep.outputs/polarity/augmented") for tag in distill.data.tags)
    assert distill.data.params["task_distill.stage1.epochs"] == "1.0"
    assert client.get_metric_history(distill.info.run_id, "train/loss")
    assert {i.dataset.name for i in distill.inputs.dataset_inputs} >= {"augmented-train"}

    for task in TASKS:
        version = client.get_model_version_by_alias(f"tinybert-student-{task}", "candidate")
        assert version.run_id == children[f"export@{task}"].info.run_id


def test_dvc_then_reruns_only_what_changed(pipeline_run):
    project, env, _ = pipeline_run
    result = run([DVC, "repro"], project, env)
    assert "Running stage" not in result.stdout, result.stdout

    set_params(project / "params.yaml", {"task_settings.sst2.stage2_epochs": 2.0})
    result = run([DVC, "repro"], project, env)
    ran = re.findall(r"Running stage '([\w@]+)'", result.stdout)
    assert set(ran) - {"glue_report"} == {"task_prediction@sst2", "evaluate@sst2", "export@sst2"}, result.stdout
    assert "general_distill" in result.stdout  # reported as unchanged, not rerun


def test_a_rerun_that_reproduces_its_outputs_leaves_later_stages_alone(pipeline_run):
    """Outputs are byte-reproducible (run pointers are kept out of DVC's hashes), so forcing the data stages and
    general distillation again changes nothing downstream: no retraining of the teacher or the student."""
    project, env, _ = pipeline_run
    forced = ["prepare_corpus", "prepare_task@polarity", "general_distill"]
    result = run([DVC, "repro", "--force", "--single-item", *forced], project, env)
    assert re.findall(r"Running stage '([\w@]+)'", result.stdout) == forced, result.stdout
    result = run([DVC, "status"], project, env)
    assert "up to date" in result.stdout, result.stdout
    assert (project / "outputs" / "general_student" / "mlflow_run.json").is_file()  # lineage still has its pointer


def test_deployment_overrides_apply_to_the_run_only(pipeline_run):
    """A run with overrides leaves params.yaml as it was, is saved as a DVC experiment and says what it overrode."""
    project, env, _ = pipeline_run
    before = (project / "params.yaml").read_bytes()
    overrides = {"export.alias": "override-check"}
    result = run([sys.executable, "-c", DRIVER, json.dumps(overrides)], project, env)
    outcome = json.loads(re.search(r"OUTCOME (.*)", result.stdout).group(1))
    assert outcome["export@sst2"] == "ran" and outcome["task_prediction@sst2"] == "up to date"
    assert (project / "params.yaml").read_bytes() == before
    assert "prefect-" in run([DVC, "exp", "list", "--name-only"], project, env).stdout
    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    client = MlflowClient()
    assert client.get_model_version_by_alias("tinybert-student-sst2", "override-check")
    experiment = client.get_experiment_by_name("tinybert-pipeline")
    (parent,) = client.search_runs([experiment.experiment_id], filter_string="tags.`tinybert.overrides` LIKE '%override-check%'")
    assert parent.info.status == "FINISHED" and parent.data.tags["git.dirty"] == "false"


def test_an_existing_general_tinybert_skips_general_distillation(pipeline_run, tmp_path):
    """models.general_student names a General TinyBERT from elsewhere: general_distill only points at it, and task
    distillation starts from it and from the W_e/W_h saved beside it."""
    project, env, _ = pipeline_run
    published = tmp_path / "general-tinybert"
    shutil.copytree(project / "outputs" / "general_student" / "model", published)
    assert (published / "projections.safetensors").is_file()  # general distillation keeps W_e/W_h with the model
    params = (project / "params.yaml").read_text()
    try:
        set_params(project / "params.yaml", {"models.general_student": str(published)})
        result = run([DVC, "repro", "task_intermediate@polarity"], project, env)
        assert re.findall(r"Running stage '([\w@]+)'", result.stdout) == ["general_distill", "task_intermediate@polarity"], result.stdout
        pointer = json.loads((project / "outputs" / "general_student" / "general_student.json").read_text())
        assert pointer == {"source": str(published), "distilled_here": False}
        assert not (project / "outputs" / "general_student" / "train_log.jsonl").exists()
        assert "nothing to distil" in result.stdout + result.stderr
    finally:
        (project / "params.yaml").write_text(params)


def test_augment_shards_on_a_dask_cluster_give_the_same_rows_as_threads(pipeline_run):
    """Runs last: it rewrites the augment output (with identical rows) outside DVC."""
    from datasets import load_from_disk

    project, env, _ = pipeline_run
    by_threads = load_from_disk(str(project / "outputs" / "polarity" / "augmented" / "train")).to_list()
    set_params(project / "params.yaml", {"augment.task_runner": "dask", "augment.num_shards": 3})
    result = run([sys.executable, "-m", "flows.augment", "--task", "polarity"], project, env)
    assert "Creating a new Dask cluster" in result.stdout + result.stderr
    by_dask = load_from_disk(str(project / "outputs" / "polarity" / "augmented" / "train")).to_list()
    assert by_dask == by_threads and len(by_dask) > 48
