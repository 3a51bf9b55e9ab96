"""A teacher fine-tuned elsewhere: its labels matched to the task's by name, its vocabulary checked."""

import pytest
import torch
from datasets import Dataset
from transformers import AutoModelForSequenceClassification, BertConfig, BertTokenizerFast

from tinybert_core import recipe
from tinybert_core.distiller import TrainConfig
from tinybert_core.evaluation import evaluate_model, predict_logits
from tinybert_core.glue_data import load_glue_split
from tinybert_core.glue_tasks import get_task
from tinybert_core.models import ModelLoadError, StudentShape, build_student, label_order, load_tokenizer
from tinybert_core.vocabulary import VocabularyError, check_vocabularies

MNLI = get_task("mnli")  # the task's order: entailment, neutral, contradiction
CLASSIC = ["contradiction", "entailment", "neutral"]  # the order of the original MNLI release and many hub models
MARKERS = {"entailment": 7, "neutral": 8, "contradiction": 9}
TINY = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)


def marker_data(n: int = 48, seed: int = 0) -> Dataset:
    """Random sequences whose first token, read by the classifier, is a marker naming the class (task index)."""
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for i in range(n):
        label = MNLI.labels[i % 3]
        ids = torch.randint(10, 100, (int(torch.randint(6, 14, (1,), generator=generator)),), generator=generator).tolist()
        rows.append({"input_ids": [MARKERS[label], *ids, 3], "labels": MNLI.labels.index(label)})
    return Dataset.from_list(rows)


@pytest.fixture(scope="module")
def classic_teacher(tmp_path_factory):
    """A teacher that has learnt the markers, saved with its head in the classic MNLI order."""
    data = marker_data()
    teacher = build_student(StudentShape(2, 32, 64, 4, dropout=0.0), TINY, head="classification", labels=list(MNLI.labels), seed=0)
    recipe.finetune(teacher, MNLI, data, None, TrainConfig(num_epochs=4, batch_size=16, learning_rate=2e-3, save_every=0),
                    tmp_path_factory.mktemp("finetune"))
    assert evaluate_model(teacher, data, MNLI)["accuracy"] > 0.95
    classic = [MNLI.labels.index(label) for label in CLASSIC]  # classic row i = task row classic[i]
    with torch.no_grad():
        teacher.classifier.weight.copy_(teacher.classifier.weight[classic])
        teacher.classifier.bias.copy_(teacher.classifier.bias[classic])
    teacher.config.id2label = dict(enumerate(CLASSIC))
    teacher.config.label2id = {label: i for i, label in enumerate(CLASSIC)}
    folder = tmp_path_factory.mktemp("classic")
    teacher.save_pretrained(folder)
    return folder, data


def test_a_classic_order_mnli_teacher_distils_to_a_student_with_the_right_labels(classic_teacher, tmp_path):
    folder, data = classic_teacher
    # Taking the task's label names without looking, as loading used to, permutes the teacher's predictions.
    blind = AutoModelForSequenceClassification.from_pretrained(folder, id2label=dict(enumerate(MNLI.labels)))
    assert evaluate_model(blind, data, MNLI)["accuracy"] < 0.1

    teacher = recipe.task_model(folder, MNLI)
    assert teacher.config.id2label == dict(enumerate(MNLI.labels))
    assert evaluate_model(teacher, data, MNLI)["accuracy"] > 0.95
    student = recipe.student_for_task(MNLI, teacher, None, StudentShape(2, 32, 64, 4), seed=0)
    stage1 = TrainConfig(num_epochs=1, batch_size=16, learning_rate=2e-3, save_every=0)
    stage2 = TrainConfig(num_epochs=4, batch_size=16, learning_rate=2e-3, save_every=0)
    student = recipe.task_distill(teacher, student, MNLI, data, None, stage1, stage2, tmp_path).student
    assert student.config.id2label == dict(enumerate(MNLI.labels))
    assert evaluate_model(student, marker_data(48, seed=1), MNLI)["accuracy"] > 0.8


