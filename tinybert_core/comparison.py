"""Teacher vs student on one task: dev scores beside a constant baseline, with bootstrap intervals, collapse
flags and retention only where it means something; then size and speed.

    report = compare(teacher, student, task, {"dev": encoded_dev}, teacher_dir, student_dir,
                     train_labels=encoded_train["labels"])
    print(markdown_table(report))
    alias_decision(report)        # AliasDecision(allowed=False, reasons=[...]) for a collapsed student

The report is a plain dict; `report_json` writes it as strict JSON (undefined values become null). Its keys:
    task     the task name
    scores   what the models are worth, the same on every run of the same models and data:
             {"bootstrap": {...}, "splits": {split: {...}}, "flags": {"teacher": [...], "student": [...]},
              "warnings": [plain-language sentences]}
    size     parameters (and bytes on disk) of both models, compression
    speed    timings on this machine (only when speed_repeats > 0); they change from run to run

Each split holds `examples`, the `baseline` (see `baselines`), `teacher` and `student` (metrics, 95%
intervals, prediction spread, `collapsed`, `beats_baseline`, the difference to the baseline), `retention`
(student / teacher score), `gain_retention` ((student - baseline) / (teacher - baseline)) and
`student_minus_teacher`. Retention is given only when the teacher beats the baseline and is not collapsed;
otherwise its value is None and its `note` says why: a ratio to a teacher that learnt nothing is noise
(an RTE student at 47.3 against a 52.7 majority baseline once reported "84.5% retention"). Flags:
"collapsed" (constant predictions, see `baselines.prediction_spread`) and "below_baseline" (the task score
does not beat the baseline's).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset
from transformers import PreTrainedModel

from tinybert_core.baselines import (
    Baseline,
    baseline_metrics,
    baseline_predictions,
    constant_baseline,
    prediction_spread,
)
from tinybert_core.bootstrap import (
    DEFAULT_CONFIDENCE,
    DEFAULT_RESAMPLES,
    Bootstrap,
    difference,
    percentile_interval,
    resampled_metrics,
)
from tinybert_core.evaluation import predict_logits
from tinybert_core.glue_metrics import SCORE, compute_metrics, with_task_score
from tinybert_core.glue_tasks import TaskSpec, get_task
from tinybert_core.models import count_parameters
from tinybert_core.speed import time_models

ROLES = ("teacher", "student")
COLLAPSED = "collapsed"
BELOW_BASELINE = "below_baseline"


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
    train_labels: Sequence | np.ndarray | None = None,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    confidence: float = DEFAULT_CONFIDENCE,
) -> dict:
    """Everything users judge a student by (see the module doc). Metrics are fractions.

    `train_labels`: the training set's labels, for the majority-class / mean baseline; without them the
    dev labels' majority stands in. `resamples`, `seed`, `confidence`: the paired bootstrap.
    `speed_repeats=0` skips the timing (the report then has no "speed").
    """
    spec = get_task(task)
    splits = {}
    for split, data in dev_sets.items():
        logits = {role: predict_logits(model, data, batch_size) for role, model in zip(ROLES, (teacher, student))}
        splits[split] = score_split(
            spec, logits["teacher"], logits["student"], data["labels"], train_labels,
            Bootstrap(len(data), resamples, seed, confidence),
        )
    report: dict = {"task": spec.name, "scores": scores_summary(splits, resamples, seed, confidence)}

    sizes = {"teacher": {"parameters": count_parameters(teacher)}, "student": {"parameters": count_parameters(student)}}
    for name, folder in (("teacher", teacher_dir), ("student", student_dir)):
        if folder is not None and (size := weights_bytes(folder)):
            sizes[name]["bytes"] = size
    sizes["compression"] = sizes["teacher"]["parameters"] / sizes["student"]["parameters"]
    report["size"] = sizes
    if speed_repeats > 0:
        report["speed"] = _speed(teacher, student, speed_repeats, speed_seq_length)
    return report


def score_split(
    task: str | TaskSpec,
    teacher_logits: np.ndarray,
    student_logits: np.ndarray,
    labels: Sequence | np.ndarray,
    train_labels: Sequence | np.ndarray | None = None,
    bootstrap: Bootstrap | None = None,
) -> dict:
    """One split of the report from the two models' outputs: logits (N, C), or scores (N,) / (N, 1) for
    regression, and the gold labels (N,). Works without models, so notebooks can score saved predictions."""
    spec = get_task(task)
    labels = np.asarray(labels)
    bootstrap = bootstrap or Bootstrap(len(labels))
    baseline = constant_baseline(spec, labels, train_labels)
    base_metrics = baseline_metrics(spec, baseline, labels)
    base_resampled = _baseline_resampled(spec, baseline, labels, bootstrap)
    out: dict = {
        "examples": len(labels),
        "baseline": {
            "rule": baseline.rule, "prediction": baseline.label if baseline.label is not None else baseline.prediction,
            "metrics": base_metrics, "intervals": _intervals(base_resampled, bootstrap.confidence),
        },
    }
    resampled = {}
    for role, logits in (("teacher", teacher_logits), ("student", student_logits)):
        metrics = compute_metrics(spec, logits, labels)
        resampled[role] = resampled_metrics(spec, logits, labels, bootstrap)
        spread = prediction_spread(spec, logits, labels)
        out[role] = {
            "metrics": metrics,
            "intervals": _intervals(resampled[role], bootstrap.confidence),
            "spread": spread.as_dict(),
            COLLAPSED: spread.collapsed,
            "beats_baseline": bool(metrics[SCORE] > base_metrics[SCORE]),  # nan (undefined) is False
            "minus_baseline": difference(
                metrics[SCORE], base_metrics[SCORE], resampled[role][SCORE], base_resampled[SCORE], bootstrap.confidence
            ).as_dict(),
        }
    teacher_score, student_score = out["teacher"]["metrics"][SCORE], out["student"]["metrics"][SCORE]
    out["student_minus_teacher"] = difference(
        student_score, teacher_score, resampled["student"][SCORE], resampled["teacher"][SCORE], bootstrap.confidence
    ).as_dict()

    withheld = _why_retention_withheld(out)
    t, s, b = resampled["teacher"][SCORE], resampled["student"][SCORE], base_resampled[SCORE]
    out["retention"] = _ratio(student_score, teacher_score, s, t, withheld, bootstrap.confidence, "the teacher's score")
    out["gain_retention"] = _ratio(
        student_score - base_metrics[SCORE], teacher_score - base_metrics[SCORE], s - b, t - b, withheld,
        bootstrap.confidence, "the teacher's gain over the baseline",
    )
    return out


def scores_summary(splits: dict[str, dict], resamples: int, seed: int, confidence: float) -> dict:
    """The report's "scores": the splits with the flags and warnings they raise."""
    flags: dict[str, list[str]] = {role: [] for role in ROLES}
    warnings = []
    for split, scored in splits.items():
        base = scored["baseline"]
        for role in ROLES:
            entry = scored[role]
            if entry[COLLAPSED]:
                flags[role].append(COLLAPSED)
                warnings.append(f"The {role} collapsed on {split}: it {entry['spread']['reason']}. Its scores say "
                                "nothing about the task.")
            if not entry["beats_baseline"]:
                flags[role].append(BELOW_BASELINE)
                warnings.append(
                    f"The {role} does not beat the baseline on {split}: {_pct(entry['metrics'][SCORE])} against "
                    f"{_pct(base['metrics'][SCORE])} for the {base['rule']} (`{base['prediction']}`)."
                )
        if scored["retention"]["value"] is None:
            warnings.append(f"Retention on {split} is not meaningful: {scored['retention']['note']}.")
    return {
        "bootstrap": {"resamples": resamples, "seed": seed, "confidence": confidence, "paired": True},
        "splits": splits,
        "flags": {role: sorted(set(found)) for role, found in flags.items()},
        "warnings": warnings,
    }


