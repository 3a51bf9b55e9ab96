"""TinyBERT's data augmentation (Jiao et al. 2020, Algorithm 1) over a `datasets.Dataset`.

Each candidate word (alphabetic, not a stopword) of each text gets K candidates: from a masked LM when
the word is a single WordPiece, else from its nearest word vectors. New samples replace each candidate
word with probability p_t by a random candidate; up to N_a distinct samples per example follow the
original row. Work runs in chunks of examples: all masked-LM and neighbour queries of a chunk are
collected first and run batched, then every example of the chunk is sampled.

Determinism: an example's samples depend only on (seed, its idx, its texts, the models), not on batch
sizes, chunking or sharding: sampling is seeded per example and candidate sets are chosen so that batching
cannot change them (see `ranking`). Hence concatenating contiguous shards equals the unsharded output.
With `mlm_dtype="bfloat16"` this holds for a fixed `mlm_batch_size` (see `MaskedLMCandidates`). Floating
point still ties results to the hardware and torch build: another CPU may pick a different near-tie.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple

from datasets import Dataset, Value
from gensim.models import KeyedVectors
from tqdm.auto import tqdm

from tinybert_core.augment.augmented_data import REQUIRED_COLUMNS, SOURCE_IDX
from tinybert_core.augment.masked_lm import MaskedLM, MaskedLMCandidates, MaskQuery, load_masked_lm
from tinybert_core.augment.sampling import Slot, example_rng, sample_variants
from tinybert_core.augment.word_vectors import VectorFormat, VectorNeighbours, load_word_vectors, train_word_vectors
from tinybert_core.augment.words import Word, is_candidate_word, match_case, split_words

log = logging.getLogger(__name__)

CandidateSource = Literal["mlm", "vectors", "none"]
PAIR_SIDES = ("one", "both")  # how many texts of a sentence pair one new sample changes (see `sampling`)


@dataclass
class AugmentConfig:
    """Parameters of augmentation; defaults are the paper's (p_t=0.4, N_a=20, K=15)."""

    p_t: float = 0.4  # probability of replacing each candidate word in a new sample
    n_aug: int = 20  # N_a: at most this many new samples per example, besides the original
    k: int = 15  # K: candidates per word
    seed: int = 42  # with each example's idx, seeds that example's sampling
    max_tries_factor: int = 10  # give up on an example after n_aug * this many draws (repeats are dropped)
    max_seq_length: int = 128  # masked-LM context in tokens, special tokens included
    mlm_batch_size: int = 32  # masked sequences per forward pass
    vector_batch_size: int = 256  # words per neighbour matrix product
    examples_per_chunk: int = 256  # examples whose queries are collected and run together
    device: str = "cpu"  # where the masked LM runs
    mlm_dtype: str = "float32"  # "bfloat16": faster on AMX CPUs and GPUs; invariant to sharding, not batch size
    text_columns: tuple[str, ...] = ("text_a", "text_b")  # augmented where the dataset has them
    pair_sides: str = "one"  # "one": each new sample of a pair changes one text (the reference); "both": both at once

    def __post_init__(self) -> None:
        if not 0.0 <= self.p_t <= 1.0:
            raise ValueError(f"p_t must be in [0, 1], got {self.p_t}")
        for name in ("n_aug", "max_tries_factor"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("k", "max_seq_length", "mlm_batch_size", "vector_batch_size", "examples_per_chunk"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        if self.pair_sides not in PAIR_SIDES:
            raise ValueError(f"pair_sides must be one of {', '.join(PAIR_SIDES)}, got {self.pair_sides!r}")
        if self.mlm_dtype not in ("float32", "bfloat16", "float16"):
            raise ValueError(f"mlm_dtype must be float32, bfloat16 or float16, got {self.mlm_dtype!r}")


class WordCandidates(NamedTuple):
    """A candidate word of a text, where its candidates came from, and the candidates (case matched)."""

    word: Word
    source: CandidateSource
    candidates: tuple[str, ...]


class Augmenter:
    """Augments datasets with candidates from a masked LM and/or word vectors.

    Args:
        config: augmentation parameters.
        word_vectors: vectors for words of several WordPieces (all words when `masked_lm` is None).
        masked_lm: fill-mask model for single-WordPiece words; None uses word vectors for every word.
    """

    def __init__(
        self,
        config: AugmentConfig | None = None,
        *,
        word_vectors: KeyedVectors | None = None,
        masked_lm: MaskedLM | None = None,
    ) -> None:
        self.config = config or AugmentConfig()
        if word_vectors is None and masked_lm is None:
            raise ValueError("augmentation needs word vectors, a masked LM, or both")
        c = self.config
        self.mlm = None
        if masked_lm is None:
            log.warning(
                "no masked LM given: every word gets its %d candidates from word-vector neighbours, "
                "not from a masked LM as in TinyBERT (the packaged default teacher has no MLM head)",
                c.k,
            )
        else:
            self.mlm = MaskedLMCandidates(
                masked_lm, k=c.k, batch_size=c.mlm_batch_size, max_seq_length=c.max_seq_length,
                device=c.device, dtype=c.mlm_dtype,
            )  # fmt: skip
        self.neighbours = None
        if word_vectors is None:
            log.warning("no word vectors given: words of several WordPieces are left unchanged")
        else:
            self.neighbours = VectorNeighbours(word_vectors, k=c.k, batch_size=c.vector_batch_size)

    def word_candidates(self, texts: Sequence[str]) -> list[list[WordCandidates]]:
        """The candidate words of each text with their candidates, all queries of all texts batched."""
        words = [[w for w in split_words(text) if is_candidate_word(w.text)] for text in texts]
        found: dict[tuple[int, int], tuple[CandidateSource, tuple[str, ...]]] = {}
        if self.mlm is not None:
            keys = [(t, i) for t, ws in enumerate(words) for i, w in enumerate(ws) if self.mlm.is_single_piece(w.text)]
            queries = [MaskQuery(texts[t], words[t][i].start, words[t][i].end) for t, i in keys]
            for key, result in zip(keys, self.mlm.candidates(queries), strict=True):
                if result is not None:  # None: not one token in context after all; word vectors instead
                    found[key] = ("mlm", result)
        if self.neighbours is not None:
            keys = [(t, i) for t, ws in enumerate(words) for i in range(len(ws)) if (t, i) not in found]
            results = self.neighbours.neighbours([words[t][i].text for t, i in keys])
            found.update((key, ("vectors", result)) for key, result in zip(keys, results, strict=True))
        out: list[list[WordCandidates]] = []
        for t, ws in enumerate(words):
            row = []
            for i, word in enumerate(ws):
                source, raw = found.get((t, i), ("none", ()))
                # Case matching can merge two candidates ("paris", "Paris"); keep the first.
                candidates = tuple(dict.fromkeys(match_case(c, word.text) for c in raw))
                row.append(WordCandidates(word, source if candidates else "none", candidates))
            out.append(row)
        return out

    def augment_dataset(self, dataset: Dataset, *, progress: bool = True) -> Dataset:
        """Original rows, each followed by up to `n_aug` augmented rows (see `augmented_data` for the layout).

        Raises:
            ValueError: a required column is missing, or a text is empty (naming the row's idx and column).
        """
        missing = [c for c in REQUIRED_COLUMNS if c not in dataset.column_names]
        if missing:
            raise ValueError(f"dataset lacks columns {missing}; it has {dataset.column_names}")
        text_columns = [c for c in self.config.text_columns if c in dataset.column_names]
        out: dict[str, list] = {name: [] for name in (*dataset.column_names, SOURCE_IDX)}
        chunk = self.config.examples_per_chunk
        with tqdm(total=len(dataset), desc="augment", unit="ex", disable=not progress) as bar:
            for start in range(0, len(dataset), chunk):
                self._augment_chunk(dataset[start : start + chunk], text_columns, out)
                bar.update(min(chunk, len(dataset) - start))
        out["idx"] = list(range(len(out["idx"])))
        features = dataset.features.copy()
        features["idx"] = Value("int64")
        features[SOURCE_IDX] = Value("int64")
        return Dataset.from_dict(out, features=features)

    def augment_shard(self, dataset: Dataset, shard_index: int, num_shards: int, *, progress: bool = True) -> Dataset:
        """Augment the `shard_index`-th of `num_shards` contiguous shards; `concatenate_shards` of all shards
        in order equals `augment_dataset(dataset)`."""
        if not 0 <= shard_index < num_shards:
            raise ValueError(f"shard_index must be in [0, {num_shards}), got {shard_index}")
        shard = dataset.shard(num_shards=num_shards, index=shard_index, contiguous=True)
        return self.augment_dataset(shard, progress=progress)

    def _augment_chunk(self, batch: dict[str, list], text_columns: list[str], out: dict[str, list]) -> None:
        """Append the output rows of a chunk of examples (a column dict) to `out`."""
        n_examples, n_cols = len(batch["idx"]), len(text_columns)
        for column in text_columns:
            for idx, text in zip(batch["idx"], batch[column], strict=True):
                if not isinstance(text, str) or not text.strip():
                    raise ValueError(f"row idx={idx}: column {column!r} is empty; every text must have words")
        texts = [batch[column][e] for e in range(n_examples) for column in text_columns]
        candidates = self.word_candidates(texts)
        c = self.config
        for e in range(n_examples):
            source_idx = batch["idx"][e]
            own_texts = texts[e * n_cols : (e + 1) * n_cols]
            slots = [
                Slot(col, wc.word, wc.candidates)
                for col in range(n_cols)
                for wc in candidates[e * n_cols + col]
                if wc.candidates
            ]
            variants = sample_variants(
                own_texts, slots, p_t=c.p_t, n_aug=c.n_aug, max_tries=c.n_aug * c.max_tries_factor,
                rng=example_rng(c.seed, source_idx), one_text=c.pair_sides == "one",
            )  # fmt: skip
            for variant in [tuple(own_texts), *variants]:
                for name, values in batch.items():
                    out[name].append(values[e])
                for column, text in zip(text_columns, variant, strict=True):
                    out[column][-1] = text
                out[SOURCE_IDX].append(source_idx)


def build_augmenter(
    config: AugmentConfig | None = None,
    *,
    masked_lm: str | Path | None = None,
    vectors: str | Path | None = None,
    vectors_format: VectorFormat = "auto",
    vectors_limit: int | None = None,
    corpus: Iterable[str] | None = None,
    vector_size: int = 100,
) -> Augmenter:
    """An `Augmenter` from paths: a fill-mask model name or directory (optional), and a vector file, or
    else word2vec vectors trained on `corpus` (the offline default, seeded by `config.seed`)."""
    config = config or AugmentConfig()
    if vectors is not None:
        word_vectors = load_word_vectors(vectors, format=vectors_format, limit=vectors_limit)
    elif corpus is not None:
        log.info("no vector file given: training word2vec vectors (size %d) on the corpus", vector_size)
        word_vectors = train_word_vectors(corpus, vector_size=vector_size, seed=config.seed)
    else:
        word_vectors = None
    mlm = load_masked_lm(masked_lm) if masked_lm is not None else None
    return Augmenter(config, word_vectors=word_vectors, masked_lm=mlm)
