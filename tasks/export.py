"""Prefect tasks of the export stage: HF folder with model card, ONNX fp32/int8 with parity checks, registry."""

from __future__ import annotations

import json
from importlib.metadata import version
from pathlib import Path

import mlflow
from datasets import Dataset
from mlflow import MlflowClient
from mlflow.models import ModelSignature
from mlflow.models.model import ModelInfo
from mlflow.types.schema import ColSpec, Schema
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from tinybert_core.evaluation import predict_logits
from tinybert_core.onnx_export import check_parity, export_onnx, quantize_int8
from tasks.retries import IO_TASK
from tasks.serving import TEXT_COLUMNS

SERVING_CODE = Path(__file__).with_name("serving.py")
# What serving.py imports, pinned to the versions that exported the model. MLflow's own inference of these
# imports the model in a subprocess (seconds) and listed neither torch nor tokenizers here.
SERVING_PACKAGES = ("mlflow", "torch", "transformers", "tokenizers", "safetensors", "pandas", "numpy")


@task(cache_policy=NO_CACHE)
def onnx_task(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, dev: Dataset, out_dir: Path, section: dict) -> dict:
    """fp32 and int8 ONNX models, each checked against PyTorch on the dev set; the stage fails out of tolerance."""
    logger = get_run_logger()
    fp32 = export_onnx(model, out_dir / "model.onnx", tokenizer=tokenizer)
    int8 = quantize_int8(fp32, out_dir / "model.int8.onnx")
    reference = predict_logits(model, dev)
    reports = {
        "fp32": check_parity(model, fp32, dev, section["fp32_max_abs_logit_diff"], section["fp32_min_label_agreement"], reference),
        "int8": check_parity(model, int8, dev, None, section["int8_min_label_agreement"], reference),
    }
    summary = {}
    for name, report in reports.items():
        logger.info("ONNX %s parity: %s", name, report)
        summary[f"onnx_{name}_max_abs_logit_diff"] = report.max_abs_diff
        summary[f"onnx_{name}_label_agreement"] = report.label_agreement
        summary[f"onnx_{name}_nontrivial_agreement"] = report.nontrivial_agreement
        summary[f"onnx_{name}_logit_correlation"] = report.logit_correlation
        summary[f"onnx_{name}_bytes"] = (fp32 if name == "fp32" else int8).stat().st_size
    return summary


def serving_signature(text_columns: tuple[str, ...], regression: bool) -> ModelSignature:
    """What the pyfunc reads and answers: one text column per input text, a label and a score per row."""
    outputs = [ColSpec("double", "score")] if regression else [ColSpec("string", "label"), ColSpec("double", "score")]
    signature = ModelSignature(Schema([ColSpec("string", c) for c in text_columns]), Schema(outputs))
    # MLflow would otherwise cast every input to a DataFrame of these columns before predict sees it: a dict
    # of lists became one row holding the list, a string or a list of strings was refused. serving.py reads
    # each format itself and refuses what it cannot read exactly; this flag (what MLflow sets for signatures
    # from type hints) hands it the input as given.
    signature._is_signature_from_type_hint = True
    return signature


def log_serving_model(hf_dir: Path, example: dict[str, list[str]], registered_model_name: str | None = None) -> ModelInfo:
    """Log the exported folder as a pyfunc model (from code, no pickle), registered when a name is given.

    `example` ({"text_a": [...], ...}) names the text columns and becomes the input example.
    """
    config = json.loads((Path(hf_dir) / "config.json").read_text())
    text_columns = tuple(example)
    return mlflow.pyfunc.log_model(
        name="model", python_model=str(SERVING_CODE), artifacts={"model": str(hf_dir)},
        model_config={TEXT_COLUMNS: list(text_columns)},
        signature=serving_signature(text_columns, config.get("problem_type") == "regression"),
        input_example=example, registered_model_name=registered_model_name,
        # "+cpu"/"+cu124" local labels name a wheel index, not a version pip can resolve elsewhere.
        pip_requirements=[f"{name}=={version(name).split('+')[0]}" for name in SERVING_PACKAGES],
    )


@task(**IO_TASK)
def register_task(
    hf_dir: Path, name: str, alias: str | None, example: dict[str, list[str]], description: str = "",
    tags: dict[str, str] | None = None,
) -> int:
    """Log the exported folder as a pyfunc model, register it with a description and tags, and move `alias` to it
    (None: registered without the alias, as for a flagged student)."""
    info = log_serving_model(hf_dir, example, registered_model_name=name)
    version = int(info.registered_model_version)
    client = MlflowClient()
    client.update_model_version(name, str(version), description=description)
    for key, value in (tags or {}).items():
        client.set_model_version_tag(name, str(version), key, value)
    if alias:
        client.set_registered_model_alias(name, alias, version)
        get_run_logger().info("registered %s version %d as @%s", name, version, alias)
    else:
        get_run_logger().warning("registered %s version %d WITHOUT an alias", name, version)
    return version