@dataclass(frozen=True)
class AliasDecision:
    """Whether the export stage may give the student the registry alias, and why not."""

    allowed: bool
    reasons: list[str] = field(default_factory=list)  # the student's flags in words; empty when clean

    def message(self, alias: str = "candidate") -> str:
        if not self.reasons:
            return f"the student is not flagged: it gets the alias @{alias}"
        verdict = "it gets the alias anyway (overridden)" if self.allowed else "it does NOT get the alias"
        return f"@{alias} {verdict}: " + " ".join(self.reasons)


def alias_decision(report: dict, alias_collapsed: bool = False) -> AliasDecision:
    """A student flagged "collapsed" or "below_baseline" on any split gets no registry alias, unless
    `alias_collapsed` (a pipeline param) says to give it anyway; `reasons` says what was found either way."""
    scores = report["scores"]
    reasons = [w for w in scores["warnings"] if w.startswith("The student ")]
    return AliasDecision(allowed=alias_collapsed or not scores["flags"]["student"], reasons=reasons)


def scores_and_timings(report: dict) -> tuple[dict, dict]:
    """The report in two parts for two files: what the models are worth (task, scores, size), stable across
    runs, and the timings of this machine (task, speed)."""
    scores = {key: value for key, value in report.items() if key != "speed"}
    return scores, {"task": report["task"], "speed": report.get("speed")}


