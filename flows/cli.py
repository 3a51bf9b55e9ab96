"""The command line: `tinybert stage <name>`, `tinybert pipeline`, and `python -m flows.<stage>`.

    tinybert --help
    tinybert stage task_prediction --set task_distill.stage2.learning_rate=1e-4
    tinybert pipeline --set 'tasks=[sst2, mrpc]' --set data.glue_dir=../shared/data/glue --force
    tinybert stage evaluate --task sst2
    python -m flows.prepare_task --help          # every stage module takes the same options

A stage's `--set` overrides apply to that run only: params.yaml stays as it is. `tinybert pipeline` hands them
to the pipeline flow's `overrides`. A stage run from here runs outside DVC (dvc.lock is not updated):
`dvc repro` and `dvc exp run -S` record runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from flows.arguments import SET_HELP, add_stage_options, parse_overrides


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
    add_stage_options(stage, per_task=True)
    pipeline = commands.add_parser(
        "pipeline", help="run every stale stage (DVC decides) as one Prefect flow",
        description="Run the stages DVC finds stale, in order, as one Prefect flow with one MLflow parent run.",
    )
    pipeline.add_argument("--set", dest="overrides", action="append", metavar="KEY=VALUE", help=SET_HELP)
    pipeline.add_argument("--force", action="store_true", help="rerun every stage even if DVC finds it up to date")
    pipeline.add_argument(
        "--task-deployment", metavar="FLOW/DEPLOYMENT",
        help="run each task's chain as a flow run of this deployment (e.g. tinybert_task/tinybert-task) on its work pool",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The `tinybert` console script."""
    from tasks.params import STAGE_FOLDERS, TASK_STAGES  # the stage names; no stage module is imported before parsing

    parser = build_parser(list(STAGE_FOLDERS))
    args = parser.parse_args(argv)
    overrides = parse_overrides(args.overrides, parser)
    from flows.arguments import run_with_api
    from flows.tinybert_pipeline import STAGES, evaluation_warnings, tinybert_pipeline

    if args.command == "pipeline":
        outcome = run_with_api(
            lambda: tinybert_pipeline(overrides=overrides, force=args.force, task_deployment=args.task_deployment), None, overrides
        )
        print(json.dumps(outcome, indent=2))
        for warning in evaluation_warnings():  # said last, where a user looks when the run ends
            print(f"WARNING: {warning}", file=sys.stderr)
    else:
        stage_flow = dict(STAGES)[args.name]
        if args.task and args.name not in TASK_STAGES:
            parser.error(f"--task: {args.name} is shared by every task")
        per_task = {"task": args.task} if args.name in TASK_STAGES else {}
        print(run_with_api(lambda: stage_flow(params_file=args.params, overrides=overrides, **per_task), args.params, overrides))
    return 0


if __name__ == "__main__":
    sys.exit(main())
