"""Stage 7: GLUE dev metrics of teacher and student, retention, size and speed; scores.json and timings.json for DVC."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from flows.arguments import stage_main
from flows.stage import stage
from tinybert_core import recipe
from tasks.data import read_task_splits
from tasks.evaluation import compare_task, publish_report
from tasks.models import encode_splits, load_task_teacher, task_teacher_source
from tasks.params import METRICS, seq_length, stage_output


@flow(name="evaluate")
def evaluate(
    params_file: str | None = None, overrides: dict[str, Any] | None = None, task: str | None = None
) -> str:
    upstream = ("prepare_task", "finetune_teacher", "task_prediction")
    with stage("evaluate", params_file, overrides, ("evaluate",), upstream=upstream, task=task) as s:
        spec, splits = read_task_splits(s.upstream["prepare_task"])
        teacher_source = task_teacher_source(s.upstream["finetune_teacher"])
        dev_sets = encode_splits(
            {name: split for name, split in splits.items() if name != "train"}, teacher_source, spec,
            seq_length(s.params, spec),
        )
        student_dir = s.upstream["task_prediction"] / "model"
        teacher = load_task_teacher(s.upstream["finetune_teacher"], spec, s.params["models"]["label_mapping"])
        student = recipe.task_model(student_dir, spec)
        train_labels = splits["train"]["label"]  # the majority-class / mean baseline is the training set's
        report = compare_task(
            teacher, student, spec, dev_sets, teacher_source, student_dir, s.params["evaluate"], train_labels,
            s.params["seed"],
        )
        # The training stages' logs become its learning curves (general distillation's is shared by every task).
        stage_dirs = {name: stage_output(name, s.task) for name in ("general_distill", "finetune_teacher", "task_intermediate", "task_prediction")}
        get_run_logger().info("\n%s", publish_report(report, s.out_dir, stage_dirs))
        for name in ("scores.json", "timings.json"):  # DVC metrics, in one folder for the GLUE report
            s.publish(name, METRICS / s.task / name)
    return str(s.final_dir)


if __name__ == "__main__":
    stage_main("evaluate", evaluate)