def report_json(report: dict) -> str:
    """Strict JSON (what DVC and other JSON readers accept): nan and infinities become null."""
    return json.dumps(_finite(report), indent=2, allow_nan=False) + "\n"


def flat_metrics(report: dict) -> dict[str, float]:
    """The report's numbers as flat `a/b/c` names for MLflow; flags as 0/1, undefined values left out."""
    flat: dict[str, float] = {}

    def walk(prefix: str, value: object) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{prefix}/{key}" if prefix else str(key), inner)
        elif isinstance(value, (bool, int, float)) and not (isinstance(value, float) and not math.isfinite(value)):
            flat[prefix] = float(value)

    walk("", {key: value for key, value in report.items() if key in ("scores", "size", "speed")})
    for role in ROLES:
        for flag in (COLLAPSED, BELOW_BASELINE):
            flat[f"flags/{role}/{flag}"] = float(flag in report["scores"]["flags"][role])
    return flat


def markdown_table(report: dict) -> str:
    """The report as the markdown people read (Prefect artifact, report.md, model card)."""
    scores = report["scores"]
    lines = [f"### {report['task']}: teacher vs student", ""]
    for warning in scores["warnings"]:
        lines += [f"> **Warning:** {warning}", ""]  # one quote each: adjacent quote lines would run together
    lines += ["| split | metric | baseline | teacher | student |", "|---|---|---|---|---|"]
    for split, scored in scores["splits"].items():
        roles = [scored["baseline"], scored["teacher"], scored["student"]]
        for metric in (m for m in scored["teacher"]["metrics"] if m != SCORE):
            primary = metric == get_task(report["task"]).primary_metric
            name = f"**{metric}** (score)" if primary else metric
            cells = [_pct_interval(r["metrics"][metric], r["intervals"].get(metric)) for r in roles]
            lines.append(f"| {split} | {name} | " + " | ".join(cells) + " |")
    lines.append("")
    for split, scored in scores["splits"].items():
        lines += _split_notes(report["task"], split, scored)
    bootstrap = scores["bootstrap"]
    lines.append(
        f"- intervals: {100 * bootstrap['confidence']:.0f}% percentile intervals of {bootstrap['resamples']} paired "
        f"bootstrap resamples of the dev rows (seed {bootstrap['seed']}); scores x100"
    )
    if "size" in report:
        size = report["size"]
        lines.append(
            f"- parameters: teacher {size['teacher']['parameters'] / 1e6:.1f}M, student "
            f"{size['student']['parameters'] / 1e6:.1f}M ({size['compression']:.1f}x smaller)"
        )
    if report.get("speed"):
        speed = report["speed"]
        lines.append(
            f"- speed on {speed['device']} (sequence {speed['seq_length']}): batch 1 {speed['batch1']['teacher_ms']:.1f} ms "
            f"-> {speed['batch1']['student_ms']:.1f} ms ({speed['batch1']['speedup']:.1f}x); batch 32 "
            f"{speed['batch32']['teacher_examples_per_s']:.0f} -> {speed['batch32']['student_examples_per_s']:.0f} "
            f"examples/s ({speed['batch32']['speedup']:.1f}x)"
        )
    return "\n".join(lines) + "\n"


