"""Every supported encoder family as a teacher: its pre-softmax logits, by hand, on a padded batch.

Each family is a tiny randomly initialised model (`AutoConfig.for_model`), saved and loaded back through
`load_model` like a teacher from elsewhere. Its scores are compared with the logits written out from the
family's own weights (position terms included), and their masked softmax with the probabilities the
unpatched model computes in transformers' eager attention.
"""

import math

import pytest
import torch
from datasets import Dataset
from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification
from transformers.models.deberta_v2.modeling_deberta_v2 import make_log_bucket_position

from tinybert_core import recipe
from tinybert_core.batching import ROW_INDEX
from tinybert_core.distiller import TrainConfig
from tinybert_core.dropout import dropout_rate
from tinybert_core.families import FamilyError, family_of, model_inputs, num_layers, prepare
from tinybert_core.glue_tasks import get_task
from tinybert_core.layer_map import LayerMapError, build_layer_map
from tinybert_core.losses import Projections
from tinybert_core.models import ModelLoadError, StudentShape, build_student, forward_intermediates, load_model
from tinybert_core.objectives import DistillationObjective
from tinybert_core.teacher_targets import IntermediateCache, LiveTeacher

VOCAB, WIDTH, HEADS = 120, 32, 4
TINY = dict(vocab_size=VOCAB, hidden_size=WIDTH, num_attention_heads=HEADS, intermediate_size=64, num_hidden_layers=4)

# (case id, model type, config overrides): every family, and the variants whose attention differs.
CASES = [
    ("bert", "bert", {}),
    ("roberta", "roberta", dict(pad_token_id=1, type_vocab_size=1, max_position_embeddings=66)),
    ("xlm-roberta", "xlm-roberta", dict(pad_token_id=1, type_vocab_size=1, max_position_embeddings=66)),
    ("camembert", "camembert", dict(pad_token_id=1, type_vocab_size=1, max_position_embeddings=66)),
    ("electra", "electra", dict(embedding_size=16)),
    ("distilbert", "distilbert", dict(vocab_size=VOCAB, dim=WIDTH, n_heads=HEADS, hidden_dim=64, n_layers=4)),
    ("albert", "albert", dict(embedding_size=16)),
    # Two layers per shared group, run twice: four repeated layer outputs.
    ("albert-inner2", "albert", dict(embedding_size=16, num_hidden_layers=2, inner_group_num=2)),
    ("mpnet", "mpnet", dict(pad_token_id=1)),
    # DeBERTa-v3: shared attention keys, log-bucketed relative positions, no absolute positions or token types.
    ("deberta-v3", "deberta-v2", dict(relative_attention=True, pos_att_type=["p2c", "c2p"], position_buckets=4,
                                      max_relative_positions=8, share_att_key=True, norm_rel_ebd="layer_norm",
                                      position_biased_input=False, type_vocab_size=0)),
    # DeBERTa-v2: separate position projections for c2p and p2c.
    ("deberta-v2", "deberta-v2", dict(relative_attention=True, pos_att_type=["p2c", "c2p"], share_att_key=False,
                                      max_relative_positions=8, type_vocab_size=0)),
    # Local attention over 2 tokens either side in 3 of 4 layers: the window is part of the mask.
    ("modernbert", "modernbert", dict(pad_token_id=0, bos_token_id=2, eos_token_id=3, cls_token_id=2, sep_token_id=3,
                                      local_attention=4, global_attn_every_n_layers=4)),
]
IDS = [case[0] for case in CASES]
MNLI = get_task("mnli")


def tiny_config(model_type: str, overrides: dict):
    values = {**TINY, **overrides} if model_type != "distilbert" else overrides
    return AutoConfig.for_model(model_type, **values)


@pytest.fixture(scope="module")
def saved_teachers(tmp_path_factory):
    """Each family's tiny model saved as an MNLI teacher (a head in the task's label order), seeded."""
    folders = {}
    for case, model_type, overrides in CASES:
        torch.manual_seed(0)
        config = tiny_config(model_type, overrides)
        config.id2label = dict(enumerate(MNLI.labels))
        config.label2id = {label: i for i, label in enumerate(MNLI.labels)}
        model = AutoModelForSequenceClassification.from_config(config, attn_implementation="eager")
        folders[case] = tmp_path_factory.mktemp(case)
        model.save_pretrained(folders[case])
    return folders


