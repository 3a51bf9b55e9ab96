"""The GLUE table: the paper's metric per column, MNLI as two columns, the average of the columns, retention."""

import math

import pytest

from tinybert_core.glue_table import flat_table_metrics, glue_markdown, glue_table


def scored(metrics: dict[str, dict[str, float]]) -> dict:
    """One split of a scores.json: per role its metrics and an interval around each."""
    return {role: {"metrics": values, "intervals": {k: v is not None and {"low": v - 0.05, "high": v + 0.05} or None
                                                    for k, v in values.items()}}
            for role, values in metrics.items()}


def report(splits: dict[str, dict], warnings=()) -> dict:
    return {"scores": {"splits": splits, "warnings": list(warnings)},
            "size": {"teacher": {"parameters": 109_000_000}, "student": {"parameters": 14_500_000}, "compression": 7.5}}


REPORTS = {
    "mrpc": report({"dev": scored({
        "teacher": {"f1": 0.90, "accuracy": 0.86}, "student": {"f1": 0.88, "accuracy": 0.82}, "baseline": {"f1": 0.81, "accuracy": 0.68},
    })}),
    "mnli": report({
        "dev_matched": scored({"teacher": {"accuracy": 0.84}, "student": {"accuracy": 0.82}, "baseline": {"accuracy": 0.35}}),
        "dev_mismatched": scored({"teacher": {"accuracy": 0.84}, "student": {"accuracy": 0.80}, "baseline": {"accuracy": 0.35}}),
    }),
    "stsb": report({"dev": scored({
        "teacher": {"pearson": 0.89, "spearman": 0.88}, "student": {"pearson": 0.86, "spearman": 0.86},
        "baseline": {"pearson": None, "spearman": None},  # a constant prediction has no correlation
    })}, warnings=["a warning"]),
}


def test_columns_use_the_papers_metric_and_the_average_counts_mnli_twice():
    table = glue_table(REPORTS, {"mrpc": {"speed": {"batch1": {"speedup": 9.4}}}})
    assert [(c["label"], c["metric"]) for c in table["columns"]] == [
        ("MRPC", "f1"), ("MNLI-m", "accuracy"), ("MNLI-mm", "accuracy"), ("STS-B", "spearman")]
    assert table["rows"]["student"]["MRPC"]["other"] == {"accuracy": 0.82}
    assert table["average"]["teacher"] == pytest.approx((0.90 + 0.84 + 0.84 + 0.88) / 4)
    assert table["average"]["student"] == pytest.approx((0.88 + 0.82 + 0.80 + 0.86) / 4)
    assert table["retention"] == pytest.approx(table["average"]["student"] / table["average"]["teacher"])
    assert table["average"]["baseline"] is None  # STS-B's baseline correlation is undefined: no average claimed
    assert table["speedup"] == {"mrpc": 9.4, "mnli": None, "stsb": None}
    metrics = flat_table_metrics(table)
    assert metrics["glue/student/MNLI-mm"] == 0.80 and "glue/baseline/avg" not in metrics
    assert all(math.isfinite(v) for v in metrics.values())


def test_the_markdown_has_a_row_per_model_with_intervals_and_names_skipped_tasks():
    text = glue_markdown(glue_table(REPORTS, skipped={"rte": ["data.glue_dir: .../RTE/train.tsv not found (task rte)"]}))
    header, _, teacher, student, baseline = text.splitlines()[:5]
    assert header.startswith("| model | MRPC (f1/accuracy) | MNLI-m (accuracy) | MNLI-mm (accuracy) | STS-B (spearman/pearson) | Avg |")
    assert teacher.startswith("| teacher | 90.0 [85.0, 95.0] / 86.0 | 84.0 [79.0, 89.0]")
    assert "| 14.5M |" in student and "| 109.0M |" in teacher
    assert baseline.split(" | ")[-3] == "n/a"
    assert "rte skipped (data.missing_tasks: skip)" in text and "warning: stsb: a warning" in text


def test_retention_is_withheld_when_a_tasks_report_withholds_it():
    splits = {"dev": {**scored({"teacher": {"accuracy": 0.5}, "student": {"accuracy": 0.5}, "baseline": {"accuracy": 0.5}}),
                      "retention": {"value": None, "note": "the teacher collapsed (it predicts `pos` for 24 of 24 rows)"}}}
    table = glue_table({**REPORTS, "sst2": report(splits)})
    assert table["average"]["student"] is not None and table["retention"] is None
    assert table["retention_withheld"] == ["SST-2: the teacher collapsed (it predicts `pos` for 24 of 24 rows)"]
    assert "Student average / teacher average: not given (not meaningful on SST-2: the teacher collapsed" in glue_markdown(table)
