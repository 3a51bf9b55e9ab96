"""params.yaml is checked before any stage works: every problem named by its key, with the params file."""

import shutil

import pytest
import yaml

from tasks.params import PARAMS_FILE, load_params, train_config
from tasks.validation import ParamsError


@pytest.fixture
def params_file(tmp_path):
    path = tmp_path / "params.yaml"
    shutil.copy(PARAMS_FILE, path)
    return path


def test_the_projects_own_params_are_valid():
    assert load_params()["task"]


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"finetune_teacher.epochs": 0}, "finetune_teacher.epochs: must be > 0, got 0"),
        ({"general_distill.epochs": -1.0}, "general_distill.epochs: must be > 0"),
        ({"task_distill.stage1.batch_size": 0}, "task_distill.stage1.batch_size: must be >= 1, got 0"),
        ({"task_distill.stage2.batch_size": "32"}, "task_distill.stage2.batch_size: must be an integer, got '32'"),
        ({"task_distill.stage2.learning_rate": 0}, "task_distill.stage2.learning_rate: must be > 0, got 0"),
        ({"augment.p_t": 1.5}, "augment.p_t: must be <= 1"),
        ({"augment.task_runner": "celery"}, "augment.task_runner: must be one of"),
        ({"task": "sst3"}, "task: unknown task 'sst3'"),
        ({"task": "sst2"}, "data.glue_dir: task 'sst2' needs a classic glue_data folder"),
        ({"data.max_seq_length": 1024}, "data.max_seq_length: 1024 tokens exceed the teacher's 512 positions"),
        ({"models.student.hidden_size": 100}, "models.student.hidden_size: 100 is not divisible"),
        ({"augment.word_vectors": "no/such/vectors.txt"}, "augment.word_vectors:"),
        ({"prepare_corpus.sources": ["no/such/corpus.txt"]}, "prepare_corpus.sources: corpus source 'no/such/corpus.txt' not found"),
    ],
)
def test_a_bad_knob_fails_up_front_naming_the_key_and_the_file(params_file, overrides, expected):
    with pytest.raises(ParamsError) as error:
        load_params(params_file, overrides)
    assert expected in str(error.value) and str(params_file) in str(error.value)


def test_every_problem_is_listed_at_once_and_unknown_keys_are_rejected(params_file):
    params = yaml.safe_load(params_file.read_text())
    params["finetune_teacher"]["epochs"] = 0
    params["finetune_teacher"]["epochz"] = 3
    params["export"]["alias"] = None
    params_file.write_text(yaml.safe_dump(params))
    with pytest.raises(ParamsError) as error:
        load_params(params_file)
    assert error.value.problems == [
        "finetune_teacher.epochz: unknown parameter (known here: epochs, batch_size, learning_rate, warmup_proportion, "
        "weight_decay, max_grad_norm, save_every, eval_every)",
        "finetune_teacher.epochs: must be > 0, got 0",
        "export.alias: must be set (null is not allowed here)",
    ]


def test_a_missing_section_and_bad_yaml_are_named(params_file):
    params = yaml.safe_load(params_file.read_text())
    del params["evaluate"]
    params_file.write_text(yaml.safe_dump(params))
    with pytest.raises(ParamsError, match="evaluate: missing"):
        load_params(params_file)
    params_file.write_text("task: [unclosed\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(params_file)


def test_train_config_refuses_keys_it_does_not_know():
    assert train_config({"epochs": 2.0, "enabled": True}, seed=1).num_epochs == 2.0
    with pytest.raises(KeyError, match="unknown keys \\['lr'\\]"):
        train_config({"epochs": 2.0, "lr": 1e-3}, seed=1)
