"""ONNX export, int8 quantization, parity with PyTorch and ONNX timing: tiny models for the logic, the packaged
MiniLM on real SST-2 sentences for the tolerances."""

import json

import numpy as np
import onnx
import pytest
import torch
from datasets import Dataset
from transformers import BertConfig

from tinybert_core.attention import ATTN_IMPLEMENTATION
from tinybert_core.batching import pad_batch
from tinybert_core.evaluation import predict_logits
from tinybert_core.glue_data import load_glue_split
from tinybert_core.glue_tasks import get_task
from tinybert_core.models import StudentShape, build_student, load_model, load_tokenizer
from tinybert_core.onnx_export import (
    FP32_MAX_ABS_DIFF,
    INT8_MIN_LABEL_AGREEMENT,
    INPUT_NAMES,
    ParityError,
    check_parity,
    export_onnx,
    onnx_logits,
    onnx_session,
    parity_report,
    quantize_int8,
    time_onnx,
)
from tinybert_core.recipe import encode_task

TINY_TEACHER = BertConfig(vocab_size=120, max_position_embeddings=64)
LABELS = ["a", "b", "c"]


def tiny_classifier(seed: int = 0):
    return build_student(StudentShape(2, 32, 64, 4, dropout=0.0), TINY_TEACHER, head="classification", labels=LABELS, seed=seed)


