"""Inference speed of encoder models: latency at batch 1 and throughput at batch 32, measured alike.

Timings interleave the models being compared (A, B, A, B, ...) so that a machine busy with something else
slows all of them equally, and report medians.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import torch
from transformers import PreTrainedModel


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


def random_batch(vocab_size: int, batch_size: int, seq_length: int, device: torch.device) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, vocab_size, (batch_size, seq_length), generator=generator)
    return {"input_ids": ids.to(device), "attention_mask": torch.ones_like(ids).to(device)}


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
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
    times: dict[str, list[float]] = {name: [] for name in models}
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        for round_index in range(warmup + repeats):
            for name, model in models.items():
                _synchronize(device)
                start = time.perf_counter()
                model(**batch)
                _synchronize(device)
                if round_index >= warmup:
                    times[name].append(time.perf_counter() - start)
    return {
        name: SpeedResult(name, batch_size, seq_length, statistics.median(samples)) for name, samples in times.items()
    }
