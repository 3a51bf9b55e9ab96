"""The General TinyBERT between the two steps: W_e/W_h kept beside it, and those of published ones read back.

    save_projections(result.projections, "outputs/general_student/model")      # after general distillation
    projections = load_projections(general_dir, student_width, teacher_width)  # task stage 1 starts from them

General distillation learns the projections W_e (embeddings) and W_h (hidden states) that map the student's
width to the teacher's; the reference code keeps its projection in the General TinyBERT checkpoint and task
distillation reloads it. Ours lie in `projections.safetensors` beside the model, with both widths in its
metadata (one JSON entry). A published reference-format General TinyBERT (huawei-noah/TinyBERT_General_4L_312D) holds one
shared `fit_dense` (used for embeddings and hidden states alike); it starts both W_e and W_h.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from transformers.utils import cached_file

from tinybert_core.losses import Projections
from tinybert_core.models import resolve_model_source

log = logging.getLogger(__name__)

PROJECTIONS_FILE = "projections.safetensors"
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


class ProjectionsError(ValueError):
    """A projections file that cannot be read, or whose widths do not fit the model beside it."""


def save_projections(projections: Projections, model_dir: str | os.PathLike) -> Path:
    """Write W_e/W_h (linear layers) beside a saved General TinyBERT; returns the file written."""
    if not isinstance(projections.embedding, torch.nn.Linear) or not isinstance(projections.hidden, torch.nn.Linear):
        raise ProjectionsError("identity projections (equal widths) have no weights to save")
    path = Path(model_dir) / PROJECTIONS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {name: tensor.detach().cpu().contiguous() for name, tensor in projections.state_dict().items()}
    widths = {"student_width": projections.hidden.in_features, "teacher_width": projections.hidden.out_features}
    # One metadata entry: safetensors writes several in a random order (a hash map), and the file must come out the
    # same on every run (a DVC output: a changed hash reruns every task's stage 1).
    save_file(tensors, str(path), metadata={"widths": json.dumps(widths, sort_keys=True)})
    return path


def load_projections(source: str | os.PathLike, student_width: int, teacher_width: int) -> Projections | None:
    """W_e/W_h saved with the General TinyBERT at `source` (local folder or hub id), or None if it has none.

    Projections learnt towards a teacher of another width cannot start this task's stage 1: that is logged
    and None is returned, so stage 1 starts with fresh ones.
    """
    source = resolve_model_source(source)
    ours = _file(source, PROJECTIONS_FILE)
    if ours is not None:
        with safe_open(ours, framework="pt") as handle:
            metadata = handle.metadata() or {}
        try:
            named = json.loads(metadata["widths"]) if "widths" in metadata else metadata  # or the two keys of older files
            widths = int(named["student_width"]), int(named["teacher_width"])
        except (KeyError, ValueError) as error:
            raise ProjectionsError(f"{ours} has no student_width/teacher_width metadata ({metadata})") from error
        if not _fits(ours, widths, student_width, teacher_width):
            return None
        projections = Projections(student_width, teacher_width)
        projections.load_state_dict(load_file(ours))
        log.info("task stage 1 starts from the projections W_e/W_h in %s", ours)
        return projections
    return _reference_projection(source, student_width, teacher_width)


def _reference_projection(source: str, student_width: int, teacher_width: int) -> Projections | None:
    """The reference code's shared `fit_dense` (teacher_width, student_width) as both W_e and W_h."""
    weights = _reference_weights(source)
    if weights is None:
        return None
    if any(name.startswith("fit_denses.") for name in weights):
        log.warning(
            "%s holds per-layer projections (fit_denses.*, TinyBERT v2); ours share one W_h across layers, so task "
            "stage 1 starts with fresh projections", source,
        )
        return None
    if "fit_dense.weight" not in weights:
        return None
    weight, bias = weights["fit_dense.weight"], weights.get("fit_dense.bias")
    if not _fits(f"{source} (fit_dense)", (weight.shape[1], weight.shape[0]), student_width, teacher_width):
        return None
    projections = Projections(student_width, teacher_width)
    with torch.no_grad():
        for layer in (projections.embedding, projections.hidden):
            layer.weight.copy_(weight)
            if bias is not None:
                layer.bias.copy_(bias)
            else:
                layer.bias.zero_()
    log.info("task stage 1 starts from the reference projection fit_dense of %s (as W_e and W_h)", source)
    return projections


def _reference_weights(source: str) -> dict[str, torch.Tensor] | None:
    """The fit_dense* tensors of a checkpoint's weights, or None when it has no single weights file."""
    for name in _WEIGHT_FILES:
        path = _file(source, name)
        if path is None:
            continue
        if name.endswith(".safetensors"):
            with safe_open(path, framework="pt") as handle:
                return {key: handle.get_tensor(key) for key in handle.keys() if key.startswith("fit_dense")}
        state = torch.load(path, map_location="cpu", weights_only=True)
        return {key: value for key, value in state.items() if key.startswith("fit_dense")}
    return None


def _fits(where: str, widths: tuple[int, int], student_width: int, teacher_width: int) -> bool:
    if widths == (student_width, teacher_width):
        return True
    log.warning(
        "projections in %s map width %d to %d, but this student is %d wide and the teacher %d: task stage 1 "
        "starts with fresh projections", where, *widths, student_width, teacher_width,
    )
    return False


def _file(source: str, name: str) -> str | None:
    """Path of `name` in a local folder or hub repo, or None when it has no such file."""
    if Path(source).is_dir():
        path = Path(source) / name
        return str(path) if path.is_file() else None
    try:
        return cached_file(source, name, _raise_exceptions_for_missing_entries=False)
    except OSError:
        return None
