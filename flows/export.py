"""Stage 8: the final student in HF format with tokenizer and model card, ONNX fp32/int8 checked against
PyTorch, registered in the MLflow model registry under an alias."""

from __future__ import annotations

import json
from typing import Any

import mlflow
from prefect import flow

from flows.arguments import stage_main
from flows.stage import stage
from tinybert_core import recipe
from tinybert_core.export import export_hf, model_card
from tinybert_core.models import load_tokenizer
from tasks.data import first_dev_split, read_task_splits
from tasks.export import onnx_task, register_task
from tasks.models import encode_splits, task_teacher_name
from tasks.params import STAGE_OUTPUTS
from tasks.tracking import git_tags, lineage

UPSTREAM = ("prepare_task", "general_distill", "finetune_teacher", "augment", "task_distill", "evaluate")


@flow(name="export")
def export(params_file: str | None = None, overrides: dict[str, Any] | None = None) -> str:
    with stage("export", params_file, overrides, ("export",), upstream=UPSTREAM) as s:
        section = s.params["export"]
        spec, splits = read_task_splits(STAGE_OUTPUTS["prepare_task"])
        student_dir = STAGE_OUTPUTS["task_distill"] / "model"
        student = recipe.task_model(student_dir, spec)
        # The scores only: the card is part of what DVC hashes, so it holds nothing that changes from run to run
        # on the same model (timings) or with where the clone lives (absolute paths).
        scores = json.loads((STAGE_OUTPUTS["evaluate"] / "scores.json").read_text())

        card = model_card(
            student, spec, scores, teacher=task_teacher_name(), lineage={**git_tags(), **lineage(s.upstream)},
            name=section["registered_model_name"], model_dir=student_dir,
        )
        hf_dir = s.out_dir / "hf"
        tokenizer = load_tokenizer(student_dir)
        export_hf(student, tokenizer, hf_dir, model_card=card)
        mlflow.log_artifact(str(hf_dir / "README.md"), artifact_path="model_card")

        if section["onnx"]:
            dev_name = first_dev_split(splits)
            dev = encode_splits({dev_name: splits[dev_name]}, student_dir, spec, s.params["data"]["max_seq_length"])[dev_name]
            parity = onnx_task(student, tokenizer, dev, s.out_dir / "onnx", section)
            mlflow.log_metrics(parity)

        first_rows = splits["train"][:2]  # two rows: the input example shows one list entry per prediction
        example = {column: first_rows[column] for column in spec.text_columns}
        register_task(hf_dir, section["registered_model_name"], section["alias"], example)
    return str(s.final_dir)


if __name__ == "__main__":
    stage_main("export", export)
