"""General-distillation corpus: plain-text or Wikipedia-dump documents packed into `[CLS] ... [SEP]` sequences.

Everything streams: documents are read lazily, tokenized in batches and written to Arrow on disk by
`Dataset.from_generator`, so memory does not grow with the corpus.
"""

from __future__ import annotations

import bz2
import hashlib
import itertools
import logging
import re
import tempfile
from pathlib import Path
from typing import Iterable, Iterator, Literal, Sequence

from datasets import Dataset, Features, Sequence as ArrowSequence, Value
from datasets.exceptions import DatasetGenerationError
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

from tinybert_core.saved_datasets import save_dataset

logger = logging.getLogger(__name__)

DocumentMode = Literal["blank_line", "line"]
DOCUMENT_MODES: tuple[str, ...] = ("blank_line", "line")
# A document's last chunk shorter than this many tokens (without [CLS]/[SEP]) is dropped: such
# scraps (stray captions, list fragments) carry too little context to distil attention from.
MIN_CHUNK_TOKENS = 8
_TOKENIZE_BATCH = 256  # documents per tokenizer call; the fast tokenizer parallelises within a batch
# WikiText section headings look like " = Title = " or " = = Section = = ".
_HEADING = re.compile(r"^(=+) .* \1$")
# What gensim's `filter_wiki` leaves of wiki markup: "==Section==" lines and ''italic''/'''bold''' quotes.
_WIKI_HEADING_LINE = re.compile(r"^[ \t]*=+[^\n]*=+[ \t]*$", re.MULTILINE)
_WIKI_EMPHASIS = re.compile(r"'{2,}")
_CORPUS_FEATURES = Features({"input_ids": ArrowSequence(Value("int32"))})


class TextFileError(ValueError):
    """A text file cannot be read as lines of text: bytes invalid in its encoding, or carriage returns
    inside a line (old Mac line endings). The message names the file, the line and the byte."""


def iter_lines(path: Path, encoding: str = "utf-8") -> Iterator[str]:
    """Lines of a text file, line endings (LF or CRLF) kept, read lazily.

    Decoded strictly as `encoding` (an ASCII-compatible one; a leading UTF-8 byte-order mark is dropped): a
    byte that is not valid there raises TextFileError naming the file, line and byte instead of being guessed
    at, so text is never silently decoded as something it is not. Pass the file's real encoding to read it
    (gensim's polarity data, for one, is Windows-1252: "cp1252"). A carriage return inside a line (a file
    with CR-only line endings reads as one line) raises TextFileError too.
    """
    with Path(path).open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode(encoding)
            except UnicodeDecodeError as error:
                raise TextFileError(_decode_message(path, number, raw, error, encoding)) from error
            if "\r" in line.rstrip("\r\n"):
                raise TextFileError(
                    f"{path}: line {number}: carriage return inside the line (a file with CR-only line endings?); "
                    "convert it to LF or CRLF line endings"
                )
            yield line.removeprefix("\ufeff") if number == 1 else line


def _decode_message(path: Path, line: int, raw: bytes, error: UnicodeDecodeError, encoding: str) -> str:
    bad = raw[error.start : error.end].hex(" ")
    return (f"{path}: line {line}: byte(s) {bad} at column {error.start + 1} are not valid {encoding} "
            f"({error.reason}); pass the file's encoding (e.g. encoding='cp1252') if it is not {encoding}")


def iter_documents(path: Path, document_mode: DocumentMode = "blank_line", encoding: str = "utf-8") -> Iterator[str]:
    """Yield the documents of a corpus file, one string each, streaming.

    `*.bz2` files are MediaWiki XML dumps: each main-namespace article is one document, as plain text
    (gensim's `filter_wiki`, then section headings and bold/italic quotes removed, whitespace
    collapsed); redirects and empty pages are skipped and `document_mode` does not apply.
    Any other file is plain text (.txt, .cor, .raw, ...) in `encoding` (see `iter_lines`) with one document
    per blank-line-separated block ("blank_line", lines joined by a space) or per non-blank line ("line").
    WikiText heading lines (" = = Heading = = ") are skipped in both modes: they are titles, not
    running text.
    """
    path = Path(path)
    if document_mode not in DOCUMENT_MODES:
        raise ValueError(f"document_mode must be one of {DOCUMENT_MODES}, got {document_mode!r}")
    if not path.is_file():
        raise FileNotFoundError(f"corpus file {path} not found")
    if path.suffix == ".bz2":
        yield from _wiki_articles(path)
        return
    block: list[str] = []
    for line in iter_lines(path, encoding):
        text = line.strip()
        if _HEADING.match(text):
            continue
        if document_mode == "line":
            if text:
                yield text
        elif text:
            block.append(text)
        elif block:
            yield " ".join(block)
            block = []
    if block:
        yield " ".join(block)


def pack_document(
    token_ids: Sequence[int], cls_id: int, sep_id: int, max_seq_length: int = 128, min_tokens: int = MIN_CHUNK_TOKENS
) -> list[list[int]]:
    """Split one document's token ids into `[CLS] chunk [SEP]` sequences of at most `max_seq_length`.

    Chunks hold `max_seq_length - 2` consecutive tokens; the last may be shorter and is dropped when
    it has fewer than `min_tokens` tokens (so a document shorter than that gives nothing).
    """
    width = max_seq_length - 2
    if width < 1:
        raise ValueError(f"max_seq_length must leave room for [CLS] and [SEP], got {max_seq_length}")
    chunks = (token_ids[start : start + width] for start in range(0, len(token_ids), width))
    return [[cls_id, *chunk, sep_id] for chunk in chunks if len(chunk) >= min_tokens]


