"""Stage 5: the task's training set expanded ~N_a-fold by TinyBERT's data augmentation."""

from __future__ import annotations

from typing import Any

import mlflow
from prefect import flow, get_run_logger, unmapped

from flows.arguments import stage_main
from flows.stage import stage
from tinybert_core.augment import concatenate_shards, save_augmented
from tasks.augmentation import WORD_VECTORS_FILE, augment_config, augment_shard_task, task_runner, train_vectors_task
from tasks.data import read_task_splits
from tasks.params import load_params
from tasks.tracking import log_dataset


@flow(name="augment")
def augment(
    params_file: str | None = None, overrides: dict[str, Any] | None = None, task: str | None = None
) -> str:
    with stage("augment", params_file, overrides, ("augment", "prepare_corpus"), upstream=("prepare_task",), task=task) as s:
        logger = get_run_logger()
        section, seed = s.params["augment"], s.params["seed"]
        _, splits = read_task_splits(s.upstream["prepare_task"])
        train = splits["train"]
        if not section["enabled"]:
            logger.warning("augmentation disabled (augment.enabled=false): the training set is used unchanged")
            augmented = train.add_column("source_idx", train["idx"])
        else:
            vectors = section["word_vectors"]
            if vectors is None:
                vectors = str(train_vectors_task(s.params["prepare_corpus"], train, s.out_dir / WORD_VECTORS_FILE, seed))
            static = dict(
                train=train, num_shards=section["num_shards"], config=augment_config(section, seed), vectors=vectors,
                vectors_limit=section["word_vectors_limit"], masked_lm=section["masked_lm"],
            )
            shards = augment_shard_task.map(
                shard_index=range(section["num_shards"]), **{k: unmapped(v) for k, v in static.items()}
            )
            augmented = concatenate_shards([shard.result() for shard in shards])
        save_augmented(augmented, s.out_dir / "train")
        log_dataset(augmented, "augmented-train", s.final_dir / "train", context="task_distillation")
        mlflow.log_metrics({"rows_in": len(train), "rows_out": len(augmented), "expansion": len(augmented) / len(train)})
        logger.info("augmented %d examples into %d rows", len(train), len(augmented))
    return str(s.final_dir)


def run(params_file: str | None = None, overrides: dict[str, Any] | None = None, task: str | None = None) -> str:
    """Run the flow with the task runner params.yaml asks for (threads, Dask or Ray)."""
    runner = task_runner(load_params(params_file, overrides)["augment"]["task_runner"])
    return augment.with_options(task_runner=runner)(params_file, overrides, task)


if __name__ == "__main__":
    stage_main("augment", run)
