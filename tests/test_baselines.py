"""Constant baselines (majority class of the training labels, mean score) and collapse detection."""

from __future__ import annotations

import numpy as np
import pytest

from tinybert_core.baselines import MAX_CLASS_SHARE, baseline_metrics, constant_baseline, prediction_spread
from tinybert_core.glue_data import load_glue_split


def test_majority_class_comes_from_the_training_labels_when_given():
    # WNLI's shape: train nearly balanced (323 entailment, 312 not), dev 56% not_entailment (class 0).
    train = np.array([1] * 323 + [0] * 312)
    dev = np.array([0] * 40 + [1] * 31)
    from_train = constant_baseline("wnli", dev, train)
    assert (from_train.prediction, from_train.label) == (1, "entailment")
    assert from_train.rule == "majority class of the training labels"
    assert baseline_metrics("wnli", from_train, dev)["accuracy"] == pytest.approx(31 / 71)
    from_dev = constant_baseline("wnli", dev)
    assert (from_dev.label, from_dev.rule) == ("not_entailment", "majority class of the dev labels")
    assert from_dev.describe() == "majority class of the dev labels (`not_entailment`)"


def test_real_mrpc_majority_baseline_scores_f1_of_the_equivalent_class(glue_dir):
    train = np.array(load_glue_split("mrpc", glue_dir, "train")["label"])
    dev = np.array(load_glue_split("mrpc", glue_dir, "dev")["label"])
    baseline = constant_baseline("mrpc", dev, train)
    assert baseline.label == "equivalent"  # 2474 of 3668 training pairs
    metrics = baseline_metrics("mrpc", baseline, dev)
    accuracy = 279 / 408
    assert metrics["accuracy"] == pytest.approx(accuracy)
    assert metrics["f1"] == pytest.approx(2 * accuracy / (1 + accuracy))  # precision = accuracy, recall = 1
    assert metrics["score"] == pytest.approx((metrics["f1"] + accuracy) / 2)  # 74.8: what MRPC models must beat


def test_regression_baseline_is_the_mean_score_with_zero_correlation():
    baseline = constant_baseline("stsb", np.array([1.0, 2.0]), np.array([2.0, 4.0]))
    assert baseline.prediction == 3.0 and baseline.label is None and "mean score" in baseline.rule
    assert baseline_metrics("stsb", baseline, np.array([1.0, 2.0])) == {
        "pearson": 0.0, "spearman": 0.0, "pearson_spearman": 0.0, "score": 0.0}
    with pytest.raises(ValueError, match="no labels"):
        constant_baseline("stsb", np.array([]))


def test_constant_and_near_constant_classifiers_collapse():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 277)
    # The RTE student of the issue: P(not_entailment) 0.543-0.544 on every row.
    p = rng.uniform(0.543, 0.544, 277)
    spread = prediction_spread("rte", np.log(np.stack([1 - p, p], axis=1)), labels)
    assert spread.collapsed and spread.top_class == "not_entailment" and spread.top_class_share == 1.0
    assert "predicts `not_entailment` for 277 of 277 rows" in spread.reason
    assert "barely move" in spread.reason
    # Probabilities that barely move collapse even where they straddle the boundary and the labels vary.
    p = 0.5 + rng.uniform(-1e-4, 1e-4, 277)
    straddling = prediction_spread("rte", np.log(np.stack([1 - p, p], axis=1)), labels)
    assert straddling.collapsed and straddling.top_class_share < 0.6
    # One class for 99% of the rows (2 of 200 elsewhere) is collapsed; 97% is not.
    for elsewhere, collapsed in ((2, True), (6, False)):
        logits = np.tile([2.0, -2.0], (200, 1))
        logits[:elsewhere] = [-2.0, 2.0]
        assert prediction_spread("sst2", logits, labels[:200]).collapsed is collapsed
        assert (1 - elsewhere / 200 >= MAX_CLASS_SHARE) is collapsed


def test_a_working_classifier_and_regressor_do_not_collapse():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, 300)
    logits = np.eye(3)[labels] * 2 + rng.normal(size=(300, 3))
    spread = prediction_spread("mnli", logits, labels)
    assert not spread.collapsed and spread.reason is None and spread.probability_std > 0.1
    gold = rng.uniform(0, 5, 300)
    assert not prediction_spread("stsb", gold + rng.normal(size=300), gold).collapsed


def test_constant_regression_collapses_against_the_labels_spread():
    gold = np.linspace(0, 5, 100)
    flat = prediction_spread("stsb", np.full((100, 1), 2.5) + np.linspace(0, 1e-4, 100)[:, None], gold)
    assert flat.collapsed and flat.relative_std < 1e-3 and flat.reason.startswith("predicts 2.500 for every row")
    with pytest.raises(ValueError, match="judged against the labels"):
        prediction_spread("stsb", gold)
    with pytest.raises(ValueError, match=r"expected logits \(N, 2\)"):
        prediction_spread("sst2", np.zeros((4, 3)))
