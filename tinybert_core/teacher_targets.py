"""Where the teacher's side of a distillation loss comes from, batch by batch.

    targets = LiveTeacher(teacher, hidden_layers=(0, 3, 6, 9, 12), score_layers=(3, 6, 9, 12))
    teacher_out = targets(batch)                     # Intermediates; the teacher ran in inference mode

- `LiveTeacher` runs the teacher on the batch: under `torch.inference_mode`, in bf16 autocast where the device
  has native bf16 matrix units (`teacher_precision`), asking only for the hidden states and scores the loss
  reads, so every unmapped layer keeps the fused SDPA kernel.
- `CachedLogits` serves stage 2 from teacher logits computed once (teacher_cache.py): the teacher never runs.
- `IntermediateCache` keeps stage 1's targets the first time each row is met and reads them back on later
  epochs, within a memory (or disk) budget; the batches stay exactly those of an uncached run.

Targets looked up by row need the batch's `row_index` (batching.ROW_INDEX), which the training loop adds.

bf16 and the targets' error: in bf16 autocast the teacher's matrix products round their inputs to 8 mantissa
bits while LayerNorm, softmax and residual sums stay float32. Measured against float32
(benchmarks/teacher_precision.py, real SST-2 rows), the relative L2 error of every target kind (hidden states
at real tokens, scores at real pairs, logits) was at most 9.3e-3 on a BERT-base-shaped teacher and 9.0e-3 on the
packaged MiniLM, under BF16_TARGET_TOLERANCE. A wholly bf16 teacher (weights cast) reached 1.8e-2, so we use
autocast. On a CPU without native bf16 instructions bf16 is emulated and slower, so "auto" means float32 there.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Protocol, Sequence

import torch
from transformers import PreTrainedModel

from tinybert_core.batching import ROW_INDEX
from tinybert_core.models import Intermediates, forward_intermediates

log = logging.getLogger(__name__)

TEACHER_PRECISIONS = ("auto", "bf16", "fp32")
# Largest relative L2 error of a bf16 target against float32 that we accept (benchmarks/teacher_precision.py
# checks it): about twice what 12 BERT-base layers in bf16 autocast give, far below the student's own error.
BF16_TARGET_TOLERANCE = 2e-2


class TeacherTargets(Protocol):
    def __call__(self, batch: dict[str, torch.Tensor]) -> Intermediates: ...


def native_bf16(device: torch.device) -> bool:
    """Whether `device` multiplies bf16 matrices in hardware (CPU: AVX512-BF16 or AMX; CUDA: Ampere or newer)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        # torch 2.13 has no public query for these instruction sets; this is what its own CPU dispatch reads.
        capability = torch._C._cpu._get_cpu_capability()
        return bool(capability.get("avx512_bf16") or capability.get("amx_bf16"))
    return False


def resolve_teacher_precision(precision: str, device: torch.device) -> str:
    """"bf16" or "fp32" for a `teacher_precision` setting: "auto" is bf16 where the device has native bf16."""
    if precision not in TEACHER_PRECISIONS:
        raise ValueError(f"teacher_precision must be one of {TEACHER_PRECISIONS}, not {precision!r}")
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    return precision


class LiveTeacher:
    """Runs the teacher on every batch, in inference mode, at `precision`, exposing only the layers asked for."""

    def __init__(
        self,
        teacher: PreTrainedModel,
        hidden_layers: tuple[int, ...] = (),
        score_layers: tuple[int, ...] = (),
        precision: str = "auto",
    ):
        self.teacher = teacher.eval()
        self.hidden_layers, self.score_layers = hidden_layers, score_layers
        self.device = next(teacher.parameters()).device
        self.precision = resolve_teacher_precision(precision, self.device)

    def __call__(self, batch: dict[str, torch.Tensor]) -> Intermediates:
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16")
        with torch.inference_mode(), autocast:
            out = forward_intermediates(self.teacher, batch, self.hidden_layers, self.score_layers)
        # Autograd refuses to save inference tensors for backward, and a loss may save its target (F.mse_loss
        # does, and so does any torch.compile'd graph); one copy of the outputs (about 1% of the teacher's
        # time on BERT-base) gives ordinary tensors.
        return Intermediates(
            hidden={m: h.clone() for m, h in out.hidden.items()},
            scores={m: s.clone() for m, s in out.scores.items()},
            # A local-attention layer's window (ModernBERT) is in its mask: the attention loss reads it.
            score_masks={m: None if k is None else k.clone() for m, k in out.score_masks.items()},
            logits=out.logits.clone() if out.logits is not None else None,
        )


