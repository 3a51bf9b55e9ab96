"""The teacher's distillation targets in bf16 (and int8) against float32, and what each buys in speed, in one run.

    python benchmarks/teacher_precision.py [--rows 64] [--threads 1] [--repeats 3]

Teachers: the packaged MiniLM (6 x 384, with a fresh SST-2 head) and a random BERT-base-shaped model (12 x 768).
Inputs: the first --rows SST-2 training rows (tokenized with the MiniLM's BERT vocabulary, max 64 tokens).
Targets are what stage 1 and stage 2 read: hidden states of the embeddings and of every mapped layer at real
tokens, pre-softmax scores of the mapped layers at real (query, key) pairs, and the logits. The error of a
target kind is its largest relative L2 error ||bf16 - fp32|| / ||fp32|| over the mapped layers; the tolerance
is tinybert_core.teacher_targets.BF16_TARGET_TOLERANCE. "bf16 autocast" is what LiveTeacher runs; "bf16
weights" (the whole teacher cast to bf16) and "int8 dynamic" (torch's dynamic quantization of every Linear:
int8 weights, activations quantized per batch; fast on AVX2 CPUs without bf16) are shown for comparison, neither
is offered by LiveTeacher. Speed: stage-1 teacher forwards of 32 x 64 tokens, fp32, bf16 autocast and int8 dynamic
interleaved, medians of --repeats. The fp32 forward's rate (its FLOPs counted by torch's FlopCounterMode) is set
beside this core's rate on one large fp32 matrix product: how much a faster fp32 kernel could still buy.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from distill_speed import models
from table import print_table
from tinybert_core.batching import pad_batch
from tinybert_core.glue_data import load_glue_split
from tinybert_core.glue_tasks import get_task
from tinybert_core.layer_map import uniform_layer_map
from tinybert_core.models import Intermediates, load_tokenizer
from tinybert_core.recipe import encode_task, task_model
from tinybert_core.teacher_targets import BF16_TARGET_TOLERANCE, LiveTeacher, native_bf16


def relative_error(approx: torch.Tensor, exact: torch.Tensor) -> float:
    return float((approx.float() - exact.float()).norm() / exact.float().norm())


def target_errors(approx: Intermediates, exact: Intermediates, mask: torch.Tensor) -> dict[str, float]:
    real = mask.bool()
    pairs = real[:, None, :, None] & real[:, None, None, :]
    return {
        "hidden states": max(relative_error(approx.hidden[m][real], exact.hidden[m][real]) for m in exact.hidden),
        "scores": max(relative_error(approx.scores[m][pairs.expand_as(s)], s[pairs.expand_as(s)]) for m, s in exact.scores.items()),
        "logits": relative_error(approx.logits, exact.logits),
        "soft labels (max abs)": float((approx.logits.float().softmax(-1) - exact.logits.softmax(-1)).abs().max()),
    }


def int8_dynamic(teacher: torch.nn.Module) -> torch.nn.Module:
    return torch.ao.quantization.quantize_dynamic(copy.deepcopy(teacher), {torch.nn.Linear}, dtype=torch.qint8)


def matmul_gflops(repeats: int) -> float:
    """This core's fp32 rate on one BERT-base FFN-sized product (2048 x 768 @ 768 x 3072), best of `repeats`."""
    a, b = torch.randn(2048, 768), torch.randn(768, 3072)
    best = min(timed(lambda: a @ b) for _ in range(repeats + 1))
    return 2 * 2048 * 768 * 3072 / best / 1e9


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--glue-dir", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "glue"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    task = get_task("sst2")
    data = encode_task(load_glue_split(task, args.glue_dir, "train", limit=args.rows), load_tokenizer("minilm-l6"), task, 64)
    batch = pad_batch([data[i] for i in range(len(data))])
    teachers = {"MiniLM (6 x 384)": task_model("minilm-l6", task, seed=0).eval(), "BERT-base shape (12 x 768)": models()[0].eval()}

    rows, speed_rows = [], []
    core_rate = matmul_gflops(args.repeats)
    for name, teacher in teachers.items():
        layers = uniform_layer_map(3 if teacher.config.num_hidden_layers == 6 else 4, teacher.config.num_hidden_layers).teacher_layers
        request = ((0, *layers), layers)
        exact = LiveTeacher(teacher, *request, precision="fp32")(batch)
        quantized = int8_dynamic(teacher)
        for variant, live in (("bf16 autocast", LiveTeacher(teacher, *request, precision="bf16")),
                              ("bf16 weights", LiveTeacher(copy.deepcopy(teacher).bfloat16(), *request, precision="fp32")),
                              ("int8 dynamic", LiveTeacher(quantized, *request, precision="fp32"))):
            errors = target_errors(live(batch), exact, batch["attention_mask"])
            worst = max(v for k, v in errors.items() if k != "soft labels (max abs)")
            rows.append((name, variant, *(f"{v:.1e}" for v in errors.values()),
                         "yes" if worst < BF16_TARGET_TOLERANCE else "NO"))

        generator = torch.Generator().manual_seed(0)
        equal = pad_batch([{"input_ids": torch.randint(1000, teacher.config.vocab_size, (64,), generator=generator).tolist()} for _ in range(32)])
        lives = {p: LiveTeacher(teacher, *request, precision=p) for p in ("fp32", "bf16")}
        lives["int8"] = LiveTeacher(quantized, *request, precision="fp32")
        timings: dict[str, list[float]] = {p: [] for p in lives}
        for _ in range(args.repeats + 1):
            for precision, live in lives.items():
                timings[precision].append(timed(lambda: live(equal)))
        fp32, bf16, int8 = (statistics.median(timings[p][1:]) for p in lives)
        with FlopCounterMode(display=False) as counter:
            lives["fp32"](equal)
        rate = counter.get_total_flops() / fp32 / 1e9
        speed_rows.append((name, f"{fp32:.2f}", f"{bf16:.2f} ({fp32 / bf16:.2f}x)", f"{int8:.2f} ({fp32 / int8:.2f}x)",
                           f"{rate:.0f} ({rate / core_rate:.0%})"))

    print(f"CPU ({torch.backends.cpu.get_cpu_capability()}), {args.threads} thread(s), native bf16: "
          f"{native_bf16(torch.device('cpu'))}; {len(data)} SST-2 rows; relative L2 errors against float32, "
          f"tolerance {BF16_TARGET_TOLERANCE:.0e}\n")
    print_table(("teacher", "variant", "hidden states", "scores", "logits", "soft labels (max abs)", "within"), rows)
    print()
    print_table(("teacher, stage-1 forward 32 x 64", "fp32 s", "bf16 autocast s", "int8 dynamic s",
                 "fp32 GFLOP/s (of the core's matmul rate)"), speed_rows)
    print(f"\nthis core's fp32 matrix product (2048 x 768 @ 768 x 3072): {core_rate:.0f} GFLOP/s")


if __name__ == "__main__":
    main()
