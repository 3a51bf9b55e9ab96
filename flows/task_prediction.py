"""Stage 8: task distillation, stage 2: the student from stage 1 learns the teacher's predictions (soft
cross-entropy, MSE for regression) on the augmented set, from the cached teacher logits: the teacher never runs."""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.arguments import stage_main
from flows.stage import stage
from tinybert_core import recipe
from tinybert_core.teacher_cache import load_logit_cache
from tasks.models import load_task_teacher, task_teacher_source
from tasks.params import train_config
from tasks.reporting import finish_training_stage
from tasks.training import distillation_data, task_prediction_task

UPSTREAM = ("prepare_task", "finetune_teacher", "augment", "task_intermediate", "teacher_logits")


@flow(name="task_prediction")
def task_prediction(
    params_file: str | None = None, overrides: dict[str, Any] | None = None, task: str | None = None
) -> str:
    with stage("task_prediction", params_file, overrides, ("task_distill",), upstream=UPSTREAM, task=task) as s:
        section = s.params["task_distill"]
        teacher_source = task_teacher_source(s.upstream["finetune_teacher"])
        spec, encoded = distillation_data(s.params, teacher_source, s.upstream)
        # The teacher is loaded only to check the cache was made by it from these rows (never run).
        teacher = load_task_teacher(s.upstream["finetune_teacher"], spec, s.params["models"]["label_mapping"])
        logits = load_logit_cache(s.upstream["teacher_logits"], teacher, encoded["train"], section["teacher_precision"])
        del teacher
        student = recipe.task_model(s.upstream["task_intermediate"] / "model", spec)
        stage2 = train_config(section["stage2"], s.params["seed"], teacher_precision=section["teacher_precision"])
        result = task_prediction_task(
            student, teacher_source, spec, encoded["train"], encoded["dev"], stage2, section["temperature"], logits,
            s.scratch_dir(), s.out_dir,
        )
        finish_training_stage(result, s.out_dir)
    return str(s.final_dir)


if __name__ == "__main__":
    stage_main("task_prediction", task_prediction)
