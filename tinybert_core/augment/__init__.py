"""TinyBERT data augmentation (Jiao et al. 2020, Algorithm 1) as a library: no pipeline imports here."""

from tinybert_core.augment.augmented_data import concatenate_shards, load_augmented, save_augmented
from tinybert_core.augment.augmenter import AugmentConfig, Augmenter, WordCandidates, build_augmenter
from tinybert_core.augment.masked_lm import MaskedLM, MaskedLMCandidates, MaskedLMError, MaskQuery, load_masked_lm
from tinybert_core.augment.word_vectors import (
    PACKAGED_VECTORS,
    VectorNeighbours,
    WordVectorError,
    detect_format,
    load_packaged_vectors,
    load_word_vectors,
    train_word_vectors,
)
from tinybert_core.augment.words import STOPWORDS, Word, is_candidate_word, split_words

__all__ = [
    "PACKAGED_VECTORS",
    "STOPWORDS",
    "AugmentConfig",
    "Augmenter",
    "MaskQuery",
    "MaskedLM",
    "MaskedLMCandidates",
    "MaskedLMError",
    "VectorNeighbours",
    "Word",
    "WordCandidates",
    "WordVectorError",
    "build_augmenter",
    "concatenate_shards",
    "detect_format",
    "is_candidate_word",
    "load_augmented",
    "load_masked_lm",
    "load_packaged_vectors",
    "load_word_vectors",
    "save_augmented",
    "split_words",
    "train_word_vectors",
]
