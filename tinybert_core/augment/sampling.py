"""Drawing augmented samples of one example from its words' candidates (TinyBERT, Algorithm 1, lines 8-14).

Each example gets its own random generator seeded by (seed, source idx), so its samples are the same
however the dataset is batched, sharded or ordered. A sentence pair is sampled as one unit and kept if the
(text_a, text_b) pair differs from the original and from the samples kept so far. By default each new sample
changes the words of one text only, drawn at random, and keeps the other as it was: the reference code
augments each text of a pair on its own, and changing both at once breaks the relation the label is about
far more often (on MRPC the fine-tuned teacher changed its prediction on 32% of such copies, against 15%).
`one_text=False` perturbs both texts independently, with the same p_t.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from tinybert_core.augment.words import Word, replace_words


class Slot(NamedTuple):
    """A replaceable word: which text of the example it is in, where, and what may replace it."""

    column: int
    word: Word
    candidates: tuple[str, ...]


def example_rng(seed: int, source_idx: int) -> np.random.Generator:
    """The random generator of one example, a function of (seed, source idx) only."""
    if seed < 0 or source_idx < 0:
        raise ValueError(f"seed and idx must be non-negative to seed augmentation, got {seed} and {source_idx}")
    return np.random.default_rng([seed, source_idx])


def sample_variants(
    texts: Sequence[str],
    slots: Sequence[Slot],
    *,
    p_t: float,
    n_aug: int,
    max_tries: int,
    rng: np.random.Generator,
    one_text: bool = True,
) -> list[tuple[str, ...]]:
    """Up to `n_aug` distinct new versions of an example's texts.

    Every draw replaces each slot's word with probability `p_t` by one of its candidates chosen uniformly.
    Draws that repeat the original or an earlier sample are dropped, and drawing stops after `max_tries`
    or once every possible variant is found. Dropping the unchanged draws means a slot in a kept sample is
    replaced with probability p_t / (1 - (1 - p_t) ** n), n the number of slots that draw could change,
    close to p_t when there are many. With `one_text` and several texts with slots, each draw first picks
    one of those texts uniformly and only its slots may change.

    Args:
        texts: the example's texts (one per augmented column).
        slots: its replaceable words with non-empty candidate tuples.
        rng: the example's generator (`example_rng`); two uniform draws per slot are taken on every try,
            after one more for the text when `one_text` picks one.

    Returns:
        New samples as tuples of texts, aligned with `texts`, in the order they were drawn.
    """
    original = tuple(texts)
    sizes = np.array([len(slot.candidates) for slot in slots])
    columns = np.array([slot.column for slot in slots], dtype=np.int64)
    perturbed = sorted(set(columns.tolist()))
    one_text = one_text and len(perturbed) > 1
    if one_text:
        possible = min(sum(_variants(sizes[columns == c], n_aug) for c in perturbed), n_aug)
    else:
        possible = _variants(sizes, n_aug)
    seen = {original}
    variants: list[tuple[str, ...]] = []
    for _ in range(max_tries):
        if len(variants) >= possible:
            break
        column = perturbed[int(rng.integers(len(perturbed)))] if one_text else None
        replace = rng.random(len(slots)) < p_t  # (S,)
        if column is not None:
            replace &= columns == column
        pick = (rng.random(len(slots)) * sizes).astype(np.int64)  # (S,) uniform index into each candidate tuple
        changes: list[dict[Word, str]] = [{} for _ in texts]
        for slot, chosen, index in zip(slots, replace.tolist(), pick.tolist(), strict=True):
            if chosen:
                changes[slot.column][slot.word] = slot.candidates[index]
        variant = tuple(
            replace_words(text, change) if change else text for text, change in zip(texts, changes, strict=True)
        )
        if variant not in seen:
            seen.add(variant)
            variants.append(variant)
    return variants


def _variants(sizes: np.ndarray, cap: int) -> int:
    """How many samples other than the original slots of these candidate counts allow, capped at `cap`."""
    possible = 1
    for size in sizes.tolist():
        possible = min(possible * (size + 1), cap + 1)  # only "at least cap + 1" matters
    return possible - 1
