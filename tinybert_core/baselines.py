"""What a model has to beat, and whether it learnt anything at all: constant baselines and collapse detection.

    baseline = constant_baseline(task, dev_labels, train_labels)      # majority class / mean score
    baseline_metrics(task, baseline, dev_labels)                      # its dev metrics
    spread = prediction_spread(task, logits, dev_labels)              # spread.collapsed, spread.reason

Baseline: the best a model can do without reading its input, a constant prediction. Classification: the
majority class of the *training* labels when they are given, because that is the constant a model can learn
from label frequencies alone; the majority of the dev labels would peek at the answers being scored (on WNLI
the two differ: train is balanced, dev is 56% class 0). Without training labels the dev majority stands in,
and the report says so. Regression: the mean training (else dev) score. A constant has no correlation with
anything, so for Pearson/Spearman its score is taken as 0, the value of a prediction unrelated to the labels
(`compute_metrics` itself calls the correlation of a constant undefined: nan).

Collapse: a model whose predictions do not depend on its input. Classification: one class takes at least
`MAX_CLASS_SHARE` of the predictions, or no class probability moves by more than `MIN_PROBABILITY_STD`
(standard deviation over rows) however the predicted labels fall. Regression: the predictions' standard
deviation is below `MIN_RELATIVE_STD` times the labels'.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import softmax

from tinybert_core.glue_metrics import compute_metrics, scoring_arrays, with_task_score
from tinybert_core.glue_tasks import TaskSpec, get_task

# A distilled student that collapsed on RTE put all 277 dev rows in one class with P(class 1) between 0.543
# and 0.544 (std 0.0002; its teacher's std was 0.287).
MAX_CLASS_SHARE = 0.99
MIN_PROBABILITY_STD = 1e-3
MIN_RELATIVE_STD = 1e-3


@dataclass(frozen=True)
class Baseline:
    """A constant prediction: a class index, or a regression score."""

    prediction: int | float
    rule: str  # in words, e.g. "majority class of the training labels"
    label: str | None  # the class's name; None for regression

    def describe(self) -> str:
        what = f"`{self.label}`" if self.label is not None else f"{self.prediction:.3f}"
        return f"{self.rule} ({what})"


@dataclass(frozen=True)
class Spread:
    """How much a model's predictions vary over an evaluation set, and whether they collapsed."""

    collapsed: bool
    reason: str | None  # why it counts as collapsed, in words; None when it did not
    top_class: str | None = None  # classification: the most predicted label and its share of rows
    top_class_share: float | None = None
    probability_std: float | None = None  # the largest std over rows of one class's probability
    relative_std: float | None = None  # regression: std of the predictions / std of the labels

    def as_dict(self) -> dict:
        return {
            "collapsed": self.collapsed, "reason": self.reason, "top_class": self.top_class,
            "top_class_share": self.top_class_share, "probability_std": self.probability_std,
            "relative_std": self.relative_std,
        }


def constant_baseline(
    task: str | TaskSpec, dev_labels: Sequence | np.ndarray, train_labels: Sequence | np.ndarray | None = None
) -> Baseline:
    """The constant to beat: majority class (classification) or mean score (regression) of the training
    labels, or of the dev labels when no training labels are given."""
    spec = get_task(task)
    source = "training" if train_labels is not None and len(train_labels) else "dev"
    values = np.asarray(train_labels if source == "training" else dev_labels)
    if len(values) == 0:
        raise ValueError(f"{spec.name}: no labels to take a baseline from")
    if spec.is_regression:
        return Baseline(float(np.mean(values)), f"mean score of the {source} labels", None)
    counts = np.bincount(values.astype(np.int64), minlength=spec.num_labels)
    majority = int(counts.argmax())  # ties: the lower class index, as argmax takes the first
    return Baseline(majority, f"majority class of the {source} labels", spec.labels[majority])


def baseline_predictions(baseline: Baseline, rows: int) -> np.ndarray:
    """The baseline's predictions for `rows` rows, shape (rows,)."""
    return np.full(rows, baseline.prediction)


def baseline_metrics(task: str | TaskSpec, baseline: Baseline, dev_labels: Sequence | np.ndarray) -> dict[str, float]:
    """The baseline's dev metrics, as `compute_metrics` gives them; correlations of the constant are 0."""
    spec = get_task(task)
    if spec.is_regression:
        return {name: float(value) for name, value in with_task_score(spec, {"pearson": 0.0, "spearman": 0.0}).items()}
    return compute_metrics(spec, baseline_predictions(baseline, len(dev_labels)), dev_labels)


def prediction_spread(
    task: str | TaskSpec, logits: np.ndarray, labels: Sequence | np.ndarray | None = None
) -> Spread:
    """Whether a model's outputs on an evaluation set collapsed to (nearly) a constant; see the module doc.

    `logits`: (N, C) for classification, (N,) or (N, 1) scores for regression; `labels` (N,), needed for
    regression (their spread is the yardstick).
    """
    spec = get_task(task)
    logits = np.asarray(logits, dtype=np.float64)
    if spec.is_regression:
        if labels is None:
            raise ValueError(f"{spec.name}: the spread of regression outputs is judged against the labels'")
        scores, gold = scoring_arrays(spec, logits, labels)
        label_std = float(gold.std())
        relative = float(scores.std() / label_std) if label_std > 0 else float("nan")
        collapsed = not relative >= MIN_RELATIVE_STD  # nan (constant labels) counts as collapsed too
        reason = (f"predicts {scores.mean():.3f} for every row (std {scores.std():.2g}, "
                  f"{relative:.2g} of the labels' std)") if collapsed else None
        return Spread(collapsed, reason, relative_std=relative)

    if logits.ndim != 2 or logits.shape[1] != spec.num_labels:
        raise ValueError(f"{spec.name}: expected logits (N, {spec.num_labels}), got {logits.shape}")
    predicted = logits.argmax(axis=1)
    counts = np.bincount(predicted, minlength=spec.num_labels)
    top = int(counts.argmax())
    share = float(counts[top] / len(predicted))
    probability_std = float(softmax(logits, axis=1).std(axis=0).max())
    reasons = []
    if share >= MAX_CLASS_SHARE:
        reasons.append(f"predicts `{spec.labels[top]}` for {counts[top]} of {len(predicted)} rows")
    if probability_std < MIN_PROBABILITY_STD:
        reasons.append(f"its class probabilities barely move (largest std over rows {probability_std:.2g})")
    return Spread(bool(reasons), "; ".join(reasons) or None, spec.labels[top], share, probability_std)
