"""Command line of the workbook.

  python -m qnb run [--out DIR] [--jobs N] NOTEBOOK...
                      every notebook, default parameters: N at a time (one per core), then
                      the ones that time things (call qnb.bench) one at a time
  python -m qnb sweep NOTEBOOK -p NAME=V1,V2 ... [--grid FILE.yaml] --out DIR
                      [--jobs N] [--timeout S] [--shard I/N] [--force]
  python -m qnb sweep collect DIR                  merge all runs into DIR/results.csv
  python -m qnb report DIR                         DIR/results.csv and DIR/report.html
  python -m qnb refresh NOTEBOOK...                re-execute committed notebooks in place
  python -m qnb models [--jobs N]                  retrain the shipped weights (data/weights)
  python -m qnb assignments build --out DIR [NOTEBOOK...]
                      an nbgrader course: DIR/source and DIR/release (nbgrader's
                      generate_assignment); grade it with nbgrader (docs/instructors.md)

Exit status: 0 all runs ok, 1 some run failed, 2 bad input (nothing ran).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from qnb import notebook, runner, sweep


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a number of seconds > 0, got {text!r}")
    return value


def _jobs(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}")
    return int(text)


def _add_execution_options(parser: argparse.ArgumentParser, per_core: bool = False) -> None:
    default = "one per core" if per_core else "1"
    parser.add_argument("--jobs", type=_jobs, default=None if per_core else 1,
                        help=f"runs at a time (default: {default})")
    parser.add_argument(
        "--timeout", type=_positive, help="seconds a run may take before it is stopped as failed"
    )
    parser.add_argument("--force", action="store_true", help="re-run finished runs too")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m qnb", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run every notebook with default parameters")
    run.add_argument("notebooks", nargs="+")
    run.add_argument("--out", default="runs/latest", help="run folder (default: runs/latest)")
    _add_execution_options(run, per_core=True)
    sweep_ = commands.add_parser(
        "sweep",
        help="run notebooks over a grid of parameters ('sweep collect DIR' merges results)",
        description="One run per combination of parameter values, each in its own process. "
        "Re-running skips finished runs and retries failed ones. "
        "'python -m qnb sweep collect DIR' merges the runs of all shards into DIR/results.csv.",
    )
    sweep_.add_argument("notebooks", nargs="+", metavar="NOTEBOOK")
    sweep_.add_argument(
        "-p", dest="params", action="append", default=[], metavar="NAME=V1,V2",
        help="a parameter and its values (Python literals, else strings); repeat per parameter",
    )  # fmt: skip
    sweep_.add_argument("--grid", metavar="FILE.yaml", help="YAML mapping names to value lists")
    sweep_.add_argument("--out", required=True, help="run folder")
    sweep_.add_argument("--shard", metavar="I/N", help="run only the I-th of N fixed slices")
    _add_execution_options(sweep_)
    rep = commands.add_parser("report", help="collect DIR and write DIR/report.html")
    rep.add_argument("dir")
    refresh = commands.add_parser("refresh", help="re-execute committed notebooks in place")
    refresh.add_argument("notebooks", nargs="+")
    models = commands.add_parser(
        "models", help="retrain the shipped weights of every model the notebooks use, N at a time"
    )
    models.add_argument("--jobs", type=_jobs, help="trainings at a time (default: one per core)")
    _add_assignments(commands)
    return parser


def _add_assignments(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "assignments", help="the notebooks as an nbgrader course (source/ and release/)"
    )
    actions = parser.add_subparsers(dest="action", required=True)
    build = actions.add_parser(
        "build",
        help="write an nbgrader course: DIR/source and DIR/release",
        description="One nbgrader assignment per notebook: DIR/nbgrader_config.py, "
        "DIR/source/NN_topic/ (the notebook with its solutions) and DIR/release/NN_topic/ (the "
        "students' version, made by `nbgrader generate_assignment`). Grading is nbgrader's: "
        "autograde, generate_feedback, export (see docs/instructors.md).",
    )
    build.add_argument(
        "notebooks", nargs="*", metavar="NOTEBOOK", help="default: every notebooks/NN_*.ipynb"
    )
    build.add_argument("--out", required=True, help="the course folder")


GRADING_MOVED = (
    "'assignments grade' is gone: grading is nbgrader's. In the course folder: "
    "nbgrader autograde ASSIGNMENT, then nbgrader generate_feedback ASSIGNMENT and "
    "nbgrader export (docs/instructors.md)"
)


def _assignments(args: argparse.Namespace) -> int:
    from qnb import assignments

    result = assignments.build(args.out, args.notebooks)
    for name, points, count in result["built"]:
        print(f"{name}: {count} exercises, {points:g} points")
    for name in result["skipped"]:
        print(f"{name}: skipped, no nbgrader cells (not an assignment yet)")
    total = sum(points for _, points, _ in result["built"])
    print(f"{len(result['built'])} assignments, {total:g} points: {Path(args.out) / 'release'}")
    return 0


def _models(jobs: int | None) -> int:
    from qnb import models  # torch: only for this command

    print(f"retraining {len(models.NOTEBOOK_MODELS)} models into {models.WEIGHTS_DIR} "
          "(tens of minutes on a laptop CPU)")
    for (name, seed), seconds in models.retrain(jobs=jobs).items():
        print(f"{name} seed {seed}: trained in {seconds:.0f} s")
    return 0


def _collect_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m qnb sweep collect",
        description="Merge every run's status and records in DIR into DIR/results.csv.",
    )
    parser.add_argument("dir")
    return parser


def _summary(statuses: list[dict], out: str) -> int:
    failed = [s for s in statuses if s["status"] != "ok"]
    print(f"{len(statuses) - len(failed)} ok, {len(failed)} failed; results in {out}")
    return 1 if failed else 0


def _sweep(args: argparse.Namespace, grid: dict) -> list[dict]:
    shard = sweep.parse_shard(getattr(args, "shard", None))
    return sweep.sweep(
        args.notebooks,
        grid,
        args.out,
        jobs=args.jobs,
        timeout=args.timeout,
        shard_spec=shard,
        force=args.force,
    )


def _run_all(args: argparse.Namespace) -> list[dict]:
    """`run`: the notebooks that time nothing `--jobs` at a time (default: one per core), then
    the ones that time things (`notebook.times_things`) one at a time, on a quiet machine."""
    timing = [nb for nb in args.notebooks if notebook.times_things(nb)]
    others = [nb for nb in args.notebooks if nb not in timing]
    jobs = args.jobs or os.cpu_count() or 1
    statuses = sweep.sweep(others, {}, args.out, jobs=jobs, timeout=args.timeout,
                           force=args.force) if others else []
    if timing:
        statuses += sweep.sweep(timing, {}, args.out, jobs=1, timeout=args.timeout,
                                force=args.force)
    return statuses


def _report(out: str) -> str:
    from qnb.report import report  # pandas and matplotlib: only when a report is made

    return report(out)


def _main(argv: list[str]) -> int:
    if argv[:2] == ["assignments", "grade"]:
        print(f"error: {GRADING_MOVED}", file=sys.stderr)
        return 2
    if argv[:2] == ["sweep", "collect"]:
        out = _collect_parser().parse_args(argv[2:]).dir
        print(f"wrote {sweep.collect(out)}")
        return 0
    args = _parser().parse_args(argv)
    if args.command == "refresh":
        try:
            runner.refresh(args.notebooks)
        except RuntimeError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        return 0
    if args.command == "assignments":
        return _assignments(args)
    if args.command == "models":
        return _models(args.jobs)
    if args.command == "report":
        print(f"wrote {sweep.collect(args.dir)} and {_report(args.dir)}")
        return 0
    if args.command == "run":
        statuses = _run_all(args)
    else:
        statuses = _sweep(args, sweep.build_grid(args.params, args.grid))
    print(f"wrote {sweep.collect(args.out)}")
    if args.command == "run":
        print(f"wrote {_report(args.out)}")
    return _summary(statuses, args.out)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; bad input is reported as `error: ...` with exit status 2."""
    try:
        return _main(sys.argv[1:] if argv is None else list(argv))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
