"""The TinyBERT recipe as plain functions: each step wires models, objective and training loop.

    teacher = finetune_teacher("minilm-l6", task, train, dev, TrainConfig(...), "runs/teacher").student
    general = general_distill("minilm-l6", corpus, StudentShape(...), TrainConfig(...), "runs/general")
    # ... saved as a General TinyBERT folder, with save_projections(general.projections, folder)
    student = student_for_task(task, teacher, folder, StudentShape(...), seed=0)
    projections = projections_for_task(folder, student, teacher)   # its W_e/W_h start task stage 1
    student = task_distill(teacher, student, task, augmented, dev, stage1, stage2, "runs/task", projections=projections).student

Task distillation is also available stage by stage, for pipelines that run them separately:
    task_distill_intermediate(teacher, general, augmented, stage1, "runs/task/stage1")
    logits = build_logit_cache(teacher, augmented, "outputs/teacher_logits")       # teacher_cache.py
    task_distill_prediction(general, task, augmented, dev, stage2, "runs/task/stage2", teacher_logits=logits)

The pipeline's flows call these one per stage; benchmarks call them to run ablations. Datasets passed in are
already encoded (`encode_task` / `prepare_corpus`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import torch
from datasets import Dataset
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from tinybert_core.batching import encode_examples, padded_rows
from tinybert_core.distiller import MetricsCallback, TrainConfig, TrainResult, train
from tinybert_core.evaluation import evaluator
from tinybert_core.general_student import load_projections
from tinybert_core.glue_tasks import TaskSpec
from tinybert_core.layer_map import build_layer_map
from tinybert_core.losses import Projections
from tinybert_core.models import Head, StudentShape, build_student, load_model
from tinybert_core.objectives import DistillationObjective
from tinybert_core.student_init import copy_from_teacher
from tinybert_core.teacher_cache import compute_teacher_logits, logit_cache
from tinybert_core.vocabulary import VocabularyError
from tinybert_core.threads import GLOBAL_RNG

log = logging.getLogger(__name__)

STUDENT_INITS = ("random", "teacher")  # general distillation's starting student: see general_distill
CALIBRATION_ROWS = 64  # corpus rows on which a pruned copy ranks the teacher's channels


def head_for(task: TaskSpec) -> Head:
    return "regression" if task.is_regression else "classification"


def encode_task(
    dataset: Dataset, tokenizer: PreTrainedTokenizerBase, task: TaskSpec, max_seq_length: int | None = None
) -> Dataset:
    """Tokenize a task split (text_a[, text_b], label) into model inputs, truncated to `max_seq_length`
    tokens (default: the task's, 64 for one sentence and 128 for pairs)."""
    return encode_examples(dataset, tokenizer, task.text_columns, max_seq_length or task.max_seq_length)


def task_model(
    source: str | Path, task: TaskSpec, seed: int | None = None, label_mapping: dict[str, str] | None = None
) -> PreTrainedModel:
    """A model with the task's head, loaded from a packaged name, local directory or hub id.

    `seed` fixes the initialisation of a head the checkpoint lacks (a general model loaded for a task). A
    checkpoint's own head is reordered to the task's labels, matched by name or by `label_mapping`
    ({checkpoint label: task label}; needed for generic names such as LABEL_0).
    """
    labels = list(task.labels) if task.labels else None
    with GLOBAL_RNG:  # seed and the new head's initialisation together: another thread may be training
        if seed is not None:
            torch.manual_seed(seed)
        return load_model(source, head=head_for(task), labels=labels, label_mapping=label_mapping)


def finetune(
    model: PreTrainedModel,
    task: TaskSpec,
    train_data: Dataset,
    dev_data: Dataset | None,
    config: TrainConfig,
    run_dir: str | Path,
    on_log: MetricsCallback | None = None,
) -> TrainResult:
    """Supervised training on labels: the teacher's fine-tuning, and the no-distillation baseline."""
    objective = DistillationObjective(model, "finetune", regression=task.is_regression)
    evaluate = evaluator(dev_data, task) if dev_data is not None else None
    return train(objective, train_data, config, run_dir, evaluate=evaluate, on_log=on_log)


def finetune_teacher(
    source: str | Path,
    task: TaskSpec,
    train_data: Dataset,
    dev_data: Dataset | None,
    config: TrainConfig,
    run_dir: str | Path,
    on_log: MetricsCallback | None = None,
) -> TrainResult:
    """The general teacher fine-tuned on the task: the task teacher of task distillation."""
    return finetune(task_model(source, task, config.seed), task, train_data, dev_data, config, run_dir, on_log)


def general_distill(
    teacher_source: str | Path,
    corpus: Dataset,
    shape: StudentShape,
    config: TrainConfig,
    run_dir: str | Path,
    layer_map: Sequence[int] | None = None,
    on_log: MetricsCallback | None = None,
    student_family: str = "bert",
    attention_loss: bool = True,
    student_init: str = "random",
) -> TrainResult:
    """General distillation: a fresh student mimics the general teacher's layers on a general corpus.

    `student_init`: "random" (the paper) or "teacher": the student starts as a pruned copy of a BERT teacher
    (`student_init.copy_from_teacher`, channels ranked on the corpus' first rows), W_e/W_h as the channels' selection.
    The result's `projections` (W_e/W_h) belong with the General TinyBERT: `general_student.save_projections`.
    """
    if student_init not in STUDENT_INITS:
        raise ValueError(f"student_init {student_init!r}: expected one of {', '.join(STUDENT_INITS)}")
    teacher = load_model(teacher_source, head="none")
    student = build_student(shape, teacher.config, head="none", seed=config.seed, family=student_family)
    projections = None
    if student_init == "teacher":
        teacher_of = build_layer_map(student.config, teacher.config, layer_map, attention_loss=attention_loss).teacher_of
        calibration = [padded_rows(corpus, range(start, min(start + 16, len(corpus))))
                       for start in range(0, min(CALIBRATION_ROWS, len(corpus)), 16)]
        projections = copy_from_teacher(student, teacher, calibration, teacher_of)
    objective = _intermediate_objective("general", student, teacher, layer_map, projections, attention_loss)
    return train(objective, corpus, config, run_dir, teacher=teacher, on_log=on_log)


def task_distill(
    teacher: PreTrainedModel,
    student: PreTrainedModel,
    task: TaskSpec,
    train_data: Dataset,
    dev_data: Dataset | None,
    stage1: TrainConfig | None,
    stage2: TrainConfig,
    run_dir: str | Path,
    temperature: float = 1.0,
    layer_map: Sequence[int] | None = None,
    on_log: MetricsCallback | None = None,
    projections: Projections | None = None,
    attention_loss: bool = True,
    logit_cache_dir: str | Path | None = None,
) -> TrainResult:
    """Task distillation: intermediate layers first (`stage1`; None skips it), then the prediction layer.

    `projections` start stage 1's W_e/W_h (those of the General TinyBERT, `projections_for_task`); None: fresh.
    Stage 2 trains on the teacher's logits computed once, before it starts: kept in `logit_cache_dir` (reused
    while its key matches the teacher and data, rebuilt otherwise) or, without it, in memory.
    """
    run_dir = Path(run_dir)
    if stage1 is not None:
        task_distill_intermediate(
            teacher, student, train_data, stage1, run_dir / "stage1", layer_map, _prefixed(on_log, "stage1"),
            projections=projections, attention_loss=attention_loss,
        )
    if logit_cache_dir is not None:
        logits = logit_cache(logit_cache_dir, teacher, train_data, stage2.teacher_precision)
    else:
        logits = compute_teacher_logits(teacher, train_data, stage2.teacher_precision)
    return task_distill_prediction(
        student, task, train_data, dev_data, stage2, run_dir / "stage2", temperature,
        teacher_logits=logits, on_log=_prefixed(on_log, "stage2"),
    )


def task_distill_intermediate(
    teacher: PreTrainedModel,
    student: PreTrainedModel,
    train_data: Dataset,
    config: TrainConfig,
    run_dir: str | Path,
    layer_map: Sequence[int] | None = None,
    on_log: MetricsCallback | None = None,
    projections: Projections | None = None,
    attention_loss: bool = True,
) -> TrainResult:
    """Task-distillation stage 1: the student mimics the task teacher's embeddings, hidden states and scores."""
    objective = _intermediate_objective("task_intermediate", student, teacher, layer_map, projections, attention_loss)
    return train(objective, train_data, config, run_dir, teacher=teacher, on_log=on_log)


def task_distill_prediction(
    student: PreTrainedModel,
    task: TaskSpec,
    train_data: Dataset,
    dev_data: Dataset | None,
    config: TrainConfig,
    run_dir: str | Path,
    temperature: float = 1.0,
    teacher: PreTrainedModel | None = None,
    teacher_logits: torch.Tensor | None = None,
    on_log: MetricsCallback | None = None,
) -> TrainResult:
    """Task-distillation stage 2: soft cross-entropy (MSE for regression) on the teacher's predictions.

    `teacher_logits` (N, C) from a logit cache (teacher_cache.py) means the teacher never runs; with only
    `teacher` it runs on every batch.
    """
    objective = DistillationObjective(student, "task_prediction", temperature=temperature, regression=task.is_regression)
    evaluate = evaluator(dev_data, task) if dev_data is not None else None
    return train(
        objective, train_data, config, run_dir, teacher=teacher, evaluate=evaluate, on_log=on_log,
        teacher_logits=teacher_logits,
    )


def student_for_task(
    task: TaskSpec,
    teacher: PreTrainedModel,
    general_student: str | Path | None,
    shape: StudentShape,
    seed: int,
    family: str = "bert",
) -> PreTrainedModel:
    """The student task distillation starts from: a General TinyBERT, or a random one of `shape` and `family`.

    `general_student` is ours (general_distill's output) or a published one: a local folder or hub id, in
    transformers' format or the reference code's (huawei-noah/TinyBERT_General_4L_312D).
    """
    if general_student is not None:
        student = task_model(general_student, task, seed)
        if student.config.vocab_size != teacher.config.vocab_size:
            raise VocabularyError(
                f"general student {general_student} has {student.config.vocab_size} embedding rows and the teacher "
                f"{teacher.config.vocab_size}: they do not share one vocabulary"
            )
        return student
    labels = list(task.labels) if task.labels else None
    return build_student(shape, teacher.config, head=head_for(task), labels=labels, seed=seed, family=family)


def projections_for_task(
    general_student: str | Path | None, student: PreTrainedModel, teacher: PreTrainedModel
) -> Projections | None:
    """W_e/W_h saved with the General TinyBERT, to start task stage 1 from; None: stage 1 starts fresh ones."""
    if general_student is None:
        return None
    return load_projections(general_student, student.config.hidden_size, teacher.config.hidden_size)


def _intermediate_objective(
    mode: str,
    student: PreTrainedModel,
    teacher: PreTrainedModel,
    layer_map: Sequence[int] | None,
    projections: Projections | None = None,
    attention_loss: bool = True,
) -> DistillationObjective:
    mapping = build_layer_map(student.config, teacher.config, layer_map, attention_loss=attention_loss)
    if not attention_loss:
        log.warning(
            "attention loss switched off: %s distillation matches embeddings and hidden states only "
            "(student %d heads, teacher %d)", mode, student.config.num_attention_heads, teacher.config.num_attention_heads,
        )
    widths = (student.config.hidden_size, teacher.config.hidden_size)
    if projections is None:
        projections = Projections(*widths)
    elif (projections.hidden.in_features, projections.hidden.out_features) != widths:
        raise ValueError(
            f"projections map width {projections.hidden.in_features} to {projections.hidden.out_features}; this "
            f"student is {widths[0]} wide and the teacher {widths[1]}"
        )
    return DistillationObjective(student, mode, mapping, projections, attention_loss=attention_loss)


def _prefixed(on_log: MetricsCallback | None, prefix: str) -> MetricsCallback | None:
    if on_log is None:
        return None
    return lambda metrics, step: on_log({f"{prefix}/{k}": v for k, v in metrics.items()}, step)
