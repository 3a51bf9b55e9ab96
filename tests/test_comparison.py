"""The teacher-vs-student report: baselines beside the models, collapsed students flagged and not aliased,
retention only where the teacher beats the baseline, intervals everywhere, strict JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from datasets import Dataset
from transformers import BertConfig

from tinybert_core.comparison import (
    alias_decision,
    compare,
    flat_metrics,
    markdown_table,
    report_json,
    score_split,
    scores_and_timings,
    scores_summary,
)
from tinybert_core.glue_tasks import get_task
from tinybert_core.models import StudentShape, build_student


def one_hot(labels: np.ndarray, wrong: int, classes: int = 2, start: int = 0) -> np.ndarray:
    """Logits (N, C) whose argmax is the label except on `wrong` rows from `start` on (binary: the other class)."""
    predicted = labels.copy()
    predicted[start : start + wrong] = (predicted[start : start + wrong] + 1) % classes
    return np.eye(classes)[predicted] * 3.0 + np.linspace(0, 0.5, len(labels))[:, None]  # varied, not constant


def report_for(task: str, teacher: np.ndarray, student: np.ndarray, labels: np.ndarray, train=None) -> dict:
    return {"task": task, "scores": scores_summary({"dev": score_split(task, teacher, student, labels, train)}, 1000, 0, 0.95)}


def test_a_healthy_student_keeps_retention_and_the_alias():
    labels = np.array([0, 1] * 100)
    report = report_for("sst2", one_hot(labels, 20), one_hot(labels, 26, start=10), labels, train=np.array([1, 1, 0]))
    dev = report["scores"]["splits"]["dev"]
    assert dev["baseline"]["prediction"] == "positive" and dev["baseline"]["metrics"]["score"] == 0.5
    assert dev["teacher"]["metrics"]["score"] == pytest.approx(0.90) and dev["student"]["metrics"]["score"] == pytest.approx(0.87)
    assert dev["retention"]["value"] == pytest.approx(0.87 / 0.90)
    assert dev["gain_retention"]["value"] == pytest.approx((0.87 - 0.5) / (0.90 - 0.5))
    low, high = dev["retention"]["interval"]["low"], dev["retention"]["interval"]["high"]
    assert low < 0.87 / 0.90 < high
    assert dev["teacher"]["minus_baseline"]["significant"] and not dev["student"]["collapsed"]
    assert report["scores"]["flags"] == {"teacher": [], "student": []} and report["scores"]["warnings"] == []
    decision = alias_decision(report)
    assert decision.allowed and "gets the alias @candidate" in decision.message()


def test_a_constant_student_is_flagged_and_not_aliased():
    """The RTE case of the issue: the student puts all rows in `not_entailment`, below the majority class."""
    labels = np.array([0] * 146 + [1] * 131)  # 52.7% entailment
    student = np.tile([0.0, 0.17], (277, 1))
    report = report_for("rte", one_hot(labels, 80), student, labels)
    dev = report["scores"]["splits"]["dev"]
    assert dev["student"]["collapsed"] and not dev["student"]["beats_baseline"]
    assert report["scores"]["flags"]["student"] == ["below_baseline", "collapsed"]
    assert any("The student collapsed on dev: it predicts `not_entailment` for 277 of 277 rows" in w
               for w in report["scores"]["warnings"])
    decision = alias_decision(report)
    assert not decision.allowed and "does NOT get the alias" in decision.message()
    assert "47.3 against 52.7" in decision.message()
    overridden = alias_decision(report, alias_collapsed=True)
    assert overridden.allowed and "anyway (overridden)" in overridden.message()
    # The markdown says it first, before any number.
    markdown = markdown_table(report)
    assert markdown.index("**Warning:** The student collapsed") < markdown.index("| split |")
    assert flat_metrics(report)["flags/student/collapsed"] == 1.0


def test_retention_is_withheld_when_the_teacher_does_not_beat_the_baseline():
    """The WNLI case: the student always says the dev majority class, the teacher sits far below it; the old
    report said "retention 173.9%"."""
    labels = np.array([0] * 40 + [1] * 31)
    teacher = one_hot(labels, 48)  # 23 of 71 right: 32.4%
    student = np.tile([1.0, -1.0], (71, 1))
    report = report_for("wnli", teacher, student, labels)
    dev = report["scores"]["splits"]["dev"]
    assert dev["student"]["metrics"]["score"] / dev["teacher"]["metrics"]["score"] > 1.7  # the noise it used to print
    for key in ("retention", "gain_retention"):
        assert dev[key]["value"] is None and dev[key]["interval"] is None
        assert "the teacher (32.4) does not beat the baseline (56.3" in dev[key]["note"]
    assert report["scores"]["flags"]["teacher"] == ["below_baseline"]
    assert json.loads(report_json(report))["scores"]["splits"]["dev"]["retention"]["value"] is None
    markdown = markdown_table(report)
    assert "- dev retention (student / teacher): not meaningful: the teacher (32.4)" in markdown
    assert "%" not in markdown.split("retention (student / teacher)")[1].split("\n")[0]


def test_a_collapsed_teacher_gives_no_retention_even_above_the_baseline():
    labels = np.array([0] * 30 + [1] * 70)
    train = np.array([0] * 60 + [1] * 40)  # the train majority (0) is the dev minority
    teacher = np.tile([-1.0, 1.0], (100, 1))  # always 1: 70% against the train-majority baseline's 30%
    report = report_for("sst2", teacher, one_hot(labels, 20), labels, train)
    dev = report["scores"]["splits"]["dev"]
    assert dev["teacher"]["beats_baseline"] and dev["teacher"]["collapsed"]
    assert dev["retention"]["value"] is None and dev["retention"]["note"].startswith("the teacher collapsed")


def test_collapsed_regression_student_writes_strict_json_with_nulls():
    rng = np.random.default_rng(0)
    gold = rng.uniform(0, 5, 150)
    teacher = (gold + rng.normal(0, 1, 150))[:, None]
    report = report_for("stsb", teacher, np.full((150, 1), 2.5), gold)
    dev = report["scores"]["splits"]["dev"]
    assert np.isnan(dev["student"]["metrics"]["pearson"]) and dev["student"]["collapsed"]
    assert dev["baseline"]["metrics"]["score"] == 0.0 and dev["teacher"]["beats_baseline"]
    assert dev["retention"]["value"] is None and "undefined" in dev["retention"]["note"]
    text = report_json(report)
    assert "NaN" not in text and json.loads(text)["scores"]["splits"]["dev"]["student"]["metrics"]["pearson"] is None
    assert "undefined" in markdown_table(report)
    assert all(np.isfinite(v) for v in flat_metrics(report).values())


def test_every_metric_has_an_interval_in_the_report_and_the_markdown():
    labels = np.array([0, 1, 1] * 50)
    report = report_for("mrpc", one_hot(labels, 30), one_hot(labels, 40, start=60), labels)
    dev = report["scores"]["splits"]["dev"]
    for role in ("baseline", "teacher", "student"):
        assert set(dev[role]["intervals"]) == set(dev[role]["metrics"]) == {"f1", "accuracy", "f1_accuracy", "score"}
    markdown = markdown_table(report)
    teacher = dev["teacher"]
    row = "| dev | **f1_accuracy** (score) | "
    assert row in markdown
    interval = teacher["intervals"]["f1_accuracy"]
    assert f"{100 * teacher['metrics']['f1_accuracy']:.1f} [{100 * interval['low']:.1f}, {100 * interval['high']:.1f}]" in markdown
    assert "student - teacher: -6.1 points [-16.5, +3.7], not significant" in markdown
    assert "gain over the baseline: 30.7% (no interval: the teacher's gain over the baseline is not above 0 in" in markdown
    assert "95% percentile intervals of 1000 paired bootstrap resamples" in markdown


def test_compare_runs_models_and_keeps_scores_and_timings_apart():
    config = BertConfig(vocab_size=60, max_position_embeddings=64)
    teacher, student = (
        build_student(StudentShape(layers, 16, 32, 2, dropout=0.0), config, head="classification",
                      labels=list(get_task("sst2").labels), seed=seed).eval()
        for layers, seed in ((2, 0), (1, 1))
    )
    generator = torch.Generator().manual_seed(0)
    ids = [[2, *torch.randint(5, 60, (n,), generator=generator).tolist(), 3] for n in range(3, 43)]
    dev = Dataset.from_dict({"input_ids": ids, "token_type_ids": [[0] * len(i) for i in ids],
                             "labels": [i % 2 for i in range(40)]})
    report = compare(teacher, student, get_task("sst2"), {"dev": dev}, speed_repeats=1, speed_seq_length=16,
                     train_labels=[1, 1, 0], resamples=200)
    assert set(report) == {"task", "scores", "size", "speed"}
    assert report["scores"]["splits"]["dev"]["examples"] == 40 and report["scores"]["bootstrap"]["resamples"] == 200
    scores, timings = scores_and_timings(report)
    assert "speed" not in scores and set(timings) == {"task", "speed"} and scores["size"]["compression"] > 1
    json.loads(report_json(scores))
    assert "- speed on cpu" in markdown_table(report)
    assert "speed" not in compare(teacher, student, get_task("sst2"), {"dev": dev}, speed_repeats=0, resamples=50)