def _split_notes(task: str, split: str, scored: dict) -> list[str]:
    base = scored["baseline"]
    spec = get_task(task)
    notes = [f"- {split}: {scored['examples']} rows; baseline = {base['rule']} (`{base['prediction']}`)"]
    if spec.primary_metric == "accuracy":
        notes[0] += f"; one row is {100 / scored['examples']:.2g} points of accuracy"
    for key, title in (("retention", "retention (student / teacher)"),
                       ("gain_retention", "retention of the gain over the baseline")):
        entry = scored[key]
        if entry["value"] is None:
            notes.append(f"- {split} {title}: not meaningful: {entry['note']}")
        else:
            interval = entry["interval"]
            shown = f"[{100 * interval['low']:.1f}%, {100 * interval['high']:.1f}%]" if interval else f"({entry['note']})"
            notes.append(f"- {split} {title}: {100 * entry['value']:.1f}% {shown}")
    diff = scored["student_minus_teacher"]
    verdict = "significant" if diff["significant"] else "not significant"
    interval = diff["interval"]
    shown = f" [{100 * interval['low']:+.1f}, {100 * interval['high']:+.1f}]" if interval else ""
    notes.append(f"- {split} student - teacher: {_signed(diff['value'])} points{shown}, {verdict}")
    return notes


def _speed(teacher: PreTrainedModel, student: PreTrainedModel, repeats: int, seq_length: int) -> dict:
    device = next(student.parameters()).device
    speed = {"device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device), "seq_length": seq_length}
    for batch, count in ((1, repeats), (32, max(3, repeats // 5))):
        timed = time_models({"teacher": teacher, "student": student}, batch, seq_length, repeats=count, device=device)
        speed[f"batch{batch}"] = {
            "teacher_ms": timed["teacher"].latency_ms,
            "student_ms": timed["student"].latency_ms,
            "teacher_examples_per_s": timed["teacher"].examples_per_second,
            "student_examples_per_s": timed["student"].examples_per_second,
            "speedup": timed["teacher"].median_seconds / timed["student"].median_seconds,
        }
    return speed


def _baseline_resampled(spec: TaskSpec, baseline: Baseline, labels: np.ndarray, bootstrap: Bootstrap) -> dict:
    if spec.is_regression:  # a constant's correlations are taken as 0 (see baselines), in every resample too
        zeros = np.zeros(bootstrap.resamples)
        return with_task_score(spec, {"pearson": zeros, "spearman": zeros})
    return resampled_metrics(spec, baseline_predictions(baseline, len(labels)), labels, bootstrap)


def _intervals(resampled: dict[str, np.ndarray], confidence: float) -> dict[str, dict | None]:
    intervals = {name: percentile_interval(values, confidence) for name, values in resampled.items()}
    return {name: interval.as_dict() if interval else None for name, interval in intervals.items()}


def _why_retention_withheld(scored: dict) -> str | None:
    teacher, base = scored["teacher"], scored["baseline"]
    if teacher[COLLAPSED]:
        return f"the teacher collapsed (it {teacher['spread']['reason']})"
    if not teacher["beats_baseline"]:
        return (f"the teacher ({_pct(teacher['metrics'][SCORE])}) does not beat the baseline "
                f"({_pct(base['metrics'][SCORE])}, {base['rule']})")
    if not math.isfinite(scored["student"]["metrics"][SCORE]):
        return "the student's score is undefined (constant predictions)"
    return None


def _ratio(
    numerator: float, denominator: float, resampled_numerator: np.ndarray, resampled_denominator: np.ndarray,
    withheld: str | None, confidence: float, what: str,
) -> dict:
    """numerator / denominator with a paired interval; the interval is None when `what` is not above 0 in
    every resample (the ratio is unbounded there)."""
    if withheld:
        return {"value": None, "interval": None, "note": withheld}
    safe = resampled_denominator > 0
    ratios = np.divide(resampled_numerator, resampled_denominator, out=np.full(len(safe), np.nan), where=safe)
    interval = percentile_interval(ratios, confidence)
    note = None if interval else f"no interval: {what} is not above 0 in {int((~safe).sum())} of {len(safe)} resamples"
    return {"value": float(numerator / denominator), "interval": interval.as_dict() if interval else None, "note": note}


def _finite(value: object) -> object:
    if isinstance(value, dict):
        return {key: _finite(inner) for key, inner in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(inner) for inner in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _pct(value: float) -> str:
    return f"{100 * value:.1f}" if math.isfinite(value) else "undefined"


def _signed(value: float) -> str:
    return f"{100 * value:+.1f}" if math.isfinite(value) else "undefined"


def _pct_interval(value: float, interval: dict | None) -> str:
    shown = _pct(value)
    return f"{shown} [{100 * interval['low']:.1f}, {100 * interval['high']:.1f}]" if interval else shown
