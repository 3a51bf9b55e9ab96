"""The one training loop behind general distillation, teacher fine-tuning and both task-distillation stages.

    objective = DistillationObjective(student, mode=..., layer_map=..., projections=...)
    result = train(objective, encoded_dataset, TrainConfig(mode=...), run_dir, teacher=teacher)

The loop: AdamW with linear warmup then linear decay, gradient accumulation, global-norm clipping,
length-bucketed dynamically padded batches, bf16 autocast on GPU, per-step loss records in
`<run_dir>/train_log.jsonl`, and full-state checkpoints that `resume` continues from exactly.

The teacher's side of the loss (teacher_targets.py) is computed in inference mode at `teacher_precision`
(bf16 where the hardware has it), read from a stage-1 cache (`teacher_cache_mb`) after the first epoch, or, in
stage 2, looked up in precomputed logits (`teacher_logits`, teacher_cache.py) so the teacher never runs.

Every loss of an optimizer step is divided by the step's global counts (rows, real tokens, real pairs over all
micro-batches and processes, known from the sampler), so gradient accumulation and W processes give the
gradients of one process on the whole batch, whatever the lengths.
"""

from __future__ import annotations

import contextlib
import itertools
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

from tinybert_core.batching import ROW_INDEX, BucketedBatchSampler, batch_counts, pad_batch, sequence_lengths
from tinybert_core.checkpoint import CheckpointError, TrainingState, capture_rng, latest_checkpoint, load_checkpoint, save_checkpoint
from tinybert_core.dropout import check_dropout, dropout_rate
from tinybert_core.distributed import Topology, barrier, gather_to_main, init_topology, process_seed, sum_across_processes
from tinybert_core.objectives import INTERMEDIATE_MODES, DistillationObjective
from tinybert_core.teacher_targets import CachedLogits, IntermediateCache, LiveTeacher, TeacherTargets
from tinybert_core.threads import holds_global_rng

log = logging.getLogger(__name__)

MetricsCallback = Callable[[dict[str, float], int], None]  # (metrics, step); wired to MLflow by the pipeline
EvalFunction = Callable[[PreTrainedModel], dict[str, float]]


SCHEDULES = ("linear", "constant")


@dataclass
class TrainConfig:
    num_epochs: float = 3.0
    max_steps: int | None = None  # optimizer steps; overrides num_epochs when set
    batch_size: int = 32  # examples per optimizer step, over all processes and accumulation steps
    gradient_accumulation_steps: int = 1
    learning_rate: float = 5e-5
    weight_decay: float = 0.01
    warmup_proportion: float = 0.1
    # "linear": warmup, then linear decay to 0 (BERT's fine-tuning schedule); "constant": the rate from the first
    # step to the last, no warmup (the reference code's task stage 1, BertAdam's schedule "none").
    schedule: str = "linear"
    max_grad_norm: float = 1.0
    seed: int = 42
    bucket_by_length: bool = True
    precision: str = "auto"  # the student's: "auto": bf16 autocast on CUDA, fp32 elsewhere; or "bf16" / "fp32"
    # The teacher's forward: "fp32"; "bf16" autocast (2x faster on CPUs with AVX512-BF16, targets within ~1%, but
    # tests/test_quality.py's student lost 1.9 points of SST-2 accuracy with it: 0.740 against 0.759); or "auto":
    # bf16 where the device has native bf16 (CUDA Ampere+, CPU with AVX512-BF16 or AMX). teacher_targets.py.
    teacher_precision: str = "fp32"
    # The student's dropout while it trains (dropout.py): None keeps its config's (the reference code's 0.1); 0.0
    # turns it off, as task distillation's defaults do (README, "Dropout while distilling").
    dropout: float | None = None
    # Intermediate modes: keep the teacher's hidden states and scores from their first computation, up to this
    # many MB per process (0: the teacher runs on every batch). teacher_cache_dir: None keeps them in memory;
    # a folder keeps them in memory-mapped files there (a disk budget), removed when training ends.
    teacher_cache_mb: float = 0.0
    teacher_cache_dir: str | None = None
    compile: bool = False  # torch.compile the objective (student step); slower on the 2-core test CPU
    log_every: int = 10
    eval_every: int = 0  # optimizer steps between evaluations; 0: only at the end (when an evaluator is given)
    save_every: int = 200  # optimizer steps between checkpoints; the final state is always saved
    keep_checkpoints: int = 2
    num_workers: int = 0

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        check_dropout(self.dropout)


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


