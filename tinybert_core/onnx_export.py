"""ONNX export of a sequence classifier (dynamic batch and sequence axes), int8 dynamic quantization, a parity
check against PyTorch that fails loudly when an exported model drifts, and CPU timing of ONNX Runtime sessions.

    fp32 = export_onnx(student, "onnx/model.onnx")
    int8 = quantize_int8(fp32, "onnx/model.int8.onnx")
    check_parity(student, fp32, encoded_dev)                                    # raises ParityError
    check_parity(student, int8, encoded_dev, max_abs_tolerance=None, min_label_agreement=INT8_MIN_LABEL_AGREEMENT)

Parity is judged where it can fail: besides the labels of all rows (which a constant model matches by
construction wherever PyTorch predicts its majority class), on the rows where PyTorch does not predict its
majority class, and by the correlation of each output across rows.

Exporter: torch's TorchScript-based exporter (`dynamo=False`), with the model switched to transformers' eager
attention while tracing. Measured on torch 2.13 / onnxruntime 1.32 (TinyBERT4 shape, batch 1, sequence 128, one
CPU thread): eager + TorchScript gave 10.0 ms fp32 and 4.8 ms int8, SDPA + TorchScript 11.0 / 5.9 ms, eager +
the dynamo exporter 11.7 / 6.2 ms; all matched PyTorch to ~1e-7. The TorchScript exporter also needs no extra
package (the dynamo one needs `onnxscript`) and exports MiniLM in 1.7 s instead of 4.9 s. It is deprecated
since torch 2.9: when it goes, switch to `dynamo=True` with `dynamic_shapes` and add `onnxscript`.
"""

from __future__ import annotations

import json
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from datasets import Dataset
from onnxruntime.quantization import QuantType, quantize_dynamic
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from tinybert_core.batching import inference_batches
from tinybert_core.evaluation import predict_logits
from tinybert_core.export import attention_implementation
from tinybert_core.threads import holding
from tinybert_core.speed import SpeedResult, interleaved_medians, random_batch

INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
OUTPUT_NAME = "logits"

# fp32 ONNX computes what PyTorch does up to float rounding: max |diff| 3e-6 to 4e-6 measured on MiniLM
# (all 872 SST-2 dev sentences, labels 100% equal).
FP32_MAX_ABS_DIFF = 1e-3
FP32_MIN_LABEL_AGREEMENT = 0.99
# int8 moves logits by up to ~0.4 and flips examples near the decision boundary, so only labels are judged.
# Measured on MiniLM with linear-probe SST-2 heads (872 dev sentences): 93.6% and 94.6% of labels agreed while
# dev accuracy did not drop (62.2% -> 64.0%, 65.8% -> 66.4%); a fine-tuned model, with wider margins, agrees more.
INT8_MIN_LABEL_AGREEMENT = 0.90
# Pearson correlation of each ONNX output with PyTorch's across rows (the smallest over outputs). Measured on
# MiniLM with a linear-probe SST-2 head (400 dev sentences): fp32 1.0000, int8 0.986, where int8 labels agreed on
# 95.0% of all rows and 92.4% of the 197 rows outside PyTorch's majority class. One bound serves both: fp32 is
# held much closer by its logit tolerance; this catches an output that stopped following the input.
MIN_LOGIT_CORRELATION = 0.9


class ParityError(RuntimeError):
    """An exported model's outputs differ from PyTorch's beyond tolerance; the message names file and numbers."""


@dataclass(frozen=True)
class ParityReport:
    model_path: str
    examples: int
    max_abs_diff: float  # largest |ONNX logit - PyTorch logit| over all examples and outputs
    label_agreement: float  # fraction of examples with the same argmax label; 1.0 for a one-output regressor
    # Rows where PyTorch's label is not its most frequent one, and the agreement on them (None: no such rows,
    # or a regressor). A constant ONNX model fails here even where it matches most labels.
    nontrivial_rows: int | None = None
    nontrivial_agreement: float | None = None
    # Smallest Pearson correlation, over outputs, of ONNX's output with PyTorch's across rows; None where
    # PyTorch's outputs do not vary.
    logit_correlation: float | None = None

    @property
    def trivial(self) -> bool:
        """PyTorch predicts one class for every row: label agreement says nothing about the export."""
        return self.nontrivial_rows == 0

    def __str__(self) -> str:
        text = (
            f"{self.model_path}: {self.examples} examples, max |logit diff| {self.max_abs_diff:.2e}, "
            f"label agreement {100 * self.label_agreement:.2f}%"
        )
        if self.nontrivial_agreement is not None:
            text += f" ({100 * self.nontrivial_agreement:.2f}% on the {self.nontrivial_rows} rows outside PyTorch's majority class)"
        elif self.trivial:
            text += " (trivial: PyTorch predicts one class for every row)"
        if self.logit_correlation is not None:
            text += f", logit correlation {self.logit_correlation:.4f}"
        return text


