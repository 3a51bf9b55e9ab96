"""What more general distillation buys per minute: one task's student from General TinyBERTs of 0, 1, 2, ... epochs.

    python benchmarks/general_value.py [--task sst2] [--general-epochs 0 1 2] [--out results.json]

Each point is the quality report's student row (its profile, no ablation rows) distilled from a General TinyBERT
of that many epochs on the report's general text (0: a random student, no general distillation), with the same
fine-tuned teacher and the same augmented rows, scored on the whole dev set. It runs in the report's work dir:
the teacher and the teacher's logits are the report's (linked, not retrained), and the point with the profile's
own epochs is the report's General TinyBERT and student, resumed as they are. A General TinyBERT keeps the time it
took to distil (quality_report.general_student); one resumed without that record has its minutes estimated from
its steps at the seconds per step of the timed points, marked "~" in the table.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

from tinybert_core.glue_tasks import get_task
from tinybert_core.models import load_tokenizer
from tinybert_core.recipe import STUDENT_INITS

from quality_report import PROFILES, TEACHER, add_run_arguments, general_student, report_augmenter, run_task
from table import print_table


def point_dir(work_dir: Path, epochs: float, profile_epochs: float) -> Path:
    """The report's own work dir for its epochs; a sibling folder inside it for each other number."""
    return work_dir if epochs == profile_epochs else work_dir / f"general_{epochs:g}_epochs"


def share_teacher(report_task: Path, point_task: Path) -> None:
    """Link the report's fine-tuned teacher and its logit caches into a point's task folder: same teacher, same
    augmented rows, so the same targets (the caches check their key on every use)."""
    point_task.mkdir(parents=True, exist_ok=True)
    report_task.mkdir(parents=True, exist_ok=True)
    for name in ["teacher", *(p.name for p in report_task.glob("teacher_logits_*"))]:
        link = point_task / name
        if not link.exists():
            (report_task / name).mkdir(exist_ok=True)
            link.symlink_to((report_task / name).resolve(), target_is_directory=True)


def fill_untimed_minutes(points: list[dict]) -> None:
    """Minutes of the General TinyBERTs resumed rather than distilled here: their steps at this run's rate."""
    timed = [p for p in points if p["general_timed"] and p["general_steps"]]
    if not timed:
        return
    seconds_per_step = sum(60 * p["general_minutes"] for p in timed) / sum(p["general_steps"] for p in timed)
    for p in points:
        if not p["general_timed"]:
            p["general_minutes"] = round(p["general_steps"] * seconds_per_step / 60, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="sst2")
    parser.add_argument("--general-epochs", type=float, nargs="+", default=[0.0, 1.0, 2.0])
    parser.add_argument("--profile", choices=sorted(PROFILES), default="cpu")
    parser.add_argument("--general-init", choices=STUDENT_INITS, default=None,
                        help="the student general distillation starts from; default: the profile's (README's table: random)")
    add_run_arguments(parser)
    parser.add_argument("--out", type=Path, default=None, help="write the points as JSON here")
    args = parser.parse_args()
    try:
        task = get_task(args.task).name
    except ValueError as error:
        parser.error(f"--task: {error}")
    if any(epochs < 0 for epochs in args.general_epochs):
        parser.error("--general-epochs: a number of epochs is at least 0")
    profile = dataclasses.replace(PROFILES[args.profile], ablations={})
    if args.general_init:
        profile.general_init = args.general_init
    tokenizer = load_tokenizer(TEACHER)
    augmenter = report_augmenter(args, profile)
    points = []
    for epochs in args.general_epochs:
        point = dataclasses.replace(profile, general_epochs=epochs)
        work = point_dir(args.work_dir, epochs, profile.general_epochs)
        point_args = argparse.Namespace(**{**vars(args), "work_dir": work})
        if work != args.work_dir:
            share_teacher(args.work_dir / task, work / task)
        timings: dict = {}
        general = general_student(point_args, point, tokenizer, timings) if epochs > 0 else None
        started = time.perf_counter()
        result = run_task(task, point_args, point, general, tokenizer, augmenter)
        seconds = timings.get("general_distillation_s", 0.0)  # None: resumed, time unknown
        log = (work / "general" / "train_log.jsonl").read_text().splitlines() if general else []
        last = json.loads(log[-1]) if log else {"step": 0, "loss": None}
        points.append({
            "general_epochs": epochs, "general_steps": last["step"], "general_final_loss": last["loss"],
            "general_minutes": None if seconds is None else round(seconds / 60, 2), "general_timed": seconds is not None,
            "teacher": result["teacher"], "student": result["student"], "retention": result["retention"],
            "student_interval": result["intervals"].get("student"), "task_s": round(time.perf_counter() - started, 1),
        })
        print(f"{epochs:g} general epochs: {json.dumps(points[-1])}", flush=True)
        fill_untimed_minutes(points)
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps({"task": task, "profile": args.profile, "points": points}, indent=2) + "\n")

    base = next((p for p in points if p["general_epochs"] == 0), None)
    rows = []
    for p in points:
        gain = None if base is None else p["student"] - base["student"]
        per_minute = gain / p["general_minutes"] if gain is not None and p["general_minutes"] else None
        rows.append((f"{p['general_epochs']:g}", p["general_steps"],
                     "?" if p["general_minutes"] is None else f"{'' if p['general_timed'] else '~'}{p['general_minutes']:.1f}",
                     "" if p["general_final_loss"] is None else f"{p['general_final_loss']:.3f}",
                     f"{p['student']:.1f}", "withheld" if p["retention"] is None else f"{100 * p['retention']:.1f}%",
                     "" if gain is None else f"{gain:+.1f}", "" if per_minute is None else f"{per_minute:+.2f}"))
    print(f"\n{task}, profile {args.profile}; scores x100 on the whole dev set; teacher {points[0]['teacher']:.1f}\n")
    print_table(("general epochs", "steps", "general min", "final general loss", "student", "retention",
                 "minus 0 epochs", "points per general min"), rows)


if __name__ == "__main__":
    main()