@holds_global_rng  # seeds torch's global generator, which dropout draws from, for the whole run
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
    teacher_logits: torch.Tensor | None = None,
) -> TrainResult:
    """Train `objective` on an encoded dataset (`input_ids`, optional `token_type_ids`, `labels`).

    `teacher_logits` (N, C), row i for row i of `dataset` (teacher_cache.py), replaces the teacher in the
    prediction stage: then no `teacher` is needed and none runs.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    topology = topology or init_topology()
    if objective.needs_teacher and teacher is None and teacher_logits is None:
        raise ValueError(f"mode {objective.mode!r} needs a teacher model")
    if teacher_logits is not None and objective.mode != "task_prediction":
        raise ValueError(f"teacher_logits serve the task_prediction mode only, not {objective.mode!r}")
    if teacher_logits is not None and teacher_logits.size(0) != len(dataset):
        raise ValueError(f"teacher_logits has {teacher_logits.size(0)} rows, the dataset {len(dataset)}")
    if objective.mode == "finetune" and "labels" not in dataset.column_names:
        raise ValueError("teacher fine-tuning needs a `labels` column")
    accumulation = config.gradient_accumulation_steps
    micro_batch = _micro_batch_size(config)

    # -- set-up -----------------------------------------------------------------------------------------------
    torch.manual_seed(process_seed(config.seed, topology.rank))  # each process its own dropout stream
    objective.to(topology.device)
    if teacher is not None:
        teacher.to(topology.device).eval()
    lengths = sequence_lengths(dataset)
    targets = _teacher_targets(objective, teacher, teacher_logits, config, lengths)
    if isinstance(targets, (CachedLogits, IntermediateCache)):
        dataset = dataset.add_column(ROW_INDEX, list(range(len(dataset))))
    # The fused kernel updates all parameters in one pass: 7x faster than the default on a TinyBERT4 (CPU).
    optimizer = torch.optim.AdamW(
        parameter_groups(objective, config.weight_decay), lr=config.learning_rate,
        fused=topology.device.type in ("cpu", "cuda"),
    )
    sampler = BucketedBatchSampler(
        lengths,
        global_batch_size=micro_batch,
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
    steps_per_epoch = math.ceil(micro_batches_per_epoch / accumulation)
    total_steps = config.max_steps or math.ceil(config.num_epochs * steps_per_epoch)
    constant = config.schedule == "constant"
    warmup_steps = 0 if constant else int(config.warmup_proportion * total_steps)
    schedule = {"kind": config.schedule, "warmup_steps": warmup_steps, "total_steps": total_steps}

    state = TrainingState(schedule=schedule, config={"mode": objective.mode, **asdict(config)})
    checkpoint = latest_checkpoint(run_dir) if resume else None
    if checkpoint is not None:
        expected = state
        state = load_checkpoint(checkpoint, objective, optimizer, topology.rank, topology.world_size)
        _require_same_run(checkpoint, state, expected)
        log.info("resumed from %s at step %d (epoch %d, batch %d)", checkpoint, state.step, state.epoch, state.batches_in_epoch)
    log_path = run_dir / "train_log.jsonl"
    if topology.is_main:
        for path in (log_path, run_dir / "eval_log.jsonl"):
            _truncate_log(path, state.step)

    model = objective
    if topology.distributed:
        # Stage-1 objectives leave the pooler and classifier unused.
        model = DistributedDataParallel(objective, find_unused_parameters=objective.mode in INTERMEDIATE_MODES)
    if config.compile:
        model = torch.compile(model)
    autocast = _autocast(config.precision, topology.device)

    # -- the loop ---------------------------------------------------------------------------------------------
    with dropout_rate(objective.student, config.dropout):
        objective.train()
        progress = tqdm(total=total_steps, initial=state.step, desc=objective.mode, disable=not topology.is_main)
        step_losses: dict[str, torch.Tensor] = {}  # summed over the micro-batches of the current step
        window: dict[str, float] = {}  # per-step records summed since the last progress/log callback
        window_steps, window_examples, window_start = 0, 0, time.perf_counter()
        final_losses: dict[str, float] = {}
        eval_metrics: dict[str, float] = {}
        while state.step < total_steps:
            sampler.set_position(state.epoch, state.batches_in_epoch)
            global_batches = sampler.global_batches()
            for batch in loader:  # this process's share of global_batches[state.batches_in_epoch]
                batch = {k: v.to(topology.device, non_blocking=True) for k, v in batch.items()}
                global_batch = global_batches[state.batches_in_epoch]
                step_start = state.batches_in_epoch - state.batches_in_epoch % accumulation
                counts = batch_counts(lengths, itertools.chain(*global_batches[step_start : step_start + accumulation]))
                # DDP averages gradients over processes; the losses are already divided by global counts.
                weight = 0.0 if sampler.is_placeholder(global_batch) else float(topology.world_size)
                state.batches_in_epoch += 1
                boundary = state.batches_in_epoch % accumulation == 0 or state.batches_in_epoch == micro_batches_per_epoch
                sync = contextlib.nullcontext() if boundary or not topology.distributed else model.no_sync()
                with sync:
                    teacher_out = targets(batch) if targets is not None else None
                    with autocast:
                        losses = model(batch, teacher_out, counts)
                    (losses["loss"] * weight).backward()
                for key, value in losses.items():
                    step_losses[key] = step_losses.get(key, 0.0) + value.detach() * (weight > 0)
                window_examples += len(global_batch)
                if not boundary:
                    continue

                # One optimizer step.
                lr = config.learning_rate * (1.0 if constant else linear_schedule(state.step, warmup_steps, total_steps))
                for group in optimizer.param_groups:
                    group["lr"] = lr
                grad_norm = torch.nn.utils.clip_grad_norm_(objective.parameters(), config.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                state.step += 1
                progress.update(1)

                # Per-step record, then a windowed average for the progress bar and the metrics callback.
                record = sum_across_processes({k: float(v) for k, v in step_losses.items()}, topology)
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
    if isinstance(targets, IntermediateCache):
        log.info("teacher cache: %d batches read from the cache, %d computed", targets.hits, targets.misses)
        targets.close()

    if evaluate:
        eval_metrics = _run_eval(evaluate, objective, topology, state.step, run_dir, on_log)
    _save(run_dir, objective, optimizer, state, config, topology)
    return TrainResult(objective.student, state, final_losses, eval_metrics, log_path, objective.projections)


# -- helpers ----------------------------------------------------------------------------------------------------


# Settings that only say how a run is watched or saved; a resumed run may change them.
_RESUMABLE_CHANGES = ("log_every", "eval_every", "save_every", "keep_checkpoints", "num_workers", "teacher_cache_mb",
                      "teacher_cache_dir", "compile")


def _require_same_run(checkpoint: Path, saved: TrainingState, expected: TrainingState) -> None:
    """A checkpoint continues only the run that wrote it: same mode, knobs and schedule (so the same data size).

    Resuming another configuration's checkpoint would silently train a model no setting describes.
    """
    differs = sorted(
        key for key in {*saved.config, *expected.config}
        if key not in _RESUMABLE_CHANGES and saved.config.get(key) != expected.config.get(key)
    )
    if saved.schedule != expected.schedule:
        differs.append(f"schedule {saved.schedule} -> {expected.schedule} (another data size or epoch count)")
    if differs:
        raise CheckpointError(
            f"{checkpoint} was written by another training configuration ({', '.join(map(str, differs))}); "
            f"resume it with the same settings and data, or train in a new run folder"
        )


def _micro_batch_size(config: TrainConfig) -> int:
    """Rows of one global micro-batch (over all processes): the processes share it row by row."""
    if config.batch_size % config.gradient_accumulation_steps:
        raise ValueError(
            f"batch_size {config.batch_size} must be divisible by gradient_accumulation_steps "
            f"({config.gradient_accumulation_steps})"
        )
    return config.batch_size // config.gradient_accumulation_steps


def _teacher_targets(
    objective: DistillationObjective,
    teacher: PreTrainedModel | None,
    teacher_logits: torch.Tensor | None,
    config: TrainConfig,
    lengths: list[int],
) -> TeacherTargets | None:
    """The cheapest source of the teacher's side of the loss this run allows."""
    if not objective.needs_teacher:
        return None
    device = next(objective.parameters()).device
    if teacher_logits is not None:
        return CachedLogits(teacher_logits, device)
    live = LiveTeacher(teacher, *objective.teacher_request(), precision=config.teacher_precision)
    if objective.mode in INTERMEDIATE_MODES and config.teacher_cache_mb > 0:
        folder = Path(config.teacher_cache_dir) if config.teacher_cache_dir else None
        return IntermediateCache(live, lengths, config.teacher_cache_mb, folder)
    return live


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
    rng_states = gather_to_main(capture_rng(), topology)  # every process's dropout stream, in rank order
    if topology.is_main:
        save_checkpoint(run_dir, objective, optimizer, state, keep_last=config.keep_checkpoints, rng_states=rng_states)
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
