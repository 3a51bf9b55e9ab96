"""Run by test_distributed.py under torchrun: stage-1 distillation of a tiny student, weights to argv[1]."""

import sys

import torch
from safetensors.torch import save_file

from tests.test_distiller import make_dataset, make_student, make_teacher, objective_for
from tinybert_core.distiller import TrainConfig, train
from tinybert_core.distributed import init_topology


def main(out_path: str, run_dir: str) -> None:
    topology = init_topology(device="cpu")
    teacher, student = make_teacher().eval(), make_student(dropout=0.0)
    objective = objective_for("task_intermediate", student, teacher)
    # Equal lengths: every process then averages over the same number of tokens as one process would.
    data = make_dataset(n=32).map(lambda row: {"input_ids": (row["input_ids"] * 4)[:12]})
    config = TrainConfig(num_epochs=2, batch_size=8, learning_rate=1e-3, save_every=0)
    train(objective, data, config, run_dir, teacher=teacher, topology=topology)
    if topology.is_main:
        save_file({k: v.contiguous() for k, v in objective.state_dict().items()}, out_path)
    if topology.distributed:
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
