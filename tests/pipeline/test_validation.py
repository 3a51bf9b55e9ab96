"""params.yaml is checked before any stage works: every problem named by its key, with the params file."""

import shutil

import pytest
import yaml

from tasks.params import PARAMS_FILE, load_params, train_config
from tasks.validation import ParamsError
from tests.conftest import SHARED_DATA


@pytest.fixture
def params_file(tmp_path):
    path = tmp_path / "params.yaml"
    shutil.copy(PARAMS_FILE, path)
    return path


def test_the_projects_own_params_are_valid():
    assert load_params()["tasks"] == ["polarity"]
    assert load_params(task="polarity")["task"] == "polarity"


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
        ({"task_distill.stage1.schedule": "cosine"}, "task_distill.stage1.schedule: must be one of ['linear', 'constant']"),
        ({"task_distill.stage1.dropout": 1.0}, "task_distill.stage1.dropout: must be < 1, got 1.0"),
        ({"general_distill.dropout": "off"}, "general_distill.dropout: must be a number, got 'off'"),
        ({"models.student.init": "pruned"}, "models.student.init: must be one of ['random', 'teacher']"),
        ({"augment.pair_sides": "all"}, "augment.pair_sides: must be one of ['one', 'both']"),
        ({"tasks": ["sst3"]}, "tasks: unknown task 'sst3'"),
        ({"tasks": ["sst2"]}, "data.glue_dir: task 'sst2' needs a classic glue_data folder"),
        ({"tasks": ["polarity", "polarity"]}, "tasks: lists polarity more than once"),
        ({"tasks": []}, "tasks: must be a non-empty list of names"),
        ({"task_settings.sst2.n_aug": -1}, "task_settings.sst2.n_aug: must be >= 0, got -1"),
        ({"task_settings.mrpc.batch_size": "32"}, "task_settings.mrpc.batch_size: must be an integer"),
        ({"task_settings.polarity.max_seq_length": 1024}, "data.max_seq_length: 1024 tokens exceed the teacher's 512"),
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
        "weight_decay, max_grad_norm, save_every, dropout, eval_every)",
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


def test_every_listed_task_needs_a_whole_settings_entry(params_file):
    params = yaml.safe_load(params_file.read_text())
    del params["task_settings"]["polarity"]
    del params["task_settings"]["sst2"]["n_aug"]
    params["task_settings"]["sst2"]["epochs"] = 3
    params_file.write_text(yaml.safe_dump(params))
    with pytest.raises(ParamsError) as error:
        load_params(params_file)
    assert error.value.problems[0].startswith("task_settings.polarity: missing")
    assert "task_settings.sst2.epochs: unknown setting (known: max_train_examples" in error.value.problems[1]
    assert error.value.problems[2] == "task_settings.sst2.n_aug: missing (null: the value of augment.n_aug)"


def test_a_tasks_settings_replace_the_sections_values_for_that_task_only(params_file):
    glue = {"data.glue_dir": str(SHARED_DATA / "glue"), "tasks": ["sst2", "mrpc"], "task_settings.mrpc.max_train_examples": 50}
    sst2, mrpc = (load_params(params_file, glue, task=name) for name in ("sst2", "mrpc"))
    assert (sst2["task"], mrpc["task"]) == ("sst2", "mrpc")
    assert sst2["data"]["max_train_examples"] is None and mrpc["data"]["max_train_examples"] == 50
    assert (sst2["data"]["max_seq_length"], mrpc["data"]["max_seq_length"]) == (64, 128)
    assert sst2["task_distill"]["stage1"]["batch_size"] == sst2["task_distill"]["stage2"]["batch_size"] == 32
    with pytest.raises(ParamsError, match="tasks: 'cola' is not listed"):
        load_params(params_file, glue, task="cola")


def test_a_task_without_data_stops_the_run_unless_asked_to_skip_it(params_file, tmp_path):
    glue = tmp_path / "glue"
    (glue / "SST-2").mkdir(parents=True)
    for split in ("train", "dev"):
        (glue / "SST-2" / f"{split}.tsv").write_text("sentence\tlabel\nfine\t1\n")
    listed = {"data.glue_dir": str(glue), "tasks": ["sst2", "mrpc"]}
    with pytest.raises(ParamsError, match="MRPC/train.tsv not found \\(task mrpc\\)"):
        load_params(params_file, listed)
    from tasks.validation import present_tasks

    params = load_params(params_file, {**listed, "data.missing_tasks": "skip"})
    present, missing = present_tasks(params, tmp_path)
    assert present == ["sst2"] and "MRPC/train.tsv not found" in missing["mrpc"][0]
    with pytest.raises(ParamsError, match="CoLA/train.tsv not found"):  # skipping every task leaves nothing to run
        load_params(params_file, {**listed, "tasks": ["cola"], "data.missing_tasks": "skip"})


def test_train_config_refuses_keys_it_does_not_know():
    assert train_config({"epochs": 2.0, "enabled": True}, seed=1).num_epochs == 2.0
    with pytest.raises(KeyError, match="unknown keys \\['lr'\\]"):
        train_config({"epochs": 2.0, "lr": 1e-3}, seed=1)
