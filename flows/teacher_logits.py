"""Stage 7: the task teacher's logits on every augmented row, computed once: task stage 2 reads them instead
of running the teacher, in every epoch and every rerun that changes only stage-2 settings."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from flows.arguments import stage_main
from flows.stage import stage
from tinybert_core.teacher_cache import build_logit_cache
from tasks.models import load_task_teacher, task_teacher_source
from tasks.training import distillation_data

UPSTREAM = ("prepare_task", "finetune_teacher", "augment")


@flow(name="teacher_logits")
def teacher_logits(
    params_file: str | None = None, overrides: dict[str, Any] | None = None, task: str | None = None
) -> str:
    with stage("teacher_logits", params_file, overrides, ("task_distill",), upstream=UPSTREAM, task=task) as s:
        spec, encoded = distillation_data(s.params, task_teacher_source(s.upstream["finetune_teacher"]), s.upstream)
        teacher = load_task_teacher(s.upstream["finetune_teacher"], spec, s.params["models"]["label_mapping"])
        logits = build_logit_cache(teacher, encoded["train"], s.out_dir, s.params["task_distill"]["teacher_precision"])
        get_run_logger().info("teacher logits %s for %d augmented rows", tuple(logits.shape), len(encoded["train"]))
    return str(s.final_dir)


if __name__ == "__main__":
    stage_main("teacher_logits", teacher_logits)
