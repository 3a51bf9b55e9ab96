"""The task registry: names, aliases, label orders and GLUE scoring conventions."""

from __future__ import annotations

import dataclasses

import pytest

from tinybert_core.glue_tasks import TASKS, TaskSpec, default_polarity_path, get_task

GLUE_TASKS = ("cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli")


def test_registry_holds_the_nine_glue_tasks_and_polarity():
    assert set(TASKS) == {*GLUE_TASKS, "polarity"}
    assert all(name == spec.name for name, spec in TASKS.items())


@pytest.mark.parametrize(
    "name, expected",
    [("SST-2", "sst2"), ("sst-2", "sst2"), ("sts-b", "stsb"), ("STS-B", "stsb"), (" CoLA ", "cola"), ("MNLI", "mnli")],
)
def test_get_task_accepts_other_spellings(name, expected):
    assert get_task(name) is TASKS[expected]


def test_get_task_passes_a_spec_through():
    spec = get_task("rte")
    assert get_task(spec) is spec


def test_unknown_task_error_lists_valid_names():
    with pytest.raises(ValueError) as error:
        get_task("imdb")
    message = str(error.value)
    assert "'imdb'" in message
    assert all(name in message for name in GLUE_TASKS)


# GLUE's label names in the class order of the Hugging Face `glue` dataset, and how the task's files write them.
@pytest.mark.parametrize(
    "name, labels, file_values",
    [
        ("cola", ("unacceptable", "acceptable"), ("0", "1")), ("sst2", ("negative", "positive"), ("0", "1")),
        ("mrpc", ("not_equivalent", "equivalent"), ("0", "1")), ("qqp", ("not_duplicate", "duplicate"), ("0", "1")),
        # GLUE's WNLI writes 1 for entailment, the opposite order of RTE and QNLI, whose files write the words.
        ("wnli", ("not_entailment", "entailment"), ("0", "1")),
        ("mnli", ("entailment", "neutral", "contradiction"), ("entailment", "neutral", "contradiction")),
        ("qnli", ("entailment", "not_entailment"), ("entailment", "not_entailment")),
        ("rte", ("entailment", "not_entailment"), ("entailment", "not_entailment")),
        ("polarity", ("neg", "pos"), ("neg", "pos")), ("stsb", None, None),
    ],
)
def test_label_names_and_file_values(name, labels, file_values):
    assert get_task(name).labels == labels
    assert get_task(name).label_values == file_values


def test_f1_positive_class_is_the_class_glue_writes_as_1():
    for name in ("mrpc", "qqp"):
        spec = get_task(name)
        assert spec.label_values[spec.positive_class] == "1"
    assert {name for name, spec in TASKS.items() if spec.positive_class is not None} == {"mrpc", "qqp"}
    assert get_task("stsb").score_range == (0.0, 5.0)


# The GLUE leaderboard's task score: MRPC/QQP mean of F1 and accuracy, STS-B mean of Pearson and Spearman.
@pytest.mark.parametrize(
    "name, primary, components",
    [
        ("cola", "mcc", ("mcc",)), ("sst2", "accuracy", ("accuracy",)),
        ("mrpc", "f1_accuracy", ("f1", "accuracy")), ("qqp", "f1_accuracy", ("f1", "accuracy")),
        ("stsb", "pearson_spearman", ("pearson", "spearman")), ("mnli", "accuracy", ("accuracy",)),
        ("qnli", "accuracy", ("accuracy",)), ("rte", "accuracy", ("accuracy",)), ("wnli", "accuracy", ("accuracy",)),
    ],
)
def test_primary_metric_follows_glue_leaderboard(name, primary, components):
    spec = get_task(name)
    assert spec.primary_metric == primary
    assert spec.metric_components == components


def test_shape_properties():
    stsb, mnli, sst2 = get_task("stsb"), get_task("mnli"), get_task("sst2")
    assert stsb.is_regression and stsb.num_labels == 1 and stsb.is_pair
    assert not mnli.is_regression and mnli.num_labels == 3 and mnli.is_pair
    assert not sst2.is_pair and sst2.text_columns == ("text_a",) and sst2.num_labels == 2
    assert all(spec.text_columns in (("text_a",), ("text_a", "text_b")) for spec in TASKS.values())


def test_mnli_has_two_dev_splits_and_mnli_mm_alias_picks_mismatched():
    assert get_task("mnli").dev_splits == ("dev_matched", "dev_mismatched")
    mismatched = get_task("MNLI-MM")
    assert mismatched.name == "mnli-mm"
    assert mismatched.dev_splits == ("dev_mismatched",)
    assert mismatched.labels == get_task("mnli").labels and mismatched.glue_dir_name == "MNLI"


def test_spec_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        get_task("cola").name = "other"  # type: ignore[misc]
    assert isinstance(get_task("cola"), TaskSpec)


def test_default_polarity_path_is_gensims_fasttext_file():
    path = default_polarity_path()
    assert path.name == "pang_lee_polarity.cor" and path.is_file()
    lines = path.read_bytes().splitlines()
    assert len(lines) == 200
    assert lines[0].startswith(b"__label__neg ")
