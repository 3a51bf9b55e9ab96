"""The exported Hugging Face folder: loads in plain transformers, says what it is, and fails clearly when broken."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from transformers import BertConfig

from tinybert_core.attention import ATTN_IMPLEMENTATION
from tinybert_core.comparison import report_json, score_split, scores_summary, weights_bytes
from tinybert_core.export import export_hf, model_card
from tinybert_core.glue_tasks import get_task
from tinybert_core.models import (
    ModelLoadError,
    StudentShape,
    build_student,
    count_parameters,
    load_model,
    load_tokenizer,
)

LABELS = ["negative", "positive"]
SENTENCES = ["a gorgeous, witty film", "it drags"]

# Run in a fresh interpreter that never imports tinybert_core: what a serving machine does.
PLAIN_LOAD = """
import json, sys
from transformers import AutoModelForSequenceClassification, AutoTokenizer
folder, sentences = sys.argv[1], json.loads(sys.argv[2])
model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
batch = AutoTokenizer.from_pretrained(folder)(sentences, padding=True, return_tensors="pt")
assert not any(name.startswith("tinybert_core") for name in sys.modules), "tinybert_core was imported"
print(json.dumps({"attention": model.config._attn_implementation, "id2label": model.config.id2label,
                  "logits": model(**batch).logits.tolist()}))
"""


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer("minilm-l6")


@pytest.fixture(scope="module")
def student(tokenizer):
    teacher_config = BertConfig(vocab_size=tokenizer.vocab_size)  # real vocabulary, so real text tokenizes
    shape = StudentShape(2, 32, 64, 4, dropout=0.0)
    return build_student(shape, teacher_config, head="classification", labels=LABELS, seed=0).eval()


@pytest.fixture(scope="module")
def exported(student, tokenizer, tmp_path_factory):
    return export_hf(student, tokenizer, tmp_path_factory.mktemp("hf") / "student", model_card="# card\n")


def test_folder_loads_in_plain_transformers_without_this_package(exported, student, tokenizer, tmp_path):
    assert {"model.safetensors", "config.json", "tokenizer.json", "README.md"} <= {p.name for p in exported.iterdir()}
    assert "tinybert" not in (exported / "config.json").read_text()
    result = subprocess.run(
        [sys.executable, "-c", PLAIN_LOAD, str(exported), json.dumps(SENTENCES)],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded["attention"] == "sdpa" and loaded["id2label"] == {"0": "negative", "1": "positive"}
    with torch.inference_mode():
        expected = student(**tokenizer(SENTENCES, padding=True, return_tensors="pt")).logits
    torch.testing.assert_close(torch.tensor(loaded["logits"]), expected, atol=1e-5, rtol=1e-4)
    assert student.config._attn_implementation == ATTN_IMPLEMENTATION  # the in-memory model is unchanged


def comparison_report(student_logits: np.ndarray | None = None) -> dict:
    """A `comparison.compare` result as read back from metrics.json: 200 SST-2-like dev rows, the teacher right
    on 180, the student on 174 (or `student_logits`)."""
    labels = np.array([0, 1] * 100)
    teacher, student = (np.eye(2)[np.where(np.arange(200) < wrong, 1 - labels, labels)] for wrong in (20, 26))
    split = score_split("sst2", teacher, student if student_logits is None else student_logits, labels)
    speed = {"teacher_ms": 80.0, "student_ms": 8.0, "teacher_examples_per_s": 40.0, "student_examples_per_s": 420.0, "speedup": 10.0}
    report = {
        "task": "sst2",
        "scores": scores_summary({"dev": split}, 1000, 0, 0.95),
        "size": {"teacher": {"parameters": 109_000_000}, "student": {"parameters": 14_500_000}, "compression": 7.5},
        "speed": {"device": "cpu", "seq_length": 128, "batch1": speed, "batch32": speed},
    }
    return json.loads(report_json(report))


def test_model_card_says_what_the_model_is_and_where_it_came_from(exported, student):
    lineage = {"git_commit": "0123abc", "mlflow_run_task_distill": "9f8e7d", "dvc_task_distill_model": "md5:55aa"}
    card = model_card(student, get_task("sst2"), comparison_report(), teacher="minilm-l6", lineage=lineage,
                      name="tinybert-sst2", model_dir=exported)
    for expected in ("# tinybert-sst2", "| task | `sst2` |", "`negative`, `positive`", "| teacher | `minilm-l6` |",
                     "2 layers, hidden 32, FFN 64, 4 heads", f"{count_parameters(student):,}",
                     f"{weights_bytes(exported) / 1e6:.1f} MB (safetensors)", "| dev | **accuracy** (score) | 50.0 [",
                     "| 90.0 [", "| 87.0 [", "retention (student / teacher): 96.7% [",
                     "baseline = majority class of the dev labels (`negative`)",
                     "- git_commit: `0123abc`", "- dvc_task_distill_model: `md5:55aa`", "Intended use and limitations"):
        assert expected in card, expected
    assert card.startswith("---\nlibrary_name: transformers\n") and "Warning" not in card
    # Without a saved folder the card gives the size of the tensors themselves.
    assert "MB of tensors (torch.float32)" in model_card(student, get_task("sst2"), comparison_report(), teacher="t")


def test_model_card_of_a_collapsed_student_opens_with_the_warning(student):
    card = model_card(student, get_task("sst2"), comparison_report(np.tile([0.3, 0.1], (200, 1))), teacher="t")
    intro = card.index("A small BERT distilled")
    assert "> **Warning:** The student collapsed on dev: it predicts `negative` for 200 of 200 rows" in card[:intro]
    assert "> **Warning:** The student does not beat the baseline on dev: 50.0 against 50.0" in card[:intro]


@pytest.fixture()
def saved_copy(student, tokenizer, tmp_path):
    return export_hf(student, tokenizer, tmp_path / "copy")


def test_truncated_weights_give_a_clear_error(saved_copy):
    weights = saved_copy / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(ModelLoadError, match=rf"{saved_copy} .*corrupted or truncated"):
        load_model(saved_copy, head="classification", labels=LABELS)


def test_checkpoint_for_other_labels_says_what_was_asked(saved_copy):
    with pytest.raises(ModelLoadError, match=rf"{saved_copy} does not fit a model with a classification head with 3 labels"):
        load_model(saved_copy, head="classification", labels=["a", "b", "c"])


def test_config_that_disagrees_with_the_weights_names_the_tensors(saved_copy):
    config = json.loads((saved_copy / "config.json").read_text())
    (saved_copy / "config.json").write_text(json.dumps(config | {"hidden_size": 64, "intermediate_size": 128}))
    with pytest.raises(ModelLoadError, match=rf"{saved_copy} .*bert\.embeddings\.\S+ is \(32,\) in the checkpoint, \(64,\) in the model"):
        load_model(saved_copy, head="classification", labels=LABELS)
