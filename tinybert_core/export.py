"""The student as a self-contained Hugging Face folder: safetensors weights, config, tokenizer, model card.

    card = model_card(student, task, report, teacher="minilm-l6", lineage={"git_commit": "..."}, model_dir=...)
    export_hf(student, tokenizer, "outputs/export/hf", model_card=card)

The folder loads with plain `AutoModelForSequenceClassification.from_pretrained(folder)`: it is saved while the
model runs a stock attention implementation, so serving needs neither this package nor remote code.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from tinybert_core.comparison import markdown_table, weights_bytes
from tinybert_core.glue_tasks import TaskSpec
from tinybert_core.models import count_parameters

# Attention implementations that plain transformers knows without importing this package.
STANDARD_ATTENTION = ("eager", "sdpa", "flash_attention_2", "flash_attention_3", "flex_attention")
ATTENTION_CONFIG_KEYS = ("attn_implementation", "_attn_implementation", "_attn_implementation_internal")


class ExportError(RuntimeError):
    """An exported folder would not load without this package; the message says which file and why."""


@contextmanager
def attention_implementation(model: PreTrainedModel, name: str) -> Iterator[PreTrainedModel]:
    """Run `model` with another registered attention implementation inside the block, then switch back."""
    previous = model.config._attn_implementation
    model.set_attn_implementation(name)
    try:
        yield model
    finally:
        model.set_attn_implementation(previous)


def export_hf(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, out_dir: str | Path, model_card: str | None = None
) -> Path:
    """Save weights (safetensors), config, tokenizer and, when given, the model card as README.md.

    Returns `out_dir`. Raises ExportError if the saved config still names a custom attention implementation.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # Our models run the "tinybert" attention, which only exists once tinybert_core is imported; SDPA computes
    # the same outputs, so the saved config must name that instead.
    with attention_implementation(model, "sdpa"):
        model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    _require_standard_attention(out_dir / "config.json")
    if model_card is not None:
        (out_dir / "README.md").write_text(model_card)
    return out_dir


def _require_standard_attention(config_path: Path) -> None:
    config = json.loads(config_path.read_text())
    for key in ATTENTION_CONFIG_KEYS:
        if key in config and config[key] not in STANDARD_ATTENTION:
            raise ExportError(
                f"{config_path}: {key}={config[key]!r} is not a stock transformers attention implementation; "
                f"the folder would not load without tinybert_core"
            )


def model_card(
    student: PreTrainedModel,
    task: TaskSpec,
    report: dict,
    teacher: str,
    lineage: dict[str, object] | None = None,
    name: str | None = None,
    model_dir: str | Path | None = None,
) -> str:
    """Markdown model card: what the model is, how good and fast it is, and where it came from.

    `report` is a `comparison.compare` result (scores beside the baseline with intervals, flags, retention, size,
    speed); its warnings (a collapsed student, one that does not beat the baseline) open the card. `lineage` holds whatever traces
    the model back (git commit, MLflow run ids, DVC hashes). `model_dir`, a saved folder of these weights, gives
    the exact bytes on disk; without it the card gives the size of the tensors themselves.
    """
    config = student.config
    if task.is_regression:
        outputs = "one score (regression)"
    else:
        outputs = ", ".join(f"`{config.id2label[i]}`" for i in range(config.num_labels))
    if model_dir is not None and (saved := weights_bytes(model_dir)):
        size = f"{saved / 1e6:.1f} MB (safetensors)"
    else:
        tensor_bytes = sum(t.numel() * t.element_size() for t in student.state_dict().values())
        size = f"{tensor_bytes / 1e6:.1f} MB of tensors ({next(student.parameters()).dtype})"
    title = name or f"TinyBERT student for {task.name}"
    # Say it before anything else: a collapsed student's card must not read like a working model's.
    warnings = [line for warning in report["scores"]["warnings"] for line in (f"> **Warning:** {warning}", "")]
    lines = [
        "---",
        "library_name: transformers",
        "pipeline_tag: text-classification",
        "tags: [tinybert, knowledge-distillation, bert]",
        "---",
        f"# {title}",
        "",
        *warnings,
        f"A small BERT distilled from `{teacher}` with the TinyBERT recipe (Jiao et al., 2020): general "
        "distillation, data augmentation, then task distillation of the intermediate layers and of the predictions.",
        "",
        "| | |",
        "|---|---|",
        f"| task | `{task.name}` |",
        f"| outputs | {outputs} |",
        f"| teacher | `{teacher}` |",
        f"| shape | {config.num_hidden_layers} layers, hidden {config.hidden_size}, FFN {config.intermediate_size}, "
        f"{config.num_attention_heads} heads, vocabulary {config.vocab_size} |",
        f"| parameters | {count_parameters(student):,} |",
        f"| weights on disk | {size} |",
        "",
        "```python",
        "from transformers import pipeline",
        'classifier = pipeline("text-classification", model="<this folder>")',
        "```",
        "",
        "## Evaluation",
        "",
        markdown_table(report),
        "## Lineage",
        "",
        *(f"- {key}: `{value}`" for key, value in sorted((lineage or {}).items())),
        "",
        "## Intended use and limitations",
        "",
        f"Made for `{task.name}`-style inputs: English text classified into the labels above. Scores are on the "
        "dev data this pipeline was given (possibly capped for CPU runs), not on a held-out test set. The student "
        "inherits the teacher's errors and biases, was trained on augmented text that can be ungrammatical, and "
        "is not meant for inputs unlike its training data or for decisions about people.",
        "",
    ]
    return "\n".join(lines)
