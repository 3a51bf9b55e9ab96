"""Stage 1: the general corpus (Wikipedia/news text by default) packed into token sequences (Arrow)."""

from __future__ import annotations

from typing import Any

import mlflow
from prefect import flow

from flows.arguments import stage_main
from flows.stage import stage
from tasks.data import prepare_corpus_task
from tasks.tracking import log_dataset


@flow(name="prepare_corpus")
def prepare_corpus(params_file: str | None = None, overrides: dict[str, Any] | None = None) -> str:
    with stage("prepare_corpus", params_file, overrides, sections=("prepare_corpus",)) as s:
        corpus = prepare_corpus_task(s.params["prepare_corpus"], s.params["models"]["teacher"], s.out_dir)
        log_dataset(corpus, "general-corpus", s.final_dir, context="general_distillation")
        mlflow.log_metric("sequences", len(corpus))
    return str(s.final_dir)


if __name__ == "__main__":
    stage_main("prepare_corpus", prepare_corpus)
