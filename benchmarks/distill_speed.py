"""Student vs teacher speed, side by side in one run: inference (TinyBERT4 vs BERT-base shapes, random
weights, batch 1 and 32, sequence 128) and task-distillation training throughput.

    python benchmarks/distill_speed.py [--train-steps 3] [--train-batch 32] [--device cpu]

Ratios are what to read: absolute numbers depend on the machine and on what else it is doing.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch
from datasets import Dataset
from transformers import BertConfig

from tinybert_core.distiller import TrainConfig, train
from tinybert_core.distributed import Topology
from tinybert_core.layer_map import build_layer_map
from tinybert_core.losses import Projections
from tinybert_core.models import StudentShape, build_student, count_parameters
from tinybert_core.objectives import DistillationObjective
from tinybert_core.speed import time_models

from table import print_table

BERT_BASE = StudentShape(num_layers=12, hidden_size=768, intermediate_size=3072, num_heads=12)
VOCAB = BertConfig().vocab_size  # 30522, BERT's uncased WordPiece vocabulary
LABELS = ["0", "1"]


def models() -> tuple[torch.nn.Module, torch.nn.Module]:
    base_config = BertConfig(vocab_size=VOCAB)
    teacher = build_student(BERT_BASE, base_config, head="classification", labels=LABELS, seed=0)
    student = build_student(StudentShape.tinybert4(), base_config, head="classification", labels=LABELS, seed=1)
    return teacher, student


def inference_table(teacher, student, device: str, repeats_b1: int, repeats_b32: int) -> list[tuple]:
    rows = []
    for batch, repeats in ((1, repeats_b1), (32, repeats_b32)):
        result = time_models({"teacher": teacher, "student": student}, batch, 128, repeats=repeats, device=device)
        t, s = result["teacher"], result["student"]
        rows.append((f"inference, batch {batch}, seq 128", f"{t.latency_ms:.1f} ms", f"{s.latency_ms:.1f} ms",
                     f"{t.examples_per_second:.1f}", f"{s.examples_per_second:.1f}",
                     f"{t.median_seconds / s.median_seconds:.2f}x"))
    return rows


def training_throughput(objective, teacher, steps: int, batch: int, device: str) -> float:
    """Median examples/s of optimizer steps after the first, through the real training loop."""
    generator = torch.Generator().manual_seed(0)
    rows = [{"input_ids": torch.randint(1000, VOCAB, (128,), generator=generator).tolist(), "labels": i % 2}
            for i in range(batch * (steps + 1))]
    per_step: list[float] = []
    last = [time.perf_counter()]

    def on_log(metrics, step):
        now = time.perf_counter()
        if step > 1:  # the first step pays for allocations and lazy initialisation
            per_step.append(batch / (now - last[0]))
        last[0] = now

    config = TrainConfig(max_steps=steps + 1, batch_size=batch, log_every=1, save_every=0, precision="auto")
    with tempfile.TemporaryDirectory() as run_dir:
        train(objective, Dataset.from_list(rows), config, run_dir, teacher=teacher, on_log=on_log,
              topology=Topology(0, 1, torch.device(device)))
    return statistics.median(per_step)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--train-steps", type=int, default=3, help="measured optimizer steps per training mode")
    parser.add_argument("--train-batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=20, help="timed forward passes at batch 1")
    args = parser.parse_args()
    torch.manual_seed(0)

    teacher, student = models()
    print(f"device: {args.device}, torch threads: {torch.get_num_threads()}")
    print(f"teacher (BERT-base shape): {count_parameters(teacher) / 1e6:.1f}M parameters; "
          f"student (TinyBERT4 shape): {count_parameters(student) / 1e6:.1f}M "
          f"({count_parameters(teacher) / count_parameters(student):.1f}x smaller)\n")

    header = ("measurement", "teacher", "student", "teacher ex/s", "student ex/s", "speedup")
    rows = inference_table(teacher, student, args.device, args.repeats, max(3, args.repeats // 5))

    # Training throughput: fine-tuning the teacher itself is the reference each distillation stage is compared to.
    finetune = training_throughput(DistillationObjective(teacher, "finetune"), None, args.train_steps, args.train_batch, args.device)
    layer_map = build_layer_map(student.config, teacher.config)
    stage1 = DistillationObjective(student, "task_intermediate", layer_map, Projections(312, 768))
    stage2 = DistillationObjective(student, "task_prediction")
    for name, objective in (("task distillation stage 1", stage1), ("task distillation stage 2", stage2)):
        throughput = training_throughput(objective, teacher, args.train_steps, args.train_batch, args.device)
        rows.append((f"training, {name}, batch {args.train_batch}", "", "", f"{finetune:.1f} (fine-tune)",
                     f"{throughput:.1f}", f"{throughput / finetune:.2f}x"))

    print_table(header, rows)


if __name__ == "__main__":
    main()