def padded_batch(pad_id: int = 0) -> dict[str, torch.Tensor]:
    """Two sequences of 10 and 6 tokens, the second padded; a sentence pair's token types on the first."""
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(5, VOCAB, (2, 10), generator=generator)
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    types = torch.zeros_like(ids)
    types[0, 5:] = 1
    return {"input_ids": ids.masked_fill(mask == 0, pad_id), "attention_mask": mask, "token_type_ids": types}


def heads(x: torch.Tensor) -> torch.Tensor:
    """(B, T, nh * hs) -> (B, nh, T, hs)."""
    b, t, _ = x.shape
    return x.view(b, t, HEADS, -1).transpose(1, 2)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def hand_scores(case: str, model, hidden: tuple[torch.Tensor, ...], layer: int) -> torch.Tensor:
    """The logits that enter the softmax of 0-based `layer`, from its input hidden states (B, nh, T, T)."""
    encoder = model.base_model
    h = hidden[layer]
    hs = WIDTH // HEADS
    if case in ("bert", "roberta", "xlm-roberta", "camembert", "electra"):
        attention = encoder.encoder.layer[layer].attention.self
        return heads(attention.query(h)) @ heads(attention.key(h)).transpose(2, 3) / math.sqrt(hs)
    if case == "distilbert":
        attention = encoder.transformer.layer[layer].attention
        return heads(attention.q_lin(h)) @ heads(attention.k_lin(h)).transpose(2, 3) / math.sqrt(hs)
    if case.startswith("albert"):
        config = model.config
        repetition, inner = divmod(layer, config.inner_group_num)
        group = int(repetition / (config.num_hidden_layers / config.num_hidden_groups))
        attention = encoder.encoder.albert_layer_groups[group].albert_layers[inner].attention
        return heads(attention.query(h)) @ heads(attention.key(h)).transpose(2, 3) / math.sqrt(hs)
    if case == "mpnet":
        attention = encoder.encoder.layer[layer].attention.attn
        t = h.size(1)
        relative = torch.arange(t)[None, :] - torch.arange(t)[:, None]  # key position - query position
        bucket = encoder.encoder.relative_position_bucket(relative, num_buckets=32)
        bias = encoder.encoder.relative_attention_bias(bucket).permute(2, 0, 1)  # (nh, T, T)
        return heads(attention.q(h)) @ heads(attention.k(h)).transpose(2, 3) / math.sqrt(hs) + bias
    if case.startswith("deberta"):
        attention = encoder.encoder.layer[layer].attention.self
        q, k = heads(attention.query_proj(h)), heads(attention.key_proj(h))
        t = h.size(1)
        relative = torch.arange(t)[:, None] - torch.arange(t)[None, :]  # query position - key position
        if attention.position_buckets > 0:
            relative = make_log_bucket_position(relative, attention.position_buckets, attention.max_relative_positions)
        span = attention.pos_ebd_size
        rel = encoder.encoder.get_rel_embedding()[: 2 * span]
        position_keys = heads((attention.key_proj if attention.share_att_key else attention.pos_key_proj)(rel[None]))[0]
        position_queries = heads((attention.query_proj if attention.share_att_key else attention.pos_query_proj)(rel[None]))[0]
        index = torch.clamp(relative.long() + span, 0, 2 * span - 1)  # (T, T)
        # content -> position: q_i . K_r(i - j); position -> content: k_j . Q_r(i - j), as DeBERTa defines them
        c2p = torch.einsum("bhid,hijd->bhij", q, position_keys[:, index])
        p2c = torch.einsum("bhjd,hijd->bhij", k, position_queries[:, index])
        return (q @ k.transpose(2, 3) + c2p + p2c) / math.sqrt(hs * 3)
    if case == "modernbert":
        block = encoder.layers[layer]
        qkv = block.attn.Wqkv(block.attn_norm(h)).view(*h.shape[:2], 3, HEADS, hs)
        q, k = qkv[:, :, 0].transpose(1, 2), qkv[:, :, 1].transpose(1, 2)
        positions = torch.arange(h.size(1))[None]
        cos, sin = encoder.rotary_emb(h, positions, block.attention_type)
        cos, sin = cos[:, None], sin[:, None]
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        return q @ k.transpose(2, 3) / math.sqrt(hs)
    raise AssertionError(case)


