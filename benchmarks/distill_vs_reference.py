"""Our distillation steps against a reference-style loop, side by side in one run, at equal tokens, then whole
task-distillation runs on real SST-2 rows with and without the teacher caches.

    python benchmarks/distill_vs_reference.py [--threads 1] [--rounds 3] [--steps 3] [--sst2-rows 1000]
                                              [--teacher-precision auto] [--compile] [--student-bf16]

Models: a random BERT-base-shaped teacher (12 x 768, 30522-word vocabulary) and a TinyBERT4-shaped student
(4 x 312). Equal tokens: every batch is 32 rows of 64 real tokens, so padding plays no part. The reference-style
loop is written here as the reference TinyBERT code does it: fp32, transformers' eager attention in teacher and
student with all attention maps and hidden states returned, one projection shared by every hidden state, the
teacher run on every step in all stages, MSE over every position. Ours is `train()` itself (timed between its
per-step callbacks): teacher in inference mode at --teacher-precision ("auto": bf16 on a CPU with native bf16),
SDPA wherever no scores are read, and in the cached rows the stage-1 cache (second epoch) or the logit cache.
Rounds interleave the variants; step times are medians over rounds (the first step of every run is not timed).
The live-teacher ceiling is the reference's step over our teacher's forward alone (LiveTeacher, stage 1's
request): the speedup a live teacher would allow even if the student's step cost nothing.

The whole-run part trains stage 1 then stage 2 on the first --sst2-rows rows of SST-2 (tokenized with the
packaged MiniLM's BERT vocabulary, max 64 tokens; length-bucketed batches), with live teachers, then with the
stage-1 cache and the logit cache (its one teacher pass included in the time). The reference-style loop pads
every row to 64 tokens, so its whole-run rate is its equal-token step rate, taken from the first table.
Ratios are what to read; absolute numbers depend on the machine and on what else it is doing.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from datasets import Dataset

from distill_speed import models  # the same BERT-base teacher and TinyBERT4 student shapes
from table import print_table
from tinybert_core.batching import pad_batch
from tinybert_core.distiller import TrainConfig, train
from tinybert_core.distributed import Topology
from tinybert_core.glue_data import load_glue_split
from tinybert_core.glue_tasks import get_task
from tinybert_core.layer_map import build_layer_map
from tinybert_core.losses import Projections
from tinybert_core.models import encoder_of, load_tokenizer
from tinybert_core.objectives import DistillationObjective
from tinybert_core.recipe import encode_task
from tinybert_core.teacher_cache import compute_teacher_logits
from tinybert_core.teacher_targets import LiveTeacher, resolve_teacher_precision

BATCH, TOKENS = 32, 64
GOALS = {"stage 1": 2.0, "stage 2": 3.0, "stage 2, logit cache": 5.0}  # speedup over the reference at equal tokens
CPU = Topology(0, 1, torch.device("cpu"))


# -- the reference-style loop -------------------------------------------------------------------------------


def eager_copy(model):
    """The model with transformers' eager attention, as the reference code's BERT computes it."""
    copied = copy.deepcopy(model)
    copied.set_attn_implementation("eager")
    return copied


class ReferenceStep:
    """One optimizer step as the reference TinyBERT code takes it (see the module docstring)."""

    def __init__(self, teacher, student, mode: str):
        self.teacher, self.student = teacher.eval(), student.train()
        self.mode = mode
        self.fit_dense = torch.nn.Linear(student.config.hidden_size, teacher.config.hidden_size)
        self.every = teacher.config.num_hidden_layers // student.config.num_hidden_layers
        params = [*self.student.parameters(), *self.fit_dense.parameters()]
        self.optimizer = torch.optim.AdamW(params, lr=1e-4)

    def __call__(self, batch: dict[str, torch.Tensor]) -> None:
        inputs = {k: batch[k] for k in ("input_ids", "token_type_ids", "attention_mask")}
        with torch.no_grad():
            t = self.teacher(**inputs, output_hidden_states=True, output_attentions=True)
        s = self.student(**inputs, output_hidden_states=True, output_attentions=True)
        if self.mode == "stage 2":
            loss = -(F.softmax(t.logits, -1) * F.log_softmax(s.logits, -1)).sum(-1).mean()
        else:
            loss = 0.0
            for m, s_att in enumerate(s.attentions):
                t_att = t.attentions[(m + 1) * self.every - 1]
                loss = loss + F.mse_loss(torch.where(s_att <= -1e2, 0, s_att), torch.where(t_att <= -1e2, 0, t_att))
            for m, s_rep in enumerate(s.hidden_states):
                loss = loss + F.mse_loss(self.fit_dense(s_rep), t.hidden_states[m * self.every])
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)


def time_reference(step: ReferenceStep, batch: dict, steps: int) -> list[float]:
    times = []
    for i in range(steps + 1):
        start = time.perf_counter()
        step(batch)
        if i:  # the first step pays for allocations
            times.append(time.perf_counter() - start)
    return times


# -- our loop -----------------------------------------------------------------------------------------------


def time_ours(objective, data: Dataset, config: TrainConfig, teacher=None, logits=None, timed_from: int = 2) -> list[float]:
    """Seconds per optimizer step of `train()`, from step `timed_from` on (measured between its callbacks)."""
    stamps: dict[int, float] = {}
    config.log_every, config.save_every = 1, 0
    with tempfile.TemporaryDirectory() as run_dir:
        train(objective, data, config, run_dir, teacher=teacher, teacher_logits=logits, resume=False, topology=CPU,
              on_log=lambda metrics, step: stamps.__setitem__(step, time.perf_counter()))
    return [stamps[s] - stamps[s - 1] for s in sorted(stamps) if s >= timed_from]


def equal_token_data(rows: int, vocab: int) -> Dataset:
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, vocab, (rows, TOKENS), generator=generator)
    return Dataset.from_list([{"input_ids": row.tolist(), "labels": i % 2} for i, row in enumerate(ids)])


def objective(mode: str, student, teacher) -> DistillationObjective:
    if mode == "stage 2":
        return DistillationObjective(student, "task_prediction")
    kind = "general" if mode == "general" else "task_intermediate"
    if kind == "general":
        student, teacher = encoder_of(student), encoder_of(teacher)
    layer_map = build_layer_map(student.config, teacher.config)
    return DistillationObjective(student, kind, layer_map, Projections(student.config.hidden_size, teacher.config.hidden_size))


def extra_knobs(args) -> dict[str, dict]:
    """The opt-in TrainConfig knobs also timed, by the name their rows carry."""
    extra = {"student bf16 autocast": dict(precision="bf16")} if args.student_bf16 else {}
    if args.compile:
        extra["torch.compile"] = dict(compile=True)
    return extra


def equal_token_table(teacher, student, args) -> tuple[list[tuple], dict[str, float], dict[str, float]]:
    """Rows of the first table, speedups by goal label, and the reference's seconds per step by mode."""
    data = equal_token_data(BATCH * (args.steps + 1), teacher.config.vocab_size)
    cache_data = data.select(range(BATCH * args.steps))  # two epochs of `steps` steps: the second reads the cache
    batch = pad_batch([data[i] for i in range(BATCH)])
    teacher_eager, student_eager = eager_copy(teacher), eager_copy(student)
    extra = extra_knobs(args)

    def config(**knobs) -> TrainConfig:
        return TrainConfig(max_steps=knobs.pop("max_steps", args.steps + 1), batch_size=BATCH,
                           teacher_precision=args.teacher_precision, **knobs)

    def ours(mode: str, timed_from: int = 2, rows: Dataset = data, logits=None, **knobs):
        """A timing function for one of our variants; its objective is made once (torch.compile compiles once)."""
        made = objective(mode, student, teacher)
        live = None if logits is not None else (encoder_of(teacher) if mode == "general" else teacher)
        return lambda: time_ours(made, rows, config(**knobs), live, logits, timed_from)

    variants = {}
    for mode in ("general", "stage 1", "stage 2"):
        pair = (encoder_of(teacher_eager), encoder_of(student_eager)) if mode == "general" else (teacher_eager, student_eager)
        reference = ReferenceStep(*pair, mode)
        variants[mode, "reference-style"] = lambda r=reference: time_reference(r, batch, args.steps)
        variants[mode, "ours"] = ours(mode)
        for name, knobs in extra.items():
            variants[mode, f"ours, {name}"] = ours(mode, **knobs)
    logits = compute_teacher_logits(teacher, data, args.teacher_precision)
    for name, knobs in {"": {}, **extra}.items():  # the caches alone, then with each extra knob
        suffix = f", {name}" if name else ""
        variants["stage 1", f"ours, teacher cache{suffix}"] = ours(
            "stage 1", args.steps + 1, cache_data, max_steps=2 * args.steps, teacher_cache_mb=8192, **knobs
        )
        variants["stage 2", f"ours, logit cache{suffix}"] = ours("stage 2", logits=logits, **knobs)
    if args.compile:  # compilation happens in the first (untimed) round
        print("torch.compile: the first round compiles (about a minute and a half per mode on 2 cores)")

    samples: dict[tuple[str, str], list[float]] = {key: [] for key in variants}
    for round_ in range(args.rounds + args.compile):
        for key, measure in variants.items():
            times = measure()
            if not (args.compile and round_ == 0):
                samples[key] += times
        print(f"round {round_ + 1}/{args.rounds + args.compile} done", flush=True)

    rows, speedups, reference_seconds = [], {}, {}
    for mode in ("general", "stage 1", "stage 2"):
        reference = reference_seconds[mode] = statistics.median(samples[mode, "reference-style"])
        for (m, name), times in samples.items():
            if m != mode:
                continue
            seconds = statistics.median(times)
            label = mode if name in ("reference-style", "ours") else f"{mode}, {name.removeprefix('ours, ')}"
            if name != "reference-style":
                speedups[label] = reference / seconds
            rows.append((mode, name, f"{seconds:.2f}", f"{BATCH * TOKENS / seconds:.0f}", f"{reference / seconds:.2f}x",
                         f">= {GOALS[label]:.0f}x" if label in GOALS else ""))
    return rows, speedups, reference_seconds