def prepare_corpus(
    sources: list[Path],
    tokenizer: PreTrainedTokenizerBase,
    output_dir: Path,
    max_seq_length: int = 128,
    document_mode: DocumentMode = "blank_line",
    max_sequences: int | None = None,
    min_tokens: int = MIN_CHUNK_TOKENS,
    encoding: str = "utf-8",
) -> Dataset:
    """Tokenize and pack corpus files into an `input_ids` (int32 lists) dataset saved at `output_dir`.

    Each document (see `iter_documents`) is packed on its own by `pack_document`; sequences never span
    two documents. `max_sequences` stops early (for CPU runs). Plain-text sources are read as `encoding`
    (strictly, see `iter_lines`). Returns the dataset loaded back from
    `output_dir`, so it is memory-mapped from there.
    """
    sources, output_dir = [Path(s) for s in sources], Path(output_dir)
    if not sources:
        raise ValueError("prepare_corpus needs at least one source file")
    missing = [str(s) for s in sources if not s.is_file()]
    if missing:
        raise FileNotFoundError(f"corpus source file(s) not found: {missing}")
    if tokenizer.cls_token_id is None or tokenizer.sep_token_id is None:
        raise ValueError(f"tokenizer {tokenizer.name_or_path!r} has no [CLS]/[SEP] tokens")
    if max_seq_length - 2 < max(1, min_tokens):
        raise ValueError(f"max_seq_length {max_seq_length} leaves no room for {min_tokens} tokens and [CLS], [SEP]")
    if max_sequences is not None and max_sequences < 1:
        raise ValueError(f"max_sequences must be >= 1, got {max_sequences}")

    written = {"sequences": 0, "documents": 0}

    def generate() -> Iterator[dict[str, list[int]]]:
        sequences = _sequences(sources, tokenizer, max_seq_length, document_mode, min_tokens, encoding, written)
        for input_ids in itertools.islice(sequences, max_sequences):
            written["sequences"] += 1
            yield {"input_ids": input_ids}

    output_dir.parent.mkdir(parents=True, exist_ok=True)
    # A private cache next to the output: the shared datasets cache would hand back a stale corpus
    # for the same paths after a file changed, and would keep a second copy of it forever.
    with tempfile.TemporaryDirectory(dir=output_dir.parent, prefix=".corpus-cache-") as cache_dir:
        fingerprint = _fingerprint(sources, tokenizer, max_seq_length, document_mode, max_sequences, min_tokens, encoding)
        try:
            staged = Dataset.from_generator(
                generate, features=_CORPUS_FEATURES, cache_dir=cache_dir, fingerprint=fingerprint
            )
        except DatasetGenerationError as error:
            # datasets wraps what the generator raised; a reader's own error names the file and line: show that.
            if isinstance(error.__cause__, TextFileError):
                raise error.__cause__ from None
            raise
        except ValueError as error:
            if written["sequences"] or isinstance(error, TextFileError):
                raise
            staged = None  # datasets refuses to build an empty split; say why below
        if staged is None or written["sequences"] == 0:
            raise ValueError(
                f"no sequences of at least {min_tokens} tokens in {[str(s) for s in sources]} "
                f"(document_mode={document_mode!r}, {written['documents']} documents read)"
            )
        save_dataset(staged, output_dir)
        del staged
    logger.info(
        "packed %d documents into %d sequences of <= %d tokens at %s",
        written["documents"], written["sequences"], max_seq_length, output_dir,
    )
    return Dataset.load_from_disk(str(output_dir))


def _sequences(
    sources: Iterable[Path],
    tokenizer: PreTrainedTokenizerBase,
    max_seq_length: int,
    document_mode: DocumentMode,
    min_tokens: int,
    encoding: str,
    counts: dict[str, int],
) -> Iterator[list[int]]:
    for path in sources:
        documents = tqdm(iter_documents(path, document_mode, encoding), desc=f"tokenize {path.name}", unit="doc")
        for batch in _batched(documents, _TOKENIZE_BATCH):
            counts["documents"] += len(batch)
            # verbose=False: long documents exceed the model's max length on purpose; they are chunked below.
            encoded = tokenizer(batch, add_special_tokens=False, return_attention_mask=False,
                                return_token_type_ids=False, verbose=False)
            for token_ids in encoded["input_ids"]:
                yield from pack_document(token_ids, tokenizer.cls_token_id, tokenizer.sep_token_id,
                                         max_seq_length, min_tokens)


def _batched(items: Iterable[str], size: int) -> Iterator[list[str]]:
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


def _wiki_articles(path: Path) -> Iterator[str]:
    # gensim takes a second to import; only dumps need it.
    from gensim.corpora.wikicorpus import IGNORED_NAMESPACES, extract_pages, filter_wiki

    with bz2.open(path, "rb") as handle:
        for title, markup, _page_id in extract_pages(handle, filter_namespaces=("0",)):
            if markup.lstrip()[:9].lower() == "#redirect":
                continue
            if any(title.startswith(namespace + ":") for namespace in IGNORED_NAMESPACES):
                continue
            text = _WIKI_EMPHASIS.sub("", _WIKI_HEADING_LINE.sub("", filter_wiki(markup)))
            text = " ".join(text.split())
            if text:
                yield text


def _fingerprint(sources: Sequence[Path], tokenizer: PreTrainedTokenizerBase, *settings: object) -> str:
    """Names the staged dataset by its inputs: source paths, sizes and times, tokenizer and settings."""
    stats = [(str(s.resolve()), s.stat().st_size, s.stat().st_mtime_ns) for s in sources]
    described = repr((stats, tokenizer.name_or_path, len(tokenizer), settings))
    return hashlib.sha256(described.encode()).hexdigest()[:16]
