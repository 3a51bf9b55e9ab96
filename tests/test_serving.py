"""The registered pyfunc model: every input format MLflow users send, one prediction per row, named labels.

Tiny random students exported in HF format and logged from code into a temporary SQLite store, then loaded
back through `mlflow.pyfunc.load_model` as a user would.
"""

import mlflow
import pandas as pd
import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, BertConfig

from tasks.export import log_serving_model
from tinybert_core.export import export_hf
from tinybert_core.models import StudentShape, build_student, load_tokenizer

SENTENCES = ["a gorgeous, witty film", "it drags", "the plot never takes off"]
PAIRS = [["A man sleeps.", "Nobody sleeps."], ["The cat sat down.", "A cat is sitting."]]


@pytest.fixture(scope="module")
def tracking(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow")
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    experiment = mlflow.create_experiment("serving", artifact_location=(root / "artifacts").as_uri())
    yield experiment
    mlflow.set_tracking_uri(previous)


def logged(tracking, tmp_path_factory, head, labels, example, registered_model_name=None):
    """(pyfunc model loaded back from the store, the HF folder it wraps)."""
    tokenizer = load_tokenizer("minilm-l6")
    shape = StudentShape(2, 32, 64, 4, dropout=0.0)
    student = build_student(shape, BertConfig(vocab_size=tokenizer.vocab_size), head=head, labels=labels, seed=0)
    hf_dir = export_hf(student.eval(), tokenizer, tmp_path_factory.mktemp("hf") / head)
    with mlflow.start_run(experiment_id=tracking):
        info = log_serving_model(hf_dir, example, registered_model_name=registered_model_name)
    return mlflow.pyfunc.load_model(info.model_uri), hf_dir


@pytest.fixture(scope="module")
def single(tracking, tmp_path_factory):
    return logged(tracking, tmp_path_factory, "classification", ["negative", "positive"], {"text_a": SENTENCES[:2]}, "tiny-single")


@pytest.fixture(scope="module")
def pair(tracking, tmp_path_factory):
    example = {"text_a": [a for a, _ in PAIRS], "text_b": [b for _, b in PAIRS]}
    return logged(tracking, tmp_path_factory, "classification", ["entailment", "neutral", "contradiction"], example)


@pytest.fixture(scope="module")
def regression(tracking, tmp_path_factory):
    return logged(tracking, tmp_path_factory, "regression", None, {"text_a": [PAIRS[0][0]], "text_b": [PAIRS[0][1]]})


def reference(hf_dir, *texts) -> torch.Tensor:
    """Logits of the plain transformers model on the same texts: (rows, labels)."""
    model = AutoModelForSequenceClassification.from_pretrained(hf_dir).eval()
    with torch.inference_mode():
        return model(**AutoTokenizer.from_pretrained(hf_dir)(*texts, padding=True, return_tensors="pt")).logits


@pytest.mark.parametrize(
    "model_input",
    [SENTENCES, {"text_a": SENTENCES}, pd.DataFrame({"text_a": SENTENCES}), pd.Series(SENTENCES)],
    ids=["list", "dict", "dataframe", "series"],
)
def test_every_format_gives_one_prediction_per_sentence(single, model_input):
    model, hf_dir = single
    predicted = model.predict(model_input)
    probs = reference(hf_dir, SENTENCES).softmax(-1)
    assert list(predicted.columns) == ["label", "score"] and len(predicted) == 3
    assert predicted["label"].tolist() == [["negative", "positive"][i] for i in probs.argmax(-1)]
    torch.testing.assert_close(torch.tensor(predicted["score"].tolist()), probs.max(-1).values, atol=1e-5, rtol=1e-4)


def test_a_single_string_is_one_row(single):
    model, _ = single
    one = model.predict(SENTENCES[1])
    assert len(one) == 1 and one.equals(model.predict([SENTENCES[1]]))


@pytest.mark.parametrize(
    ("model_input", "message"),
    [
        ("", "text_a row 0: the text is empty"),
        (["fine", "  "], "text_a row 1: the text is empty"),
        ({"text": SENTENCES}, r"columns \['text'\] do not match the model's \['text_a'\] \(missing \['text_a'\]\) \(unknown \['text'\]\)"),
        (pd.DataFrame({"text_a": SENTENCES, "id": [1, 2, 3]}), r"unknown \['id'\]"),
        ([], "the input is empty"),
        (PAIRS, "this model reads one text per example"),
        ({"text_a": [SENTENCES]}, "text_a row 0: expected a string, got list"),
        ({"text_a": [None]}, "text_a row 0: expected a string, got NoneType"),
        (42, "cannot read input of type int"),
    ],
)
def test_input_it_cannot_read_exactly_is_refused_with_the_reason(single, model_input, message):
    model, _ = single
    with pytest.raises(ValueError, match=message):
        model.predict(model_input)


@pytest.mark.parametrize(
    "model_input",
    [
        PAIRS,
        {"text_a": [a for a, _ in PAIRS], "text_b": [b for _, b in PAIRS]},
        pd.DataFrame(PAIRS, columns=["text_a", "text_b"]),
        [tuple(p) for p in PAIRS],
    ],
    ids=["pairs", "dict", "dataframe", "tuples"],
)
def test_pair_tasks_read_both_texts_of_every_row(pair, model_input):
    model, hf_dir = pair
    predicted = model.predict(model_input)
    probs = reference(hf_dir, [a for a, _ in PAIRS], [b for _, b in PAIRS]).softmax(-1)
    assert predicted["label"].tolist() == [["entailment", "neutral", "contradiction"][i] for i in probs.argmax(-1)]
    torch.testing.assert_close(torch.tensor(predicted["score"].tolist()), probs.max(-1).values, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(
    ("model_input", "message"),
    [
        ({"text_a": ["a", "b"], "text_b": ["c"]}, r"different lengths \{'text_a': 2, 'text_b': 1\}"),
        ({"text_a": ["a", "b"]}, r"\(missing \['text_b'\]\)"),
        (SENTENCES, "row 0 is 'a gorgeous, witty film'; give a list of \\[text_a, text_b\\] pairs"),
        ([["a", "b", "c"]], "row 0 is"),
        ("one sentence", "give a list of \\[text_a, text_b\\] pairs"),
        ([["a", ""]], "text_b row 0: the text is empty"),
    ],
)
def test_pair_input_that_does_not_pair_up_is_refused(pair, model_input, message):
    model, _ = pair
    with pytest.raises(ValueError, match=message):
        model.predict(model_input)


def test_regression_gives_a_score_per_pair(regression):
    model, hf_dir = regression
    predicted = model.predict(PAIRS)
    assert list(predicted.columns) == ["score"] and len(predicted) == 2
    expected = reference(hf_dir, [a for a, _ in PAIRS], [b for _, b in PAIRS])[:, 0]
    torch.testing.assert_close(torch.tensor(predicted["score"].tolist()), expected, atol=1e-5, rtol=1e-4)


def test_the_registered_version_shows_its_signature_and_example(single, regression):
    model, _ = single
    signature = model.metadata.signature
    assert signature.inputs.input_names() == ["text_a"] and signature.outputs.input_names() == ["label", "score"]
    assert model.input_example == {"text_a": SENTENCES[:2]}
    assert regression[0].metadata.signature.outputs.input_names() == ["score"]
    assert regression[0].metadata.signature.inputs.input_names() == ["text_a", "text_b"]
    registered = mlflow.pyfunc.load_model("models:/tiny-single/1")
    assert registered.predict({"text_a": SENTENCES})["label"].tolist() == model.predict(SENTENCES)["label"].tolist()
