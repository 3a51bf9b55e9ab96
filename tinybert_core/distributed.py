"""Process-group set-up for torchrun / accelerate launch, and the single-process fallback."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Topology:
    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_topology(device: str | None = None) -> Topology:
    """Join the process group the launcher describes in the environment (RANK, WORLD_SIZE, LOCAL_RANK).

    NCCL on CUDA, gloo on CPU. Without those variables this is a single process on `device`
    (default: CUDA when available).
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() if device is None else device.startswith("cuda")
    if use_cuda:
        torch.cuda.set_device(local_rank)
        chosen = torch.device("cuda", local_rank)
    else:
        chosen = torch.device(device or "cpu")
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    rank = dist.get_rank() if dist.is_initialized() else 0
    return Topology(rank=rank, world_size=world_size, device=chosen)


def barrier(topology: Topology) -> None:
    if topology.distributed:
        dist.barrier()


def sum_across_processes(values: dict[str, float], topology: Topology) -> dict[str, float]:
    """Sum of scalar logs over processes: each process logs its part of a loss normalised by global counts."""
    if not topology.distributed or not values:
        return values
    keys = sorted(values)
    tensor = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=topology.device)
    dist.all_reduce(tensor)
    return dict(zip(keys, tensor.tolist()))


def gather_to_main(value: object, topology: Topology) -> list[object] | None:
    """Every process's `value`, in rank order, on the main process (None elsewhere)."""
    if not topology.distributed:
        return [value]
    gathered: list[object] | None = [None] * topology.world_size if topology.is_main else None
    dist.gather_object(value, gathered, dst=0)
    return gathered


def process_seed(seed: int, rank: int) -> int:
    """The seed of process `rank`'s random streams (dropout): the run's seed on rank 0, distinct on the others."""
    return seed + 1_000_003 * rank
