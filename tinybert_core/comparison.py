"""Teacher vs student on one task: dev metrics, retention, size and speed, as one report.

    report = compare(teacher, student, task, {"dev": encoded_dev}, teacher_dir, student_dir)
    print(markdown_table(report))
"""

from __future__ import annotations

from pathlib import Path

import torch
from datasets import Dataset
from transformers import PreTrainedModel

from tinybert_core.evaluation import evaluate_model
from tinybert_core.glue_metrics import SCORE
from tinybert_core.glue_tasks import TaskSpec
from tinybert_core.models import count_parameters
from tinybert_core.speed import time_models


def weights_bytes(model_dir: Path) -> int:
    """Bytes of the weight files of a saved model (safetensors), what serving has to load."""
    return sum(f.stat().st_size for f in Path(model_dir).glob("*.safetensors"))


def compare(
    teacher: PreTrainedModel,
    student: PreTrainedModel,
    task: TaskSpec,
    dev_sets: dict[str, Dataset],
    teacher_dir: Path | None = None,
    student_dir: Path | None = None,
    batch_size: int = 128,
    speed_repeats: int = 10,
    speed_seq_length: int = 128,
) -> dict:
    """Everything users judge a student by. Metrics are fractions; retention = student / teacher score."""
    report: dict = {"task": task.name, "teacher": {}, "student": {}, "retention": {}}
    for split, data in dev_sets.items():
        report["teacher"][split] = evaluate_model(teacher, data, task, batch_size)
        report["student"][split] = evaluate_model(student, data, task, batch_size)
        teacher_score = report["teacher"][split][SCORE]
        report["retention"][split] = report["student"][split][SCORE] / teacher_score if teacher_score else float("nan")

    sizes = {"teacher": {"parameters": count_parameters(teacher)}, "student": {"parameters": count_parameters(student)}}
    for name, folder in (("teacher", teacher_dir), ("student", student_dir)):
        if folder is not None and (size := weights_bytes(folder)):
            sizes[name]["bytes"] = size
    sizes["compression"] = sizes["teacher"]["parameters"] / sizes["student"]["parameters"]
    report["size"] = sizes

    device = next(student.parameters()).device
    speed = {"device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device), "seq_length": speed_seq_length}
    for batch, repeats in ((1, speed_repeats), (32, max(3, speed_repeats // 5))):
        timed = time_models({"teacher": teacher, "student": student}, batch, speed_seq_length, repeats=repeats, device=device)
        speed[f"batch{batch}"] = {
            "teacher_ms": timed["teacher"].latency_ms,
            "student_ms": timed["student"].latency_ms,
            "teacher_examples_per_s": timed["teacher"].examples_per_second,
            "student_examples_per_s": timed["student"].examples_per_second,
            "speedup": timed["teacher"].median_seconds / timed["student"].median_seconds,
        }
    report["speed"] = speed
    return report


def markdown_table(report: dict) -> str:
    """The report as the markdown people read (Prefect artifact, model card, README)."""
    lines = [f"### {report['task']}: teacher vs student", "", "| split | metric | teacher | student | retention |", "|---|---|---|---|---|"]
    for split, teacher_metrics in report["teacher"].items():
        for metric, value in teacher_metrics.items():
            retention = f"{100 * report['retention'][split]:.1f}%" if metric == SCORE else ""
            lines.append(f"| {split} | {metric} | {100 * value:.2f} | {100 * report['student'][split][metric]:.2f} | {retention} |")
    size, speed = report["size"], report.get("speed")  # no speed: a report kept free of timings (model card)
    lines += [
        "",
        f"- parameters: teacher {size['teacher']['parameters'] / 1e6:.1f}M, student {size['student']['parameters'] / 1e6:.1f}M "
        f"({size['compression']:.1f}x smaller)",
    ]
    if speed:
        lines.append(
            f"- speed on {speed['device']} (sequence {speed['seq_length']}): batch 1 {speed['batch1']['teacher_ms']:.1f} ms -> "
            f"{speed['batch1']['student_ms']:.1f} ms ({speed['batch1']['speedup']:.1f}x); batch 32 "
            f"{speed['batch32']['teacher_examples_per_s']:.0f} -> {speed['batch32']['student_examples_per_s']:.0f} examples/s "
            f"({speed['batch32']['speedup']:.1f}x)"
        )
    return "\n".join(lines) + "\n"
