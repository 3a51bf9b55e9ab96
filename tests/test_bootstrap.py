"""Paired bootstrap: the vectorized metrics equal compute_metrics on every resample, the intervals cover the
truth as often as they claim, and differences between two models are judged on the same rows."""

from __future__ import annotations

import numpy as np
import pytest

from tinybert_core.bootstrap import Bootstrap, paired_difference, percentile_interval, resampled_metrics
from tinybert_core.glue_metrics import SCORE, compute_metrics
from tinybert_core.glue_tasks import get_task


def synthetic(task: str, rows: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Gold labels and a model's predictions that are right about 70% of the time (regression: noisy scores)."""
    spec = get_task(task)
    if spec.is_regression:
        gold = rng.uniform(0, 5, rows).round(1)  # ties, as STS-B has: Spearman must average tied ranks
        return gold + rng.normal(0, 1, rows), gold
    gold = rng.integers(0, spec.num_labels, rows)
    return np.where(rng.random(rows) < 0.7, gold, rng.integers(0, spec.num_labels, rows)), gold


@pytest.mark.parametrize("task", ["sst2", "mrpc", "cola", "mnli", "stsb"])
def test_every_resample_scores_as_compute_metrics_scores_its_rows(task):
    rng = np.random.default_rng(3)
    preds, gold = synthetic(task, 120, rng)
    bootstrap = Bootstrap(120, resamples=40, seed=5)
    resampled = resampled_metrics(task, preds, gold, bootstrap)
    rows = np.concatenate(list(bootstrap.index_chunks()))
    assert rows.shape == (40, 120)
    for b in range(40):
        expected = compute_metrics(task, preds[rows[b]], gold[rows[b]])
        assert set(resampled) == set(expected)
        for name, value in expected.items():
            assert resampled[name][b] == pytest.approx(value, abs=1e-12), (name, b)


def test_logits_and_large_sets_are_chunked_the_same(monkeypatch):
    rng = np.random.default_rng(0)
    gold = rng.integers(0, 2, 300)
    logits = rng.normal(size=(300, 2))
    whole = resampled_metrics("mrpc", logits, gold, Bootstrap(300, 50, seed=1))
    monkeypatch.setattr("tinybert_core.bootstrap._CHUNK_ENTRIES", 7 * 300)  # 7 resamples per chunk
    chunked = resampled_metrics("mrpc", logits.argmax(1), gold, Bootstrap(300, 50, seed=1))
    np.testing.assert_array_equal(whole[SCORE], chunked[SCORE])


def test_interval_covers_the_true_accuracy_at_its_nominal_rate():
    """400 dev sets of 200 rows from a model whose true accuracy is 0.75: the 95% interval should hold 0.75
    in about 95% of them (binomial sd of the rate over 400 sets: 1.1 points)."""
    rng = np.random.default_rng(2026)
    true_accuracy, rows, datasets = 0.75, 200, 400
    covered = 0
    for trial in range(datasets):
        gold = rng.integers(0, 2, rows)
        preds = np.where(rng.random(rows) < true_accuracy, gold, 1 - gold)
        interval = percentile_interval(resampled_metrics("sst2", preds, gold, Bootstrap(rows, 1000, seed=trial))[SCORE])
        covered += interval.low <= true_accuracy <= interval.high
    assert 0.91 <= covered / datasets <= 0.98, covered / datasets


def test_intervals_are_seeded_and_shrink_with_more_rows():
    rng = np.random.default_rng(1)
    preds, gold = synthetic("cola", 2000, rng)
    first = percentile_interval(resampled_metrics("cola", preds, gold, Bootstrap(2000, 500, seed=9))[SCORE])
    again = percentile_interval(resampled_metrics("cola", preds, gold, Bootstrap(2000, 500, seed=9))[SCORE])
    small = percentile_interval(resampled_metrics("cola", preds[:200], gold[:200], Bootstrap(200, 500, seed=9))[SCORE])
    assert first == again
    assert first.low < compute_metrics("cola", preds, gold)[SCORE] < first.high
    assert (first.high - first.low) < 0.5 * (small.high - small.low)  # width ~ 1/sqrt(rows): 10x rows, ~3x narrower


def test_undefined_resamples_give_no_interval():
    assert percentile_interval(np.array([0.1, np.nan, 0.3])) is None
    assert percentile_interval(np.array([0.1, np.inf])) is None
    gold = np.linspace(0, 5, 50)
    constant = resampled_metrics("stsb", np.full(50, 2.5), gold, Bootstrap(50, 20))
    assert np.isnan(constant[SCORE]).all()


def test_paired_difference_tells_real_gaps_from_noise():
    rng = np.random.default_rng(4)
    gold = rng.integers(0, 2, 600)
    right = rng.random(600) < 0.8
    a = np.where(right, gold, 1 - gold)
    # The same accuracy with other rows wrong: a difference of 0, not significant.
    b = np.where(np.roll(right, 1), gold, 1 - gold)
    same = paired_difference("sst2", a, b, gold)
    assert same.value == pytest.approx((a == gold).mean() - (b == gold).mean())
    assert not same.significant and same.interval.low < 0 < same.interval.high
    # B = A with 60 of its right rows made wrong: 10 points worse on the same rows.
    worse = a.copy()
    flip = np.flatnonzero(a == gold)[:60]
    worse[flip] = 1 - worse[flip]
    gap = paired_difference("sst2", a, worse, gold)
    assert gap.value == pytest.approx(0.1) and gap.significant and gap.interval.low > 0
    # Paired: only the 60 rows where they differ move the difference (rows both get right or wrong cancel), so
    # its interval is much narrower than that of two independent resamplings.
    apart = [resampled_metrics("sst2", p, gold, Bootstrap(600, seed=s))[SCORE] for p, s in ((a, 0), (worse, 1))]
    unpaired = percentile_interval(apart[0] - apart[1])
    assert gap.interval.high - gap.interval.low < 0.7 * (unpaired.high - unpaired.low)
    identical = paired_difference("stsb", gold + rng.normal(size=600), gold + rng.normal(size=600), gold * 1.0)
    assert identical.as_dict()["significant"] in (True, False)  # every metric family works


def test_bad_bootstrap_settings_are_rejected():
    with pytest.raises(ValueError, match="resamples >= 1"):
        Bootstrap(10, resamples=0)
    with pytest.raises(ValueError, match="confidence"):
        Bootstrap(10, confidence=95)
    with pytest.raises(ValueError, match="bootstrap draws from 9"):
        resampled_metrics("sst2", [0, 1], [0, 1], Bootstrap(9))