def test_generic_label_names_need_a_mapping(classic_teacher, tmp_path):
    folder, data = classic_teacher
    generic = AutoModelForSequenceClassification.from_pretrained(folder)
    generic.config.id2label = {i: f"LABEL_{i}" for i in range(3)}
    generic.config.label2id = {f"LABEL_{i}": i for i in range(3)}
    generic.save_pretrained(tmp_path)
    with pytest.raises(ModelLoadError, match=r"outputs \['LABEL_0', 'LABEL_1', 'LABEL_2'\].*expects \['entailment', 'neutral', "
                                             r"'contradiction'\].*generic.*give the mapping"):
        recipe.task_model(tmp_path, MNLI)
    mapping = {f"LABEL_{i}": label for i, label in enumerate(CLASSIC)}
    mapped = recipe.task_model(tmp_path, MNLI, label_mapping=mapping)
    torch.testing.assert_close(predict_logits(mapped, data), predict_logits(recipe.task_model(folder, MNLI), data))


def test_label_names_match_without_case_or_separators():
    assert label_order(["NOT-ENTAILMENT", "Entailment"], ["entailment", "not_entailment"]) == [1, 0]
    assert label_order(["0", "1"], ["0", "1"]) == [0, 1]
    with pytest.raises(ModelLoadError, match=r"\['negative', 'positive'\].*\['0', '1'\].*no match"):
        label_order(["negative", "positive"], ["0", "1"])
    with pytest.raises(ModelLoadError, match="numbers of classes differ"):
        label_order(["a", "b", "c"], ["a", "b"])
    with pytest.raises(ModelLoadError, match=r"\['LABEL_9'\], which are not labels"):
        label_order(["LABEL_0", "LABEL_1"], ["a", "b"], {"LABEL_9": "a"})


@pytest.fixture(scope="module")
def other_vocabulary_student(tmp_path_factory):
    """A General-TinyBERT-shaped folder whose WordPiece vocabulary differs from MiniLM's at id 2000 only."""
    folder = tmp_path_factory.mktemp("other-vocab")
    vocab = load_tokenizer("minilm-l6").get_vocab()
    lines = sorted(vocab, key=vocab.get)
    original, lines[2000] = lines[2000], "tinybertonly"
    (folder / "vocab.txt").write_text("\n".join(lines) + "\n")
    BertTokenizerFast.from_pretrained(folder).save_pretrained(folder)  # reads vocab.txt
    build_student(StudentShape(2, 16, 32, 4), BertConfig(vocab_size=len(lines)), head="none", seed=0).save_pretrained(folder)
    return folder, original


def test_the_vocabulary_check_names_both_models_and_the_first_differing_token(other_vocabulary_student):
    folder, original = other_vocabulary_student
    check_vocabularies("minilm-l6", "minilm-l6")  # one vocabulary: passes
    with pytest.raises(VocabularyError) as error:
        check_vocabularies("minilm-l6", "minilm-l6", general_student=folder)
    message = str(error.value)
    assert "the tokenizer of minilm-l6" in message and f"general student {folder}" in message
    assert f"id 2000 is {original!r}" in message and "'tinybertonly'" in message


def test_a_tokenizer_larger_than_the_embeddings_is_refused(tmp_path):
    build_student(StudentShape(2, 16, 32, 4), BertConfig(vocab_size=1000), head="none").save_pretrained(tmp_path)
    with pytest.raises(VocabularyError, match=r"produces ids up to 30521, but teacher .* has only 1000 embedding rows"):
        check_vocabularies("minilm-l6", tmp_path)


def test_sequence_length_follows_the_task(glue_dir):
    assert get_task("sst2").max_seq_length == 64 and get_task("cola").max_seq_length == 64
    assert get_task("mrpc").max_seq_length == 128 and get_task("stsb").max_seq_length == 128
    tokenizer = load_tokenizer("minilm-l6")
    pairs = recipe.encode_task(load_glue_split("mrpc", glue_dir, "train", limit=200), tokenizer, get_task("mrpc"))
    assert 64 < max(len(ids) for ids in pairs["input_ids"]) <= 128
    short = recipe.encode_task(load_glue_split("mrpc", glue_dir, "train", limit=200), tokenizer, get_task("mrpc"), 32)
    assert max(len(ids) for ids in short["input_ids"]) == 32