def encoded_rows(count: int, seed: int = 0) -> Dataset:
    """Sentence pairs of lengths 2..40 (segment 1 on the second half), like `encode_task` output."""
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(2, 41, (count,), generator=generator).tolist()
    ids = [torch.randint(5, 120, (n,), generator=generator).tolist() for n in lengths]
    segments = [[0] * (n // 2) + [1] * (n - n // 2) for n in lengths]
    return Dataset.from_dict({"input_ids": ids, "token_type_ids": segments})


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    model = tiny_classifier()
    path = export_onnx(model, tmp_path_factory.mktemp("onnx") / "model.onnx")
    return model, path


def test_export_has_named_inputs_dynamic_axes_and_labels(tiny_onnx):
    model, path = tiny_onnx
    session = onnx_session(path)
    assert [i.name for i in session.get_inputs()] == list(INPUT_NAMES)
    assert all(i.shape == ["batch", "sequence"] for i in session.get_inputs())
    assert [o.name for o in session.get_outputs()] == ["logits"] and session.get_outputs()[0].shape == ["batch", 3]
    metadata = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert json.loads(metadata["id2label"]) == {"0": "a", "1": "b", "2": "c"}
    # The model is handed back as it came: our attention implementation, eval mode unchanged.
    assert model.config._attn_implementation == ATTN_IMPLEMENTATION


def test_fp32_matches_pytorch_on_padded_batches_of_any_shape(tiny_onnx):
    model, path = tiny_onnx
    data = encoded_rows(23)
    report = check_parity(model, path, data)
    assert report.examples == 23 and report.max_abs_diff < 1e-5 and report.label_agreement == 1.0
    session = onnx_session(path)
    for batch_size in (1, 4, 23):  # 23 sequences of lengths 2..40: every batch padded differently
        torch.testing.assert_close(onnx_logits(session, data, batch_size), onnx_logits(session, data, 1), atol=1e-5, rtol=0)
    # Beyond the traced sequence length (16) and with a row that is mostly padding.
    batch = pad_batch([{"input_ids": list(range(5, 65))}, {"input_ids": [7, 8]}])
    logits = session.run(["logits"], {name: batch[name].numpy() for name in INPUT_NAMES})[0]
    with torch.inference_mode():
        expected = model.eval()(**batch).logits.numpy()
    np.testing.assert_allclose(logits, expected, atol=1e-5)


def test_drifted_model_raises_parity_error_with_file_and_numbers(tiny_onnx):
    _, path = tiny_onnx
    drifted = tiny_classifier()
    with torch.no_grad():
        drifted.classifier.bias += torch.tensor([0.5, -0.5, 0.0])
    with pytest.raises(ParityError, match=rf"{path}: 12 examples, max \|logit diff\| 5\.00e-01.*more than 0\.001"):
        check_parity(drifted, path, encoded_rows(12))
    with pytest.raises(ParityError, match=r"labels agree with PyTorch less than 100\.0%"):
        check_parity(tiny_classifier(seed=1), path, encoded_rows(12), max_abs_tolerance=None, min_label_agreement=1.0)


def constant_classifier(label: int):
    """The tiny classifier with its head cut from the input: the same logits, favouring `label`, for every row."""
    model = tiny_classifier()
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.copy_(torch.nn.functional.one_hot(torch.tensor(label), 3).float())
    return model


def test_parity_fails_a_constant_export_against_a_varying_model(tiny_onnx, tmp_path):
    model, _ = tiny_onnx
    data = encoded_rows(60)
    predicted = predict_logits(model, data).argmax(-1)
    majority = int(np.bincount(predicted).argmax())
    share = float((predicted == majority).mean())
    assert 0 < share < 1  # the real model's labels vary
    constant = export_onnx(constant_classifier(majority), tmp_path / "constant.onnx")
    # Label agreement alone passes it wherever PyTorch says its majority class ...
    with pytest.raises(ParityError, match=r"on the rows outside PyTorch's majority class, labels agree less than") as error:
        check_parity(model, constant, data, max_abs_tolerance=None, min_label_agreement=share - 0.01)
    assert f"label agreement {100 * share:.2f}% (0.00% on the {int((predicted != majority).sum())} rows" in str(error.value)
    # ... and its outputs do not follow PyTorch's at all.
    with pytest.raises(ParityError, match=r"logit correlation 0\.0000: outputs correlate with PyTorch's less than 0\.9"):
        check_parity(model, constant, data, max_abs_tolerance=None, min_label_agreement=0.0)


def test_a_constant_model_is_reported_trivial_not_passed_silently(tmp_path):
    model = constant_classifier(1)
    path = export_onnx(model, tmp_path / "constant.onnx")
    report = check_parity(model, path, encoded_rows(20))
    assert report.trivial and report.nontrivial_agreement is None and report.logit_correlation is None
    assert "trivial: PyTorch predicts one class for every row" in str(report)


def test_parity_report_of_a_regressor_judges_correlation():
    rng = np.random.default_rng(0)
    reference = rng.normal(size=(50, 1))
    assert parity_report("m", reference, reference + 1e-3).logit_correlation == pytest.approx(1.0, abs=1e-5)
    flat = parity_report("m", reference, np.zeros((50, 1)))
    assert flat.logit_correlation == 0.0 and flat.nontrivial_rows is None and not flat.trivial


def test_int8_is_smaller_and_still_tracks_the_model(tiny_onnx, tmp_path):
    model, path = tiny_onnx
    int8 = quantize_int8(path, tmp_path / "model.int8.onnx")
    assert int8.stat().st_size < path.stat().st_size  # tiny: biases and graph dominate; MiniLM shrinks 4x below
    assert any(node.op_type.startswith(("MatMulInteger", "DynamicQuantize")) for node in onnx.load(str(int8)).graph.node)
    report = check_parity(model, int8, encoded_rows(12), max_abs_tolerance=0.1, min_label_agreement=0.0)
    assert report.max_abs_diff > 0  # quantized, not a copy of the fp32 graph


def test_time_onnx_interleaves_sessions_and_pytorch_models(tiny_onnx):
    model, path = tiny_onnx
    results = time_onnx({"onnx": onnx_session(path, threads=1)}, 120, batch_size=2, seq_length=16, repeats=2,
                        warmup=1, models={"pytorch": model})
    assert set(results) == {"onnx", "pytorch"}
    assert all(r.batch_size == 2 and r.seq_length == 16 and r.median_seconds > 0 for r in results.values())


def test_minilm_fp32_and_int8_parity_on_real_sst2_sentences(glue_dir, tmp_path):
    """The packaged MiniLM with a classification head fitted on 128 SST-2 training sentences (a random head
    has margins near zero, where any rounding flips labels), checked on 128 dev sentences of mixed lengths."""
    task = get_task("sst2")
    tokenizer = load_tokenizer("minilm-l6")
    model = load_model("minilm-l6", head="classification", labels=["neg", "pos"]).eval()
    fit_linear_head(model, encode_task(load_glue_split(task, glue_dir, "train", limit=128), tokenizer, task, 64))
    dev = encode_task(load_glue_split(task, glue_dir, "dev", limit=128), tokenizer, task, 128)

    fp32 = export_onnx(model, tmp_path / "model.onnx", tokenizer=tokenizer)
    assert (tmp_path / "tokenizer.json").is_file()
    report = check_parity(model, fp32, dev)
    assert report.max_abs_diff < FP32_MAX_ABS_DIFF and report.label_agreement == 1.0

    int8 = quantize_int8(fp32, tmp_path / "model.int8.onnx")
    check_parity(model, int8, dev, max_abs_tolerance=None, min_label_agreement=INT8_MIN_LABEL_AGREEMENT)
    assert int8.stat().st_size < 0.3 * fp32.stat().st_size


def fit_linear_head(model, train: Dataset, steps: int = 100) -> None:
    """Logistic regression of the labels on the frozen pooled output: a head with real decision margins."""
    rows = [{"input_ids": r["input_ids"], "token_type_ids": r["token_type_ids"]} for r in train]
    with torch.no_grad():
        pooled = model.bert(**pad_batch(rows)).pooler_output  # (N, H)
    labels = torch.tensor(train["labels"])
    torch.manual_seed(0)
    head = torch.nn.Linear(pooled.shape[1], 2)
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-2)
    for _ in range(steps):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(head(pooled), labels).backward()
        optimizer.step()
    model.classifier.load_state_dict(head.state_dict())


def test_exports_in_threads_of_one_process_each_succeed(tmp_path):
    """The pipeline exports several tasks side by side; torch.onnx.export keeps global state, so they take turns."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=3) as pool:
        paths = list(pool.map(lambda i: export_onnx(tiny_classifier(i), tmp_path / f"{i}.onnx"), range(3)))
    assert all(path.stat().st_size > 0 for path in paths)
