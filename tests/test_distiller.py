"""The training loop in all four modes, exact resume, gradient accumulation and checkpoint errors."""

import json

import pytest
import torch
from datasets import Dataset
from transformers import BertConfig

from tinybert_core.checkpoint import CheckpointError, latest_checkpoint, load_checkpoint
from tinybert_core.distiller import TrainConfig, linear_schedule, train
from tinybert_core.layer_map import build_layer_map
from tinybert_core.losses import Projections
from tinybert_core.models import StudentShape, build_student
from tinybert_core.objectives import DistillationObjective, teacher_intermediates

VOCAB = 100
TEACHER_CONFIG = BertConfig(vocab_size=VOCAB, hidden_size=48, num_hidden_layers=4, num_attention_heads=4, intermediate_size=96)
LABELS = ["a", "b"]


def make_teacher(head="classification"):
    return build_student(StudentShape(4, 48, 96, 4), TEACHER_CONFIG, head=head, labels=LABELS, seed=0)


def make_student(head="classification", dropout=0.1, seed=1):
    return build_student(StudentShape(2, 32, 64, 4, dropout=dropout), TEACHER_CONFIG, head=head, labels=LABELS, seed=seed)


def make_dataset(n=48, seed=0, max_len=16):
    """Random token sequences of varied length; label = whether token 7 occurs (learnable)."""
    g = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(n):
        length = int(torch.randint(4, max_len, (1,), generator=g))
        ids = torch.randint(5, VOCAB, (length,), generator=g).tolist()
        rows.append({"input_ids": ids, "labels": int(7 in ids)})
    return Dataset.from_list(rows)


def objective_for(mode, student, teacher):
    if mode in ("general", "task_intermediate"):
        layer_map = build_layer_map(student.config, teacher.config)
        return DistillationObjective(student, mode, layer_map, Projections(32, 48))
    return DistillationObjective(student, mode, temperature=2.0)


def mean_loss(objective, teacher, dataset):
    from tinybert_core.batching import pad_batch

    objective.eval()
    with torch.no_grad():
        batch = pad_batch([dataset[i] for i in range(len(dataset))])
        return objective(batch, teacher_intermediates(teacher, objective, batch))["loss"].item()


@pytest.mark.parametrize("mode", ["general", "finetune", "task_intermediate", "task_prediction"])
def test_each_mode_lowers_its_loss(mode, tmp_path):
    head = "none" if mode == "general" else "classification"
    teacher = make_teacher(head).eval() if mode != "finetune" else None
    if mode == "task_prediction":
        with torch.no_grad():  # a confident teacher, so soft cross-entropy has room to fall
            teacher.classifier.weight.mul_(200.0)
    student = make_teacher(head) if mode == "finetune" else make_student(head)
    objective = objective_for(mode, student, teacher)
    data = make_dataset()
    before = mean_loss(objective, teacher, data)
    config = TrainConfig(num_epochs=8, batch_size=8, learning_rate=2e-3, warmup_proportion=0.1, save_every=0)
    result = train(objective, data, config, tmp_path, teacher=teacher)
    after = mean_loss(objective, teacher, data)
    assert after < 0.8 * before, (before, after)
    assert result.state.step == 8 * 6
    records = [json.loads(line) for line in result.log_path.read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(1, 49))  # one record per optimizer step
    if teacher is not None:
        assert not teacher.training and all(p.grad is None for p in teacher.parameters())


def test_linear_schedule_warms_up_then_decays_to_zero():
    lrs = [linear_schedule(s, warmup_steps=4, total_steps=12) for s in range(12)]
    assert lrs[:5] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    assert lrs[4:] == sorted(lrs[4:], reverse=True) and lrs[-1] == pytest.approx(1 / 8)


def test_constant_schedule_keeps_the_rate_from_first_step_to_last(tmp_path):
    objective = objective_for("task_intermediate", make_student(), make_teacher().eval())
    config = TrainConfig(num_epochs=2, batch_size=8, learning_rate=1e-3, warmup_proportion=0.5, schedule="constant", save_every=0)
    result = train(objective, make_dataset(), config, tmp_path, teacher=make_teacher().eval())
    lrs = [json.loads(line)["lr"] for line in result.log_path.read_text().splitlines()]
    assert lrs == [1e-3] * 12 and result.state.schedule["kind"] == "constant"
    with pytest.raises(ValueError, match="schedule must be one of"):
        TrainConfig(schedule="cosine")


class Interrupt(Exception):
    pass


