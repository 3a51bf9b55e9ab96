"""Predictions and task metrics of a model on an encoded evaluation set."""

from __future__ import annotations

import numpy as np
import torch
from datasets import Dataset
from transformers import PreTrainedModel

from tinybert_core.batching import inference_batches
from tinybert_core.glue_metrics import compute_metrics
from tinybert_core.glue_tasks import TaskSpec
from tinybert_core.models import forward_intermediates


@torch.inference_mode()
def predict_logits(model: PreTrainedModel, dataset: Dataset, batch_size: int = 128) -> np.ndarray:
    """Logits (N, C) for an encoded dataset, in dataset order; batches sorted by length to pad little."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    lengths = [len(ids) for ids in dataset["input_ids"]]
    order = sorted(range(len(dataset)), key=lengths.__getitem__)
    logits = np.zeros((len(dataset), model.config.num_labels), dtype=np.float32)
    for indices, batch in inference_batches(dataset, order, batch_size):
        batch = {k: v.to(device) for k, v in batch.items()}
        logits[indices] = forward_intermediates(model, batch).logits.float().cpu().numpy()
    model.train(was_training)
    return logits


def evaluate_model(model: PreTrainedModel, dataset: Dataset, task: TaskSpec, batch_size: int = 128) -> dict[str, float]:
    """The task's GLUE metrics (fractions) of `model` on an encoded dataset with `labels`."""
    logits = predict_logits(model, dataset, batch_size)
    predictions = logits[:, 0] if task.is_regression else logits.argmax(axis=-1)
    return compute_metrics(task, predictions, np.asarray(dataset["labels"]))


def evaluator(dataset: Dataset, task: TaskSpec, batch_size: int = 128):
    """An `evaluate` callback for `distiller.train` that scores the model on `dataset`."""
    return lambda model: evaluate_model(model, dataset, task, batch_size)
