"""A student cut from its BERT teacher: the weights land where the teacher had them, and the cut keeps what matters."""

import pytest
import torch
from datasets import Dataset
from transformers import BertConfig, RobertaConfig

from tinybert_core import recipe
from tinybert_core.batching import padded_rows
from tinybert_core.distiller import TrainConfig
from tinybert_core.layer_map import uniform_layer_map
from tinybert_core.models import StudentShape, build_student
from tinybert_core.objectives import teacher_intermediates
from tinybert_core.student_init import PrunedInitError, copy_from_teacher

TEACHER_SHAPE = StudentShape(4, 48, 96, 4, dropout=0.0)


def teacher(config=None):
    model = build_student(TEACHER_SHAPE, config or BertConfig(vocab_size=100), head="none", seed=0)
    return model.eval()


def corpus(n: int = 32) -> Dataset:
    generator = torch.Generator().manual_seed(1)
    return Dataset.from_list([
        {"input_ids": torch.randint(5, 100, (int(length),), generator=generator).tolist()}
        for length in torch.randint(4, 14, (n,), generator=generator)
    ])


def batches(data: Dataset, size: int = 8) -> list[dict]:
    return [padded_rows(data, range(start, start + size)) for start in range(0, len(data), size)]


def losses(student, big, projections, batch) -> dict[str, float]:
    objective = recipe._intermediate_objective("general", student.eval(), big, None, projections)
    with torch.no_grad():
        return {k: float(v) for k, v in objective(batch, teacher_intermediates(big, objective, batch)).items()}


def test_a_student_of_the_teachers_own_shape_is_the_teacher():
    """Nothing cut: every weight must land in its place (a misplaced row or column would show as a loss)."""
    big = teacher()
    student = build_student(TEACHER_SHAPE, big.config, head="none", seed=5)
    projections = copy_from_teacher(student, big, batches(corpus()), uniform_layer_map(4, 4).teacher_of)
    torch.testing.assert_close(projections.hidden.weight, torch.eye(48))
    batch = padded_rows(corpus(), range(8))
    assert all(value < 1e-10 for value in losses(student, big, projections, batch).values())
    # and without the cut of a random student, the same losses are far from zero
    fresh = build_student(TEACHER_SHAPE, big.config, head="none", seed=5)
    assert losses(fresh, big, None, batch)["hidden"] > 0.1


def test_the_cut_keeps_the_teachers_weights_of_the_kept_channels_and_the_mapped_layers():
    big = teacher()
    with torch.no_grad():  # one hidden channel far louder than the rest must survive the cut
        for name, parameter in big.named_parameters():
            if "LayerNorm.weight" in name:
                parameter[7] = 50.0
    shape = StudentShape(2, 24, 40, 4)
    student = build_student(shape, big.config, head="none", seed=5)
    projections = copy_from_teacher(student, big, batches(corpus()), uniform_layer_map(2, 4).teacher_of)

    kept = projections.hidden.weight.argmax(dim=0)  # student channel i is teacher channel kept[i]
    assert 7 in kept.tolist() and kept.tolist() == sorted(set(kept.tolist()))
    torch.testing.assert_close(projections.hidden.weight.sum(), torch.tensor(24.0))
    torch.testing.assert_close(student.embeddings.word_embeddings.weight, big.embeddings.word_embeddings.weight[:, kept])
    # student layer 2 starts as teacher layer 4 (g(m) = 2m): its FFN is a block of that layer's
    source, target = big.encoder.layer[3], student.encoder.layer[1]
    neurons = [int((source.intermediate.dense.weight[:, kept] == row).all(dim=1).nonzero()) for row in target.intermediate.dense.weight]
    assert len(set(neurons)) == 40
    torch.testing.assert_close(target.output.dense.weight, source.output.dense.weight[kept][:, neurons])
    torch.testing.assert_close(target.output.LayerNorm.weight, source.output.LayerNorm.weight[kept])

    # it starts nearer the teacher than a random student does
    batch = padded_rows(corpus(), range(8, 16))
    fresh = build_student(shape, big.config, head="none", seed=5)
    cut, random = losses(student, big, projections, batch), losses(fresh, big, None, batch)
    assert cut["hidden"] < random["hidden"] / 2 and cut["embedding"] < random["embedding"] / 2


def test_only_a_bert_of_the_teachers_heads_and_no_larger_can_be_cut_from_it():
    big = teacher()
    data = batches(corpus())
    with pytest.raises(PrunedInitError, match="keeps the teacher's 4 heads; the student shape has 2"):
        copy_from_teacher(build_student(StudentShape(2, 24, 40, 2), big.config), big, data, (2, 4))
    with pytest.raises(PrunedInitError, match="cannot be larger than its teacher: the student's intermediate_size"):
        copy_from_teacher(build_student(StudentShape(2, 24, 200, 4), big.config), big, data, (2, 4))
    roberta = build_student(TEACHER_SHAPE, RobertaConfig(vocab_size=100), head="none", seed=0, family="roberta")
    with pytest.raises(PrunedInitError, match="needs a BERT teacher; RobertaModel"):
        copy_from_teacher(build_student(StudentShape(2, 24, 40, 4), big.config), roberta, data, (2, 4))
    with pytest.raises(PrunedInitError, match="hold no tokens"):
        copy_from_teacher(build_student(StudentShape(2, 24, 40, 4), big.config), big, [], (2, 4))


def test_general_distillation_starts_from_the_cut_when_asked(tmp_path):
    folder = tmp_path / "teacher"
    teacher().save_pretrained(folder)
    config = TrainConfig(max_steps=1, batch_size=8, learning_rate=0.0, save_every=0)
    shape = StudentShape(2, 24, 40, 4)
    general = recipe.general_distill(folder, corpus(), shape, config, tmp_path / "cut", student_init="teacher")
    torch.testing.assert_close(general.projections.hidden.weight.sum(), torch.tensor(24.0))  # rate 0: as cut
    kept = general.projections.hidden.weight.argmax(dim=0)
    torch.testing.assert_close(general.student.embeddings.word_embeddings.weight,
                               teacher().embeddings.word_embeddings.weight[:, kept])
    with pytest.raises(ValueError, match="student_init 'pruned': expected one of random, teacher"):
        recipe.general_distill(folder, corpus(), shape, config, tmp_path / "bad", student_init="pruned")
