"""Prefect tasks of the export stage: HF folder with model card, ONNX fp32/int8 with parity checks, registry."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pandas as pd
from datasets import Dataset
from mlflow import MlflowClient
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from tinybert_core.evaluation import predict_logits
from tinybert_core.onnx_export import check_parity, export_onnx, quantize_int8
from tasks.retries import IO_TASK

SERVING_CODE = Path(__file__).with_name("serving.py")


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
        summary[f"onnx_{name}_bytes"] = (fp32 if name == "fp32" else int8).stat().st_size
    return summary


@task(**IO_TASK)
def register_task(hf_dir: Path, name: str, alias: str, example: dict[str, list[str]]) -> int:
    """Log the exported folder as a pyfunc model (from code, no pickle), register it and move `alias` to it."""
    info = mlflow.pyfunc.log_model(
        name="model", python_model=str(SERVING_CODE), artifacts={"model": str(hf_dir)},
        registered_model_name=name, input_example=pd.DataFrame(example),
    )
    version = int(info.registered_model_version)
    MlflowClient().set_registered_model_alias(name, alias, version)
    get_run_logger().info("registered %s version %d as @%s", name, version, alias)
    return version