@pytest.mark.parametrize("case,model_type,overrides", CASES, ids=IDS)
def test_scores_are_the_pre_softmax_logits_of_each_family(case, model_type, overrides, saved_teachers):
    teacher = load_model(saved_teachers[case], head="classification", labels=list(MNLI.labels)).eval()
    reference = AutoModel.from_pretrained(saved_teachers[case], attn_implementation="eager").eval()
    batch = padded_batch(teacher.config.pad_token_id or 0)
    layers = num_layers(teacher.config)
    assert layers == 4

    ours = forward_intermediates(teacher, batch, hidden_layers=tuple(range(layers + 1)), score_layers=tuple(range(1, layers + 1)))
    with torch.no_grad():
        eager = reference(**model_inputs(reference, batch), output_hidden_states=True, output_attentions=True)
    real = batch["attention_mask"].bool()
    for m in range(1, layers + 1):
        scores = ours.scores[m]
        assert scores.shape == (2, HEADS, 10, 10)
        torch.testing.assert_close(scores, hand_scores(case, reference, eager.hidden_states, m - 1), atol=2e-5, rtol=1e-4)
        # Masked softmax of the scores = the model's own attention probabilities, on real query rows.
        allowed = real[:, None, None, :] if ours.score_masks[m] is None else ours.score_masks[m]
        probs = scores.masked_fill(~allowed, float("-inf")).softmax(-1)
        for b in range(2):
            rows = real[b]
            torch.testing.assert_close(probs[b][:, rows], eager.attentions[m - 1][b][:, rows], atol=2e-6, rtol=1e-4)
    for m in range(layers):  # the hidden states the losses read are transformers' own
        torch.testing.assert_close(ours.hidden[m][real], eager.hidden_states[m][real], atol=1e-5, rtol=1e-4)

    # The padded sequence scores as it does alone.
    alone = {key: value[1:, :6] for key, value in batch.items()}
    single = forward_intermediates(teacher, alone, hidden_layers=(layers,), score_layers=(2,))
    torch.testing.assert_close(ours.scores[2][1, :, :6, :6], single.scores[2][0], atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(ours.logits[1], single.logits[0], atol=2e-5, rtol=1e-4)


def test_local_attention_windows_are_part_of_the_recorded_mask(saved_teachers):
    teacher = load_model(saved_teachers["modernbert"], head="none").eval()
    out = forward_intermediates(teacher, padded_batch(), score_layers=(1, 2))
    assert teacher.config.layer_types[:2] == ["full_attention", "sliding_attention"]
    local = out.score_masks[2][0, 0]  # (T, T) of the first sequence, unpadded
    distance = (torch.arange(10)[:, None] - torch.arange(10)[None, :]).abs()
    assert torch.equal(local, distance <= teacher.config.sliding_window)
    assert out.score_masks[1] is None or bool(out.score_masks[1][0].all())


def test_the_teachers_window_reaches_the_attention_loss_live_and_from_the_stage1_cache(saved_teachers):
    """A local layer's logits outside its window never enter the softmax, so changing them changes no loss,
    whether the targets come from the live teacher or from the stage-1 cache."""
    teacher = load_model(saved_teachers["modernbert"], head="classification", labels=list(MNLI.labels)).eval()
    student = recipe.student_for_task(MNLI, teacher, None, StudentShape(2, 16, 32, HEADS, dropout=0.0), seed=0).eval()
    layer_map = build_layer_map(student.config, teacher.config)
    assert [n for _, n in layer_map.pairs] == [2, 4] and teacher.config.layer_types[1] == "sliding_attention"
    objective = DistillationObjective(student, "task_intermediate", layer_map, Projections(16, WIDTH))
    batch = {**padded_batch(), ROW_INDEX: torch.tensor([0, 1])}
    live = LiveTeacher(teacher, *objective.teacher_request(), precision="fp32")
    cache = IntermediateCache(live, [10, 6], budget_mb=1)
    computed, cached = cache(batch), cache(batch)
    assert (cache.misses, cache.hits) == (1, 1)

    real = batch["attention_mask"].bool()
    pairs = real[:, None, :, None] & real[:, None, None, :]  # (B, 1, T, T)
    window = forward_intermediates(teacher, batch, score_layers=(2,)).score_masks[2]
    outside = pairs & ~window
    assert bool(outside.any())
    scores = computed.scores[2] * pairs
    for targets in (computed, cached):
        assert torch.equal(targets.score_masks[2] & pairs, window & pairs)
        assert torch.equal(targets.scores[2] * pairs, scores)
        with torch.no_grad():
            loss = objective(batch, targets)["attention"]
            targets.scores[2] = targets.scores[2].masked_fill(outside, 100.0)
            assert objective(batch, targets)["attention"] == loss


@pytest.mark.parametrize("case,model_type,overrides", CASES, ids=IDS)
def test_unmapped_layers_keep_the_fused_kernel(case, model_type, overrides, saved_teachers, monkeypatch):
    teacher = load_model(saved_teachers[case], head="none").eval()
    calls = []
    original = torch.nn.functional.scaled_dot_product_attention
    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", lambda *a, **k: calls.append(1) or original(*a, **k))
    out = forward_intermediates(teacher, padded_batch(teacher.config.pad_token_id or 0), score_layers=(4,))
    assert len(calls) == 3 and list(out.scores) == [4]


def random_pairs(n: int = 24, seed: int = 0) -> Dataset:
    """Token-id rows of varied length; half are pairs with token types 0/1; label = token 7 or 8 present."""
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for i in range(n):
        length = int(torch.randint(4, 12, (1,), generator=generator))
        ids = torch.randint(5, VOCAB, (length,), generator=generator).tolist()
        types = [0] * (length // 2) + [i % 2] * (length - length // 2)
        rows.append({"input_ids": ids, "token_type_ids": types, "labels": int(7 in ids) + int(8 in ids)})
    return Dataset.from_list(rows)


@pytest.mark.parametrize("case,model_type,overrides", CASES, ids=IDS)
def test_two_step_task_distillation_runs_with_each_family_as_teacher(case, model_type, overrides, saved_teachers, tmp_path):
    task = MNLI
    teacher = recipe.task_model(saved_teachers[case], task)
    student = recipe.student_for_task(task, teacher, None, StudentShape(2, 16, 32, HEADS), seed=0)
    assert student.config.model_type == "bert" and student.config.pad_token_id == teacher.config.pad_token_id
    step = TrainConfig(max_steps=2, batch_size=8, learning_rate=1e-3, log_every=1, save_every=0)
    result = recipe.task_distill(teacher, student, task, random_pairs(), None, step, step, tmp_path)
    stage1 = (tmp_path / "stage1" / "train_log.jsonl").read_text().splitlines()
    assert len(stage1) == 2 and '"attention"' in stage1[0]
    assert result.state.step == 2 and math.isfinite(result.final_losses["loss"])
    assert result.student.config.id2label == dict(enumerate(task.labels))


@pytest.mark.parametrize("case,model_type,overrides", CASES, ids=IDS)
def test_a_student_of_the_teachers_own_family(case, model_type, overrides, saved_teachers):
    teacher = load_model(saved_teachers[case], head="none").eval()
    family = family_of(teacher.config).name
    student = build_student(StudentShape(2, 16, 32, HEADS, dropout=0.0), teacher.config, family=family, seed=0).eval()
    assert type(student.config) is type(teacher.config) and num_layers(student.config) == 2
    assert (student.config.hidden_size, student.config.num_attention_heads) == (16, HEADS)
    pairs = build_layer_map(student.config, teacher.config).pairs
    out = forward_intermediates(student, padded_batch(teacher.config.pad_token_id or 0), hidden_layers=(0, 2), score_layers=(1, 2))
    assert pairs == ((1, 2), (2, 4)) and out.scores[2].shape == (2, HEADS, 10, 10) and out.hidden[2].shape == (2, 10, 16)


def test_unknown_families_are_named_with_the_supported_list(tmp_path):
    config = AutoConfig.for_model("xlnet", vocab_size=VOCAB, d_model=WIDTH, n_layer=2, n_head=HEADS)
    with pytest.raises(FamilyError, match=r"'xlnet'.*supported model types: bert, roberta.*modernbert"):
        family_of(config)
    config.save_pretrained(tmp_path)
    with pytest.raises(FamilyError, match="'xlnet'"):
        load_model(tmp_path)  # before any weights are looked for
    with pytest.raises(FamilyError, match="student family 'mpnet'"):
        build_student(StudentShape(2, 16, 32, HEADS), tiny_config("bert", {}), family="mpnet")


def test_different_head_counts_stop_unless_the_attention_loss_is_switched_off(saved_teachers, tmp_path, caplog):
    task = MNLI
    teacher = recipe.task_model(saved_teachers["bert"], task)
    student = recipe.student_for_task(task, teacher, None, StudentShape(2, 16, 32, 2), seed=0)
    step = TrainConfig(max_steps=1, batch_size=8, save_every=0)
    with pytest.raises(LayerMapError, match=r"2 heads and the teacher 4.*attention_loss=False"):
        recipe.task_distill(teacher, student, task, random_pairs(8), None, step, step, tmp_path / "a")
    recipe.task_distill(teacher, student, task, random_pairs(8), None, step, step, tmp_path / "b", attention_loss=False)
    assert "attention loss switched off" in caplog.text
    assert '"attention": 0.0' in (tmp_path / "b" / "stage1" / "train_log.jsonl").read_text()


def test_token_types_reach_only_models_that_have_them(saved_teachers):
    batch = padded_batch()
    fed = {case: "token_type_ids" in model_inputs(prepare(load_model(saved_teachers[case])), batch) for case in IDS}
    assert fed == {case: case in ("bert", "electra", "albert", "albert-inner2") for case in IDS}
    roberta = load_model(saved_teachers["roberta"])
    assert model_inputs(roberta, batch)["input_ids"][1, 6:].eq(1).all()  # padded with RoBERTa's own pad id


def test_a_label_mismatch_is_still_reported_for_every_family(saved_teachers):
    with pytest.raises(ModelLoadError, match="does not fit a model with a classification head with 2 labels"):
        load_model(saved_teachers["mpnet"], head="classification", labels=["x", "y"])


# ModernBERT's rates default to 0; the other families' to 0.1.
DROPOUT_ON = {"modernbert": dict(attention_dropout=0.1, embedding_dropout=0.1, mlp_dropout=0.1, classifier_dropout=0.1)}


@pytest.mark.parametrize("case,model_type,overrides", CASES, ids=IDS)
def test_dropout_rate_zero_turns_off_every_dropout_of_each_family(case, model_type, overrides):
    """Some families keep rates in nn.Dropout modules, ModernBERT's attention in a float read at forward time:
    with the rate set to 0, a model in training mode gives the same output twice; after the block, not."""
    torch.manual_seed(0)
    config = tiny_config(model_type, {**overrides, **DROPOUT_ON.get(model_type, {})})
    config.num_labels = 3
    model = prepare(AutoModelForSequenceClassification.from_config(config)).train()
    batch = model_inputs(model, padded_batch(config.pad_token_id or 0))

    def twice_equal() -> bool:
        with torch.no_grad():
            return torch.equal(model(**batch).logits, model(**batch).logits)

    assert not twice_equal()
    with dropout_rate(model, 0.0):
        assert twice_equal()
    assert not twice_equal()
