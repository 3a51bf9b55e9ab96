"""params.yaml overrides and the teacher pointer, without running any stage."""

import json

import pytest
import yaml

from tasks import models as stage_models
from tasks.params import PROJECT_ROOT, load_params, set_dotted


@pytest.fixture
def params_file(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"tasks": ["polarity"], "task_distill": {"stage1": {"epochs": 4}}}))
    return path


def test_dotted_overrides_set_existing_parameters(params_file):
    params = load_params(params_file, {"tasks": ["sst2"], "task_distill.stage1.epochs": 1}, validate=False)
    assert params == {"tasks": ["sst2"], "task_distill": {"stage1": {"epochs": 1}}}


@pytest.mark.parametrize(
    ("dotted", "message"),
    [("task_distill.stage1.epochz", "no parameter 'epochz'"), ("tasks.stage1.epochs", "'tasks' is not a section")],
)
def test_a_mistyped_override_names_the_key_and_the_file(params_file, dotted, message):
    with pytest.raises(KeyError, match=message) as error:
        load_params(params_file, {dotted: 1}, validate=False)
    assert str(params_file) in str(error.value)


def test_set_dotted_changes_only_the_named_leaf():
    params = {"a": {"b": 1, "c": 2}}
    set_dotted(params, "a.b", 3)
    assert params == {"a": {"b": 3, "c": 2}}


@pytest.mark.parametrize("inside", [True, False])
def test_the_teacher_pointer_keeps_paths_inside_the_project_relative(tmp_path, inside):
    source = PROJECT_ROOT / "outputs" / "teacher" / "model" if inside else tmp_path / "teacher"
    stage_models.write_teacher_pointer(tmp_path, source, fine_tuned_here=inside)
    pointer = json.loads((tmp_path / stage_models.TEACHER_POINTER).read_text())
    assert pointer == {"source": "outputs/teacher/model" if inside else str(source), "fine_tuned_here": inside}
