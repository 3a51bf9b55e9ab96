"""The one training loop behind general distillation, teacher fine-tuning and both task-distillation stages.

    objective = DistillationObjective(student, mode=..., layer_map=..., projections=...)
    result = train(objective, encoded_dataset, TrainConfig(mode=...), run_dir, teacher=teacher)

The loop: AdamW with linear warmup then linear decay, gradient accumulation, global-norm clipping,
length-bucketed dynamically padded batches, bf16 autocast on GPU, per-step loss records in
`<run_dir>/train_log.jsonl`, and full-state checkpoints that `resume` continues from exactly.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch
from datasets import Dataset
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import PreTrainedModel

from tinybert_core.batching import BucketedBatchSampler, pad_batch, sequence_lengths
from tinybert_core.checkpoint import TrainingState, latest_checkpoint, load_checkpoint, save_checkpoint
from tinybert_core.distributed import Topology, average_across_processes, barrier, init_topology
from tinybert_core.objectives import INTERMEDIATE_MODES, DistillationObjective, teacher_intermediates

log = logging.getLogger(__name__)

MetricsCallback = Callable[[dict[str, float], int], None]  # (metrics, step); wired to MLflow by the pipeline
EvalFunction = Callable[[PreTrainedModel], dict[str, float]]


@dataclass
class TrainConfig:
    num_epochs: float = 3.0
    max_steps: int | None = None  # optimizer steps; overrides num_epochs when set
    batch_size: int = 32  # examples per optimizer step, over all processes and accumulation steps
    gradient_accumulation_steps: int = 1
    learning_rate: float = 5e-5
    weight_decay: float = 0.01
    warmup_proportion: float = 0.1
    max_grad_norm: float = 1.0
    seed: int = 42
    bucket_by_length: bool = True
    precision: str = "auto"  # "auto": bf16 autocast on CUDA, fp32 elsewhere; or "bf16" / "fp32"
    log_every: int = 10
    eval_every: int = 0  # optimizer steps between evaluations; 0: only at the end (when an evaluator is given)
    save_every: int = 200  # optimizer steps between checkpoints; the final state is always saved
    keep_checkpoints: int = 2
    num_workers: int = 0


@dataclass
class TrainResult:
    student: PreTrainedModel
    state: TrainingState
    final_losses: dict[str, float]
    eval_metrics: dict[str, float]
    log_path: Path
    projections: torch.nn.Module | None = None  # W_e/W_h trained with the intermediate layers; None otherwise


def linear_schedule(step: int, warmup_steps: int, total_steps: int) -> float:
    """Learning-rate multiplier: 0 -> 1 over the warmup, then 1 -> 0 at `total_steps`."""
    if step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))


def parameter_groups(module: torch.nn.Module, weight_decay: float) -> list[dict]:
    """No weight decay on biases and LayerNorm weights, as in BERT."""
    decay, no_decay = [], []
    for name, param in module.named_parameters():
        if param.requires_grad:
            (no_decay if name.endswith("bias") or "LayerNorm" in name else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def train(
    objective: DistillationObjective,
    dataset: Dataset,
    config: TrainConfig,
    run_dir: Path,
    teacher: PreTrainedModel | None = None,
    evaluate: EvalFunction | None = None,
    on_log: MetricsCallback | None = None,
    resume: bool = True,
    topology: Topology | None = None,
) -> TrainResult:
    """Train `objective` on an encoded dataset (`input_ids`, optional `token_type_ids`, `labels`)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    topology = topology or init_topology()
    if objective.needs_teacher and teacher is None:
        raise ValueError(f"mode {objective.mode!r} needs a teacher model")
    if objective.mode == "finetune" and "labels" not in dataset.column_names:
        raise ValueError("teacher fine-tuning needs a `labels` column")
    micro_batch = _micro_batch_size(config, topology)

    # -- set-up -----------------------------------------------------------------------------------------------
    torch.manual_seed(config.seed)
    objective.to(topology.device)
    if teacher is not None:
        teacher.to(topology.device).eval()
    optimizer = torch.optim.AdamW(parameter_groups(objective, config.weight_decay), lr=config.learning_rate)
    sampler = BucketedBatchSampler(
        sequence_lengths(dataset),
        global_batch_size=micro_batch * topology.world_size,
        seed=config.seed,
        rank=topology.rank,
        world_size=topology.world_size,
        bucket_by_length=config.bucket_by_length,
    )
    # The loader's own generator keeps it from drawing on the global RNG that dropout uses (exact resume).
    loader = DataLoader(
        dataset, batch_sampler=sampler, collate_fn=pad_batch, num_workers=config.num_workers, generator=torch.Generator()
    )
    micro_batches_per_epoch = len(sampler.global_batches())
    steps_per_epoch = math.ceil(micro_batches_per_epoch / config.gradient_accumulation_steps)
    total_steps = config.max_steps or math.ceil(config.num_epochs * steps_per_epoch)
    warmup_steps = int(config.warmup_proportion * total_steps)
    schedule = {"kind": "linear", "warmup_steps": warmup_steps, "total_steps": total_steps}

    state = TrainingState(schedule=schedule, config={"mode": objective.mode, **asdict(config)})
    checkpoint = latest_checkpoint(run_dir) if resume else None
    if checkpoint is not None:
        state = load_checkpoint(checkpoint, objective, optimizer)
        log.info("resumed from %s at step %d (epoch %d, batch %d)", checkpoint, state.step, state.epoch, state.batches_in_epoch)
    log_path = run_dir / "train_log.jsonl"
    if topology.is_main:
        for path in (log_path, run_dir / "eval_log.jsonl"):
            _truncate_log(path, state.step)

    model = objective
    if topology.distributed:
        # Stage-1 objectives leave the pooler and classifier unused.
        model = DistributedDataParallel(objective, find_unused_parameters=objective.mode in INTERMEDIATE_MODES)
    autocast = _autocast(config.precision, topology.device)

    # -- the loop ---------------------------------------------------------------------------------------------
    objective.train()
    progress = tqdm(total=total_steps, initial=state.step, desc=objective.mode, disable=not topology.is_main)
    step_losses: dict[str, torch.Tensor] = {}  # summed over the micro-batches of the current step
    window: dict[str, float] = {}  # per-step records summed since the last progress/log callback
    window_steps, window_examples, window_start = 0, 0, time.perf_counter()
    final_losses: dict[str, float] = {}
    eval_metrics: dict[str, float] = {}
    while state.step < total_steps:
        sampler.set_position(state.epoch, state.batches_in_epoch)
        for batch in loader:
            batch = {k: v.to(topology.device, non_blocking=True) for k, v in batch.items()}
            state.batches_in_epoch += 1
            boundary = (
                state.batches_in_epoch % config.gradient_accumulation_steps == 0
                or state.batches_in_epoch == micro_batches_per_epoch
            )
            sync = contextlib.nullcontext() if boundary or not topology.distributed else model.no_sync()
            with sync:
                with autocast:
                    teacher_out = teacher_intermediates(teacher, objective, batch)
                    losses = model(batch, teacher_out)
                (losses["loss"] / config.gradient_accumulation_steps).backward()
            for key, value in losses.items():
                step_losses[key] = step_losses.get(key, 0.0) + value.detach() / config.gradient_accumulation_steps
            window_examples += batch["input_ids"].size(0) * topology.world_size
            if not boundary:
                continue

            # One optimizer step.
            lr = config.learning_rate * linear_schedule(state.step, warmup_steps, total_steps)
            for group in optimizer.param_groups:
                group["lr"] = lr
            grad_norm = torch.nn.utils.clip_grad_norm_(objective.parameters(), config.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            state.step += 1
            progress.update(1)

            # Per-step record, then a windowed average for the progress bar and the metrics callback.
            record = average_across_processes({k: float(v) for k, v in step_losses.items()}, topology)
            record.update(lr=lr, grad_norm=float(grad_norm))
            step_losses = {}
            if topology.is_main:
                _append_log(log_path, {"step": state.step, "epoch": state.epoch, **record})
            for key, value in record.items():
                window[key] = window.get(key, 0.0) + value
            window_steps += 1
            if state.step % config.log_every == 0 or state.step == total_steps:
                final_losses = {k: v / window_steps for k, v in window.items()}
                final_losses["examples_per_s"] = window_examples / max(time.perf_counter() - window_start, 1e-9)
                if topology.is_main:
                    progress.set_postfix(loss=f"{final_losses['loss']:.4f}")
                    if on_log:
                        on_log({f"train/{k}": v for k, v in final_losses.items()}, state.step)
                window, window_steps, window_examples, window_start = {}, 0, 0, time.perf_counter()

            if evaluate and config.eval_every and state.step % config.eval_every == 0 and state.step < total_steps:
                eval_metrics = _run_eval(evaluate, objective, topology, state.step, run_dir, on_log)
            if config.save_every and state.step % config.save_every == 0 and state.step < total_steps:
                _save(run_dir, objective, optimizer, state, config, topology)
            if state.step >= total_steps:
                break
        else:
            state.epoch += 1
            state.batches_in_epoch = 0
    progress.close()

    if evaluate:
        eval_metrics = _run_eval(evaluate, objective, topology, state.step, run_dir, on_log)
    _save(run_dir, objective, optimizer, state, config, topology)
    return TrainResult(objective.student, state, final_losses, eval_metrics, log_path, objective.projections)


# -- helpers ----------------------------------------------------------------------------------------------------


def _micro_batch_size(config: TrainConfig, topology: Topology) -> int:
    per_step = config.gradient_accumulation_steps * topology.world_size
    if config.batch_size % per_step:
        raise ValueError(
            f"batch_size {config.batch_size} must be divisible by gradient_accumulation_steps "
            f"({config.gradient_accumulation_steps}) x processes ({topology.world_size})"
        )
    return config.batch_size // per_step


def _autocast(precision: str, device: torch.device):
    if precision not in ("auto", "bf16", "fp32"):
        raise ValueError(f"precision must be auto, bf16 or fp32, not {precision!r}")
    use_bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda")
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_bf16)


def _run_eval(evaluate, objective, topology, step, run_dir, on_log) -> dict[str, float]:
    metrics: dict[str, float] = {}
    if topology.is_main:
        objective.eval()
        with torch.no_grad():
            metrics = evaluate(objective.student)
        objective.train()
        _append_log(run_dir / "eval_log.jsonl", {"step": step, **metrics})
        if on_log:
            on_log({f"eval/{k}": v for k, v in metrics.items()}, step)
    barrier(topology)
    return metrics


def _save(run_dir, objective, optimizer, state, config, topology) -> None:
    if topology.is_main:
        save_checkpoint(run_dir, objective, optimizer, state, keep_last=config.keep_checkpoints)
    barrier(topology)


def _append_log(path: Path, record: dict) -> None:
    with open(path, "a") as handle:
        handle.write(json.dumps(record) + "\n")


def _truncate_log(path: Path, step: int) -> None:
    """Drop records past the checkpoint we resume from; they will be written again."""
    if not path.exists():
        return
    kept = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= step]
    path.write_text("".join(line + "\n" for line in kept))
