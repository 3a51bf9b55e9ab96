"""Two quality-report runs' task students, paired on the same dev rows: B's score minus A's, with its bootstrap interval.

    python benchmarks/compare_students.py WORK_DIR_A WORK_DIR_B TASK [TASK ...]

Each work dir is a `quality_report.py --work-dir` that finished TASK's student row (e.g. the report's own and one
run with `--task-epochs` or `--distill-precision bf16` beside it, linking the report's General TinyBERT and teacher).
The students are rebuilt from their last stage-2 checkpoints and scored on the whole dev set; the teacher is A's
(its finished fine-tuning is resumed, not retrained).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from quality_report import PROFILES, SHARED, STUDENT, TEACHER, task_teacher
from tinybert_core.bootstrap import paired_difference
from tinybert_core.checkpoint import latest_checkpoint, load_checkpoint
from tinybert_core.evaluation import predict_logits
from tinybert_core.glue_data import load_glue_split
from tinybert_core.glue_tasks import get_task
from tinybert_core.models import load_tokenizer
from tinybert_core.objectives import DistillationObjective
from tinybert_core.recipe import encode_task, student_for_task


def task_student(work: Path, task, teacher, seed: int):
    checkpoint = latest_checkpoint(work / task.name / "student" / "stage2")
    if checkpoint is None:
        raise SystemExit(f"{work / task.name / 'student' / 'stage2'}: no finished stage-2 checkpoint")
    student = student_for_task(task, teacher, work / "general" / "model", STUDENT, seed)
    load_checkpoint(checkpoint, DistillationObjective(student, "task_prediction"), None)  # checks the weights fit
    return student


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("a", type=Path)
    parser.add_argument("b", type=Path)
    parser.add_argument("tasks", nargs="+")
    parser.add_argument("--profile", choices=sorted(PROFILES), default="cpu", help="the runs' profile (its caps)")
    parser.add_argument("--glue-dir", type=Path, default=SHARED / "glue")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    profile = PROFILES[args.profile]
    tokenizer = load_tokenizer(TEACHER)
    for name in args.tasks:
        task = get_task(name)

        def encoded(split: str, limit: int | None = None):
            rows = load_glue_split(task, args.glue_dir, split, limit=limit)
            return encode_task(rows, tokenizer, task, task.max_seq_length)

        train, dev = encoded("train", profile.train_examples.get(task.name)), encoded(task.dev_splits[0])
        teacher = task_teacher(task, train, argparse.Namespace(work_dir=args.a, seed=args.seed), profile).student
        logits_a, logits_b = (predict_logits(task_student(work, task, teacher, args.seed), dev) for work in (args.a, args.b))
        labels = np.asarray(dev["labels"])
        diff = paired_difference(task, logits_b, logits_a, labels, seed=args.seed)
        same = "" if task.is_regression else f"; same dev predictions {(logits_a.argmax(-1) == logits_b.argmax(-1)).mean():.1%}"
        interval = f"[{100 * diff.interval.low:+.1f}, {100 * diff.interval.high:+.1f}]" if diff.interval else "[undefined]"
        print(f"{task.name}: {args.b} minus {args.a}: {100 * diff.value:+.1f} {interval}"
              f"{' (significant)' if diff.significant else ''}{same}", flush=True)


if __name__ == "__main__":
    main()
