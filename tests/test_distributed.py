"""Two gloo processes under torchrun give the same weights as one process with the same global batch."""

import os
import subprocess
import sys

import torch
from safetensors.torch import load_file

from tests.conftest import REPO_ROOT
from tests.test_distiller import make_student, make_teacher, objective_for


def run(tmp_path, processes: int) -> dict[str, torch.Tensor]:
    out = tmp_path / f"weights-{processes}.safetensors"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
    command = [sys.executable, "-m", "tests.distributed_worker", str(out), str(tmp_path / f"run-{processes}")]
    if processes > 1:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
                   "-m", "tests.distributed_worker", str(out), str(tmp_path / f"run-{processes}")]
    subprocess.run(command, check=True, cwd=REPO_ROOT, env=env, timeout=300)
    return load_file(out)


def test_two_processes_match_one(tmp_path):
    single, double = run(tmp_path, 1), run(tmp_path, 2)
    assert single.keys() == double.keys()
    for name in single:
        torch.testing.assert_close(double[name], single[name], atol=1e-5, rtol=1e-4, msg=name)
    initial = objective_for("task_intermediate", make_student(dropout=0.0), make_teacher()).state_dict()
    trained = [name for name in single if "encoder" in name and not torch.allclose(single[name], initial[name])]
    assert len(trained) > 10  # training really moved the encoder, so the comparison means something
