"""GLUE metrics: per-task metric dicts and the GLUE average.

All values are fractions (accuracy 0.843, not 84.3); reports multiply by 100 when they print.
"""

from __future__ import annotations

import logging
import math
import warnings
from typing import Mapping, Sequence

import numpy as np
from scipy import stats
from sklearn.metrics import f1_score, matthews_corrcoef

from tinybert_core.glue_tasks import TaskSpec, get_task

logger = logging.getLogger(__name__)

SCORE = "score"  # key of the task's GLUE number in every `compute_metrics` result


def compute_metrics(
    task: str | TaskSpec, predictions: Sequence | np.ndarray, labels: Sequence | np.ndarray
) -> dict[str, float]:
    """Score predictions against gold labels with the task's GLUE metrics, as fractions in [0, 1].

    Classification: `predictions` are class indices, shape (N,), or logits, shape (N, num_labels),
    which are reduced by argmax; `labels` are class indices (N,). The result holds `accuracy` for
    every classification task plus the task's own metrics: `mcc` (CoLA), `f1` (MRPC, QQP: binary F1
    of `spec.positive_class`, the class GLUE writes as "1": equivalent, duplicate).
    Regression (STS-B): `predictions` and `labels` are floats, shape (N,) or (N, 1); the result holds
    `pearson` and `spearman`.

    Two-metric tasks also get their mean under the family name (`f1_accuracy`, `pearson_spearman`),
    and every result has `score` = the task's GLUE number (`spec.primary_metric`).

    Degenerate input: constant predictions (or labels) give MCC 0.0 and F1 0.0 when no positive is
    predicted, as sklearn defines them; their Pearson/Spearman correlation is undefined and comes back
    as nan (with a logged warning) rather than an exception, so one collapsed evaluation does not
    end a training run; nan compares false, so callers picking a best score must treat it as worst.
    """
    spec = get_task(task)
    preds, gold = scoring_arrays(spec, predictions, labels)
    metrics = _regression_metrics(preds, gold) if spec.is_regression else _classification_metrics(spec, preds, gold)
    return {name: float(value) for name, value in with_task_score(spec, metrics).items()}


def scoring_arrays(
    spec: TaskSpec, predictions: Sequence | np.ndarray, labels: Sequence | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Predictions and labels as `compute_metrics` scores them: both (N,), class indices checked to lie in
    [0, num_labels) (logits reduced by argmax), or float64 scores for regression."""
    preds, gold = np.asarray(predictions), np.asarray(labels)
    if spec.is_regression:
        preds, gold = _flat(preds, "predictions"), _flat(gold, "labels")
    elif preds.ndim == 2:
        preds = preds.argmax(axis=-1)
    if preds.shape != gold.shape or preds.ndim != 1:
        raise ValueError(f"{spec.name}: predictions {preds.shape} and labels {gold.shape} must both be (N,)")
    if len(gold) == 0:
        raise ValueError(f"{spec.name}: no predictions to score")
    if not spec.is_regression:
        for what, values in (("predictions", preds), ("labels", gold)):
            if values.min() < 0 or values.max() >= spec.num_labels:
                raise ValueError(f"{spec.name}: {what} must be class indices in [0, {spec.num_labels}), "
                                 f"got values {sorted(set(values.tolist()))[:10]}")
    return preds, gold


def with_task_score(spec: TaskSpec, metrics: dict) -> dict:
    """Add the family mean of two-metric tasks (`f1_accuracy`, `pearson_spearman`) and `score` to the
    component metrics; the values may be floats or arrays of one value per bootstrap resample."""
    components = spec.metric_components
    if len(components) > 1:
        metrics[spec.primary_metric] = np.mean([metrics[c] for c in components], axis=0)
    metrics[SCORE] = metrics[spec.primary_metric]
    return metrics


def glue_score(task_scores: Mapping[str, float]) -> float:
    """Unweighted mean of per-task scores (each a `compute_metrics(...)["score"]`), as a fraction.

    Every entry counts once, so passing MNLI matched and mismatched as two entries ("mnli-m",
    "mnli-mm") counts them separately, as the "Avg" column of the BERT and TinyBERT papers does.
    The official GLUE leaderboard score instead averages the two MNLI numbers into one MNLI entry
    before averaging the nine tasks; pass their mean under one key to reproduce it. A nan score
    makes the average nan.
    """
    if not task_scores:
        raise ValueError("glue_score needs at least one task score")
    out_of_range = {name: s for name, s in task_scores.items() if abs(s) > 1}
    if out_of_range:
        # MCC can be negative, but nothing is above 1: these are most likely percentages.
        raise ValueError(f"task scores must be fractions in [-1, 1], got {out_of_range}")
    return float(np.mean(list(task_scores.values())))


def _flat(values: np.ndarray, what: str) -> np.ndarray:
    """(N,) or (N, 1) floats -> (N,) float64."""
    if values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]
    if values.ndim != 1:
        raise ValueError(f"regression {what} must have shape (N,) or (N, 1), got {values.shape}")
    return values.astype(np.float64)


def _classification_metrics(spec: TaskSpec, preds: np.ndarray, gold: np.ndarray) -> dict[str, float]:
    metrics = {"accuracy": float(np.mean(preds == gold))}
    if "mcc" in spec.metric_components:
        # sklearn defines MCC as 0 when either side is constant; skip the call to avoid its warning.
        constant = len(set(preds.tolist())) == 1 or len(set(gold.tolist())) == 1
        metrics["mcc"] = 0.0 if constant else float(matthews_corrcoef(gold, preds))
    if "f1" in spec.metric_components:
        positive = spec.positive_class
        metrics["f1"] = float(f1_score(gold, preds, pos_label=positive, average="binary", zero_division=0.0))
    return metrics


def _regression_metrics(preds: np.ndarray, gold: np.ndarray) -> dict[str, float]:
    if np.ptp(preds) == 0 or np.ptp(gold) == 0:
        logger.warning("correlation of constant values is undefined; pearson and spearman are nan")
        return {"pearson": math.nan, "spearman": math.nan}
    with warnings.catch_warnings():
        # Near-constant input still warns in scipy; the result is defined, so keep it quiet.
        warnings.simplefilter("ignore", stats.ConstantInputWarning)
        pearson = stats.pearsonr(preds, gold).statistic
        spearman = stats.spearmanr(preds, gold).statistic
    return {"pearson": float(pearson), "spearman": float(spearman)}
