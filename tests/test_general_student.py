"""The General TinyBERT as the start of task distillation: ours with its W_e/W_h, or a published one."""

import json
import logging

import pytest
import torch
from datasets import Dataset
from transformers import BertConfig, BertModel

from tinybert_core import recipe
from tinybert_core.distiller import TrainConfig
from tinybert_core.general_student import PROJECTIONS_FILE, load_projections, save_projections
from tinybert_core.glue_tasks import get_task
from tinybert_core.losses import Projections
from tinybert_core.models import StudentShape, build_student, load_tokenizer
from tinybert_core.vocabulary import VocabularyError, check_vocabularies

SST2 = get_task("sst2")
SHAPE = StudentShape(2, 32, 64, 4)


def teacher_folder(path, width: int = 48, vocab: int = 100):
    build_student(StudentShape(4, width, 2 * width, 4), BertConfig(vocab_size=vocab), head="none", seed=0).save_pretrained(path)
    return path


def corpus(n: int = 16) -> Dataset:
    generator = torch.Generator().manual_seed(0)
    return Dataset.from_list([{"input_ids": torch.randint(5, 100, (12,), generator=generator).tolist()} for _ in range(n)])


def test_general_distillation_keeps_its_projections_for_task_stage_1(tmp_path, caplog):
    config = TrainConfig(max_steps=2, batch_size=8, learning_rate=1e-3, save_every=0)
    general = recipe.general_distill(teacher_folder(tmp_path / "teacher"), corpus(), SHAPE, config, tmp_path / "run")
    assert isinstance(general.projections, Projections) and general.projections.hidden.weight.shape == (48, 32)
    folder = tmp_path / "general"
    general.student.save_pretrained(folder)
    saved = save_projections(general.projections, folder)
    assert saved == folder / PROJECTIONS_FILE

    teacher = recipe.task_model(tmp_path / "teacher", SST2, seed=0)
    student = recipe.student_for_task(SST2, teacher, folder, SHAPE, seed=0)
    projections = recipe.projections_for_task(folder, student, teacher)
    for name, tensor in general.projections.state_dict().items():
        torch.testing.assert_close(projections.state_dict()[name], tensor)
    rows = corpus().map(lambda row, i: {"labels": i % 2}, with_indices=True)
    stage1 = recipe.task_distill_intermediate(teacher, student, rows, config, tmp_path / "stage1", projections=projections)
    assert stage1.projections is projections  # trained on from where general distillation left them

    # Projections towards a teacher of another width cannot start stage 1: said, and fresh ones are used.
    wide = recipe.task_model(teacher_folder(tmp_path / "wide", width=64), SST2, seed=0)
    with caplog.at_level(logging.WARNING):
        assert recipe.projections_for_task(folder, student, wide) is None
    assert "map width 32 to 48, but this student is 32 wide and the teacher 64" in caplog.text
    assert recipe.projections_for_task(None, student, teacher) is None


def reference_general_tinybert(path, projection: str = "fit_dense"):
    """A General TinyBERT as the reference code publishes it: a config without a model type, vocab.txt and
    pytorch_model.bin holding bert.* weights and the student-to-teacher projection."""
    path.mkdir()
    config = {"attention_probs_dropout_prob": 0.1, "cell": {}, "emb_size": 32, "hidden_act": "gelu",
              "hidden_dropout_prob": 0.1, "hidden_size": 32, "initializer_range": 0.02, "intermediate_size": 64,
              "max_position_embeddings": 128, "num_attention_heads": 4, "num_hidden_layers": 2, "pre_trained": "",
              "structure": [], "training": "", "type_vocab_size": 2, "vocab_size": 30522}
    (path / "config.json").write_text(json.dumps(config))
    vocab = load_tokenizer("minilm-l6").get_vocab()
    (path / "vocab.txt").write_text("\n".join(sorted(vocab, key=vocab.get)) + "\n")
    torch.manual_seed(3)
    encoder = BertModel(BertConfig(**{k: v for k, v in config.items() if k not in ("cell", "structure")}))
    weights = {f"bert.{name}": tensor for name, tensor in encoder.state_dict().items()}
    if projection == "fit_dense":
        weights.update({"fit_dense.weight": torch.randn(48, 32), "fit_dense.bias": torch.randn(48)})
    else:
        weights.update({f"fit_denses.{i}.weight": torch.randn(48, 32) for i in range(3)})
    torch.save(weights, path / "pytorch_model.bin")
    return encoder, weights


def test_a_published_reference_format_general_tinybert_starts_task_distillation(tmp_path, caplog):
    encoder, weights = reference_general_tinybert(tmp_path / "published")
    teacher = recipe.task_model(teacher_folder(tmp_path / "teacher", vocab=30522), SST2, seed=0)
    student = recipe.student_for_task(SST2, teacher, tmp_path / "published", SHAPE, seed=0)
    assert student.config.model_type == "bert" and student.config.id2label == dict(enumerate(SST2.labels))
    for name, tensor in encoder.state_dict().items():
        torch.testing.assert_close(student.bert.state_dict()[name], tensor)
    tokenizer = load_tokenizer(tmp_path / "published")
    assert tokenizer.tokenize("Distillation works") == ["di", "##sti", "##llation", "works"]
    check_vocabularies("minilm-l6", "minilm-l6", general_student=tmp_path / "published")

    # Its one shared projection starts both W_e and W_h, as the reference code uses it.
    projections = recipe.projections_for_task(tmp_path / "published", student, teacher)
    for layer in (projections.embedding, projections.hidden):
        torch.testing.assert_close(layer.weight, weights["fit_dense.weight"])
        torch.testing.assert_close(layer.bias, weights["fit_dense.bias"])

    reference_general_tinybert(tmp_path / "v2", projection="fit_denses")
    with caplog.at_level(logging.WARNING):
        assert load_projections(tmp_path / "v2", 32, 48) is None
    assert "per-layer projections" in caplog.text


def test_a_general_student_of_another_vocabulary_size_is_refused(tmp_path):
    teacher = recipe.task_model(teacher_folder(tmp_path / "teacher", vocab=100), SST2, seed=0)
    reference_general_tinybert(tmp_path / "published")  # 30522 rows
    with pytest.raises(VocabularyError, match=r"general student .*published has 30522 embedding rows and the teacher 100"):
        recipe.student_for_task(SST2, teacher, tmp_path / "published", SHAPE, seed=0)


def test_saved_projections_are_the_same_bytes_every_time(tmp_path):
    """A DVC output: if the file's bytes changed from run to run, every task's stage 1 would rerun for nothing
    (safetensors writes several metadata entries in a random order)."""
    from tinybert_core.losses import Projections

    torch.manual_seed(0)
    projections = Projections(48, 384)
    written = {save_projections(projections, tmp_path / str(i)).read_bytes() for i in range(8)}
    assert len(written) == 1
