"""Inference speed of encoder models: latency at batch 1 and throughput at batch 32, measured alike.

Timings interleave the models being compared (A, B, A, B, ...) so that a machine busy with something else
slows all of them equally, and report medians.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from transformers import PreTrainedModel

from tinybert_core.families import model_inputs


@dataclass
class SpeedResult:
    name: str
    batch_size: int
    seq_length: int
    median_seconds: float  # per forward pass of the whole batch

    @property
    def examples_per_second(self) -> float:
        return self.batch_size / self.median_seconds

    @property
    def latency_ms(self) -> float:
        return 1000.0 * self.median_seconds


def random_batch(
    vocab_size: int, batch_size: int, seq_length: int, device: torch.device | str = "cpu"
) -> dict[str, torch.Tensor]:
    """Seeded random input_ids (past BERT's special and unused tokens), a full attention_mask and zero
    token_type_ids, each (B, T) int64."""
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(min(1000, vocab_size // 2), vocab_size, (batch_size, seq_length), generator=generator)
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids)}
    return {name: tensor.to(device) for name, tensor in batch.items()}


def _synchronize(device: torch.device | None) -> None:
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)


def time_models(
    models: dict[str, PreTrainedModel],
    batch_size: int,
    seq_length: int = 128,
    repeats: int = 10,
    warmup: int = 2,
    device: torch.device | str | None = None,
    bf16: bool | None = None,
) -> dict[str, SpeedResult]:
    """Median forward time of each model on the same random batch, interleaved round by round.

    `bf16` defaults to True on CUDA (the serving precision there) and False on CPU.
    """
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    bf16 = device.type == "cuda" if bf16 is None else bf16
    vocab = min(model.config.vocab_size for model in models.values())
    batch = random_batch(vocab, batch_size, seq_length, device)
    for model in models.values():
        model.to(device).eval()
    # Each model gets the inputs its family takes (no token types for MPNet, DistilBERT, ModernBERT...).
    runners = {name: (lambda model=model: model(**model_inputs(model, batch))) for name, model in models.items()}
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        medians = interleaved_medians(runners, repeats, warmup, device)
    return {name: SpeedResult(name, batch_size, seq_length, seconds) for name, seconds in medians.items()}


def interleaved_medians(
    runners: dict[str, Callable[[], object]], repeats: int, warmup: int, device: torch.device | None = None
) -> dict[str, float]:
    """Median seconds of each callable, called round by round (A, B, A, B, ...) after `warmup` rounds."""
    times: dict[str, list[float]] = {name: [] for name in runners}
    for round_index in range(warmup + repeats):
        for name, run in runners.items():
            _synchronize(device)
            start = time.perf_counter()
            run()
            _synchronize(device)
            if round_index >= warmup:
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(samples) for name, samples in times.items()}
