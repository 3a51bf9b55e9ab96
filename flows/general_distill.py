"""Stage 3: General TinyBERT: a student mimics the general teacher on the general corpus (skipped when params
name an existing General TinyBERT, `models.general_student`). It starts as a pruned copy of a BERT teacher or
at random (`models.student.init`). W_e/W_h are saved beside the model."""

from __future__ import annotations

from typing import Any

from datasets import load_from_disk
from prefect import flow, get_run_logger

from flows.arguments import stage_main
from flows.stage import stage
from tinybert_core.vocabulary import check_vocabularies
from tasks.models import write_general_pointer
from tasks.params import student_shape, train_config
from tasks.reporting import finish_training_stage
from tasks.tracking import log_dataset
from tasks.training import general_distill_task


@flow(name="general_distill")
def general_distill(params_file: str | None = None, overrides: dict[str, Any] | None = None) -> str:
    with stage("general_distill", params_file, overrides, ("general_distill",), upstream=("prepare_corpus",)) as s:
        models = s.params["models"]
        if models["general_student"]:
            # A published General TinyBERT (or one distilled elsewhere): task distillation starts from it.
            check_vocabularies(models["teacher"], models["teacher"], models["general_student"])
            get_run_logger().info("using the General TinyBERT %s; nothing to distil", models["general_student"])
            write_general_pointer(s.out_dir, models["general_student"], distilled_here=False)
            return str(s.final_dir)
        corpus_dir = s.upstream["prepare_corpus"]
        corpus = load_from_disk(str(corpus_dir))
        log_dataset(corpus, "general-corpus", corpus_dir, context="general_distillation")
        config = train_config(s.params["general_distill"], s.params["seed"])
        result = general_distill_task(
            models["teacher"], corpus, student_shape(models), config, s.scratch_dir(), s.out_dir, models["layer_map"],
            models["student"]["family"], models["attention_loss"], models["student"]["init"],
        )
        write_general_pointer(s.out_dir, s.final_dir / "model", distilled_here=True)
        finish_training_stage(result, s.out_dir)
    return str(s.final_dir)


if __name__ == "__main__":
    stage_main("general_distill", general_distill)