# torch.onnx.export keeps its state in module globals (GLOBALS.in_onnx_export): two exports in threads of one
# process (the pipeline exports several tasks side by side) trip over each other's, so they take turns.
@holding(threading.Lock())
def export_onnx(
    model: PreTrainedModel,
    out_path: str | Path,
    tokenizer: PreTrainedTokenizerBase | None = None,
    opset: int = 17,
) -> Path:
    """Write a sequence classifier as ONNX: int64 inputs input_ids, attention_mask, token_type_ids (B, T) ->
    logits (B, C), batch and sequence axes dynamic.

    The label names go into the file's metadata (`id2label`, JSON); `tokenizer`, when given, is saved beside it so
    the folder serves on its own. The model is traced on CPU in eval mode and handed back as it came.
    """
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    example = random_batch(model.config.vocab_size, batch_size=2, seq_length=16)
    example["attention_mask"][1, 9:] = 0  # padding, so tracing follows the masked path
    device, was_training = next(model.parameters()).device, model.training
    model.cpu().eval()
    try:
        # Eager attention traces to plain MatMul/Softmax nodes, which ONNX Runtime runs fastest (see module doc).
        with attention_implementation(model, "eager"), warnings.catch_warnings():
            # Expected from this exporter: its deprecation notice and tracer notes on Python-side shape checks;
            # whether the traced graph is right is what `check_parity` decides.
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.filterwarnings("ignore", message="Exporting aten::index")
            torch.onnx.export(
                model,
                tuple(example[name] for name in INPUT_NAMES),
                str(out_path),
                input_names=list(INPUT_NAMES),
                output_names=[OUTPUT_NAME],
                dynamic_axes={name: {0: "batch", 1: "sequence"} for name in INPUT_NAMES} | {OUTPUT_NAME: {0: "batch"}},
                opset_version=opset,
                dynamo=False,
            )
    finally:
        model.to(device).train(was_training)
    _add_metadata(out_path, {"id2label": json.dumps({int(k): v for k, v in model.config.id2label.items()})})
    if tokenizer is not None:
        tokenizer.save_pretrained(out_path.parent)
    return out_path


def _add_metadata(onnx_path: Path, entries: dict[str, str]) -> None:
    proto = onnx.load(str(onnx_path))
    onnx.helper.set_model_props(proto, entries)
    onnx.save(proto, str(onnx_path))


def quantize_int8(onnx_path: str | Path, out_path: str | Path) -> Path:
    """Dynamic quantization for CPU serving: int8 weights, activations quantized on the fly per batch.

    Per-channel weight scales: on MiniLM (SST-2 dev) per-tensor ones kept 88.3% of PyTorch's labels, per-channel
    94.6%; leaving single layers in fp32 gained at most two more points, so everything is quantized.
    """
    # onnxruntime logs a hint to run its pre-processing first: it changed neither speed nor agreement here.
    quantize_dynamic(str(onnx_path), str(out_path), weight_type=QuantType.QInt8, per_channel=True)
    return Path(out_path)


def onnx_session(onnx_path: str | Path, threads: int | None = None, spinning: bool = True) -> ort.InferenceSession:
    """A CPU inference session; `threads` sets intra-op threads (default: ONNX Runtime's, one per core).

    `spinning=False` stops idle worker threads from busy-waiting, which matters when another runtime (PyTorch in
    a side-by-side benchmark) shares the cores; serving alone, spinning lowers latency.
    """
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])


def onnx_logits(session: ort.InferenceSession, dataset: Dataset, batch_size: int = 32) -> np.ndarray:
    """Logits (N, C) of an encoded dataset, in batches taken in dataset order.

    Dataset order mixes lengths, so most examples are padded differently than in `predict_logits` (which sorts
    by length): a parity check then also tests that padding is masked.
    """
    outputs = []
    for _, batch in inference_batches(dataset, range(len(dataset)), batch_size):
        outputs.append(session.run([OUTPUT_NAME], {name: batch[name].numpy() for name in INPUT_NAMES})[0])
    return np.concatenate(outputs)