def run_stage1(run_dir, stop_at=None, resume=True):
    torch.manual_seed(123)
    teacher, student = make_teacher().eval(), make_student(dropout=0.1)
    objective = objective_for("task_intermediate", student, teacher)
    config = TrainConfig(num_epochs=3, batch_size=8, gradient_accumulation_steps=2, learning_rate=1e-3, save_every=4, log_every=1)

    def on_log(metrics, step):
        if step == stop_at:
            raise Interrupt

    result = train(objective, make_dataset(), config, run_dir, teacher=teacher, on_log=on_log, resume=resume)
    return objective, result


def test_interrupted_run_resumes_to_identical_weights(tmp_path):
    uninterrupted, _ = run_stage1(tmp_path / "straight")
    with pytest.raises(Interrupt):
        run_stage1(tmp_path / "killed", stop_at=10)  # last checkpoint at step 8, mid-epoch 2
    assert latest_checkpoint(tmp_path / "killed").name == "step-00000008"
    resumed, result = run_stage1(tmp_path / "killed")
    assert result.state.step == 18
    for (name, a), (_, b) in zip(uninterrupted.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), name
    steps = [json.loads(line)["step"] for line in result.log_path.read_text().splitlines()]
    assert steps == list(range(1, 19))  # records past the checkpoint were rewritten, not duplicated


@pytest.mark.parametrize("mode", ["finetune", "task_intermediate", "task_prediction"])
def test_gradient_accumulation_matches_the_full_batch(mode, tmp_path):
    """Micro-batches of unequal lengths: losses divided by the step's counts give the full batch's gradients."""
    results = []
    for accumulation in (1, 4):
        torch.manual_seed(0)
        teacher = make_teacher().eval() if mode != "finetune" else None
        model = make_teacher() if mode == "finetune" else make_student(dropout=0.0)
        for module in model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
        objective = objective_for(mode, model, teacher)
        config = TrainConfig(num_epochs=2, batch_size=8, gradient_accumulation_steps=accumulation, bucket_by_length=False, save_every=0)
        train(objective, make_dataset(n=36), config, tmp_path / str(accumulation), teacher=teacher)  # a tail of 4 rows
        results.append(objective.state_dict())
    for name in results[0]:
        torch.testing.assert_close(results[0][name], results[1][name], atol=2e-5, rtol=1e-4, msg=name)


def test_corrupted_and_incompatible_checkpoints_give_clear_errors(tmp_path):
    run_stage1(tmp_path / "run")
    checkpoint = latest_checkpoint(tmp_path / "run")
    other_shape = DistillationObjective(build_student(StudentShape(3, 32, 64, 4), TEACHER_CONFIG, head="classification", labels=LABELS), "task_prediction")
    with pytest.raises(CheckpointError, match="does not fit this model"):
        load_checkpoint(checkpoint, other_shape, None)

    weights = checkpoint / "trainable.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    teacher, student = make_teacher(), make_student()
    with pytest.raises(CheckpointError, match=r"step-00000018.*corrupted"):
        load_checkpoint(checkpoint, objective_for("task_intermediate", student, teacher), None)


def test_a_half_written_checkpoint_is_ignored(tmp_path):
    run_stage1(tmp_path / "run")
    checkpoints = tmp_path / "run" / "checkpoints"
    (checkpoints / ".step-00000020.tmp-1").mkdir()
    (checkpoints / "latest").unlink()
    assert latest_checkpoint(tmp_path / "run").name == "step-00000018"


def test_modes_refuse_missing_pieces(tmp_path):
    with pytest.raises(ValueError, match="needs a layer map"):
        DistillationObjective(make_student(), "task_intermediate")
    with pytest.raises(ValueError, match="needs a teacher"):
        train(DistillationObjective(make_student(), "task_prediction"), make_dataset(), TrainConfig(), tmp_path)
    with pytest.raises(ValueError, match="unknown training mode"):
        DistillationObjective(make_student(), "distill")


@pytest.mark.parametrize("mode", ["finetune", "task_prediction"])
def test_regression_heads_train_on_mse(mode, tmp_path):
    """STS-B-style scores: labels are floats, the head has one output, the losses are MSE."""
    g = torch.Generator().manual_seed(0)
    rows = []
    for _ in range(48):
        ids = torch.randint(5, VOCAB, (int(torch.randint(4, 16, (1,), generator=g)),), generator=g).tolist()
        rows.append({"input_ids": ids, "labels": float(sum(i < 30 for i in ids)) / 4})  # a learnable score
    data = Dataset.from_list(rows)
    teacher = make_teacher("regression").eval()
    model = make_teacher("regression") if mode == "finetune" else make_student("regression")
    objective = DistillationObjective(model, mode, regression=True)
    before = mean_loss(objective, teacher, data)
    train(objective, data, TrainConfig(num_epochs=10, batch_size=8, learning_rate=2e-3, save_every=0), tmp_path, teacher=None if mode == "finetune" else teacher)
    assert mean_loss(objective, teacher, data) < 0.5 * before
    assert model.config.num_labels == 1


