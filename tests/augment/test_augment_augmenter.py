"""The augmenter end to end on real GLUE sentences: routing, p_t and N_a, pairs, determinism, shards, errors."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import pytest
from datasets import Dataset
from gensim.models import KeyedVectors

from tinybert_core.augment import (
    AugmentConfig,
    Augmenter,
    MaskedLM,
    VectorNeighbours,
    Word,
    concatenate_shards,
    load_augmented,
    save_augmented,
    split_words,
)
from tinybert_core.augment.words import is_candidate_word


def changed_words(source: str, augmented: str) -> list[tuple[Word, str]]:
    """(source word, new text) for each replaced word; fails unless `augmented` is `source` with some whole
    words swapped and every other character (punctuation, spacing) in place."""
    old, new = split_words(source), split_words(augmented)
    assert len(old) == len(new)
    assert source[: old[0].start] == augmented[: new[0].start]
    for before, after, o, n in zip(old, [*old[1:], None], new, [*new[1:], None], strict=True):
        assert source[before.end : after.start if after else None] == augmented[o.end : n.start if n else None]
    return [(o, n.text) for o, n in zip(old, new, strict=True) if o.text != n.text]


def test_single_pieces_use_the_masked_lm_and_other_words_the_vectors(
    tiny_mlm: MaskedLM, word_vectors: KeyedVectors, mrpc_pairs: list[tuple[str, str]]
) -> None:
    augmenter = Augmenter(AugmentConfig(k=15), word_vectors=word_vectors, masked_lm=tiny_mlm)
    neighbours = VectorNeighbours(word_vectors, k=15)
    vocab = tiny_mlm.tokenizer.get_vocab()
    texts = [text for pair in mrpc_pairs[:60] for text in pair]
    sources = defaultdict(int)
    for text, words in zip(texts, augmenter.word_candidates(texts), strict=True):
        assert [wc.word for wc in words] == [w for w in split_words(text) if is_candidate_word(w.text)]
        for wc in words:
            sources[wc.source] += 1
            if augmenter.mlm.is_single_piece(wc.word.text):
                assert wc.source == "mlm"
                assert len(wc.candidates) == 15
                assert all(c.lower() in vocab for c in wc.candidates)
            elif wc.source == "vectors":
                # Exactly the word-vector neighbours (case matched to the word, as "Iraqi" -> "Iranian").
                expected = neighbours.neighbours([wc.word.text])[0]
                assert [c.lower() for c in wc.candidates] == [c.lower() for c in expected]
            else:
                assert wc.candidates == () and neighbours.lookup(wc.word.text) is None
    assert sources["mlm"] > 500 and sources["vectors"] >= 5 and sources["none"] > 0  # e.g. "endorse", "SARS"


def test_replacement_rate_follows_p_t_and_new_rows_never_exceed_n_aug(
    word_vectors: KeyedVectors, sst2_sentences: list[str], make_dataset: Callable[..., Dataset]
) -> None:
    # Word vectors only (no masked LM): quick, and every in-vocabulary word has 15 candidates.
    for p_t in (0.4, 0.15):
        augmenter = Augmenter(AugmentConfig(p_t=p_t, n_aug=20, seed=7), word_vectors=word_vectors)
        dataset = make_dataset(sst2_sentences[:80])
        out = augmenter.augment_dataset(dataset, progress=False)
        slots = {
            row["idx"]: sum(1 for wc in words if wc.candidates)
            for row, words in zip(dataset, augmenter.word_candidates(list(dataset["text_a"])), strict=True)
        }
        replaced = expected = 0.0
        rows_per_source = defaultdict(int)
        for row in out:
            rows_per_source[row["source_idx"]] += 1
            n = slots[row["source_idx"]]
            if row["text_a"] != dataset[row["source_idx"]]["text_a"] and n >= 4:
                replaced += len(changed_words(dataset[row["source_idx"]]["text_a"], row["text_a"]))
                # Unchanged draws are dropped, so a kept sample replaces p_t / (1 - (1 - p_t)^n) of its slots.
                expected += n * p_t / (1 - (1 - p_t) ** n)
        assert abs(replaced / expected - 1) < 0.08, (p_t, replaced, expected)
        assert max(rows_per_source.values()) == 21  # the original plus N_a new rows at most
        assert all(count == 1 for source, count in rows_per_source.items() if slots[source] == 0)
        assert all(count <= 1 + 15 for source, count in rows_per_source.items() if slots[source] == 1)


def test_pairs_stay_aligned_with_their_source(
    tiny_mlm: MaskedLM,
    word_vectors: KeyedVectors,
    mrpc_pairs: list[tuple[str, str]],
    make_dataset: Callable[..., Dataset],
) -> None:
    pairs = mrpc_pairs[:12]
    dataset = make_dataset([a for a, _ in pairs], [b for _, b in pairs], first_idx=100)
    augmenter = Augmenter(AugmentConfig(n_aug=8), word_vectors=word_vectors, masked_lm=tiny_mlm)
    out = augmenter.augment_dataset(dataset, progress=False)
    assert out.column_names == [*dataset.column_names, "source_idx"]
    assert list(out["idx"]) == list(range(len(out)))
    sources = {row["idx"]: row for row in dataset}
    texts = [*dataset["text_a"], *dataset["text_b"]]
    options = {  # (text, word) -> what may replace it
        (text, wc.word): wc.candidates
        for text, words in zip(texts, augmenter.word_candidates(texts), strict=True)
        for wc in words
    }
    seen: dict[int, set[tuple[str, str]]] = defaultdict(set)
    changed = {"text_a": 0, "text_b": 0}
    for row in out:
        source = sources[row["source_idx"]]
        assert (row["label"], row["note"]) == (source["label"], source["note"])
        # Each text is its own source's text with some of its words swapped for their candidates.
        sides = 0
        for column in changed:
            swaps = changed_words(source[column], row[column])
            assert all(new in options[source[column], word] for word, new in swaps)
            changed[column] += bool(swaps)
            sides += bool(swaps)
        assert sides <= 1  # by default a new sample changes one text of the pair and keeps the other
        assert (row["text_a"], row["text_b"]) not in seen[row["source_idx"]]
        seen[row["source_idx"]].add((row["text_a"], row["text_b"]))
    firsts = [
        row
        for row in out
        if (row["text_a"], row["text_b"])
        == (sources[row["source_idx"]]["text_a"], sources[row["source_idx"]]["text_b"])
    ]
    assert [row["source_idx"] for row in firsts] == list(dataset["idx"])  # one original row per source ...
    assert all(out[row["idx"] - 1]["source_idx"] != row["source_idx"] for row in firsts if row["idx"])  # ... first
    assert changed["text_a"] > 40 and changed["text_b"] > 40  # both columns are perturbed, in different rows


def test_pair_sides_both_changes_both_texts_and_single_texts_do_not_depend_on_it(
    word_vectors: KeyedVectors,
    mrpc_pairs: list[tuple[str, str]],
    sst2_sentences: list[str],
    make_dataset: Callable[..., Dataset],
) -> None:
    pairs = make_dataset([a for a, _ in mrpc_pairs[:20]], [b for _, b in mrpc_pairs[:20]])
    singles = make_dataset(sst2_sentences[:20])
    out = {}
    for sides in ("one", "both"):
        augmenter = Augmenter(AugmentConfig(n_aug=6, pair_sides=sides), word_vectors=word_vectors)
        out[sides] = augmenter.augment_dataset(pairs, progress=False), augmenter.augment_dataset(singles, progress=False)
    sources = {row["idx"]: row for row in pairs}

    def sides_changed(row: dict) -> int:
        source = sources[row["source_idx"]]
        return (row["text_a"] != source["text_a"]) + (row["text_b"] != source["text_b"])

    both_rows = [sides_changed(row) for row in out["both"][0]]
    assert both_rows.count(2) > len(both_rows) / 2  # independent draws over both texts mostly change both
    assert max(sides_changed(row) for row in out["one"][0]) == 1
    assert out["one"][1]["text_a"] == out["both"][1]["text_a"]  # one text: the same draws, the same rows
    with pytest.raises(ValueError, match="pair_sides must be one of one, both, got 'all'"):
        AugmentConfig(pair_sides="all")


def test_same_seed_same_rows_and_another_seed_other_rows(
    tiny_mlm: MaskedLM, word_vectors: KeyedVectors, sst2_sentences: list[str], make_dataset: Callable[..., Dataset]
) -> None:
    dataset = make_dataset(sst2_sentences[:10])

    def run(seed: int) -> dict:
        augmenter = Augmenter(AugmentConfig(n_aug=5, seed=seed), word_vectors=word_vectors, masked_lm=tiny_mlm)
        return augmenter.augment_dataset(dataset, progress=False).to_dict()

    first = run(1)
    assert run(1) == first
    assert run(2) != first


def test_shards_concatenated_equal_the_unsharded_run_whatever_the_batch_sizes(
    tiny_mlm: MaskedLM,
    word_vectors: KeyedVectors,
    mrpc_pairs: list[tuple[str, str]],
    make_dataset: Callable[..., Dataset],
) -> None:
    pairs = mrpc_pairs[:14]
    dataset = make_dataset([a for a, _ in pairs], [b for _, b in pairs])
    small_batches = AugmentConfig(n_aug=6, examples_per_chunk=3, mlm_batch_size=5, vector_batch_size=2)
    whole = Augmenter(small_batches, word_vectors=word_vectors, masked_lm=tiny_mlm).augment_dataset(
        dataset, progress=False
    )
    big_batches = AugmentConfig(n_aug=6, examples_per_chunk=64, mlm_batch_size=256, vector_batch_size=256)
    shards = [
        # A fresh augmenter per shard, as on separate workers: no cache shared with any other run.
        Augmenter(big_batches, word_vectors=word_vectors, masked_lm=tiny_mlm).augment_shard(
            dataset, shard_index=i, num_shards=3, progress=False
        )
        for i in range(3)
    ]
    assert [len(set(s["source_idx"])) for s in shards] == [5, 5, 4]
    assert concatenate_shards(shards).to_dict() == whole.to_dict()


def test_empty_text_names_the_row_and_column(
    word_vectors: KeyedVectors, sst2_sentences: list[str], make_dataset: Callable[..., Dataset]
) -> None:
    augmenter = Augmenter(AugmentConfig(n_aug=2), word_vectors=word_vectors)
    texts = sst2_sentences[:4]
    with pytest.raises(ValueError, match=r"row idx=2: column 'text_a' is empty"):
        augmenter.augment_dataset(make_dataset([*texts[:2], "", *texts[3:]]), progress=False)
    with pytest.raises(ValueError, match=r"row idx=1: column 'text_b' is empty"):
        augmenter.augment_dataset(make_dataset(texts, [texts[0], "  ", texts[2], texts[3]]), progress=False)
    with pytest.raises(ValueError, match="lacks columns"):
        augmenter.augment_dataset(Dataset.from_dict({"text_a": texts}), progress=False)


def test_save_and_load_round_trip_and_no_mlm_is_logged(
    word_vectors: KeyedVectors,
    sst2_sentences: list[str],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    make_dataset: Callable[..., Dataset],
) -> None:
    with caplog.at_level(logging.WARNING, logger="tinybert_core.augment"):
        augmenter = Augmenter(AugmentConfig(n_aug=3), word_vectors=word_vectors)
    assert "no masked LM given" in caplog.text
    out = augmenter.augment_dataset(make_dataset(sst2_sentences[:5]), progress=False)
    assert {wc.source for words in augmenter.word_candidates(sst2_sentences[:5]) for wc in words} <= {"vectors", "none"}
    save_augmented(out, tmp_path / "augmented")
    loaded = load_augmented(tmp_path / "augmented")
    assert loaded.to_dict() == out.to_dict() and loaded.features == out.features
    with pytest.raises(FileNotFoundError):
        load_augmented(tmp_path / "missing")
