"""Multi-process training on CPU (gloo, torchrun): W processes give one process's weights for any lengths and
tail, no process ever gets an empty micro-batch, and a killed multi-process run resumes exactly."""

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from tests import distributed_worker
from tests.conftest import REPO_ROOT
from tests.test_distiller import make_student, make_teacher, objective_for
from tinybert_core.batching import BucketedBatchSampler


def run(out, run_dir, processes: int, scenario: str, kill_at: int | None = None, check: bool = True) -> int:
    """Run the worker in `processes` processes (torchrun for more than one); returns the exit status."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
    worker = ["-m", "tests.distributed_worker", str(out), str(run_dir), scenario, *([str(kill_at)] if kill_at else [])]
    command = [sys.executable, *worker]
    if processes > 1:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}", *worker]
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, timeout=300, capture_output=True, text=True)
    if check and result.returncode:
        raise AssertionError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return result.returncode


def test_four_processes_with_unequal_lengths_and_a_tail_match_one(tmp_path):
    distributed_worker.main(str(tmp_path / "one"), str(tmp_path / "run-1"), "tail")  # one process: this one
    run(tmp_path / "four", tmp_path / "run-4", 4, "tail")
    single, multi = load_file(tmp_path / "one" / "weights.safetensors"), load_file(tmp_path / "four" / "weights.safetensors")
    for name in single:
        torch.testing.assert_close(multi[name], single[name], atol=1e-5, rtol=1e-4, msg=name)
    initial = objective_for("task_intermediate", make_student(dropout=0.0), make_teacher()).state_dict()
    trained = [name for name in single if "encoder" in name and not torch.allclose(single[name], initial[name])]
    assert len(trained) > 10  # training really moved the encoder, so the comparison means something

    # 37 rows, global batch 32: per epoch a batch of 32 (8 rows per process) and a tail of 5 (2, 1, 1, 1).
    sizes = [json.loads((tmp_path / "four" / f"sizes-{rank}.json").read_text()) for rank in range(4)]
    assert [sorted(set(s)) for s in sizes] == [[2, 8], [1, 8], [1, 8], [1, 8]]
    assert [len(s) for s in sizes] == [6, 6, 6, 6]


def test_a_killed_two_process_run_resumes_to_the_uninterrupted_run(tmp_path):
    run(tmp_path / "straight", tmp_path / "run-straight", 2, "resume")
    assert run(tmp_path / "killed", tmp_path / "run-killed", 2, "resume", kill_at=5, check=False) != 0
    assert not (tmp_path / "killed" / "weights.safetensors").exists()
    assert sorted(p.name for p in (tmp_path / "run-killed" / "checkpoints").glob("step-*")) == ["step-00000002", "step-00000004"]
    run(tmp_path / "resumed", tmp_path / "run-killed", 2, "resume")

    straight, resumed = load_file(tmp_path / "straight" / "weights.safetensors"), load_file(tmp_path / "resumed" / "weights.safetensors")
    for name in straight:
        assert torch.equal(straight[name], resumed[name]), name
    rng = {(kind, rank): load_file(tmp_path / kind / f"rng-{rank}.safetensors")["cpu"] for kind in ("straight", "resumed") for rank in (0, 1)}
    assert torch.equal(rng["straight", 0], rng["resumed", 0]) and torch.equal(rng["straight", 1], rng["resumed", 1])
    assert not torch.equal(rng["straight", 0], rng["straight", 1])  # each process draws its own dropout


@pytest.mark.parametrize("world_size", [1, 2, 3, 4, 5, 8])
@pytest.mark.parametrize("rows", [1, 3, 37, 64, 101])
def test_shares_of_every_global_batch_are_balanced_and_cover_it(world_size, rows):
    lengths = [(7 * i) % 13 + 2 for i in range(rows)]
    samplers = [BucketedBatchSampler(lengths, 32, seed=0, rank=r, world_size=world_size) for r in range(world_size)]
    batches = samplers[0].global_batches()
    assert sorted(i for batch in batches for i in batch) == list(range(rows))  # no row dropped at any count
    for batch in batches:
        shares = [sampler.share(batch) for sampler in samplers]
        assert sorted(i for share in shares for i in share) == sorted(batch)
        sizes = [len(share) for share in shares]
        assert max(sizes) - min(sizes) <= 1
        assert [sampler.is_placeholder(batch) for sampler in samplers] == [size == 0 for size in sizes]
        if len(batch) >= world_size:
            assert min(sizes) >= 1
    for sampler in samplers:  # what the loader gets: never an empty list
        assert all(len(indices) >= 1 for indices in sampler)
