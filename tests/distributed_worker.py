"""Run by test_distributed.py, alone or under torchrun: stage-1 distillation of a tiny student.

    python -m tests.distributed_worker OUT_DIR RUN_DIR SCENARIO [KILL_AT_STEP]

Scenarios: "tail": 37 rows of unequal lengths, global batch 32 (a last batch of 5 rows), no dropout;
"resume": 24 rows, batch 4, dropout 0.1, checkpoints every 2 steps; with KILL_AT_STEP the main process
SIGKILLs itself when it logs that step. Each process writes to OUT_DIR the sizes of the micro-batches it
trained on and its final torch RNG state; the main process also writes the trained weights.
"""

import json
import os
import signal
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from tests.test_distiller import make_dataset, make_student, make_teacher, objective_for
from tinybert_core.distiller import TrainConfig, train
from tinybert_core.distributed import init_topology

SCENARIOS = {
    "tail": dict(rows=37, dropout=0.0, config=TrainConfig(num_epochs=3, batch_size=32, learning_rate=1e-3, save_every=0)),
    "resume": dict(
        rows=24, dropout=0.1,
        config=TrainConfig(num_epochs=2, batch_size=4, learning_rate=1e-3, save_every=2, log_every=1),
    ),
}


def main(out_dir: str, run_dir: str, scenario: str, kill_at: int | None = None) -> None:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    setting = SCENARIOS[scenario]
    topology = init_topology(device="cpu")
    teacher, student = make_teacher().eval(), make_student(dropout=setting["dropout"])
    objective = objective_for("task_intermediate", student, teacher)
    sizes: list[int] = []
    forward = objective.forward
    objective.forward = lambda batch, *rest: (sizes.append(batch["input_ids"].size(0)), forward(batch, *rest))[1]

    def on_log(metrics, step):
        if step == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    train(objective, make_dataset(n=setting["rows"]), setting["config"], run_dir, teacher=teacher, topology=topology, on_log=on_log)
    (out / f"sizes-{topology.rank}.json").write_text(json.dumps(sizes))
    save_file({"cpu": torch.get_rng_state()}, str(out / f"rng-{topology.rank}.safetensors"))
    if topology.is_main:
        save_file({k: v.contiguous() for k, v in objective.state_dict().items()}, str(out / "weights.safetensors"))
    if topology.distributed:
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]) if len(sys.argv) > 4 else None)
