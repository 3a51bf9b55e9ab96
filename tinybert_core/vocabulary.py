"""One vocabulary for the tokenizer, the teacher and the general student, checked before training.

A student trained on ids of one vocabulary against a teacher reading another learns nonsense without any
error: ids are just row numbers. So before task distillation we compare the token behind every id.

    check_vocabularies("minilm-l6", "outputs/teacher/model", general_student="huawei-noah/TinyBERT_General_4L_312D")
"""

from __future__ import annotations

import logging
import os

from transformers import PretrainedConfig, PreTrainedTokenizerBase

from tinybert_core.models import ModelLoadError, load_config, load_tokenizer

log = logging.getLogger(__name__)


class VocabularyError(ValueError):
    """Two models, or a model and a tokenizer, do not share one vocabulary."""


def tokens_by_id(tokenizer: PreTrainedTokenizerBase) -> list[str | None]:
    """The token string behind every id of the tokenizer (added tokens included); None for unused ids."""
    vocab = tokenizer.get_vocab()
    tokens: list[str | None] = [None] * (max(vocab.values()) + 1)
    for token, index in vocab.items():
        tokens[index] = token
    return tokens


def check_same_vocabulary(
    first_name: str, first: PreTrainedTokenizerBase, second_name: str, second: PreTrainedTokenizerBase
) -> None:
    """VocabularyError naming both and the first id whose token differs."""
    a, b = tokens_by_id(first), tokens_by_id(second)
    for index in range(max(len(a), len(b))):
        token_a = a[index] if index < len(a) else None
        token_b = b[index] if index < len(b) else None
        if token_a != token_b:
            raise VocabularyError(
                f"{first_name} ({len(a)} ids) and {second_name} ({len(b)} ids) do not share one vocabulary: "
                f"id {index} is {token_a!r} in {first_name} and {token_b!r} in {second_name}. Use a teacher, "
                "tokenizer and general student of one vocabulary"
            )


def check_fits_model(tokenizer_name: str, tokenizer: PreTrainedTokenizerBase, model_name: str, config: PretrainedConfig) -> None:
    """VocabularyError when the tokenizer produces ids beyond the model's embedding rows."""
    largest = len(tokens_by_id(tokenizer)) - 1
    if largest >= config.vocab_size:
        raise VocabularyError(
            f"{tokenizer_name} produces ids up to {largest}, but {model_name} has only {config.vocab_size} "
            "embedding rows: they do not share one vocabulary"
        )


def check_vocabularies(
    tokenizer_source: str | os.PathLike,
    teacher_source: str | os.PathLike,
    general_student: str | os.PathLike | None = None,
) -> None:
    """The tokenizer that encodes the data, the teacher and (when given) the general student agree.

    Every id the tokenizer produces has an embedding row in both models, and each model that ships its own
    tokenizer has the same token behind every id.
    """
    tokenizer_name = f"the tokenizer of {tokenizer_source}"
    tokenizer = load_tokenizer(tokenizer_source)
    for role, source in (("teacher", teacher_source), ("general student", general_student)):
        if source is None:
            continue
        name = f"{role} {source}"
        check_fits_model(tokenizer_name, tokenizer, name, load_config(source))
        if str(source) == str(tokenizer_source):
            continue
        try:
            own = load_tokenizer(source)
        except ModelLoadError:
            log.warning("%s ships no tokenizer: only its embedding size was checked against %s", name, tokenizer_name)
            continue
        check_same_vocabulary(tokenizer_name, tokenizer, f"the tokenizer of {name}", own)
