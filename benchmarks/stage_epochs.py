"""Which stage of task distillation the epochs pay in: one task's student at several stage-1 / stage-2 epochs.

    python benchmarks/stage_epochs.py --task mrpc --points 2,2 2,8 8,2 8,8 [--out results.json]

A point is STAGE1,STAGE2 epochs, optionally ,RATE for stage 2's learning rate (the report's is 3e-4). Each point
is the quality report's student row (its profile, teacher, augmented rows and dev set) with those epochs. It runs
in the report's work dir, so the General TinyBERT, the fine-tuned teacher and its logit cache are the report's
(resumed or built there, as the report would), and a point with the profile's own epochs is the report's student.
Points with the same stage-1 epochs share one stage-1 run (stage 1 does not depend on stage 2), so a stage-2
point costs only its stage 2 (the table gives each stage's training time, kept beside it, in every point that uses
it). Every point is paired with the first on the whole dev set.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from tinybert_core.bootstrap import paired_difference
from tinybert_core.comparison import score_split
from tinybert_core.evaluation import predict_logits
from tinybert_core.glue_data import load_glue_split
from tinybert_core.glue_metrics import SCORE
from tinybert_core.glue_tasks import get_task
from tinybert_core.models import load_tokenizer
from tinybert_core.recipe import (
    encode_task, projections_for_task, student_for_task, task_distill_intermediate, task_distill_prediction,
)
from tinybert_core.teacher_cache import logit_cache

from quality_report import (
    PROFILES, STAGE2_LR, STUDENT, STUDENT_VARIANT, TEACHER, add_run_arguments, augmenter_for, general_student, logit_cache_dir,
    report_augmenter, stage1_config, stage2_config, task_teacher,
)
from table import print_table


@dataclasses.dataclass(frozen=True)
class Point:
    stage1_epochs: float
    stage2_epochs: float
    stage2_lr: float = STAGE2_LR

    @property
    def label(self) -> str:
        rate = "" if self.stage2_lr == STAGE2_LR else f", stage-2 rate {self.stage2_lr:g}"
        return f"{self.stage1_epochs:g} + {self.stage2_epochs:g}{rate}"


def parse_point(text: str) -> Point:
    parts = text.split(",")
    if len(parts) not in (2, 3):
        raise argparse.ArgumentTypeError(f"{text!r}: expected STAGE1,STAGE2[,STAGE2_RATE]")
    try:
        values = [float(part) for part in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: epochs and rate are numbers") from None
    if min(values) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: epochs and rate are positive")
    return Point(*values)


def stage_dirs(task_dir: Path, point: Point, profile_point: Point) -> tuple[Path, Path]:
    """Stage-1 and stage-2 run folders: the report's student for its own epochs, one folder per stage-1 epochs
    (shared) and per point otherwise."""
    report = task_dir / "student"
    own = task_dir / "stage_epochs"
    stage1 = report / "stage1" if point.stage1_epochs == profile_point.stage1_epochs else own / f"stage1_{point.stage1_epochs:g}"
    stage2 = report / "stage2" if point == profile_point else own / point.label.replace(" ", "").replace(",", "_") / "stage2"
    return stage1, stage2


def timed_stage(run_dir: Path, train_stage, *args, **kwargs) -> float | None:
    """Run (or resume) one stage; the seconds it took to train, kept beside it in timing.json so that a point
    sharing the stage, or a later run, reports its training time rather than its loading time. None: the stage was
    resumed from a checkpoint without that record (time unknown)."""
    timing = run_dir / "timing.json"
    fresh = not (run_dir / "checkpoints").exists()
    started = time.perf_counter()
    train_stage(*args, **kwargs)
    if fresh:  # trained here from the start: this is its time, whatever an older record says
        seconds = round(time.perf_counter() - started, 1)
        timing.write_text(json.dumps({"seconds": seconds}) + "\n")
        return seconds
    return json.loads(timing.read_text())["seconds"] if timing.exists() else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="mrpc")
    parser.add_argument("--points", type=parse_point, nargs="+", default=[Point(2, 2), Point(2, 8), Point(8, 2), Point(8, 8)])
    parser.add_argument("--profile", choices=sorted(PROFILES), default="cpu")
    add_run_arguments(parser)
    parser.add_argument("--out", type=Path, default=None, help="write the points as JSON here (after every point)")
    args = parser.parse_args()
    try:
        task = get_task(args.task)
    except ValueError as error:
        parser.error(f"--task: {error}")
    profile = PROFILES[args.profile]
    profile_point = Point(*profile.epochs(task.name))
    tokenizer = load_tokenizer(TEACHER)
    general = general_student(args, profile, tokenizer, {})
    raw_train = load_glue_split(task, args.glue_dir, "train", limit=profile.train_examples.get(task.name))
    augmenter = augmenter_for(report_augmenter(args, profile), n_aug=profile.task_n_aug.get(task.name))
    augmented = encode_task(augmenter.augment_dataset(raw_train), tokenizer, task, task.max_seq_length)
    train = encode_task(raw_train, tokenizer, task, task.max_seq_length)
    dev = encode_task(load_glue_split(task, args.glue_dir, task.dev_splits[0]), tokenizer, task, task.max_seq_length)
    labels, train_labels = np.asarray(dev["labels"]), np.asarray(train["labels"])
    teacher = task_teacher(task, train, args, profile).student
    teacher_logits = predict_logits(teacher, dev)
    cache_dir = logit_cache_dir(args.work_dir / task.name, task.max_seq_length, STUDENT_VARIANT.pair_sides)
    cached = logit_cache(cache_dir, teacher, augmented, profile.teacher_precision)

    points, first_logits = [], None
    for point in args.points:
        stage1_dir, stage2_dir = stage_dirs(args.work_dir / task.name, point, profile_point)
        student = student_for_task(task, teacher, general, STUDENT, args.seed)
        stage1 = stage1_config(profile, point.stage1_epochs, profile.stage1_schedule, args.seed)
        stage1_s = timed_stage(stage1_dir, task_distill_intermediate, teacher, student, augmented, stage1, stage1_dir,
                               projections=projections_for_task(general, student, teacher))
        stage2 = stage2_config(profile, point.stage2_epochs, point.stage2_lr, args.seed)
        stage2_s = timed_stage(stage2_dir, task_distill_prediction, student, task, augmented, None, stage2, stage2_dir,
                               teacher_logits=cached)
        logits = predict_logits(student, dev)
        first_logits = logits if first_logits is None else first_logits
        scored = score_split(task, teacher_logits, logits, labels, train_labels)
        diff = paired_difference(task, logits, first_logits, labels, seed=args.seed)
        points.append({
            **dataclasses.asdict(point), "label": point.label, "teacher": 100 * scored["teacher"]["metrics"][SCORE],
            "student": 100 * scored["student"]["metrics"][SCORE], "retention": scored["retention"]["value"],
            "retention_interval": scored["retention"]["interval"],
            "minus_first": {"value": 100 * diff.value, "significant": diff.significant,
                            "interval": diff.interval and [100 * diff.interval.low, 100 * diff.interval.high]},
            "stage1_s": stage1_s, "stage2_s": stage2_s,
        })
        print(f"{point.label}: {json.dumps(points[-1])}", flush=True)
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps({"task": task.name, "profile": args.profile, "points": points}, indent=2) + "\n")

    rows = []
    for p in points:
        diff = p["minus_first"]
        interval = "" if not diff["interval"] else f" [{diff['interval'][0]:+.1f}, {diff['interval'][1]:+.1f}]"
        retention = "withheld" if p["retention"] is None else f"{100 * p['retention']:.1f}%"
        seconds = ["?" if p[key] is None else f"{p[key]:.0f}" for key in ("stage1_s", "stage2_s")]
        rows.append((p["label"], f"{p['student']:.1f}", retention, f"{diff['value']:+.1f}{interval}{'*' if diff['significant'] else ''}",
                     *seconds))
    print(f"\n{task.name}, profile {args.profile}; scores x100 on the whole dev set; teacher {points[0]['teacher']:.1f}\n")
    print_table(("stage 1 + stage 2 epochs", "student", "retention", "minus the first point", "stage 1 s", "stage 2 s"), rows)
    print("\n*: the paired 95% bootstrap interval excludes 0; a stage shared between points counts its training time in each")


if __name__ == "__main__":
    main()
