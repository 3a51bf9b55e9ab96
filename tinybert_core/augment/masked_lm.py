"""Replacement candidates from a masked language model, many masked sentences per forward pass.

A word that is a single WordPiece is masked in its sentence and the model's top-K predictions at the mask
become its candidates (TinyBERT, Algorithm 1). The context is the masked sentence alone, as the paper
describes; the reference code instead feeds "masked sentence [SEP] original sentence", which lets the
model see the word it should guess and doubles the sequence length.

Speed comes from batching: each sentence is tokenized once, every candidate word gives one masked copy,
the copies of many sentences are sorted by length and run `batch_size` at a time with dynamic padding
(fixed shapes in bfloat16, see `_batches`) under `torch.inference_mode()`, and the vocabulary projection
runs only at the mask positions. Results are cached per (sentence, word span), so repeated sentences cost
nothing.
"""

from __future__ import annotations

import copy
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import torch
from transformers import AutoModelForMaskedLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from tinybert_core.augment.ranking import batched_top_k, canonical_top_k

log = logging.getLogger(__name__)


class MaskedLMError(RuntimeError):
    """A masked LM could not be loaded or is unusable for augmentation; the message says which and why."""


class MaskedLM(NamedTuple):
    """A fill-mask model and its (fast) tokenizer."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase


class MaskQuery(NamedTuple):
    """The word `text[start:end]` of a sentence, to be masked and predicted."""

    text: str
    start: int
    end: int


def load_masked_lm(name_or_path: str | Path) -> MaskedLM:
    """Load any transformers fill-mask model (e.g. "bert-base-uncased" or a local directory), in eval mode.

    Raises:
        MaskedLMError: nothing loadable there, the checkpoint lacks masked-LM head weights (a plain encoder
            such as a sentence-embedding BERT would get a randomly initialised head), or the tokenizer is
            not a fast one (character offsets are needed to find words in context).
    """
    name = str(name_or_path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(name)
        model, info = AutoModelForMaskedLM.from_pretrained(name, output_loading_info=True)
    except (OSError, ValueError, KeyError) as err:
        raise MaskedLMError(f"could not load a masked LM from {name!r}: {err}") from err
    missing = sorted(info["missing_keys"])
    if missing:
        prefix = f"{model.base_model_prefix}."
        what = "has no masked-LM head" if any(not k.startswith(prefix) for k in missing) else "is incomplete"
        raise MaskedLMError(f"model at {name!r} {what}: missing weights {missing[:6]}")
    if not tokenizer.is_fast or tokenizer.mask_token_id is None:
        raise MaskedLMError(f"tokenizer at {name!r} must be a fast tokenizer with a mask token")
    return MaskedLM(model.eval(), tokenizer)


def _prediction_head(model: PreTrainedModel) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """The module mapping hidden states to vocabulary logits, when the architecture keeps it in one piece
    (BERT's `cls`, RoBERTa's `lm_head`); None means the full model must run and logits be gathered."""
    for name in ("cls", "lm_head"):
        head = getattr(model, name, None)
        if isinstance(head, torch.nn.Module):
            return head
    return None


_Masked = tuple[MaskQuery, list[int], int]  # a query, its masked model input, the mask's position in it


class MaskedLMCandidates:
    """Top-`k` masked-LM predictions for words in context, batched and cached.

    Args:
        masked_lm: the model and tokenizer (see `load_masked_lm`).
        k: candidates per word (the paper's K).
        batch_size: masked sequences per forward pass.
        max_seq_length: longest sequence fed to the model, special tokens included; longer sentences are
            cut to a window centred on the masked word.
        tie_tolerance: logit gap under which the k-th/(k+1)-th choice is recomputed alone (see ranking).
        cache_size: (sentence, word) results kept, least recently used dropped first.
        device: where the model runs ("cpu", "cuda").
        dtype: "float32", or "bfloat16" for the encoder: several times faster on CPUs with AMX and on
            GPUs, but its candidates differ a little from float32 (for the benchmark's random BERT-base,
            a third of the sets by a word or two, 14.6 of 15 words shared on average) and are
            independent of sharding and chunking only, not of `batch_size` (see `_batches`). A model of
            another dtype is copied, not cast in place.
    """

    def __init__(
        self,
        masked_lm: MaskedLM,
        *,
        k: int = 15,
        batch_size: int = 32,
        max_seq_length: int = 128,
        tie_tolerance: float = 1e-4,
        cache_size: int = 500_000,
        device: str = "cpu",
        dtype: str = "float32",
    ) -> None:
        model = masked_lm.model
        if model.dtype != getattr(torch, dtype):
            model = copy.deepcopy(model)  # cast a copy: the caller's model keeps its weights
        head = _prediction_head(model)
        if head is not None and dtype != "float32":
            # A float32 copy of the vocabulary projection: bfloat16 logits tie so often that nearly every
            # top-K boundary would look ambiguous and be recomputed alone.
            head = copy.deepcopy(head).to(device=device, dtype=torch.float32)
        self._head = head
        self.model = model.to(device=device, dtype=getattr(torch, dtype)).eval()
        self.tokenizer = masked_lm.tokenizer
        self.k = k
        self.batch_size = batch_size
        self.max_seq_length = max_seq_length
        self.tie_tolerance = tie_tolerance
        self.cache_size = cache_size
        self.device = torch.device(device)
        self.fixed_shapes = dtype != "float32"
        self._cache: OrderedDict[MaskQuery, tuple[str, ...] | None] = OrderedDict()
        self._single_piece: dict[str, bool] = {}

        # Candidates are whole alphabetic words: no special tokens, no "##" continuations, no punctuation.
        n_logits = self.model.get_output_embeddings().weight.shape[0]
        self.surfaces = [s.strip() for s in self.tokenizer.batch_decode([[i] for i in range(len(self.tokenizer))])]
        tokens = self.tokenizer.convert_ids_to_tokens(list(range(len(self.tokenizer))))
        special = set(self.tokenizer.all_special_ids)
        valid = torch.zeros(n_logits, dtype=torch.bool)
        self._same_word: dict[str, list[int]] = {}
        for i, (surface, token) in enumerate(zip(self.surfaces[:n_logits], tokens, strict=False)):
            if surface.isalpha() and not token.startswith("##") and i not in special:
                valid[i] = True
                self._same_word.setdefault(surface.lower(), []).append(i)
        self._invalid = (~valid).to(self.device)  # (V,)

    def is_single_piece(self, word: str) -> bool:
        """Whether the tokenizer keeps `word` as one known token, which routes it to the masked LM."""
        if word not in self._single_piece:
            pieces = self.tokenizer.tokenize(word)
            self._single_piece[word] = len(pieces) == 1 and pieces[0] != self.tokenizer.unk_token
        return self._single_piece[word]

    def candidates(self, queries: Sequence[MaskQuery]) -> list[tuple[str, ...] | None]:
        """Candidates for each query word: `k` predicted words in ascending vocabulary order (the word itself
        and its case variants excluded), or None where the word is not exactly one token in context."""
        found = {q: self._cache[q] for q in dict.fromkeys(queries) if q in self._cache}
        todo = [q for q in dict.fromkeys(queries) if q not in found]
        if todo:
            found.update(self._compute(todo))
        for query, result in found.items():
            self._remember(query, result)
        return [found[q] for q in queries]

    def _remember(self, query: MaskQuery, result: tuple[str, ...] | None) -> None:
        self._cache[query] = result
        self._cache.move_to_end(query)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    def _compute(self, queries: list[MaskQuery]) -> dict[MaskQuery, tuple[str, ...] | None]:
        """Mask every query word, run the masked copies in length-sorted batches, pick candidates."""
        texts = list(dict.fromkeys(q.text for q in queries))
        encoded = self.tokenizer(
            texts,
            add_special_tokens=True,
            return_offsets_mapping=True,
            return_special_tokens_mask=True,
            verbose=False,
        )
        by_text = {
            text: (ids, offsets, special)
            for text, ids, offsets, special in zip(
                texts,
                encoded["input_ids"],
                encoded["offset_mapping"],
                encoded["special_tokens_mask"],
                strict=True,
            )
        }
        results: dict[MaskQuery, tuple[str, ...] | None] = {}
        masked: list[_Masked] = []
        for query in queries:
            built = self._masked_sequence(query, *by_text[query.text])
            if built is None:
                results[query] = None
            else:
                masked.append((query, *built))

        # With fixed batch shapes the scores are already a function of the query alone: no tie to settle.
        tolerance = float("-inf") if self.fixed_shapes else self.tie_tolerance
        recomputed = 0
        for batch, shape in self._batches(masked):
            words = [query.text[query.start : query.end] for query, _, _ in batch]
            logits = self._logits([seq for _, seq, _ in batch], [pos for _, _, pos in batch], words, shape)
            chosen, ambiguous = batched_top_k(logits, self.k, tolerance)
            recomputed += len(ambiguous)
            for b in ambiguous:
                # Alone and unpadded, the query's scores no longer depend on its batch neighbours.
                _, seq, pos = batch[b]
                chosen[b] = canonical_top_k(self._logits([seq], [pos], [words[b]])[0], self.k)
            for (query, _, _), ids in zip(batch, chosen, strict=True):
                results[query] = tuple(self.surfaces[i] for i in ids)
        log.debug("%d masked words, %d of them recomputed alone for near-ties", len(masked), recomputed)
        return results

    def _batches(self, masked: list[_Masked]) -> Iterator[tuple[list[_Masked], tuple[int, int] | None]]:
        """Length-sorted batches (similar lengths share a batch: little padding), each with the (rows,
        length) shape to pad it to, or None for "as it comes".

        float32 batches come as they are: near-ties are settled by `ranking`. Lower precision rounds
        differently with the batch shape far beyond any tie tolerance, so there every batch of a length
        bucket gets one fixed shape (length rounded up to 8, `batch_size` rows, the last batch filled
        with repeats), which makes a word's candidates independent of the other words batched with it.
        """
        masked = sorted(masked, key=lambda item: len(item[1]))
        if not self.fixed_shapes:
            for start in range(0, len(masked), self.batch_size):
                yield masked[start : start + self.batch_size], None
            return
        buckets: dict[int, list[_Masked]] = {}
        for item in masked:
            buckets.setdefault(min(-(-len(item[1]) // 8) * 8, self.max_seq_length), []).append(item)
        for length, items in buckets.items():
            for start in range(0, len(items), self.batch_size):
                yield items[start : start + self.batch_size], (self.batch_size, length)

    def _masked_sequence(
        self, query: MaskQuery, ids: list[int], offsets: list[tuple[int, int]], special: list[int]
    ) -> tuple[list[int], int] | None:
        """The model input with the query word masked, cut to `max_seq_length`, and the mask's position."""
        content = [i for i, s in enumerate(special) if not s]
        hits = [i for i in content if offsets[i][0] < query.end and offsets[i][1] > query.start]
        if len(hits) != 1:
            return None
        first, last = content[0], content[-1]
        prefix, body, suffix = ids[:first], list(ids[first : last + 1]), ids[last + 1 :]
        position = hits[0] - first
        room = self.max_seq_length - len(prefix) - len(suffix)
        if len(body) > room:
            # Keep a window of context centred on the word, shifted to stay inside the sentence.
            begin = min(max(position - room // 2, 0), len(body) - room)
            body, position = body[begin : begin + room], position - begin
        body[position] = self.tokenizer.mask_token_id
        return prefix + body + suffix, len(prefix) + position

    @torch.inference_mode()
    def _logits(
        self,
        sequences: list[list[int]],
        positions: list[int],
        words: list[str],
        shape: tuple[int, int] | None = None,
    ) -> torch.Tensor:
        """Vocabulary logits at each sequence's mask, with forbidden tokens at -inf.

        Args:
            shape: (rows, length) to pad the batch to, repeating its last sequence; None pads to the longest.

        Returns:
            (B, V) float32 logits for the B given sequences; `-inf` for non-word tokens and the masked word.
        """
        n = len(sequences)
        n_rows, length = shape or (n, max(len(seq) for seq in sequences))
        sequences = sequences + sequences[-1:] * (n_rows - n)
        input_ids = torch.full((n_rows, length), self.tokenizer.pad_token_id or 0, dtype=torch.long)
        attention_mask = torch.zeros_like(input_ids)
        for row, seq in enumerate(sequences):
            input_ids[row, : len(seq)] = torch.tensor(seq)
            attention_mask[row, : len(seq)] = 1
        input_ids, attention_mask = input_ids.to(self.device), attention_mask.to(self.device)
        rows = torch.arange(n_rows, device=self.device)
        at_mask = torch.tensor(positions + positions[-1:] * (n_rows - n), device=self.device)
        if self._head is None:
            logits = self.model(input_ids=input_ids, attention_mask=attention_mask).logits[rows, at_mask]
        else:
            hidden = self.model.base_model(input_ids=input_ids, attention_mask=attention_mask)[0]  # (B, T, H)
            logits = self._head(hidden[rows, at_mask].float())  # (B, V): the projection runs at masks only
        logits = logits[:n].float().masked_fill(self._invalid, float("-inf")).cpu()
        for row, word in enumerate(words):
            logits[row, self._same_word.get(word.lower(), [])] = float("-inf")
        return logits
