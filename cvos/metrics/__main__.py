"""`python -m cvos.metrics --gt DIR --pred DIR [--json FILE]`: the DAVIS table of predictions."""

from __future__ import annotations

import argparse
from pathlib import Path

from cvos.cli import friendly_errors
from cvos.files import write_text
from cvos.metrics.folders import evaluate_folders


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m cvos.metrics",
        description="Score DAVIS predictions (semi-supervised protocol): J&F, J and F mean, "
        "recall and decay, overall and per sequence. Both folders hold <sequence>/<frame>.png.",
    )
    parser.add_argument("--gt", type=Path, required=True, help="annotations folder")
    parser.add_argument("--pred", type=Path, required=True, help="predictions folder")
    parser.add_argument("--json", type=Path, help="also write the table to this JSON file")
    parser.add_argument(
        "--sequences",
        nargs="+",
        metavar="NAME",
        help="score only these sequences (default: every sequence folder under --gt)",
    )
    return parser


@friendly_errors
def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    result = evaluate_folders(args.gt, args.pred, args.sequences)
    print(result.format_table())
    if args.json is not None:
        write_text(args.json, result.to_json() + "\n")


if __name__ == "__main__":
    main()
