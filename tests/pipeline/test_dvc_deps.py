"""dvc.yaml lists, for each stage, exactly the project modules its command imports: a change to any module a
stage runs reruns it, and a change to one it does not run (plots.py for training) reruns nothing.

The imports are read from the source (an AST walk, nothing is executed), transitively, including imports
inside functions and `if __name__ == "__main__":` blocks, and each package's __init__.py that Python runs.
"""

import ast
import re
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO_ROOT

PACKAGES = ("flows", "tasks", "tinybert_core")


def module_file(module: str) -> Path | None:
    """The project file of a dotted module name, or None when it is not one of the project's packages."""
    if module.split(".")[0] not in PACKAGES:
        return None
    path = REPO_ROOT.joinpath(*module.split("."))
    if path.with_suffix(".py").is_file():
        return path.with_suffix(".py")
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    raise AssertionError(f"{module} is imported but no file {path}.py or {path}/__init__.py exists")


def imported_modules(path: Path) -> set[str]:
    """Dotted names of every module `path` imports: `from a.b import c` imports a, a.b and, if it is one, a.b.c."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}:{node.lineno}: relative import; the project imports absolutely"
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        else:
            continue
        for name in names:
            parts = name.split(".")
            found.update(".".join(parts[: i + 1]) for i in range(len(parts)))
    return found


def project_imports(module: str) -> set[str]:
    """Repository-relative paths of the project files running `python -m <module>` executes."""
    seen: set[Path] = set()
    todo = [module_file(m) for m in (*(".".join(module.split(".")[: i + 1]) for i in range(module.count("."))), module)]
    while todo:
        path = todo.pop()
        if path is None or path in seen:
            continue
        seen.add(path)
        for name in imported_modules(path):
            try:
                todo.append(module_file(name))
            except AssertionError:
                if "." not in name or module_file(name.rsplit(".", 1)[0]) is None:
                    raise  # `from pkg import name` where name is not a submodule is fine; anything else is not
    return {p.relative_to(REPO_ROOT).as_posix() for p in seen}


def dvc_stages() -> dict[str, dict]:
    """Each stage's entry; for a per-task stage its `foreach` template (`do`)."""
    stages = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]
    return {name: entry.get("do", entry) for name, entry in stages.items()}


@pytest.mark.parametrize("name", list(dvc_stages()))
def test_each_stage_depends_on_exactly_the_modules_its_command_runs(name):
    stage = dvc_stages()[name]
    module = re.fullmatch(r"python -m ([\w.]+)(?: .*)?", stage["cmd"]).group(1)
    code_deps = {dep for dep in stage["deps"] if dep.split("/")[0] in PACKAGES}
    expected = project_imports(module)
    assert code_deps == expected, f"{name}: add {sorted(expected - code_deps)}, remove {sorted(code_deps - expected)}"


def test_a_plotting_change_reruns_no_training_stage():
    for name in ("general_distill", "finetune_teacher", "task_intermediate", "task_prediction"):
        assert "tinybert_core/plots.py" not in dvc_stages()[name]["deps"], name


def test_the_walk_follows_imports_inside_functions_and_submodules_named_in_from_imports():
    # flows/cli.py imports the pipeline (and so every stage) inside main(); `from tinybert_core import recipe`
    # names a submodule; tasks/export.py imports tasks/serving.py, the code MLflow logs as the model.
    assert {"flows/tinybert_pipeline.py", "flows/export.py", "tasks/params.py"} <= project_imports("flows.cli")
    assert {"tinybert_core/recipe.py", "tinybert_core/__init__.py", "tasks/serving.py"} <= project_imports("flows.export")
