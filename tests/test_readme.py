"""README is the single source of truth for set-up: CI must run exactly its test command."""

import re

from tests.conftest import REPO_ROOT


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
