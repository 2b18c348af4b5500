"""`python -m cvos.compare <sweep dir>... --out <dir>`: compare the runs of Hydra sweeps.

Writes `comparison.md`, `comparison.csv` (one row per run: the overrides that tell the runs
apart, J&F, J, F, frames per second, parameters, status, error) and `comparison.png` (J&F
against frames per second). Failed runs are listed with their error, never dropped.
`--wandb entity/project` reads the same from Weights & Biases instead of sweep folders.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from cvos.cli import friendly_errors
from cvos.reporting import (
    ComparisonFiles,
    RunRecord,
    compare,
    fetch_wandb,
    markdown_table,
    read_sweep,
    write_comparison,
)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m cvos.compare",
        description="Compare the runs of Hydra sweeps (or a W&B project): table and J&F/fps plot.",
    )
    parser.add_argument("sweeps", nargs="*", type=Path, help="sweep folders of `cvos.train -m`")
    parser.add_argument(
        "--out", type=Path, required=True, help="folder for comparison.md/.csv/.png"
    )
    parser.add_argument("--wandb", metavar="ENTITY/PROJECT", help="read the runs from W&B instead")
    parser.add_argument("--group", help="with --wandb: only the runs of this W&B group")
    args = parser.parse_args(argv)
    if bool(args.sweeps) == bool(args.wandb):
        parser.error("give either sweep folders or --wandb ENTITY/PROJECT (not both)")
    if args.group is not None and not args.wandb:
        parser.error("--group only applies with --wandb")
    return args


def load_runs(args: argparse.Namespace) -> tuple[list[RunRecord], str]:
    """The runs named on the command line, and a line saying where they came from."""
    if args.wandb:
        group = f", group {args.group}" if args.group else ""
        return fetch_wandb(args.wandb, args.group), f"W&B {args.wandb}{group}"
    runs = [run for sweep in args.sweeps for run in read_sweep(sweep)]
    return runs, "sweeps " + ", ".join(str(sweep) for sweep in args.sweeps)


@friendly_errors
def main(argv: Sequence[str] | None = None) -> ComparisonFiles:
    args = parse_args(argv)
    runs, source = load_runs(args)
    comparison = compare(runs)
    files = write_comparison(comparison, args.out, source)
    print(markdown_table(comparison))
    print("\nwrote " + ", ".join(str(path) for path in files.all()))
    return files


if __name__ == "__main__":
    main()
