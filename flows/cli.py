"""The command line: `tinybert stage <name>`, `tinybert pipeline`, and `python -m flows.<stage>`.

    tinybert --help
    tinybert stage task_distill --set task_distill.stage2.learning_rate=1e-4
    tinybert pipeline --set task=sst2 --set data.glue_dir=../shared/data/glue --force
    python -m flows.prepare_task --help          # every stage module takes the same options

A stage's `--set` overrides apply to that run only: params.yaml stays as it is. `tinybert pipeline` hands them
to the pipeline flow's `overrides`. A stage run from here runs outside DVC (dvc.lock is not updated):
`dvc repro` and `dvc exp run -S` record runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

import yaml

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


def _add_stage_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", metavar="FILE", help="params file to read instead of the project's params.yaml")
    parser.add_argument("--set", dest="overrides", action="append", metavar="KEY=VALUE", help=SET_HELP)


def stage_main(name: str, stage_flow: StageFlow, argv: Sequence[str] | None = None) -> str:
    """What `python -m flows.<name>` runs: parse the options (`--help` exits here), then run the stage."""
    parser = argparse.ArgumentParser(
        prog=f"python -m flows.{name}",
        description=f"Run the {name} stage of the TinyBERT pipeline (what `dvc repro` runs for it); "
        "its output folder is replaced.",
    )
    _add_stage_options(parser)
    args = parser.parse_args(argv)
    return stage_flow(params_file=args.params, overrides=parse_overrides(args.overrides, parser))


def build_parser(stage_names: Sequence[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tinybert", description="TinyBERT distillation as a Prefect + DVC + MLflow pipeline.",
        epilog="`dvc repro` runs what changed and records it in dvc.lock; these commands run without DVC's record.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    stage = commands.add_parser(
        "stage", help="run one stage", description="Run one stage; its output folder is replaced."
    )
    stage.add_argument("name", choices=stage_names, help="the stage, as named in dvc.yaml")
    _add_stage_options(stage)
    pipeline = commands.add_parser(
        "pipeline", help="run every stale stage (DVC decides) as one Prefect flow",
        description="Run the stages DVC finds stale, in order, as one Prefect flow with one MLflow parent run.",
    )
    pipeline.add_argument("--set", dest="overrides", action="append", metavar="KEY=VALUE", help=SET_HELP)
    pipeline.add_argument("--force", action="store_true", help="rerun every stage even if DVC finds it up to date")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The `tinybert` console script."""
    from tasks.params import STAGE_OUTPUTS  # the stage names; no stage module is imported before parsing

    parser = build_parser(list(STAGE_OUTPUTS))
    args = parser.parse_args(argv)
    overrides = parse_overrides(args.overrides, parser)
    from flows.tinybert_pipeline import STAGES, tinybert_pipeline

    if args.command == "pipeline":
        print(json.dumps(tinybert_pipeline(overrides=overrides, force=args.force), indent=2))
    else:
        print(dict(STAGES)[args.name](params_file=args.params, overrides=overrides))
    return 0


if __name__ == "__main__":
    sys.exit(main())
