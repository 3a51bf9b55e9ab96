"""Stage 8: the final student in HF format with tokenizer and model card, ONNX fp32/int8 checked against
PyTorch, registered in the MLflow model registry under an alias."""

from __future__ import annotations

import json
from typing import Any

import mlflow
from prefect import flow, get_run_logger

from flows.arguments import stage_main
from flows.stage import stage
from tinybert_core import recipe
from tinybert_core.comparison import alias_decision
from tinybert_core.export import export_hf, model_card
from tinybert_core.models import count_parameters, load_tokenizer
from tasks.data import first_dev_split, read_task_splits
from tasks.export import onnx_task, register_task
from tasks.models import encode_splits, task_teacher_name
from tasks.params import METRICS, seq_length
from tasks.tracking import git_tags, lineage

UPSTREAM = (
    "prepare_task", "general_distill", "finetune_teacher", "augment", "task_intermediate", "teacher_logits", "task_prediction",
    "evaluate",
)


@flow(name="export")
def export(
    params_file: str | None = None, overrides: dict[str, Any] | None = None, task: str | None = None
) -> str:
    with stage("export", params_file, overrides, ("export",), upstream=UPSTREAM, task=task) as s:
        section = s.params["export"]
        spec, splits = read_task_splits(s.upstream["prepare_task"])
        registered = f"{section['registered_model_name']}-{spec.name}"  # one registered model per task
        student_dir = s.upstream["task_prediction"] / "model"
        student = recipe.task_model(student_dir, spec)
        # The scores only: the card is part of what DVC hashes, so it holds nothing that changes from run to run
        # on the same model (timings) or with where the clone lives (absolute paths).
        scores = json.loads((METRICS / s.task / "scores.json").read_text())

        card = model_card(
            student, spec, scores, teacher=task_teacher_name(s.upstream["finetune_teacher"]), lineage={**git_tags(), **lineage(s.upstream)},
            name=registered, model_dir=student_dir,
        )
        hf_dir = s.out_dir / "hf"
        tokenizer = load_tokenizer(student_dir)
        export_hf(student, tokenizer, hf_dir, model_card=card)
        mlflow.log_artifact(str(hf_dir / "README.md"), artifact_path="model_card")

        if section["onnx"]:
            dev_name = first_dev_split(splits)
            dev = encode_splits({dev_name: splits[dev_name]}, student_dir, spec, seq_length(s.params, spec))[dev_name]
            parity = onnx_task(student, tokenizer, dev, s.out_dir / "onnx", section)
            # A collapsed model has no rows outside its majority class: that agreement is undefined, not logged.
            mlflow.log_metrics({name: value for name, value in parity.items() if value is not None})

        first_rows = splits["train"][:2]  # two rows: the input example shows one list entry per prediction
        example = {column: first_rows[column] for column in spec.text_columns}
        decision = alias_decision(scores, alias_collapsed=section["alias_collapsed"])
        logger = get_run_logger()
        (logger.info if decision.allowed and not decision.reasons else logger.warning)(decision.message(section["alias"]))
        mlflow.set_tag("tinybert.alias_decision", decision.message(section["alias"]))
        register_task(
            hf_dir, registered, section["alias"] if decision.allowed else None, example,
            description=version_description(spec.name, scores, decision.message(section["alias"])),
            tags=version_tags(spec.name, scores, task_teacher_name(s.upstream["finetune_teacher"]), student),
        )
    return str(s.final_dir)


def version_description(task: str, scores: dict, decision: str) -> str:
    """The registered version's description: the task, the dev scores beside teacher and baseline, the alias verdict."""
    lines = [f"TinyBERT student for {task}."]
    for split, scored in scores["scores"]["splits"].items():
        retention = scored["retention"]["value"]
        lines.append(
            f"{split}: student {100 * scored['student']['metrics']['score']:.1f}, teacher "
            f"{100 * scored['teacher']['metrics']['score']:.1f}, baseline {100 * scored['baseline']['metrics']['score']:.1f}"
            + (f", retention {100 * retention:.1f}%." if retention is not None else ", retention not meaningful.")
        )
    return " ".join([*lines, decision])


def version_tags(task: str, scores: dict, teacher: str, student) -> dict[str, str]:
    first = next(iter(scores["scores"]["splits"].values()))
    retention = first["retention"]["value"]
    return {
        "task": task, "teacher": teacher, "parameters": str(count_parameters(student)),
        "retention": "not meaningful" if retention is None else f"{retention:.4f}",
        "flags": ",".join(scores["scores"]["flags"]["student"]) or "none",
    }


if __name__ == "__main__":
    stage_main("export", export)
