"""Each loss against a computation done by hand on tensors small enough to check on paper."""

import math

import pytest
import torch

from tinybert_core.losses import Projections, attention_mse, hidden_mse, prediction_loss, soft_cross_entropy


def test_hidden_mse_averages_real_tokens_only():
    student = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])  # (1, 3, 2); last token is padding
    teacher = torch.tensor([[[0.0, 2.0], [3.0, 2.0], [0.0, 0.0]]])
    mask = torch.tensor([[1, 1, 0]])
    # Squared errors of the real tokens: (1, 0) and (0, 4) -> 5 over 2 tokens x 2 dims.
    assert hidden_mse(student, teacher, mask).item() == pytest.approx(5 / 4)


def test_hidden_mse_equals_plain_mse_without_padding():
    torch.manual_seed(0)
    student, teacher = torch.randn(2, 4, 3), torch.randn(2, 4, 3)
    loss = hidden_mse(student, teacher, torch.ones(2, 4))
    assert loss.item() == pytest.approx(torch.nn.functional.mse_loss(student, teacher).item(), rel=1e-6)


def test_attention_mse_excludes_padded_queries_and_keys():
    # One example, one head, 3 tokens of which the last is padding.
    student = torch.tensor([[[[1.0, 0.0, 9.0], [0.0, 1.0, 9.0], [9.0, 9.0, 9.0]]]])
    teacher = torch.tensor([[[[0.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 0.0]]]])
    mask = torch.tensor([[1, 1, 0]])
    # Real (query, key) pairs: 4; squared errors 1, 0, 0, 4 -> 5 / 4.
    assert attention_mse(student, teacher, mask).item() == pytest.approx(5 / 4)


def test_attention_mse_averages_over_heads():
    student = torch.zeros(1, 2, 2, 2)
    teacher = torch.zeros(1, 2, 2, 2)
    teacher[0, 1] = 2.0  # head 1 is off by 2 everywhere, head 0 exact
    assert attention_mse(student, teacher, torch.ones(1, 2)).item() == pytest.approx((0 + 4) / 2)


def test_soft_cross_entropy_by_hand():
    student = torch.tensor([[0.0, math.log(3.0)]])  # softmax -> (1/4, 3/4)
    teacher = torch.tensor([[math.log(2.0), 0.0]])  # softmax -> (2/3, 1/3)
    expected = -(2 / 3 * math.log(1 / 4) + 1 / 3 * math.log(3 / 4))
    assert soft_cross_entropy(student, teacher).item() == pytest.approx(expected, rel=1e-6)


def test_temperature_divides_logits():
    student = torch.tensor([[0.0, 2 * math.log(3.0)]])
    teacher = torch.tensor([[2 * math.log(2.0), 0.0]])
    expected = -(2 / 3 * math.log(1 / 4) + 1 / 3 * math.log(3 / 4))
    assert soft_cross_entropy(student, teacher, temperature=2.0).item() == pytest.approx(expected, rel=1e-6)


def test_prediction_loss_is_mse_for_regression():
    student = torch.tensor([[1.0], [3.0]])
    teacher = torch.tensor([[2.0], [1.0]])
    assert prediction_loss(student, teacher, temperature=1.0, regression=True).item() == pytest.approx((1 + 4) / 2)


def test_losses_are_float32_under_bf16_inputs():
    s = torch.randn(2, 3, 4).bfloat16()
    assert hidden_mse(s, s.clone(), torch.ones(2, 3)).dtype == torch.float32


def test_projections_are_separate_and_map_widths():
    projections = Projections(student_width=4, teacher_width=6)
    x = torch.randn(2, 3, 4)
    assert projections(x, layer=0).shape == (2, 3, 6)
    assert projections.embedding is not projections.hidden
    assert not torch.equal(projections(x, layer=0), projections(x, layer=1))


def test_identity_projections_when_widths_match_and_asked():
    projections = Projections(student_width=4, teacher_width=4, identity_if_same_width=True)
    x = torch.randn(2, 3, 4)
    assert torch.equal(projections(x, layer=2), x)
    assert sum(p.numel() for p in projections.parameters()) == 0


def test_losses_divided_by_global_counts_add_up_over_micro_batches():
    """Two micro-batches of unequal lengths, each divided by the counts of both, sum to the loss of both at once."""
    torch.manual_seed(0)
    lengths = (5, 2)
    student = [torch.randn(1, n, 3) for n in lengths]
    teacher = [torch.randn(1, n, 3) for n in lengths]
    scores_s = [torch.randn(1, 2, n, n) for n in lengths]
    scores_t = [torch.randn(1, 2, n, n) for n in lengths]
    whole_s = torch.zeros(2, 5, 3)
    whole_t = torch.zeros(2, 5, 3)
    whole_ss, whole_st = torch.zeros(2, 2, 5, 5), torch.zeros(2, 2, 5, 5)
    mask = torch.zeros(2, 5)
    for b, n in enumerate(lengths):
        whole_s[b, :n], whole_t[b, :n], mask[b, :n] = student[b][0], teacher[b][0], 1
        whole_ss[b, :, :n, :n], whole_st[b, :, :n, :n] = scores_s[b][0], scores_t[b][0]
    tokens, pairs = sum(lengths), sum(n * n for n in lengths)
    parts = [hidden_mse(student[b], teacher[b], torch.ones(1, n), total_tokens=tokens) for b, n in enumerate(lengths)]
    assert sum(parts).item() == pytest.approx(hidden_mse(whole_s, whole_t, mask).item(), rel=1e-6)
    parts = [attention_mse(scores_s[b], scores_t[b], torch.ones(1, n), total_pairs=pairs) for b, n in enumerate(lengths)]
    assert sum(parts).item() == pytest.approx(attention_mse(whole_ss, whole_st, mask).item(), rel=1e-6)
    logits_s, logits_t = torch.randn(3, 2), torch.randn(3, 2)
    for regression in (False, True):
        whole = prediction_loss(logits_s, logits_t, 2.0, regression)
        parts = prediction_loss(logits_s[:1], logits_t[:1], 2.0, regression, 3) + prediction_loss(logits_s[1:], logits_t[1:], 2.0, regression, 3)
        assert parts.item() == pytest.approx(whole.item(), rel=1e-6)
