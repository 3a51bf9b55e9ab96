"""Word vectors for augmentation: loading them (GloVe, word2vec), training them offline, and nearest neighbours.

Words that a masked LM cannot predict as one token get their candidates from the nearest neighbours of
their vector by cosine similarity (TinyBERT, Algorithm 1). Only alphabetic vocabulary entries take part,
as queries and as neighbours, because a candidate replaces an alphabetic word; a `limit` on loading keeps
the most frequent entries (GloVe files are sorted by frequency), as the reference keeps 100,000.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

import torch
from gensim.models import KeyedVectors, Word2Vec

from tinybert_core.augment.ranking import batched_top_k, canonical_top_k
from tinybert_core.augment.words import split_words

log = logging.getLogger(__name__)

VectorFormat = Literal["auto", "glove", "word2vec", "word2vec_binary"]


class WordVectorError(ValueError):
    """A word vector file is missing or malformed; the message names the file and, where known, the line."""


def detect_format(path: str | Path) -> VectorFormat:
    """Guess a vector file's format: `.bin` is word2vec binary; a text file whose first line is two integers
    (the "vocab_size vector_size" header) is word2vec text; any other text file is GloVe (no header)."""
    path = Path(path)
    if path.suffix == ".bin":
        return "word2vec_binary"
    with path.open(encoding="utf-8", errors="replace") as f:
        fields = f.readline().split()
    if not fields:
        raise WordVectorError(f"{path}: the file is empty (or its first line is blank)")
    return "word2vec" if len(fields) == 2 and all(x.isdigit() for x in fields) else "glove"


def load_word_vectors(path: str | Path, format: VectorFormat = "auto", limit: int | None = None) -> KeyedVectors:
    """Load word vectors through gensim `KeyedVectors`.

    Args:
        path: a GloVe text file (no header), or a word2vec text or binary file (with header).
        format: "auto" detects it (see `detect_format`); or one of "glove", "word2vec", "word2vec_binary".
        limit: keep only the first `limit` words of the file (the most frequent ones for GloVe).

    Raises:
        WordVectorError: missing or empty file, or a row that is ragged or not numeric (naming its line).
    """
    path = Path(path)
    if not path.is_file():
        raise WordVectorError(f"word vector file not found: {path}")
    if path.stat().st_size == 0:
        raise WordVectorError(f"{path}: the file is empty")
    fmt = detect_format(path) if format == "auto" else format
    log.info("loading %s word vectors from %s (limit %s)", fmt, path, limit)
    try:
        vectors = KeyedVectors.load_word2vec_format(
            str(path), binary=fmt == "word2vec_binary", no_header=fmt == "glove", limit=limit
        )
    except (ValueError, EOFError, UnicodeDecodeError, TypeError, IndexError) as err:
        # gensim's own messages rarely say where; find the first bad line ourselves (text formats only).
        where = None if fmt == "word2vec_binary" else _first_bad_line(path, fmt == "word2vec", limit)
        raise WordVectorError(f"{path}: not a valid {fmt} vector file: {where or err}") from err
    if len(vectors) == 0:
        raise WordVectorError(f"{path}: no word vectors in the file")
    return vectors


def _first_bad_line(path: Path, has_header: bool, limit: int | None) -> str | None:
    """Describe the first line of a text vector file that gensim could not read, or None if all look fine."""
    expected: int | None = None
    line_no = 0
    with path.open(encoding="utf-8", errors="strict") as f:
        try:
            for line_no, line in enumerate(f, start=1):
                parts = line.rstrip().split(" ")  # gensim splits rows on single spaces, as here
                if has_header and line_no == 1:
                    if len(parts) != 2 or not all(x.isdigit() for x in parts):
                        return f"line 1: expected a 'vocab_size vector_size' header, found {line.strip()[:60]!r}"
                    expected = int(parts[1])
                    continue
                if limit is not None and line_no - has_header > limit:
                    return None
                if len(parts) < 2:
                    return f"line {line_no}: no vector after the word {parts[0][:40]!r}"
                expected = len(parts) - 1 if expected is None else expected
                if len(parts) - 1 != expected:
                    return f"line {line_no}: {len(parts) - 1} numbers after the word, expected {expected}"
                for value in parts[1:]:
                    try:
                        float(value)
                    except ValueError:
                        return f"line {line_no}: non-numeric value {value[:40]!r}"
        except UnicodeDecodeError as err:
            return f"after line {line_no}: not UTF-8 text ({err.reason})"
    return None


def _stable_hash(text: str) -> int:
    """A string hash that, unlike `hash`, does not change with PYTHONHASHSEED."""
    return zlib.crc32(text.encode("utf-8"))


def train_word_vectors(
    texts: Iterable[str],
    *,
    vector_size: int = 100,
    window: int = 5,
    min_count: int = 1,
    epochs: int = 5,
    seed: int = 0,
) -> KeyedVectors:
    """Train word2vec vectors on `texts` (lower-cased words as `split_words` finds them), the offline
    stand-in when no GloVe file is given.

    Determinism: one worker thread and a fixed `seed` give the same vectors on every run, whatever
    PYTHONHASHSEED is (gensim's per-word hash is replaced by CRC32); several workers would race on the
    shared weights. Other gensim, numpy or BLAS builds may still give slightly different vectors.
    """
    sentences = [[w.text.lower() for w in split_words(text)] for text in texts]
    model = Word2Vec(
        sentences=sentences,
        vector_size=vector_size,
        window=window,
        min_count=min_count,
        epochs=epochs,
        seed=seed,
        workers=1,
        hashfxn=_stable_hash,
    )
    return model.wv


class VectorNeighbours:
    """The `k` nearest alphabetic vocabulary words of a word by cosine similarity, batched and cached.

    Args:
        vectors: loaded or trained word vectors.
        k: neighbours per word (the paper's K).
        batch_size: words per matrix product against the vocabulary.
        tie_tolerance: cosine gap under which the k-th/(k+1)-th choice is recomputed alone (see ranking).
    """

    def __init__(self, vectors: KeyedVectors, k: int = 15, batch_size: int = 256, tie_tolerance: float = 1e-5) -> None:
        self.k = k
        self.batch_size = batch_size
        self.tie_tolerance = tie_tolerance
        keys = vectors.index_to_key
        pool_ids = [i for i, word in enumerate(keys) if word.isalpha()]
        self.words: list[str] = [keys[i] for i in pool_ids]
        self._position = {word: i for i, word in enumerate(self.words)}
        matrix = torch.from_numpy(vectors.vectors[pool_ids]).float()  # (N, D)
        # Zero vectors (GloVe's <unk> row in some files) stay zero instead of becoming nan.
        self._unit = matrix / matrix.norm(dim=1, keepdim=True).clamp_min(1e-12)  # (N, D)
        self._same_word: dict[str, list[int]] = {}
        for i, word in enumerate(self.words):
            self._same_word.setdefault(word.lower(), []).append(i)
        self._cache: dict[str, tuple[str, ...]] = {}

    def lookup(self, word: str) -> int | None:
        """Row of `word` among the alphabetic vocabulary: as written, else lower-cased; None if absent."""
        found = self._position.get(word)
        return self._position.get(word.lower()) if found is None else found

    def neighbours(self, words: Sequence[str]) -> list[tuple[str, ...]]:
        """Candidates for each word: its `k` nearest other words in ascending vocabulary order (the word
        itself and its case variants excluded); () for a word not in the vocabulary."""
        todo = sorted({w for w in words if w not in self._cache and self.lookup(w) is not None})
        for start in range(0, len(todo), self.batch_size):
            self._compute(todo[start : start + self.batch_size])
        return [self._cache.get(w, ()) for w in words]

    def _compute(self, words: list[str]) -> None:
        rows = torch.tensor([self.lookup(w) for w in words])
        scores = self._unit[rows] @ self._unit.T  # (B, N) cosine similarities
        for b, word in enumerate(words):
            scores[b, self._same_word[word.lower()]] = float("-inf")
        chosen, ambiguous = batched_top_k(scores, self.k, self.tie_tolerance)
        for b in ambiguous:
            single = self._unit @ self._unit[rows[b]]  # (N,), the same shape whatever the batch was
            single[self._same_word[words[b].lower()]] = float("-inf")
            chosen[b] = canonical_top_k(single, self.k)
        for word, indices in zip(words, chosen, strict=True):
            self._cache[word] = tuple(self.words[i] for i in indices)