# -- whole runs on SST-2 ----------------------------------------------------------------------------------------


def whole_runs(teacher, student, args, reference_seconds: dict[str, float]) -> list[tuple]:
    task = get_task("sst2")
    rows = load_glue_split(task, args.glue_dir, "train", limit=args.sst2_rows)
    data = encode_task(rows, load_tokenizer("minilm-l6"), task, TOKENS)
    tokens = sum(len(ids) for ids in data["input_ids"])
    epochs = args.stage1_epochs + args.stage2_epochs
    reference_time_per_row = (args.stage1_epochs * reference_seconds["stage 1"] + args.stage2_epochs * reference_seconds["stage 2"]) / BATCH
    reference_rate = epochs / reference_time_per_row

    def run(cached: bool) -> float:
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as run_dir:
            stage1 = TrainConfig(num_epochs=args.stage1_epochs, batch_size=BATCH, save_every=0,
                                 teacher_precision=args.teacher_precision, teacher_cache_mb=8192 if cached else 0)
            train(objective("stage 1", student, teacher), data, stage1, Path(run_dir) / "1", teacher=teacher, topology=CPU)
            logits = compute_teacher_logits(teacher, data, args.teacher_precision) if cached else None
            stage2 = TrainConfig(num_epochs=args.stage2_epochs, batch_size=BATCH, save_every=0,
                                 teacher_precision=args.teacher_precision)
            train(objective("stage 2", student, teacher), data, stage2, Path(run_dir) / "2",
                  teacher=None if cached else teacher, teacher_logits=logits, topology=CPU)
        return len(data) * epochs / (time.perf_counter() - start)

    live, cached = run(cached=False), run(cached=True)
    print(f"\nSST-2: {len(data)} rows, {tokens / len(data):.1f} real tokens per row on average "
          f"({TOKENS * len(data) / tokens:.1f}x fewer than padding to {TOKENS}); stage 1 {args.stage1_epochs} epochs, "
          f"stage 2 {args.stage2_epochs} epochs")
    return [
        ("reference-style, padded to 64 (equal-token step rate)", f"{reference_rate:.1f}", "1.00x"),
        ("ours, teacher live in both stages", f"{live:.1f}", f"{live / reference_rate:.2f}x"),
        ("ours, stage-1 cache + logit cache (one teacher pass)", f"{cached:.1f}", f"{cached / reference_rate:.2f}x"),
    ]


