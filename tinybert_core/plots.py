"""Plots worth looking at, written as PNG files: learning curves, dev score per evaluation, teacher vs student.

Inputs are what training and evaluation leave behind: `train_log.jsonl` (one record per optimizer step: step,
epoch, loss, its components, lr, grad_norm), `eval_log.jsonl` (step and metrics) and a `comparison.compare`
report. Every function returns the path it wrote.
"""

from __future__ import annotations

import json
import math
import threading
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: pipelines run on machines without a display
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from tinybert_core.threads import holding  # noqa: E402

# Train-log fields that are not losses; every other number in a record is plotted as a loss component.
NOT_LOSSES = frozenset({"step", "epoch", "lr", "grad_norm"})


# Matplotlib (pyplot, its text parser) is not thread-safe, and the pipeline evaluates several tasks in threads:
# one figure is drawn at a time.
_one_at_a_time = holding(threading.Lock())


def read_jsonl(path: str | Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


@_one_at_a_time
def plot_learning_curves(train_logs: dict[str, str | Path], out_png: str | Path) -> Path:
    """One panel per run (or stage): the total loss and each component against the optimizer step."""
    panels = max(1, len(train_logs))
    figure, axes = plt.subplots(1, panels, figsize=(5 * panels, 3.6), squeeze=False)
    for axis, (name, path) in zip(axes[0], train_logs.items()):
        records = read_jsonl(path)
        components = list(dict.fromkeys(
            key for record in records for key, value in record.items()
            if key not in NOT_LOSSES and isinstance(value, (int, float))
        ))
        positive = True
        for component in components:
            points = [(r["step"], r[component]) for r in records if component in r]
            steps, values = zip(*points)
            axis.plot(steps, values, label=component, linewidth=1.6 if component == "loss" else 0.9)
            positive = positive and min(values) > 0
        if positive and components:
            axis.set_yscale("log")  # components differ by orders of magnitude (attention MSE vs cross-entropy)
        axis.set(title=name, xlabel="step", ylabel="loss")
        if components:
            axis.legend(fontsize=8)
        else:
            axis.text(0.5, 0.5, "no records", ha="center", va="center", transform=axis.transAxes)
        axis.grid(alpha=0.3)
    return _save(figure, out_png)


@_one_at_a_time
def plot_eval_curve(eval_log: str | Path, metric: str, out_png: str | Path) -> Path:
    """A dev metric (a fraction, shown as a percentage) at each evaluation step."""
    records = read_jsonl(eval_log)
    points = [(r["step"], 100 * r[metric]) for r in records if metric in r]
    if not points:
        available = sorted({key for r in records for key in r} - {"step"})
        raise KeyError(f"{eval_log} has no metric {metric!r}; it has {available}")
    figure, axis = plt.subplots(figsize=(5, 3.6))
    axis.plot(*zip(*points), marker="o")
    axis.set(title=f"dev {metric}", xlabel="step", ylabel=f"{metric} (%)")
    axis.grid(alpha=0.3)
    return _save(figure, out_png)


@_one_at_a_time
def plot_teacher_vs_student(report: dict, out_png: str | Path) -> Path:
    """Bars of every dev metric of the baseline, the teacher and the student, with their bootstrap
    intervals as error bars, from a `comparison.compare` report (undefined scores are drawn as 0)."""
    roles = ("baseline", "teacher", "student")
    labels, values, errors = [], {r: [] for r in roles}, {r: [[], []] for r in roles}
    for split, scored in report["scores"]["splits"].items():
        for metric in (m for m in scored["teacher"]["metrics"] if m != "score"):
            labels.append(f"{split}\n{metric}")
            for role in roles:
                value = scored[role]["metrics"][metric]
                value = 100 * value if math.isfinite(value) else 0.0
                interval = scored[role]["intervals"].get(metric)
                values[role].append(value)
                errors[role][0].append(max(0.0, value - 100 * interval["low"]) if interval else 0.0)
                errors[role][1].append(max(0.0, 100 * interval["high"] - value) if interval else 0.0)
    positions = range(len(labels))
    figure, axis = plt.subplots(figsize=(max(5, 1.6 * len(labels)), 3.8))
    for offset, role in zip((-0.27, 0.0, 0.27), roles):
        bars = axis.bar([p + offset for p in positions], values[role], width=0.27, label=role,
                        yerr=errors[role], capsize=2, color="lightgray" if role == "baseline" else None)
        axis.bar_label(bars, fmt="%.1f", fontsize=7)
    axis.set_xticks(list(positions), labels, fontsize=8)
    axis.set(title=f"{report['task']}: teacher vs student", ylabel="%")
    tops = [v + e for r in roles for v, e in zip(values[r], errors[r][1])]
    axis.set_ylim(top=1.25 * max(tops + [1e-9]))  # headroom: the legend sits above the bars
    axis.legend(loc="upper right", ncol=3)
    axis.grid(axis="y", alpha=0.3)
    return _save(figure, out_png)


def _save(figure: Figure, out_png: str | Path) -> Path:
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(out_png, dpi=110)
    plt.close(figure)  # figures are kept alive by pyplot until closed; long pipelines would leak them
    return out_png
