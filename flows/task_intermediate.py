"""Stage 6: task distillation, stage 1: from the General TinyBERT, the student mimics the fine-tuned teacher's
embeddings, hidden states and attention scores on the augmented training set (skipped, passing the starting
student on, when task_distill.stage1.enabled is false)."""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.arguments import stage_main
from flows.stage import stage
from tinybert_core import recipe
from tinybert_core.vocabulary import check_vocabularies
from tasks.models import general_student_source, load_task_teacher, save_model, task_teacher_source
from tasks.params import student_shape, train_config
from tasks.reporting import finish_training_stage
from tasks.training import distillation_data, task_intermediate_task

UPSTREAM = ("prepare_task", "general_distill", "finetune_teacher", "augment")


@flow(name="task_intermediate")
def task_intermediate(
    params_file: str | None = None, overrides: dict[str, Any] | None = None, task: str | None = None
) -> str:
    with stage("task_intermediate", params_file, overrides, ("task_distill",), upstream=UPSTREAM, task=task) as s:
        section, models, seed = s.params["task_distill"], s.params["models"], s.params["seed"]
        teacher_source = task_teacher_source(s.upstream["finetune_teacher"])
        general = general_student_source() if section["general_student"] else None
        # One vocabulary for the data, the teacher and the student: else ids would mean other words to each.
        check_vocabularies(teacher_source, teacher_source, general)
        spec, encoded = distillation_data(s.params, teacher_source, s.upstream)

        teacher = load_task_teacher(s.upstream["finetune_teacher"], spec, models["label_mapping"])
        student = recipe.student_for_task(spec, teacher, general, student_shape(models), seed, models["student"]["family"])
        if not section["stage1"]["enabled"]:  # the "no task stage 1" ablation: stage 2 starts from this student
            save_model(student, teacher_source, s.out_dir)
            return str(s.final_dir)
        projections = recipe.projections_for_task(general, student, teacher)  # W_e/W_h of general distillation
        stage1 = train_config(section["stage1"], seed, teacher_precision=section["teacher_precision"])
        result = task_intermediate_task(
            teacher, student, teacher_source, encoded["train"], stage1, s.scratch_dir(), s.out_dir, models["layer_map"],
            projections, models["attention_loss"],
        )
        finish_training_stage(result, s.out_dir)
    return str(s.final_dir)


if __name__ == "__main__":
    stage_main("task_intermediate", task_intermediate)
