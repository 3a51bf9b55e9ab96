"""Stage 4: the general teacher fine-tuned on the task: the task teacher (skipped if params name one)."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from flows.arguments import stage_main
from flows.stage import stage
from tinybert_core import recipe
from tasks.data import first_dev_split, read_task_splits
from tasks.models import encode_splits, write_teacher_pointer
from tasks.params import seq_length, train_config
from tasks.reporting import finish_training_stage
from tasks.training import finetune_teacher_task


@flow(name="finetune_teacher")
def finetune_teacher(
    params_file: str | None = None, overrides: dict[str, Any] | None = None, task: str | None = None
) -> str:
    with stage("finetune_teacher", params_file, overrides, ("finetune_teacher",), upstream=("prepare_task",), task=task) as s:
        models = s.params["models"]
        spec, splits = read_task_splits(s.upstream["prepare_task"])
        if models["finetuned_teacher"]:
            # Loaded once here so a head that cannot be matched to the task's labels stops this stage, not a later one.
            teacher = recipe.task_model(models["finetuned_teacher"], spec, label_mapping=models["label_mapping"])
            get_run_logger().info(
                "using the fine-tuned teacher %s (labels %s); nothing to train", models["finetuned_teacher"],
                [teacher.config.id2label[i] for i in range(teacher.config.num_labels)],
            )
            write_teacher_pointer(s.out_dir, models["finetuned_teacher"], fine_tuned_here=False)
            return str(s.final_dir)

        encoded = encode_splits(splits, models["teacher"], spec, seq_length(s.params, spec))
        config = train_config(s.params["finetune_teacher"], s.params["seed"])
        result = finetune_teacher_task(
            models["teacher"], spec, encoded["train"], encoded[first_dev_split(encoded)], config, s.scratch_dir(), s.out_dir
        )
        write_teacher_pointer(s.out_dir, s.final_dir / "model", fine_tuned_here=True)
        finish_training_stage(result, s.out_dir)
    return str(s.final_dir)


if __name__ == "__main__":
    stage_main("finetune_teacher", finetune_teacher)
