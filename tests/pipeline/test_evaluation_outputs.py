"""What the evaluate stage leaves for DVC and export: scores apart from timings, and a card free of both
timings and paths of the clone. No stage runs here."""

import json

from tasks.evaluation import write_metrics
from tests.test_export import comparison_report, student, tokenizer  # noqa: F401 (fixtures)
from tinybert_core.export import model_card
from tinybert_core.glue_tasks import get_task


def test_scores_and_timings_go_to_separate_metrics_files(tmp_path):
    report = comparison_report()
    scores_file, timings_file = write_metrics(report, tmp_path)
    assert (scores_file.name, timings_file.name) == ("scores.json", "timings.json")
    scores, timings = json.loads(scores_file.read_text()), json.loads(timings_file.read_text())
    assert scores == {key: value for key, value in report.items() if key != "speed"}
    assert timings == {"task": report["task"], "speed": report["speed"]}


def test_the_model_card_from_the_scores_holds_no_timings(tmp_path, student):  # noqa: F811
    write_metrics(comparison_report(), tmp_path)
    scores = json.loads((tmp_path / "scores.json").read_text())
    card = model_card(student, get_task("sst2"), scores, teacher="outputs/teacher/model")
    # The scores and size are there.
    assert "| 87.0 [" in card and "retention (student / teacher): 96.7% [" in card and "(7.5x smaller)" in card
    assert " ms" not in card and "examples/s" not in card and "speed" not in card
    # The same card from the full report does show them: the test would see them if they leaked.
    assert "speed on cpu" in model_card(student, get_task("sst2"), comparison_report(), teacher="t")
