"""Every task's evaluation report in one table, laid out as Table 1 of the TinyBERT paper.

    table = glue_table({"sst2": sst2_scores, "mrpc": mrpc_scores}, {"sst2": sst2_timings, ...})
    print(glue_markdown(table))

One column per task and dev split with the metric the paper reports (F1 for MRPC and QQP, Spearman for STS-B,
MCC for CoLA, accuracy for the rest; MNLI as MNLI-m and MNLI-mm), the other GLUE metric of two-metric tasks
beside it; rows for the teacher, the student and the majority-class / mean baseline, each cell with its
bootstrap interval; "Avg" is the mean of the columns (the paper's average: MNLI's two splits count as two
columns). A row's average is given only when every column has a value (an undefined correlation leaves it out).
Retention is the student's average over the teacher's, withheld when a task's own report withholds its retention
(a collapsed teacher, or one no better than the baseline); parameters and speed-up come from each task's report.
"""

from __future__ import annotations

import math
from typing import Any

from tinybert_core.glue_tasks import get_task

ROLES = ("teacher", "student", "baseline")
# The metric each task's column shows in the paper's Table 1 (accuracy where not named here).
PAPER_METRIC = {"mrpc": "f1", "qqp": "f1", "stsb": "spearman", "cola": "mcc"}
SPLIT_LABELS = {"dev_matched": "MNLI-m", "dev_mismatched": "MNLI-mm"}
TASK_LABELS = {"cola": "CoLA", "sst2": "SST-2", "mrpc": "MRPC", "stsb": "STS-B", "qqp": "QQP", "qnli": "QNLI",
               "rte": "RTE", "wnli": "WNLI", "polarity": "polarity"}


def glue_table(scores: dict[str, dict], timings: dict[str, dict] | None = None, skipped: dict[str, list[str]] | None = None) -> dict:
    """The table as a dict: `columns` (task, split, metric, label), `rows` (per role: per column label the
    value, its interval and the other metric), `average` per role, `retention`, per-task `size` and `speedup`,
    and the `skipped` tasks with why. `scores` maps task -> its scores.json, `timings` task -> timings.json."""
    columns, rows, withheld = [], {role: {} for role in ROLES}, []
    for task, report in scores.items():
        spec = get_task(task)
        metric = PAPER_METRIC.get(spec.name, "accuracy")
        others = [m for m in spec.metric_components if m != metric]
        for split, scored in report["scores"]["splits"].items():
            label = SPLIT_LABELS.get(split, TASK_LABELS.get(spec.name, spec.name))
            columns.append({"task": task, "split": split, "metric": metric, "other_metrics": others, "label": label})
            if scored.get("retention", {}).get("value") is None and scored.get("retention", {}).get("note"):
                withheld.append(f"{label}: {scored['retention']['note']}")
            for role in ROLES:
                entry = scored[role]
                rows[role][label] = {
                    "value": entry["metrics"].get(metric),
                    "interval": (entry.get("intervals") or {}).get(metric),
                    "other": {m: entry["metrics"].get(m) for m in others},
                    "flags": _flags(entry),
                }
    average = {role: _mean([rows[role][c["label"]]["value"] for c in columns]) for role in ROLES}
    teacher, student = average["teacher"], average["student"]
    # A ratio that one task's report withholds (a collapsed or baseline-level teacher) is not averaged in silently.
    retention = student / teacher if teacher and student is not None and teacher > 0 and not withheld else None
    return {
        "columns": columns,
        "rows": rows,
        "average": average,
        "retention": retention,
        "retention_withheld": withheld,
        "size": {task: report.get("size") for task, report in scores.items()},
        "speedup": {task: ((timings or {}).get(task) or {}).get("speed", {}).get("batch1", {}).get("speedup") for task in scores},
        "warnings": [f"{task}: {w}" for task, report in scores.items() for w in report["scores"]["warnings"]],
        "skipped": skipped or {},
    }


def glue_markdown(table: dict) -> str:
    """The table in markdown: one row per model, one column per task, then Avg, parameters and speed-up."""
    labels = [c["label"] for c in table["columns"]]
    header = ["model", *[f"{c['label']} ({'/'.join([c['metric'], *c['other_metrics']])})" for c in table["columns"]], "Avg"]
    lines = ["| " + " | ".join(header) + " | params | speed-up |", "|" + "---|" * (len(header) + 2)]
    sizes = [s for s in table["size"].values() if s]
    speedups = [v for v in table["speedup"].values() if v]
    for role in ROLES:
        cells = [_cell(table["rows"][role][label]) for label in labels]
        params, speed = "", ""
        if sizes and role in ("teacher", "student"):
            params = f"{sizes[0][role]['parameters'] / 1e6:.1f}M"
        if speedups and role == "student":
            speed = f"{min(speedups):.1f}x" if len(set(round(v, 1) for v in speedups)) == 1 else f"{min(speedups):.1f}-{max(speedups):.1f}x"
        elif speedups and role == "teacher":
            speed = "1.0x"
        average = table["average"][role]
        lines.append(f"| {role} | " + " | ".join(cells) + f" | {_pct(average)} | {params} | {speed} |")
    lines.append("")
    retention = table["retention"]
    shown = f"{100 * retention:.1f}%" if retention is not None else "not given" + (
        f" (not meaningful on {'; '.join(table['retention_withheld'])})" if table["retention_withheld"] else "")
    lines.append(f"Student average / teacher average: {shown}. "
                 "Cells: dev score x100 [bootstrap interval]; a second number is the task's other GLUE metric; "
                 "(collapsed): constant predictions, (below baseline): not above the majority class / mean. "
                 "Speed-up: batch 1 on the evaluating machine.")
    for task, why in table["skipped"].items():
        lines.append(f"- {task} skipped (data.missing_tasks: skip): {'; '.join(why)}")
    lines += [f"- warning: {w}" for w in table["warnings"]]
    return "\n".join(lines) + "\n"


def flat_table_metrics(table: dict) -> dict[str, float]:
    """The table as MLflow metrics: glue/<role>/<column> and glue/<role>/avg, and glue/retention."""
    metrics = {}
    for role in ROLES:
        for label, cell in table["rows"][role].items():
            if _defined(cell["value"]):
                metrics[f"glue/{role}/{label}"] = cell["value"]
        if _defined(table["average"][role]):
            metrics[f"glue/{role}/avg"] = table["average"][role]
    if _defined(table["retention"]):
        metrics["glue/retention"] = table["retention"]
    return metrics


def _flags(entry: dict) -> list[str]:
    """What a task's report says of a model on a split: collapsed (constant predictions), below the baseline."""
    flags = ["collapsed"] if entry.get("collapsed") else []
    return flags + (["below baseline"] if entry.get("beats_baseline") is False else [])


def _mean(values: list[Any]) -> float | None:
    return sum(values) / len(values) if values and all(_defined(v) for v in values) else None


def _defined(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _pct(value: Any) -> str:
    return f"{100 * value:.1f}" if _defined(value) else "n/a"


def _cell(cell: dict) -> str:
    text = _pct(cell["value"])
    if cell["interval"]:
        text += f" [{_pct(cell['interval']['low'])}, {_pct(cell['interval']['high'])}]"
    others = [_pct(v) for v in cell["other"].values()]
    flags = f" ({', '.join(cell['flags'])})" if cell["flags"] else ""
    return text + "".join(f" / {o}" for o in others) + flags
