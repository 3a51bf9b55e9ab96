"""Paired bootstrap confidence intervals for GLUE dev scores, and for differences between two models.

    bootstrap = Bootstrap(rows=len(labels), resamples=1000, seed=0)
    teacher = resampled_metrics("mrpc", teacher_predictions, labels, bootstrap)   # {"f1": (B,), ..., "score": (B,)}
    student = resampled_metrics("mrpc", student_predictions, labels, bootstrap)
    percentile_interval(teacher["score"], bootstrap.confidence)                  # Interval(low=..., high=...)
    difference(student_score, teacher_score, student["score"], teacher["score"])  # Difference(..., significant=...)

Each resample draws the dev rows with replacement; every model scored with the same `Bootstrap` sees the same
rows in every resample (paired resampling), so what is shared between two models (hard rows, easy rows) cancels
in their difference and in ratios such as retention. Intervals are percentile intervals of the resampled
statistic. Every GLUE metric is computed for all resamples at once (accuracy, F1 and MCC from one confusion
matrix per resample; Pearson and Spearman row-wise), with the same definitions as `glue_metrics.compute_metrics`
(tests check they agree resample by resample): 1000 resamples of a 1,500-row dev set take milliseconds.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from tinybert_core.glue_metrics import SCORE, compute_metrics, scoring_arrays, with_task_score
from tinybert_core.glue_tasks import TaskSpec, get_task

DEFAULT_RESAMPLES = 1000
DEFAULT_CONFIDENCE = 0.95
_CHUNK_ENTRIES = 4_000_000  # row indices drawn at a time: bounds memory on large dev sets (QQP: 40k rows)


@dataclass(frozen=True)
class Interval:
    low: float
    high: float

    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    def as_dict(self) -> dict[str, float]:
        return {"low": self.low, "high": self.high}


@dataclass(frozen=True)
class Bootstrap:
    """Which rows each resample draws. The draws depend only on (rows, resamples, seed), and every call of
    `index_chunks` repeats them, so all models scored with one `Bootstrap` are paired resample by resample."""

    rows: int
    resamples: int = DEFAULT_RESAMPLES
    seed: int = 0
    confidence: float = DEFAULT_CONFIDENCE

    def __post_init__(self) -> None:
        if self.rows < 1 or self.resamples < 1:
            raise ValueError(f"bootstrap needs rows >= 1 and resamples >= 1, got {self.rows} and {self.resamples}")
        if not 0 < self.confidence < 1:
            raise ValueError(f"confidence must lie in (0, 1), got {self.confidence}")

    def index_chunks(self) -> Iterator[np.ndarray]:
        """Row indices of the resamples, (b, rows) int arrays of up to b resamples each, in resample order."""
        generator = np.random.default_rng(self.seed)
        per_chunk = max(1, _CHUNK_ENTRIES // self.rows)
        for start in range(0, self.resamples, per_chunk):
            count = min(per_chunk, self.resamples - start)
            yield generator.integers(0, self.rows, size=(count, self.rows))


@dataclass(frozen=True)
class Difference:
    """Model A's score minus model B's on the same rows, with its paired bootstrap interval."""

    value: float
    interval: Interval | None  # None: undefined in some resample (a constant regression output)
    significant: bool  # the interval excludes 0

    def as_dict(self) -> dict:
        interval = self.interval.as_dict() if self.interval else None
        return {"value": self.value, "interval": interval, "significant": self.significant}


def resampled_metrics(
    task: str | TaskSpec, predictions: Sequence | np.ndarray, labels: Sequence | np.ndarray, bootstrap: Bootstrap
) -> dict[str, np.ndarray]:
    """Every metric of `compute_metrics(task, predictions, labels)`, once per resample: {name: (B,) array}.

    Inputs as for `compute_metrics` (class indices or logits (N, C); regression scores (N,) or (N, 1)).
    A resample whose regression predictions are constant has nan correlations, as `compute_metrics` gives.
    """
    spec = get_task(task)
    preds, gold = scoring_arrays(spec, predictions, labels)
    if len(gold) != bootstrap.rows:
        raise ValueError(f"{spec.name}: {len(gold)} rows to score, but the bootstrap draws from {bootstrap.rows}")
    chunks = [_chunk_metrics(spec, preds[rows], gold[rows]) for rows in bootstrap.index_chunks()]
    components = {name: np.concatenate([chunk[name] for chunk in chunks]) for name in chunks[0]}
    return with_task_score(spec, components)


def percentile_interval(values: np.ndarray, confidence: float = DEFAULT_CONFIDENCE) -> Interval | None:
    """The central `confidence` share of resampled values; None when any resample is not finite (the
    statistic is undefined or unbounded there, so no interval describes it)."""
    values = np.asarray(values, dtype=np.float64)
    if not np.isfinite(values).all():
        return None
    tail = (1 - confidence) / 2
    low, high = np.quantile(values, [tail, 1 - tail])
    return Interval(float(low), float(high))


def difference(
    value_a: float, value_b: float, resampled_a: np.ndarray, resampled_b: np.ndarray,
    confidence: float = DEFAULT_CONFIDENCE,
) -> Difference:
    """A - B from point scores and their paired resamples (both from one `Bootstrap`)."""
    interval = percentile_interval(np.asarray(resampled_a) - np.asarray(resampled_b), confidence)
    return Difference(float(value_a - value_b), interval, bool(interval and interval.excludes_zero()))


def paired_difference(
    task: str | TaskSpec,
    predictions_a: Sequence | np.ndarray,
    predictions_b: Sequence | np.ndarray,
    labels: Sequence | np.ndarray,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    confidence: float = DEFAULT_CONFIDENCE,
) -> Difference:
    """Task score of model A minus model B on the same dev rows, e.g. two ablation rows of a table;
    `significant` says whether the paired bootstrap interval excludes 0."""
    bootstrap = Bootstrap(len(labels), resamples, seed, confidence)
    a, b = (resampled_metrics(task, p, labels, bootstrap)[SCORE] for p in (predictions_a, predictions_b))
    point_a, point_b = (compute_metrics(task, p, labels)[SCORE] for p in (predictions_a, predictions_b))
    return difference(point_a, point_b, a, b, confidence)


def _chunk_metrics(spec: TaskSpec, preds: np.ndarray, gold: np.ndarray) -> dict[str, np.ndarray]:
    """Component metrics of b resamples, preds and gold (b, N)."""
    if spec.is_regression:
        return {
            "pearson": _row_pearson(preds, gold),
            "spearman": _row_pearson(stats.rankdata(preds, axis=1), stats.rankdata(gold, axis=1)),
        }
    return confusion_metrics(spec, _confusions(gold, preds, spec.num_labels))


def _confusions(gold: np.ndarray, preds: np.ndarray, classes: int) -> np.ndarray:
    """(b, N) gold and predicted classes -> (b, C, C) counts, [resample, gold class, predicted class]."""
    resample = np.arange(gold.shape[0])[:, None]
    cells = (resample * classes + gold) * classes + preds
    return np.bincount(cells.ravel(), minlength=gold.shape[0] * classes * classes).reshape(-1, classes, classes)


def confusion_metrics(spec: TaskSpec, confusion: np.ndarray) -> dict[str, np.ndarray]:
    """Accuracy, and MCC / F1 where the task reports them, from (B, C, C) confusion counts [gold, predicted].

    Definitions as sklearn's: multiclass MCC (Gorodkin's R_K), 0 when either side is constant; F1 of
    `spec.positive_class`, 0 when there is no positive at all (zero_division=0).
    """
    confusion = confusion.astype(np.float64)
    total = confusion.sum(axis=(1, 2))
    correct = np.trace(confusion, axis1=1, axis2=2)
    metrics = {"accuracy": correct / total}
    if "mcc" in spec.metric_components:
        true, predicted = confusion.sum(axis=2), confusion.sum(axis=1)  # (B, C) each
        covariance = correct * total - (true * predicted).sum(axis=1)
        scale = np.sqrt((total**2 - (predicted**2).sum(axis=1)) * (total**2 - (true**2).sum(axis=1)))
        metrics["mcc"] = np.divide(covariance, scale, out=np.zeros_like(total), where=scale > 0)
    if "f1" in spec.metric_components:
        p = spec.positive_class
        tp = confusion[:, p, p]
        denominator = confusion[:, :, p].sum(axis=1) + confusion[:, p, :].sum(axis=1)  # 2TP + FP + FN
        metrics["f1"] = np.divide(2 * tp, denominator, out=np.zeros_like(total), where=denominator > 0)
    return metrics


def _row_pearson(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson correlation of each row pair of (b, N) arrays; nan where a row is constant."""
    dx, dy = x - x.mean(axis=1, keepdims=True), y - y.mean(axis=1, keepdims=True)
    constant = (np.ptp(x, axis=1) == 0) | (np.ptp(y, axis=1) == 0)
    scale = np.sqrt((dx * dx).sum(axis=1) * (dy * dy).sum(axis=1))
    safe = np.where(constant, 1.0, scale)
    return np.where(constant, np.nan, (dx * dy).sum(axis=1) / safe)