def check_parity(
    model: PreTrainedModel,
    onnx_path: str | Path,
    dataset: Dataset,
    max_abs_tolerance: float | None = FP32_MAX_ABS_DIFF,
    min_label_agreement: float = FP32_MIN_LABEL_AGREEMENT,
    reference: np.ndarray | None = None,
    min_logit_correlation: float = MIN_LOGIT_CORRELATION,
) -> ParityReport:
    """Compare ONNX and PyTorch logits on an encoded dataset; raise ParityError when out of tolerance.

    Judged: the largest logit difference (`max_abs_tolerance=None` skips it: int8 models move logits), label
    agreement on all rows and on the rows outside PyTorch's majority class (both >= `min_label_agreement`),
    and the logit correlation (>= `min_logit_correlation`) wherever PyTorch's labels (regression: outputs)
    vary. A model whose PyTorch labels never vary is reported `trivial`, not failed: the evaluation's collapse
    flags decide what happens to it. `reference`: the model's logits on `dataset` when already at hand.
    """
    if reference is None:
        reference = predict_logits(model, dataset)
    exported = onnx_logits(onnx_session(onnx_path), dataset)
    if exported.shape != reference.shape:
        raise ParityError(f"{onnx_path}: logits of shape {exported.shape}, PyTorch gives {reference.shape}")
    report = parity_report(str(onnx_path), reference, exported)
    if max_abs_tolerance is not None and report.max_abs_diff > max_abs_tolerance:
        raise ParityError(f"{report}: logits differ from PyTorch by more than {max_abs_tolerance:g}")
    if report.label_agreement < min_label_agreement:
        raise ParityError(f"{report}: labels agree with PyTorch less than {100 * min_label_agreement:.1f}% of the time")
    if report.nontrivial_agreement is not None and report.nontrivial_agreement < min_label_agreement:
        raise ParityError(f"{report}: on the rows outside PyTorch's majority class, labels agree less than "
                          f"{100 * min_label_agreement:.1f}% of the time")
    varies = report.nontrivial_rows != 0 if reference.shape[1] > 1 else bool(np.ptp(reference) > 0)
    if varies and (report.logit_correlation is None or report.logit_correlation < min_logit_correlation):
        raise ParityError(f"{report}: outputs correlate with PyTorch's less than {min_logit_correlation:g}")
    return report


def parity_report(model_path: str, reference: np.ndarray, exported: np.ndarray) -> ParityReport:
    """The parity numbers of exported logits against PyTorch's `reference`, both (N, C)."""
    max_abs_diff = float(np.abs(exported - reference).max())
    correlations = [
        _correlation(reference[:, c], exported[:, c]) for c in range(reference.shape[1]) if np.ptp(reference[:, c]) > 0
    ]
    correlation = min(correlations) if correlations else None
    if reference.shape[1] == 1:
        return ParityReport(model_path, len(reference), max_abs_diff, 1.0, logit_correlation=correlation)
    expected, found = reference.argmax(-1), exported.argmax(-1)
    nontrivial = expected != np.bincount(expected).argmax()
    return ParityReport(
        model_path, len(reference), max_abs_diff, float((found == expected).mean()),
        nontrivial_rows=int(nontrivial.sum()),
        nontrivial_agreement=float((found[nontrivial] == expected[nontrivial]).mean()) if nontrivial.any() else None,
        logit_correlation=correlation,
    )


def _correlation(reference: np.ndarray, exported: np.ndarray) -> float:
    """Pearson correlation; 0 for an exported output that does not vary while PyTorch's does."""
    if np.ptp(exported) == 0:
        return 0.0
    return float(np.corrcoef(reference.astype(np.float64), exported.astype(np.float64))[0, 1])


def time_onnx(
    sessions: dict[str, ort.InferenceSession],
    vocab_size: int,
    batch_size: int,
    seq_length: int = 128,
    repeats: int = 10,
    warmup: int = 2,
    models: dict[str, PreTrainedModel] | None = None,
) -> dict[str, SpeedResult]:
    """Median time of each ONNX session, and of any PyTorch `models` (on CPU), on one random unpadded batch.

    Runs are interleaved round by round as in `speed.time_models`, so both kinds share the machine's moods. With
    more threads than free cores, one runtime's worker threads, still spinning after its run, slow the next one
    (a PyTorch student 3x slower on 2 busy cores): compare at one thread there (sessions and `torch.set_num_threads`).
    """
    batch = random_batch(vocab_size, batch_size, seq_length)
    feed = {name: batch[name].numpy() for name in INPUT_NAMES}
    runners: dict[str, Callable[[], object]] = {
        name: (lambda session=session: session.run([OUTPUT_NAME], feed)) for name, session in sessions.items()
    }
    for name, model in (models or {}).items():
        model.cpu().eval()
        runners[name] = lambda model=model: model(**batch)
    with torch.inference_mode():
        medians = interleaved_medians(runners, repeats, warmup)
    return {name: SpeedResult(name, batch_size, seq_length, seconds) for name, seconds in medians.items()}

