"""Teacher caches: stage 2 on cached logits trains exactly as on the live teacher, a stale cache is never reused,
and the stage-1 cache runs the teacher once while training the same student."""

import json
import logging

import pytest
import torch
from datasets import Dataset, load_from_disk

from tinybert_core.batching import BucketedBatchSampler, sequence_lengths
from tinybert_core.distiller import TrainConfig, train
from tinybert_core.teacher_cache import (
    KEY_FILE,
    StaleCacheError,
    build_logit_cache,
    compute_teacher_logits,
    dataset_fingerprint,
    load_logit_cache,
    logit_cache,
    logit_cache_key,
    write_logit_cache,
)
from tests.test_distiller import make_dataset, make_student, make_teacher, objective_for

STAGE2 = dict(batch_size=8, learning_rate=2e-3, save_every=0, teacher_precision="fp32")


def stage2(data, run_dir, epochs, teacher=None, logits=None):
    torch.manual_seed(0)
    objective = objective_for("task_prediction", make_student(dropout=0.1), None)
    train(objective, data, TrainConfig(num_epochs=epochs, **STAGE2), run_dir, teacher=teacher, teacher_logits=logits)
    return objective.state_dict()


def test_cached_logits_give_the_live_teachers_weights_bitwise(tmp_path):
    """Logits computed on the batches training forms, saved and loaded: stage 2 ends on identical weights."""
    teacher, data = make_teacher().eval(), make_dataset()
    epoch0 = BucketedBatchSampler(sequence_lengths(data), global_batch_size=8, seed=42).global_batches()
    logits = compute_teacher_logits(teacher, data, "fp32", batches=epoch0)
    write_logit_cache(tmp_path / "cache", logits, logit_cache_key(teacher, data, "fp32"))

    live = stage2(data, tmp_path / "live", 1, teacher=teacher)
    cached = stage2(data, tmp_path / "cached", 1, logits=load_logit_cache(tmp_path / "cache", teacher, data, "fp32"))
    for name in live:
        assert torch.equal(live[name], cached[name]), name


def test_cached_logits_over_several_epochs_never_run_the_teacher(tmp_path):
    """The default cache (length-sorted batches) serves every epoch; no teacher is even passed to training."""
    teacher, data = make_teacher().eval(), make_dataset()
    logits = build_logit_cache(teacher, data, tmp_path / "cache", "fp32", batch_size=16)
    live = stage2(data, tmp_path / "live", 3, teacher=teacher)
    cached = stage2(data, tmp_path / "cached", 3, logits=logits)
    for name in live:  # float32 products may differ in the last bit between batch compositions
        torch.testing.assert_close(cached[name], live[name], atol=1e-6, rtol=1e-5, msg=name)
    initial = objective_for("task_prediction", make_student(dropout=0.1), None).state_dict()
    assert sum(not torch.equal(initial[name], cached[name]) for name in initial) > 10  # training moved the weights


def test_a_changed_teacher_or_dataset_makes_the_cache_stale(tmp_path, caplog):
    teacher, data = make_teacher().eval(), make_dataset()
    folder = tmp_path / "cache"
    build_logit_cache(teacher, data, folder, "fp32")
    torch.testing.assert_close(load_logit_cache(folder, teacher, data, "fp32"), compute_teacher_logits(teacher, data, "fp32"))

    other_data = Dataset.from_list([{**row, "input_ids": row["input_ids"][:-1]} if i == 5 else row for i, row in enumerate(data)])
    with pytest.raises(StaleCacheError, match="stale: data changed"):
        load_logit_cache(folder, teacher, other_data, "fp32")
    with pytest.raises(StaleCacheError, match="stale: precision changed"):
        load_logit_cache(folder, teacher, data, "bf16")
    with torch.no_grad():
        teacher.classifier.bias[0] += 1e-3
    with pytest.raises(StaleCacheError, match="stale: teacher changed"):
        load_logit_cache(folder, teacher, data, "fp32")

    with caplog.at_level(logging.INFO, logger="tinybert_core.teacher_cache"):
        fresh = logit_cache(folder, teacher, data, "fp32")  # recomputes, says why, and rewrites the key
    assert "stale: teacher changed" in caplog.text
    torch.testing.assert_close(fresh, compute_teacher_logits(teacher, data, "fp32"))
    assert torch.equal(load_logit_cache(folder, teacher, data, "fp32"), fresh)

    (folder / KEY_FILE).unlink()  # as a crash between the two files would leave it
    with pytest.raises(FileNotFoundError, match="no complete teacher-logit cache"):
        load_logit_cache(folder, teacher, data, "fp32")


def test_dataset_fingerprint_is_the_content_not_the_storage(tmp_path):
    data = make_dataset()
    data.save_to_disk(tmp_path / "saved")
    assert dataset_fingerprint(load_from_disk(tmp_path / "saved")) == dataset_fingerprint(data)
    assert dataset_fingerprint(data.select(range(47))) != dataset_fingerprint(data)


def test_cache_key_file_records_what_it_was_built_from(tmp_path):
    teacher, data = make_teacher().eval(), make_dataset()
    build_logit_cache(teacher, data, tmp_path, "fp32")
    saved = json.loads((tmp_path / KEY_FILE).read_text())
    assert saved["rows"] == 48 and saved["classes"] == 2
    assert set(saved["key"]) == {"teacher", "data", "precision", "software"} and saved["key"]["precision"] == "fp32"


# -- stage 1 ----------------------------------------------------------------------------------------------------


def stage1(run_dir, **cache):
    torch.manual_seed(0)
    teacher, student = make_teacher().eval(), make_student(dropout=0.1)
    calls = []
    teacher.register_forward_hook(lambda *_: calls.append(1))
    objective = objective_for("task_intermediate", student, teacher)
    config = TrainConfig(num_epochs=3, batch_size=8, learning_rate=1e-3, save_every=0, teacher_precision="fp32", **cache)
    train(objective, make_dataset(), config, run_dir, teacher=teacher)
    return objective.state_dict(), len(calls)


@pytest.mark.parametrize("where", ["memory", "disk"])
def test_stage1_cache_runs_the_teacher_once_and_trains_the_same_student(tmp_path, where):
    live, live_calls = stage1(tmp_path / "live")
    folder = str(tmp_path / "teacher-cache") if where == "disk" else None
    cached, cached_calls = stage1(tmp_path / "cached", teacher_cache_mb=16, teacher_cache_dir=folder)
    assert (live_calls, cached_calls) == (18, 6)  # 6 batches per epoch; only the first epoch runs the teacher
    for name in live:
        torch.testing.assert_close(cached[name], live[name], atol=1e-6, rtol=1e-5, msg=name)
    if folder is not None:
        assert not any((tmp_path / "teacher-cache").iterdir())  # its files are removed when training ends


def test_stage1_cache_over_budget_recomputes_and_says_so(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="tinybert_core.teacher_targets"):
        _, calls = stage1(tmp_path / "run", teacher_cache_mb=0.01)
    assert calls == 18
    assert "over the budget of 0 MB (teacher_cache_mb)" in caplog.text
