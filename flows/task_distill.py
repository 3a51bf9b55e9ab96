"""Stage 6: task distillation: intermediate layers (stage 1) then the prediction layer (stage 2), on the
augmented training set, from the General TinyBERT towards the fine-tuned task teacher."""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.arguments import stage_main
from flows.stage import stage
from tinybert_core import recipe
from tinybert_core.augment import load_augmented
from tinybert_core.vocabulary import check_vocabularies
from tasks.data import first_dev_split, read_task_splits
from tasks.models import encode_splits, general_student_source, load_task_teacher, task_teacher_source
from tasks.params import STAGE_OUTPUTS, seq_length, student_shape, train_config
from tasks.reporting import finish_training_stage
from tasks.tracking import log_dataset
from tasks.training import task_distill_task

UPSTREAM = ("prepare_task", "general_distill", "finetune_teacher", "augment")


@flow(name="task_distill")
def task_distill(params_file: str | None = None, overrides: dict[str, Any] | None = None) -> str:
    with stage("task_distill", params_file, overrides, ("task_distill",), upstream=UPSTREAM) as s:
        section, models, seed = s.params["task_distill"], s.params["models"], s.params["seed"]
        spec, splits = read_task_splits(STAGE_OUTPUTS["prepare_task"])
        augmented = load_augmented(STAGE_OUTPUTS["augment"] / "train")
        log_dataset(augmented, "augmented-train", STAGE_OUTPUTS["augment"] / "train", context="task_distillation")
        teacher_source = task_teacher_source()
        general = general_student_source() if section["general_student"] else None
        # One vocabulary for the data, the teacher and the student: else ids would mean other words to each.
        check_vocabularies(teacher_source, teacher_source, general)
        encoded = encode_splits({"train": augmented, "dev": splits[first_dev_split(splits)]}, teacher_source, spec, seq_length(s.params, spec))

        teacher = load_task_teacher(spec, models["label_mapping"])
        student = recipe.student_for_task(spec, teacher, general, student_shape(models), seed, models["student"]["family"])
        projections = recipe.projections_for_task(general, student, teacher)  # W_e/W_h of general distillation
        stage1 = train_config(section["stage1"], seed) if section["stage1"]["enabled"] else None
        result = task_distill_task(
            teacher, student, teacher_source, spec, encoded["train"], encoded["dev"], stage1,
            train_config(section["stage2"], seed), section["temperature"], s.scratch_dir(), s.out_dir, models["layer_map"],
            projections, models["attention_loss"],
        )
        finish_training_stage(result, s.out_dir)
    return str(s.final_dir)


if __name__ == "__main__":
    stage_main("task_distill", task_distill)
