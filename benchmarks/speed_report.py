"""CPU inference speed of the serving formats, side by side in one run: PyTorch teacher (BERT-base shape),
PyTorch student (TinyBERT4 shape), and the student as ONNX fp32 and int8 (dynamic quantization), all with random
weights and BERT's 30522-word vocabulary, at batch 1 and batch 32, sequence 128.

    python benchmarks/speed_report.py [--threads 1] [--repeats 30] [--repeats-b32 3] [--teacher-onnx]

Every format runs on the same batch with the same number of threads, interleaved round by round; medians are
reported. ONNX Runtime's idle threads do not spin, so they do not steal cores from the next format. Thread count
matters for the ratios: at batch 1 the teacher's large matrix products gain from a second thread (151 -> 86 ms on
this 2-core machine) while the int8 student's small ones barely do (4.9 -> 5.0 ms), so the student's speedup is
larger at 1 thread (the default, the per-core serving figure) than at 2.
Goals from the issue, at batch 1: PyTorch student >= 9.4x and ONNX int8 student >= 20x the PyTorch teacher.
Ratios are what to read: absolute numbers depend on the machine and on what else it is doing.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from distill_speed import VOCAB, models  # same teacher and student shapes as the distillation benchmark
from table import print_table
from tinybert_core.models import count_parameters
from tinybert_core.onnx_export import export_onnx, onnx_session, quantize_int8, time_onnx

GOALS_BATCH1 = {"PyTorch student": 9.4, "ONNX int8 student": 20.0}  # speedup over the PyTorch teacher


def export_formats(teacher, student, folder: Path, teacher_onnx: bool) -> dict[str, Path]:
    """ONNX files of the student (and optionally the teacher), fp32 and int8."""
    files = {}
    for name, model in ({"student": student} | ({"teacher": teacher} if teacher_onnx else {})).items():
        fp32 = export_onnx(model, folder / f"{name}.onnx")
        files[f"ONNX fp32 {name}"] = fp32
        files[f"ONNX int8 {name}"] = quantize_int8(fp32, folder / f"{name}.int8.onnx")
    return files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads, PyTorch and ONNX alike")
    parser.add_argument("--repeats", type=int, default=30, help="timed rounds at batch 1")
    parser.add_argument("--repeats-b32", type=int, default=3, help="timed rounds at batch 32")
    parser.add_argument("--teacher-onnx", action="store_true", help="also time the teacher as ONNX fp32 and int8")
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)

    teacher, student = models()
    pytorch = {"PyTorch teacher": teacher.eval(), "PyTorch student": student.eval()}
    sizes = {name: 4 * count_parameters(model) for name, model in pytorch.items()}  # fp32 bytes
    with tempfile.TemporaryDirectory() as folder:
        files = export_formats(teacher, student, Path(folder), args.teacher_onnx)
        sizes |= {name: path.stat().st_size for name, path in files.items()}
        sessions = {name: onnx_session(path, threads=args.threads, spinning=False) for name, path in files.items()}
        timings = {
            batch: time_onnx(sessions, VOCAB, batch, 128, repeats=repeats, warmup=1 if batch > 1 else 3, models=pytorch)
            for batch, repeats in ((1, args.repeats), (32, args.repeats_b32))
        }

    print(f"CPU, {args.threads} thread(s), sequence 128; teacher {count_parameters(teacher) / 1e6:.1f}M parameters, "
          f"student {count_parameters(student) / 1e6:.1f}M; medians of {args.repeats} (batch 1) and "
          f"{args.repeats_b32} (batch 32) interleaved rounds\n")
    header = ("format", "size MB", "batch 1 ms", "speedup", "batch 32 ms", "examples/s", "speedup")
    names = [*pytorch, *files]
    rows = []
    for name in names:
        one, many = timings[1][name], timings[32][name]
        rows.append((name, f"{sizes[name] / 1e6:.1f}", f"{one.latency_ms:.2f}",
                     f"{timings[1]['PyTorch teacher'].median_seconds / one.median_seconds:.1f}x",
                     f"{many.latency_ms:.0f}", f"{many.examples_per_second:.1f}",
                     f"{timings[32]['PyTorch teacher'].median_seconds / many.median_seconds:.1f}x"))
    print_table(header, rows)

    print("\ngoals at batch 1 (speedup over the PyTorch teacher):")
    for name, goal in GOALS_BATCH1.items():
        speedup = timings[1]["PyTorch teacher"].median_seconds / timings[1][name].median_seconds
        verdict = "met" if speedup >= goal else f"MISSED by {goal - speedup:.1f}x"
        print(f"  {name}: {speedup:.1f}x, goal {goal:g}x: {verdict}")


if __name__ == "__main__":
    main()
