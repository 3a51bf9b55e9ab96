"""README is the single source of truth for set-up: CI must run exactly its test command."""

import re

from tests.conftest import REPO_ROOT, SHARED_DATA


def readme_commands() -> list[str]:
    """The bash blocks of README's "Set up and run" section, in order."""
    text = (REPO_ROOT / "README.md").read_text()
    section = text.split("## Set up and run", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", section, re.S)]


def test_readme_has_exactly_a_setup_command_and_a_test_command():
    setup, tests = readme_commands()
    assert setup.startswith("python3 -m venv .venv") and 'pip install -e ".[dev]"' in setup and setup.endswith("dvc repro")
    assert "pytest" in tests


def test_ci_installs_as_readme_says_and_runs_its_exact_test_command():
    _, test_command = readme_commands()
    ci = [line.strip() for line in (REPO_ROOT / ".ci" / "run").read_text().splitlines() if line.strip() and not line.startswith("#")]
    assert ci[-1] == test_command
    assert any('pip install' in line and '-e ".[dev]"' in line for line in ci)


def section_commands(title: str) -> list[str]:
    """The lines of the bash blocks under a README heading (any level), comments stripped."""
    text = (REPO_ROOT / "README.md").read_text()
    section = re.split(r"\n#+ ", text.split(f"# {title}\n", 1)[1], maxsplit=1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, re.S)
    return [line.split("  #")[0].strip() for block in blocks for line in block.splitlines() if line.strip()]


def test_the_change_a_parameter_example_changes_a_value_and_dvc_rewrites_only_that_line(tmp_path):
    """`dvc exp run -S` must change something (a default rerun does nothing) and its rewrite of params.yaml,
    done here with DVC's own code, must leave every other line as it was."""
    from dvc.utils.hydra import apply_overrides

    from flows.arguments import parse_value
    from tasks.params import load_params

    (command,) = [c for c in section_commands("Change a parameter, rerun what changed") if c.startswith("dvc exp run")]
    override = re.fullmatch(r"dvc exp run -S (\S+)", command).group(1)
    key, value = override.split("=", 1)
    params_file = tmp_path / "params.yaml"
    params_file.write_text((REPO_ROOT / "params.yaml").read_text())
    default = load_params(params_file)
    apply_overrides(str(params_file), [override])

    changed = load_params(params_file)
    section, default_section = changed, default
    for part in key.split(".")[:-1]:
        section, default_section = section[part], default_section[part]
    leaf = key.split(".")[-1]
    assert section[leaf] == parse_value(value) and section[leaf] != default_section[leaf]
    before, after = (REPO_ROOT / "params.yaml").read_text().splitlines(), params_file.read_text().splitlines()
    assert len(before) == len(after)
    (changed_line,) = [(b, a) for b, a in zip(before, after) if b != a]
    assert all(line.strip().startswith(f"{leaf}: ") for line in changed_line), changed_line


def test_the_prefect_commands_point_at_the_server_before_using_it():
    commands = section_commands("Prefect: deployments on GPU workers")
    api = commands.index("prefect config set PREFECT_API_URL=http://127.0.0.1:4200/api")
    assert commands.index("prefect server start") < api < commands.index("prefect work-pool create gpu --type process")


def test_the_cpu_glue_command_sets_valid_settings_for_every_task(tmp_path):
    """README's one-command GLUE run, checked as params validation sees it (without running it)."""
    import json
    import shlex

    from flows.arguments import parse_value
    from tasks.params import TASK_SETTINGS, load_params

    text = (REPO_ROOT / "README.md").read_text()
    section = text.split("### Real GLUE tasks", 1)[1].split("\n### ", 1)[0]
    block = re.findall(r"```bash\n(.*?)```", section, re.S)[1]
    cap = json.loads(re.search(r"CAP='(\{.*?\})'", block).group(1))
    assert list(cap) == list(TASK_SETTINGS)
    words = shlex.split(block.split("\n", 1)[1].replace("$CAP", json.dumps(cap)).replace("\\\n", " "))
    overrides = dict(words[i + 1].split("=", 1) for i, word in enumerate(words) if word == "--set")
    overrides = {key: parse_value(value) for key, value in overrides.items()}
    assert overrides["data.glue_dir"] == "../shared/data/glue"
    overrides["data.glue_dir"] = str(SHARED_DATA / "glue")  # README's path is relative to the checkout
    params = load_params(REPO_ROOT / "params.yaml", overrides)
    assert params["tasks"] == ["sst2", "mrpc", "cola", "stsb"]
    assert load_params(REPO_ROOT / "params.yaml", overrides, task="mrpc")["data"]["max_train_examples"] == 1000
