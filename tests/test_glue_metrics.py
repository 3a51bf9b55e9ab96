"""GLUE metrics against hand-computed values, sklearn/scipy, and degenerate input."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import f1_score, matthews_corrcoef

from tinybert_core.glue_metrics import compute_metrics, glue_score
from tinybert_core.glue_tasks import TASKS

# TP=2 (rows 0, 4), FP=1 (row 1), TN=2 (rows 2, 3), FN=0.
PREDS = [1, 1, 0, 0, 1]
GOLD = [1, 0, 0, 0, 1]


def test_mrpc_by_hand():
    metrics = compute_metrics("mrpc", PREDS, GOLD)
    assert metrics["accuracy"] == pytest.approx(4 / 5)
    assert metrics["f1"] == pytest.approx(2 * 2 / (2 * 2 + 1 + 0))  # 2TP / (2TP + FP + FN)
    assert metrics["f1_accuracy"] == pytest.approx(0.8)
    assert metrics["score"] == metrics["f1_accuracy"]


def test_cola_mcc_by_hand():
    metrics = compute_metrics("cola", PREDS, GOLD)
    # (TP*TN - FP*FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)) = 4 / sqrt(3*2*3*2)
    assert metrics["mcc"] == pytest.approx(4 / 6)
    assert metrics["score"] == metrics["mcc"]
    assert metrics["accuracy"] == pytest.approx(0.8)


def test_stsb_pearson_by_hand():
    metrics = compute_metrics("stsb", [1.0, 2.0, 3.0], [1.0, 2.0, 4.0])
    # deviations (-1, 0, 1) and (-4/3, -1/3, 5/3): r = 3 / sqrt(2 * 42/9)
    pearson = 3 / math.sqrt(2 * 42 / 9)
    assert metrics["pearson"] == pytest.approx(pearson)
    assert metrics["spearman"] == pytest.approx(1.0)
    assert metrics["score"] == pytest.approx((pearson + 1.0) / 2)


def test_agrees_with_sklearn_and_scipy_on_random_data():
    rng = np.random.default_rng(0)
    gold, preds = rng.integers(0, 2, 200), rng.integers(0, 2, 200)
    qqp = compute_metrics("qqp", preds, gold)
    assert qqp["f1"] == pytest.approx(f1_score(gold, preds))
    assert compute_metrics("cola", preds, gold)["mcc"] == pytest.approx(matthews_corrcoef(gold, preds))
    x, y = rng.normal(size=100), rng.normal(size=100)
    stsb = compute_metrics("stsb", x, y)
    assert stsb["pearson"] == pytest.approx(stats.pearsonr(x, y).statistic)
    assert stsb["spearman"] == pytest.approx(stats.spearmanr(x, y).statistic)


def test_every_task_reports_score_equal_to_its_primary_metric():
    rng = np.random.default_rng(1)
    for spec in TASKS.values():
        if spec.is_regression:
            preds, gold = rng.normal(size=50), rng.normal(size=50)
        else:
            preds, gold = rng.integers(0, spec.num_labels, 50), rng.integers(0, spec.num_labels, 50)
        metrics = compute_metrics(spec, preds, gold)
        assert metrics["score"] == metrics[spec.primary_metric]
        assert set(spec.metric_components) <= set(metrics)
        assert all(-1.0 <= value <= 1.0 for value in metrics.values())


def test_logits_are_reduced_by_argmax_and_column_regression_is_flattened():
    logits = np.array([[0.1, 0.9, 0.0], [2.0, 0.0, 0.0], [0.0, 0.0, 3.0]])
    assert compute_metrics("mnli", logits, [1, 0, 1])["accuracy"] == pytest.approx(2 / 3)
    column = np.array([[1.0], [2.0], [3.0]])
    assert compute_metrics("stsb", column, [1.0, 2.0, 3.0])["pearson"] == pytest.approx(1.0)


def test_constant_predictions_give_zero_mcc_and_zero_f1():
    assert compute_metrics("cola", [1, 1, 1, 1], [1, 0, 1, 0])["mcc"] == 0.0
    mrpc = compute_metrics("mrpc", [0, 0, 0, 0], [1, 0, 1, 0])
    assert mrpc["f1"] == 0.0 and mrpc["accuracy"] == 0.5


def test_constant_regression_predictions_give_nan_correlations():
    metrics = compute_metrics("stsb", [2.5, 2.5, 2.5], [1.0, 2.0, 4.0])
    assert math.isnan(metrics["pearson"]) and math.isnan(metrics["spearman"]) and math.isnan(metrics["score"])


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="must both be"):
        compute_metrics("sst2", [0, 1, 1], [0, 1])
    with pytest.raises(ValueError, match="no predictions"):
        compute_metrics("sst2", [], [])
    with pytest.raises(ValueError, match="class indices"):
        compute_metrics("sst2", [0, 2], [0, 1])


def test_glue_score_is_the_mean_of_entries_counting_mnli_m_and_mm_separately():
    assert glue_score({"cola": 0.5, "mnli-m": 0.8, "mnli-mm": 0.6}) == pytest.approx((0.5 + 0.8 + 0.6) / 3)


def test_glue_score_reproduces_bert_base_on_the_glue_leaderboard():
    # BERT-base test-set numbers; the leaderboard merges MNLI-m/-mm into one task before averaging: 78.3.
    scores = {
        "cola": 0.521, "sst2": 0.935, "mrpc": (0.889 + 0.848) / 2, "stsb": (0.871 + 0.858) / 2,
        "qqp": (0.712 + 0.892) / 2, "mnli": (0.846 + 0.834) / 2, "qnli": 0.905, "rte": 0.664, "wnli": 0.651,
    }
    assert round(100 * glue_score(scores), 1) == 78.3


def test_glue_score_rejects_percentages_and_empty_input():
    with pytest.raises(ValueError, match="fractions"):
        glue_score({"sst2": 93.5})
    with pytest.raises(ValueError):
        glue_score({})
