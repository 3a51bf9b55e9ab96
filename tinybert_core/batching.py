"""From text examples to padded batches: tokenization, length-bucketed batch order, dynamic padding.

Batches are formed globally and then split between processes, so a run on W processes sees exactly the same
examples per optimizer step as a run on one process with the same global batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

import torch
from datasets import Dataset
from transformers import PreTrainedTokenizerBase

# The column the training loop adds when teacher targets are looked up by row (the teacher caches).
ROW_INDEX = "row_index"


def encode_examples(
    dataset: Dataset,
    tokenizer: PreTrainedTokenizerBase,
    text_columns: Sequence[str] = ("text_a",),
    max_seq_length: int = 128,
) -> Dataset:
    """Tokenize text columns (one sentence or a pair) into unpadded `input_ids` (and `token_type_ids` where the
    tokenizer makes them).

    The `label` column, when present, is kept as `labels`.
    """
    missing = [c for c in text_columns if c not in dataset.column_names]
    if missing:
        raise KeyError(f"dataset has no column(s) {missing}; it has {dataset.column_names}")

    def tokenize(rows: dict) -> dict:
        texts = [rows[c] for c in text_columns]
        encoded = tokenizer(*texts, truncation=True, max_length=max_seq_length, return_attention_mask=False)
        # RoBERTa, MPNet, DistilBERT and ModernBERT tokenizers return no token types.
        return {key: encoded[key] for key in ("input_ids", "token_type_ids") if key in encoded}

    keep = {"label"} & set(dataset.column_names)
    encoded = dataset.map(
        tokenize, batched=True, remove_columns=[c for c in dataset.column_names if c not in keep], desc="tokenize"
    )
    return encoded.rename_column("label", "labels") if keep else encoded


def sequence_lengths(dataset: Dataset) -> list[int]:
    return [len(ids) for ids in dataset["input_ids"]]


@dataclass(frozen=True)
class BatchCounts:
    """What the losses of an optimizer step are averaged over, counted over every process and micro-batch.

    rows: examples; tokens: real (unpadded) tokens; pairs: real (query, key) pairs, the sum of squared lengths.
    """

    rows: int
    tokens: int
    pairs: int


def batch_counts(lengths: Sequence[int], indices: Iterable[int]) -> BatchCounts:
    rows = tokens = pairs = 0
    for i in indices:
        rows, tokens, pairs = rows + 1, tokens + lengths[i], pairs + lengths[i] ** 2
    return BatchCounts(rows, tokens, pairs)


class BucketedBatchSampler:
    """Yields this process's share of each global batch, grouping examples of similar length.

    Per epoch: a seeded permutation, cut into mega-batches of `bucket_factor` global batches, each sorted by
    length and cut into global batches, whose order is shuffled again. `skip_batches` resumes mid-epoch.

    The global batches do not depend on the number of processes, so W processes see what one process sees.
    Process r takes rows r, r + W, r + 2W, ... of a (length-sorted) global batch: share sizes differ by at most
    one row and their token counts are close, so no process waits long for the others. A global batch with
    fewer rows than processes (a short last batch) leaves some processes without a row: they get a placeholder
    (the batch's first row) that the training loop weighs zero (`is_placeholder`), so every process still takes
    part in the gradient all-reduce and nothing is counted twice.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        global_batch_size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        bucket_by_length: bool = True,
        bucket_factor: int = 50,
        drop_last: bool = False,
    ):
        if global_batch_size < 1:
            raise ValueError(f"global batch size must be at least 1, not {global_batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside 0..{world_size - 1}")
        self.lengths = list(lengths)
        self.global_batch_size = global_batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.bucket_by_length = bucket_by_length
        self.bucket_factor = bucket_factor
        self.drop_last = drop_last
        self.epoch = 0
        self.skip_batches = 0
        self._batches: tuple[int, list[list[int]]] | None = None  # (epoch, its global batches)

    def set_position(self, epoch: int, skip_batches: int = 0) -> None:
        self.epoch, self.skip_batches = epoch, skip_batches

    def global_batches(self) -> list[list[int]]:
        """Every global batch of the current epoch, in order (computed once per epoch)."""
        if self._batches is None or self._batches[0] != self.epoch:
            self._batches = (self.epoch, self._make_global_batches())
        return self._batches[1]

    def _make_global_batches(self) -> list[list[int]]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(len(self.lengths), generator=generator).tolist()
        size = self.global_batch_size
        if self.bucket_by_length:
            mega = size * self.bucket_factor
            order = [
                i
                for start in range(0, len(order), mega)
                for i in sorted(order[start : start + mega], key=lambda i: -self.lengths[i])
            ]
        batches = [order[start : start + size] for start in range(0, len(order), size)]
        if batches and self.drop_last and len(batches[-1]) < size:
            batches.pop()
        if self.bucket_by_length:
            shuffle = torch.randperm(len(batches), generator=generator).tolist()
            batches = [batches[i] for i in shuffle]
        return batches

    def share(self, global_batch: Sequence[int]) -> list[int]:
        """This process's rows of `global_batch` (empty when the batch has fewer rows than processes)."""
        return list(global_batch[self.rank :: self.world_size])

    def is_placeholder(self, global_batch: Sequence[int]) -> bool:
        """Whether this process gets only a zero-weight placeholder row of `global_batch`."""
        return self.rank >= len(global_batch)

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.global_batches()[self.skip_batches :]:
            yield self.share(batch) or list(batch[:1])

    def __len__(self) -> int:
        return len(self.global_batches()) - self.skip_batches


def pad_batch(rows: list[dict], pad_token_id: int = 0) -> dict[str, torch.Tensor]:
    """Pad a list of encoded rows to the longest one: input_ids, token_type_ids, attention_mask (B, T).

    `labels` and `row_index` (B,) come along when the rows have them.
    """
    longest = max(len(row["input_ids"]) for row in rows)
    input_ids = torch.full((len(rows), longest), pad_token_id, dtype=torch.long)
    token_type_ids = torch.zeros((len(rows), longest), dtype=torch.long)
    attention_mask = torch.zeros((len(rows), longest), dtype=torch.long)
    for i, row in enumerate(rows):
        n = len(row["input_ids"])
        input_ids[i, :n] = torch.as_tensor(row["input_ids"])
        attention_mask[i, :n] = 1
        if "token_type_ids" in row:
            token_type_ids[i, :n] = torch.as_tensor(row["token_type_ids"])
    batch = {"input_ids": input_ids, "token_type_ids": token_type_ids, "attention_mask": attention_mask}
    for key in ("labels", ROW_INDEX):
        if key in rows[0]:
            batch[key] = torch.tensor([row[key] for row in rows])
    return batch


def inference_batches(dataset: Dataset, order: Sequence[int], batch_size: int) -> Iterator[tuple[list[int], dict[str, torch.Tensor]]]:
    """Padded model inputs (no labels) of `dataset` rows taken in `order`, with the row indices of each batch."""
    for start in range(0, len(order), batch_size):
        indices = list(order[start : start + batch_size])
        yield indices, padded_rows(dataset, indices)


def padded_rows(dataset: Dataset, indices: Sequence[int]) -> dict[str, torch.Tensor]:
    """The model inputs (no labels) of `dataset[indices]` as one padded batch."""
    inputs = dataset.select_columns([c for c in ("input_ids", "token_type_ids") if c in dataset.column_names])
    rows = inputs[list(indices)]
    return pad_batch([dict(zip(rows, values)) for values in zip(*rows.values())])
