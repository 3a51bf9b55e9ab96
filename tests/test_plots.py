"""Plots from training logs and the comparison report: written as real images, clear errors on wrong input."""

import json

import matplotlib.image
import numpy as np
import pytest

from tinybert_core.comparison import score_split, scores_summary
from tinybert_core.plots import plot_eval_curve, plot_learning_curves, plot_teacher_vs_student


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def assert_drawn(png):
    image = matplotlib.image.imread(png)
    assert image.ndim == 3 and image.shape[0] > 100 and image.std() > 0  # a drawn picture, not a blank


def test_plots_are_written_as_images(tmp_path):
    stage1 = write_jsonl(tmp_path / "s1.jsonl", [{"step": s, "loss": 3 / s, "hidden": 1 / s, "attention": 2 / s} for s in range(1, 20)])
    stage2 = write_jsonl(tmp_path / "s2.jsonl", [{"step": s, "loss": 1 / s, "prediction": 1 / s} for s in range(1, 20)])
    evals = write_jsonl(tmp_path / "eval.jsonl", [{"step": 5 * s, "score": 0.5 + s / 20} for s in range(1, 5)])
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 60)
    teacher, student = (np.eye(2)[np.where(rng.random(60) < p, labels, 1 - labels)] for p in (0.9, 0.8))
    report = {"task": "mrpc", "scores": scores_summary({"dev": score_split("mrpc", teacher, student, labels)}, 1000, 0, 0.95)}
    for png in (
        plot_learning_curves({"stage 1": stage1, "stage 2": stage2}, tmp_path / "curves.png"),
        plot_eval_curve(evals, "score", tmp_path / "eval.png"),
        plot_teacher_vs_student(report, tmp_path / "bars.png"),
    ):
        assert_drawn(png)


def test_learning_curves_take_real_log_records_zero_losses_and_empty_logs(tmp_path):
    # What distiller.train writes per step: lr and grad_norm are not losses; a zero loss rules out a log axis.
    records = [{"step": s, "epoch": 0, "loss": 1 / s, "attention": 0.0, "lr": 1e-4, "grad_norm": 2.5} for s in range(1, 9)]
    logs = {"stage 1": write_jsonl(tmp_path / "train_log.jsonl", records), "empty": write_jsonl(tmp_path / "empty.jsonl", [])}
    png = plot_learning_curves(logs, tmp_path / "nested" / "dir" / "curves.png")
    assert png == tmp_path / "nested" / "dir" / "curves.png"
    assert_drawn(png)


def test_eval_curve_names_the_metrics_it_has(tmp_path):
    evals = write_jsonl(tmp_path / "eval_log.jsonl", [{"step": 10, "accuracy": 0.8, "score": 0.8}])
    with pytest.raises(KeyError, match=r"eval_log\.jsonl has no metric 'mcc'; it has \['accuracy', 'score'\]"):
        plot_eval_curve(evals, "mcc", tmp_path / "eval.png")