def teacher_forward_seconds(teacher, student, precision: str, repeats: int) -> float:
    """Median seconds of our teacher's stage-1 forward on one equal-token batch (one untimed warm-up)."""
    live = LiveTeacher(teacher, *objective("stage 1", student, teacher).teacher_request(), precision=precision)
    batch = pad_batch([row for row in equal_token_data(BATCH, teacher.config.vocab_size)])
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        live(batch)
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians over them")
    parser.add_argument("--steps", type=int, default=2, help="timed steps per variant and round")
    parser.add_argument("--sst2-rows", type=int, default=1000, help="SST-2 training rows of the whole runs (0: skip)")
    parser.add_argument("--stage1-epochs", type=int, default=2)
    parser.add_argument("--stage2-epochs", type=int, default=2)
    parser.add_argument("--glue-dir", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "glue"))
    parser.add_argument("--teacher-precision", default="auto", help="ours: fp32, bf16 or auto (bf16 where native)")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile of the student step")
    parser.add_argument("--student-bf16", action="store_true", help="also time the student in bf16 autocast")
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)

    teacher, student = models()
    teacher.eval()
    precision = args.teacher_precision = resolve_teacher_precision(args.teacher_precision, torch.device("cpu"))
    print(f"CPU ({torch.backends.cpu.get_cpu_capability()}), {args.threads} thread(s); teacher 12 x 768, student 4 x 312; batch {BATCH} x {TOKENS} real tokens; "
          f"our teacher precision: {precision}; medians of {args.rounds} rounds x {args.steps} steps\n")
    rows, speedups, reference_seconds = equal_token_table(teacher, student, args)
    print()
    print_table(("distillation", "loop", "s/step", "tokens/s", "speedup", "goal"), rows)
    forward = teacher_forward_seconds(teacher, student, precision, args.rounds)
    print(f"\nour teacher's forward alone ({precision}): {forward:.2f} s per step; live-teacher ceiling (reference "
          "step / that forward): " + ", ".join(f"{m} {reference_seconds[m] / forward:.2f}x" for m in ("stage 1", "stage 2")))
    if args.sst2_rows:
        runs = whole_runs(teacher, student, args, reference_seconds)
        print_table(("whole task distillation (stage 1 + stage 2)", "examples/s", "vs reference"), runs)
    print("\ngoals at equal tokens, defaults (opt-in knobs in brackets):")
    for label, goal in GOALS.items():
        opt_ins = "".join(f" ({name}: {speedups[f'{label}, {name}']:.2f}x)" for name in extra_knobs(args))
        met = "met" if speedups[label] >= goal else "not met"
        print(f"  {label}: {speedups[label]:.2f}x, {met}, goal {goal:.0f}x{opt_ins}")


if __name__ == "__main__":
    main()
