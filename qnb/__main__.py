"""Command line: `python -m qnb run|refresh ...`."""

from __future__ import annotations

import argparse
import sys

from qnb import runner


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m qnb", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="execute notebooks into a run folder, collect records")
    run.add_argument("notebooks", nargs="+")
    run.add_argument("--out", default="runs/latest", help="run folder (default: runs/latest)")
    refresh = commands.add_parser("refresh", help="re-execute committed notebooks in place")
    refresh.add_argument("notebooks", nargs="+")
    args = parser.parse_args(argv)

    if args.command == "run":
        results = runner.run_all(args.notebooks, args.out)
        failed = [r for r in results if r.status != "ok"]
        print(f"{len(results) - len(failed)} ok, {len(failed)} failed; records in {args.out}")
        return 1 if failed else 0
    runner.refresh(args.notebooks)
    return 0


if __name__ == "__main__":
    sys.exit(main())
