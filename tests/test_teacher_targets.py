"""The live teacher: inference mode, bf16 within its stated tolerance, explicit attention only where scores are read."""

import pytest
import torch

from tinybert_core.batching import pad_batch
from tinybert_core.glue_data import load_glue_split
from tinybert_core.glue_tasks import get_task
from tinybert_core.models import load_tokenizer
from tinybert_core.recipe import encode_task, task_model
from tinybert_core.teacher_targets import (
    BF16_TARGET_TOLERANCE,
    LiveTeacher,
    native_bf16,
    resolve_teacher_precision,
)
from tests.test_distiller import make_dataset, make_teacher


def relative_error(approx: torch.Tensor, exact: torch.Tensor) -> float:
    return float((approx.float() - exact.float()).norm() / exact.float().norm())


def test_bf16_targets_of_the_packaged_teacher_are_within_tolerance(glue_dir):
    """Real SST-2 rows through the packaged MiniLM: every target kind close to its float32 value."""
    task = get_task("sst2")
    rows = encode_task(load_glue_split(task, glue_dir, "train", limit=16), load_tokenizer("minilm-l6"), task, 64)
    batch = pad_batch([rows[i] for i in range(len(rows))])
    teacher = task_model("minilm-l6", task, seed=0)
    exact = LiveTeacher(teacher, (0, 2, 4, 6), (2, 4, 6), precision="fp32")(batch)
    approx = LiveTeacher(teacher, (0, 2, 4, 6), (2, 4, 6), precision="bf16")(batch)
    real = batch["attention_mask"].bool()
    pairs = (real[:, None, :, None] & real[:, None, None, :]).expand_as(exact.scores[2])
    errors = [relative_error(approx.hidden[m][real], exact.hidden[m][real]) for m in exact.hidden]
    errors += [relative_error(approx.scores[m][pairs], exact.scores[m][pairs]) for m in exact.scores]
    errors.append(relative_error(approx.logits, exact.logits))
    assert max(errors) < BF16_TARGET_TOLERANCE, errors
    assert max(errors) > 0  # bf16 really ran: its rounding shows
    assert approx.scores[2].dtype == torch.bfloat16 and exact.scores[2].dtype == torch.float32


def test_live_teacher_runs_in_inference_mode_without_touching_the_teacher():
    teacher = make_teacher()
    teacher.train()
    modes = []
    teacher.register_forward_hook(lambda *_: modes.append(torch.is_inference_mode_enabled()))
    batch = pad_batch([make_dataset(n=4)[i] for i in range(4)])
    out = LiveTeacher(teacher, (0, 2), (2,), precision="fp32")(batch)
    assert modes == [True] and not teacher.training
    assert not out.hidden[2].requires_grad
    # The teacher ran in inference mode; its outputs are ordinary tensors a loss may save for backward.
    assert not out.hidden[2].is_inference() and not out.scores[2].is_inference()
    student_logits = torch.zeros_like(out.logits, requires_grad=True)
    torch.nn.functional.mse_loss(student_logits, out.logits).backward()
    assert all(p.grad is None for p in teacher.parameters())


def test_only_the_mapped_layers_compute_attention_explicitly(monkeypatch):
    """Unmapped layers keep SDPA even when hidden states and scores of other layers are returned."""
    calls = []
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def counting_sdpa(*args, **kwargs):
        calls.append(1)
        return sdpa(*args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", counting_sdpa)
    teacher = make_teacher()  # 4 layers
    batch = pad_batch([make_dataset(n=4)[i] for i in range(4)])
    out = LiveTeacher(teacher, (0, 1, 2, 3, 4), (2, 4), precision="fp32")(batch)
    assert sorted(out.scores) == [2, 4] and sorted(out.hidden) == [0, 1, 2, 3, 4]
    assert len(calls) == 2  # layers 1 and 3
    calls.clear()
    LiveTeacher(teacher, precision="fp32")(batch)  # logits only, as in stage 2
    assert len(calls) == 4


def test_teacher_precision_auto_follows_the_hardware():
    cpu = torch.device("cpu")
    assert resolve_teacher_precision("auto", cpu) == ("bf16" if native_bf16(cpu) else "fp32")
    assert resolve_teacher_precision("fp32", cpu) == "fp32"
    with pytest.raises(ValueError, match="teacher_precision must be one of"):
        resolve_teacher_precision("fp16", cpu)