class CachedLogits:
    """Teacher logits looked up by row: `logits` (N, C), row i for row i of the training set."""

    def __init__(self, logits: torch.Tensor, device: torch.device):
        self.logits = logits
        self.device = device

    def __call__(self, batch: dict[str, torch.Tensor]) -> Intermediates:
        rows = batch[ROW_INDEX].to(self.logits.device)
        return Intermediates(logits=self.logits[rows].to(self.device, non_blocking=True))


class IntermediateCache:
    """Stage-1 targets computed live the first time a row is met, then read back: the teacher runs about once.

    Per requested layer, one flat buffer holds every row's unpadded values: hidden (L_i, H) at token offset
    sum(L_<i), scores (nh, L_i, L_i) at pair offset nh * sum(L_<i ** 2), and the pairs its softmax may attend
    (L_i, L_i) at pair offset sum(L_<i ** 2): a local-attention window is not padding, so it is kept (one byte
    a pair, 1 / (4 nh) of the fp32 scores). Values are stored in the dtype the teacher produced them in, so a
    cached target equals the live one and padding (zeros here) never counts in the losses. The buffers are
    sized on the first batch; if they would exceed `budget_mb` the cache turns itself off and the teacher runs
    live on every batch (logged). With `folder` the buffers are memory-mapped files there (a disk budget) that
    `close` removes; rows are filled per process, so the cache does not survive a restart, and under DDP each
    process caches the rows it meets.
    """

    def __init__(self, live: LiveTeacher, lengths: Sequence[int], budget_mb: float, folder: Path | None = None):
        self.live = live
        self.lengths = torch.as_tensor(list(lengths), dtype=torch.long)
        self.budget_bytes = budget_mb * 2**20
        self.folder = Path(folder) if folder is not None else None
        self.token_offsets = torch.cumsum(self.lengths, 0) - self.lengths
        self.pair_offsets = torch.cumsum(self.lengths**2, 0) - self.lengths**2
        self.filled = torch.zeros(len(self.lengths), dtype=torch.bool)
        self.hidden: dict[int, torch.Tensor] = {}  # layer -> (sum L_i, H)
        self.scores: dict[int, torch.Tensor] = {}  # layer -> (nh * sum L_i ** 2,)
        self.masks: dict[int, torch.Tensor] = {}  # layer -> (sum L_i ** 2,) boolean
        self.heads: dict[int, int] = {}  # layer -> nh
        self.enabled = budget_mb > 0
        self.hits = self.misses = 0

    def __call__(self, batch: dict[str, torch.Tensor]) -> Intermediates:
        rows = batch[ROW_INDEX].cpu()
        if self.enabled and bool(self.filled[rows].all()):
            self.hits += 1
            return self._read(rows.tolist(), batch["attention_mask"].size(1), batch["attention_mask"].device)
        self.misses += 1
        out = self.live(batch)
        if self.enabled and not self.hidden and not self.scores:
            self.enabled = self._allocate(out)
        if self.enabled:
            self._write(rows.tolist(), out)
        return out

    def close(self) -> None:
        """Drop the buffers (and their files)."""
        if self.folder is not None:
            for kind, store in self._stores():
                for m in store:
                    self._file(kind, m).unlink(missing_ok=True)
        self.hidden, self.scores, self.masks, self.heads, self.enabled = {}, {}, {}, {}, False

    # -- storage ----------------------------------------------------------------------------------------------

    def _allocate(self, out: Intermediates) -> bool:
        tokens, pairs = int(self.lengths.sum()), int((self.lengths**2).sum())
        shapes = {("hidden", m): ((tokens, h.size(-1)), h.dtype) for m, h in out.hidden.items()}
        shapes |= {("scores", m): ((s.size(1) * pairs,), s.dtype) for m, s in out.scores.items()}
        shapes |= {("masks", m): ((pairs,), torch.bool) for m in out.scores}
        self.heads = {m: s.size(1) for m, s in out.scores.items()}
        needed = sum(torch.Size(shape).numel() * dtype.itemsize for shape, dtype in shapes.values())
        where = f"memory-mapped files in {self.folder}" if self.folder is not None else "memory"
        if needed > self.budget_bytes:
            log.info(
                "teacher cache: %d rows need %.0f MB, over the budget of %.0f MB (teacher_cache_mb); the teacher "
                "runs on every batch", len(self.lengths), needed / 2**20, self.budget_bytes / 2**20,
            )
            return False
        log.info("teacher cache: %.0f MB in %s for %d rows", needed / 2**20, where, len(self.lengths))
        stores = dict(self._stores())
        for (kind, m), (shape, dtype) in shapes.items():
            stores[kind][m] = self._buffer(kind, m, shape, dtype)
        return True

    def _stores(self) -> tuple[tuple[str, dict[int, torch.Tensor]], ...]:
        return ("hidden", self.hidden), ("scores", self.scores), ("masks", self.masks)

    def _buffer(self, kind: str, layer: int, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        if self.folder is None:
            return torch.empty(shape, dtype=dtype)
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self._file(kind, layer)
        path.unlink(missing_ok=True)  # a previous process's rows are not marked filled here: start empty
        flat = torch.from_file(os.fspath(path), shared=True, size=torch.Size(shape).numel(), dtype=dtype)
        return flat.view(shape)

    def _file(self, kind: str, layer: int) -> Path:
        return self.folder / f"teacher-{kind}-{layer}.bin"

    def _write(self, rows: list[int], out: Intermediates) -> None:
        for b, i in enumerate(rows):
            if self.filled[i]:
                continue
            n, t, p = int(self.lengths[i]), int(self.token_offsets[i]), int(self.pair_offsets[i])
            for m, buffer in self.hidden.items():
                buffer[t : t + n].copy_(out.hidden[m][b, :n])
            for m, buffer in self.scores.items():
                h = self.heads[m]
                buffer[h * p : h * (p + n * n)].view(h, n, n).copy_(out.scores[m][b, :, :n, :n])
            for m, buffer in self.masks.items():
                allowed = out.score_masks.get(m)
                block = buffer[p : p + n * n].view(n, n)
                if allowed is None:
                    block.fill_(True)
                else:
                    block.copy_(allowed[b if allowed.size(0) > 1 else 0, 0, :n, :n])
            self.filled[i] = True

    def _read(self, rows: list[int], width: int, device: torch.device) -> Intermediates:
        hidden = {m: buffer.new_zeros(len(rows), width, buffer.size(-1)) for m, buffer in self.hidden.items()}
        scores = {m: buffer.new_zeros(len(rows), self.heads[m], width, width) for m, buffer in self.scores.items()}
        masks = {m: buffer.new_zeros(len(rows), 1, width, width) for m, buffer in self.masks.items()}
        for b, i in enumerate(rows):
            n, t, p = int(self.lengths[i]), int(self.token_offsets[i]), int(self.pair_offsets[i])
            for m, buffer in self.hidden.items():
                hidden[m][b, :n] = buffer[t : t + n]
            for m, buffer in self.scores.items():
                h = self.heads[m]
                scores[m][b, :, :n, :n] = buffer[h * p : h * (p + n * n)].view(h, n, n)
            for m, buffer in self.masks.items():
                masks[m][b, 0, :n, :n] = buffer[p : p + n * n].view(n, n)
        return Intermediates(
            hidden={m: h.to(device, non_blocking=True) for m, h in hidden.items()},
            scores={m: s.to(device, non_blocking=True) for m, s in scores.items()},
            score_masks={m: k.to(device, non_blocking=True) for m, k in masks.items()},
        )
