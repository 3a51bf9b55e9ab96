"""The options every stage takes on the command line: `python -m flows.<stage> [--params FILE] [--set KEY=VALUE]`.

`--help` exits before the stage runs; `--set` overrides apply to that run only (params.yaml stays as it is).
`flows/cli.py` (the `tinybert` console script) shares these options.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from typing import Any

import yaml

from tasks.params import TASK_STAGES

StageFlow = Callable[..., str]

SET_HELP = (
    "override one params.yaml value for this run, e.g. --set task_distill.stage2.learning_rate=1e-4 "
    "(repeatable; values are read as JSON, then YAML, else kept as text; only existing keys can be set)"
)


def parse_value(text: str) -> Any:
    """A --set value: JSON first so 3e-4 is a number (YAML 1.1 reads it as text), then YAML ([a, b], null)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def parse_overrides(pairs: Sequence[str] | None, parser: argparse.ArgumentParser) -> dict[str, Any]:
    """["a.b=1", "task=sst2"] -> {"a.b": 1, "task": "sst2"}; a pair without "=" is a usage error."""
    overrides = {}
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        if not sep or not key:
            parser.error(f"--set {pair!r}: expected KEY=VALUE, e.g. task=sst2")
        overrides[key.strip()] = parse_value(value)
    return overrides


def add_stage_options(parser: argparse.ArgumentParser, per_task: bool = False) -> None:
    """--params FILE and repeatable --set KEY=VALUE (into `overrides`); --task for a stage run once per task."""
    parser.add_argument("--params", metavar="FILE", help="params file to read instead of the project's params.yaml")
    parser.add_argument("--set", dest="overrides", action="append", metavar="KEY=VALUE", help=SET_HELP)
    if per_task:
        parser.add_argument("--task", help="the listed task to run it for (default: the only one listed)")


def stage_main(name: str, stage_flow: StageFlow, argv: Sequence[str] | None = None) -> str:
    """What `python -m flows.<name>` runs: parse the options (`--help` exits here), then run the stage."""
    parser = argparse.ArgumentParser(
        prog=f"python -m flows.{name}",
        description=f"Run the {name} stage of the TinyBERT pipeline (what `dvc repro` runs for it); "
        "its output folder is replaced.",
    )
    add_stage_options(parser, per_task=name in TASK_STAGES)
    args = parser.parse_args(argv)
    overrides = parse_overrides(args.overrides, parser)
    per_task = {"task": args.task} if name in TASK_STAGES else {}
    return run_with_api(lambda: stage_flow(params_file=args.params, overrides=overrides, **per_task), args.params, overrides)


def run_with_api(call: Callable[[], Any], params_file: str | None, overrides: dict[str, Any]) -> Any:
    """Check params first (a bad knob fails in a second, not after a server start-up), then run `call` against a
    Prefect API that waits out a busy machine and ends with this process (`tasks.prefect_api`)."""
    from tasks.params import load_params
    from tasks.prefect_api import prefect_api

    load_params(params_file, overrides)
    with prefect_api():
        return call()
