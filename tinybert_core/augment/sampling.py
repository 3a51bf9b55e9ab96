"""Drawing augmented samples of one example from its words' candidates (TinyBERT, Algorithm 1, lines 8-14).

Each example gets its own random generator seeded by (seed, source idx), so its samples are the same
however the dataset is batched, sharded or ordered. A sentence pair is sampled as one unit: each new
sample perturbs the candidate words of both texts independently, with the same p_t, and is kept if the
(text_a, text_b) pair differs from the original and from the samples kept so far.
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
) -> list[tuple[str, ...]]:
    """Up to `n_aug` distinct new versions of an example's texts.

    Every draw replaces each slot's word with probability `p_t` by one of its candidates chosen uniformly.
    Draws that repeat the original or an earlier sample are dropped, and drawing stops after `max_tries`
    or once every possible variant is found. Dropping the unchanged draws means a slot in a kept sample is
    replaced with probability p_t / (1 - (1 - p_t) ** len(slots)), close to p_t when there are many slots.

    Args:
        texts: the example's texts (one per augmented column).
        slots: its replaceable words with non-empty candidate tuples.
        rng: the example's generator (`example_rng`); two uniform draws per slot are taken on every try.

    Returns:
        New samples as tuples of texts, aligned with `texts`, in the order they were drawn.
    """
    original = tuple(texts)
    sizes = np.array([len(slot.candidates) for slot in slots])
    possible = 1
    for size in sizes.tolist():
        possible = min(possible * (size + 1), n_aug + 1)  # capped: only "at least n_aug + 1" matters
    target = min(n_aug, possible - 1)
    seen = {original}
    variants: list[tuple[str, ...]] = []
    for _ in range(max_tries):
        if len(variants) >= target:
            break
        replace = rng.random(len(slots)) < p_t  # (S,)
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