def test_every_processs_random_state_is_saved_and_restored(tmp_path):
    """A checkpoint holds one RNG state per process; each process restores its own, on the same process count."""
    from tinybert_core.checkpoint import TrainingState, capture_rng, save_checkpoint

    objective = objective_for("task_prediction", make_student(), None)
    optimizer = torch.optim.AdamW(objective.parameters())
    states = []
    for rank in range(2):
        torch.manual_seed(100 + rank)
        states.append(capture_rng())
    path = save_checkpoint(tmp_path, objective, optimizer, TrainingState(step=3), rng_states=states)
    for rank in (1, 0):
        torch.manual_seed(0)
        load_checkpoint(path, objective, optimizer, rank=rank, world_size=2)
        assert torch.equal(torch.get_rng_state(), states[rank]["torch"]["cpu"])
    with pytest.raises(CheckpointError, match="written by 2 process.*this run has 1"):
        load_checkpoint(path, objective, optimizer)


def test_a_checkpoint_of_another_configuration_is_not_resumed(tmp_path):
    """A run folder reused with other settings (here: more data, another rate) must not continue the old run."""
    from tinybert_core.checkpoint import CheckpointError

    def run(data, learning_rate=2e-3):
        objective = objective_for("finetune", make_teacher(), None)
        config = TrainConfig(num_epochs=1, batch_size=8, learning_rate=learning_rate, save_every=1)
        return train(objective, data, config, tmp_path)

    run(make_dataset(24))
    with pytest.raises(CheckpointError, match="another training configuration.*another data size"):
        run(make_dataset(48))
    with pytest.raises(CheckpointError, match="learning_rate"):
        run(make_dataset(24), learning_rate=1e-3)
    assert run(make_dataset(24)).state.step == 3  # the same run resumes (here: already finished)


def test_trainings_in_threads_give_the_weights_each_gives_alone(tmp_path):
    """The pipeline trains several tasks in threads of one process; dropout draws from torch's one global
    generator, so without taking turns the threads would interleave their draws and neither run would be exact."""
    from concurrent.futures import ThreadPoolExecutor

    config = TrainConfig(num_epochs=2, batch_size=8, learning_rate=2e-3, save_every=0)

    def finetune(name: str, seed: int) -> dict[str, torch.Tensor]:
        student = make_student(seed=seed)  # dropout 0.1: every step draws random numbers
        train(DistillationObjective(student, "finetune"), make_dataset(seed=seed), config, tmp_path / name)
        return student.state_dict()

    alone = [finetune(f"alone-{seed}", seed) for seed in (1, 2)]
    with ThreadPoolExecutor(max_workers=2) as pool:
        together = list(pool.map(finetune, ["thread-1", "thread-2"], [1, 2]))
    for one, other in zip(alone, together):
        assert all(torch.equal(one[key], other[key]) for key in one)


def test_a_runs_dropout_setting_trains_as_a_student_of_that_dropout_and_is_restored_after(tmp_path):
    """TrainConfig.dropout=0 on a student whose config says 0.1 trains exactly as a student built with 0; the
    config's rate is back afterwards, and without the setting the same student trains differently."""
    teacher = make_teacher().eval()
    data = make_dataset()

    def trained(student, dropout, folder):
        config = TrainConfig(num_epochs=2, batch_size=8, learning_rate=2e-3, save_every=0, dropout=dropout)
        train(objective_for("task_intermediate", student, teacher), data, config, tmp_path / folder, teacher=teacher)
        return student.state_dict()

    without = trained(make_student(dropout=0.0), None, "built_without")
    switched_off = make_student(dropout=0.1)
    off = trained(switched_off, 0.0, "switched_off")
    kept = trained(make_student(dropout=0.1), None, "kept")
    for name, value in without.items():
        torch.testing.assert_close(off[name], value, rtol=0, atol=0)
    assert any(not torch.equal(kept[name], value) for name, value in without.items())
    rates = {m.p for m in switched_off.modules() if isinstance(m, torch.nn.Dropout)}
    assert rates == {0.1}


def test_a_dropout_outside_0_to_1_is_refused_when_the_config_is_made():
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\)"):
        TrainConfig(dropout=1.0)
