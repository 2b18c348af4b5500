"""The comparison of runs as a table: ranked, in Markdown for reading and CSV for tools."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cvos.files import atomic_path
from cvos.reporting.runs import SCORE_KEYS, RunRecord

COLUMNS_AFTER_OVERRIDES = ("J&F", "J", "F", "fps", "I ms", "P ms", "params", "status", "error")


@dataclass(frozen=True)
class Comparison:
    """Runs sorted best first (failed last) and the override keys that differ between them."""

    runs: list[RunRecord]
    keys: list[str]  # empty: every run has the same overrides

    def label(self, run: RunRecord) -> str:
        """What sets a run apart from the others, e.g. `model=rsm_sam, data.gop_size=8`."""
        parts = [f"{key}={run.overrides[key]}" for key in self.keys if key in run.overrides]
        return ", ".join(parts) or run.name


@dataclass
class _Table:
    """Header and rows of raw cell values (None = empty), shared by the Markdown and CSV writers."""

    header: list[str]
    rows: list[list[Any]] = field(default_factory=list)


def differing_keys(runs: Sequence[RunRecord]) -> list[str]:
    """Override keys whose value is not the same in every run (missing counts as a value)."""
    keys = list(dict.fromkeys(key for run in runs for key in run.overrides))
    return [key for key in keys if len({run.overrides.get(key) for run in runs}) > 1]


def compare(runs: Sequence[RunRecord]) -> Comparison:
    """Sort best J&F first, failed runs last (in their sweep order), and find the differing keys."""
    ranked = sorted(runs, key=lambda run: -run.scores.jf if run.scores else float("inf"))
    return Comparison(runs=ranked, keys=differing_keys(runs))


def build_table(comparison: Comparison) -> _Table:
    """One row per run: name, differing overrides (or all in one column), scores, status."""
    override_columns = comparison.keys or ["overrides"]
    table = _Table(header=["run", *override_columns, *COLUMNS_AFTER_OVERRIDES])
    for run in comparison.runs:
        if comparison.keys:
            overrides = [run.overrides.get(key) for key in comparison.keys]
        else:
            overrides = [" ".join(f"{key}={value}" for key, value in run.overrides.items())]
        s = run.scores
        scores = [s.jf, s.j, s.f, s.fps, s.iframe_ms, s.pframe_ms, s.params] if s else [None] * 7
        table.rows.append([run.name, *overrides, *scores, run.status, run.error or None])
    return table


def _markdown_cell(column: str, value: Any) -> str:
    """Scores with 3 decimals, fps and ms with 1, params with thousands separators; `|` escaped."""
    if value is None:
        return "-"
    if column in ("J&F", "J", "F"):
        return f"{value:.3f}"
    if column in ("fps", "I ms", "P ms"):
        return f"{value:.1f}"
    if column == "params":
        return f"{value:,}"
    return " ".join(str(value).split()).replace("|", "\\|")


def markdown_table(comparison: Comparison) -> str:
    """The comparison as a GitHub-flavoured Markdown table, numbers right-aligned."""
    table = build_table(comparison)
    numeric = set(SCORE_KEYS) | {"I ms", "P ms", "params"}
    align = ["---:" if column in numeric else "---" for column in table.header]
    lines = ["| " + " | ".join(table.header) + " |", "| " + " | ".join(align) + " |"]
    for row in table.rows:
        cells = [
            _markdown_cell(column, value) for column, value in zip(table.header, row, strict=True)
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown_report(comparison: Comparison, source: str) -> str:
    """The table with a title, where the runs came from, and what the plot leaves out."""
    failed = [run.name for run in comparison.runs if run.scores is None]
    lines = [
        f"# Comparison of {len(comparison.runs)} runs",
        "",
        f"Source: {source}",
        "",
        markdown_table(comparison),
        "",
        "J&F, J, F: validation scores; fps: frames per second; I ms, P ms: time per I-frame and "
        "P-frame; params: model parameters.",
    ]
    if failed:
        lines.append(
            f"{len(failed)} failed run(s) are listed above with their error "
            "and left out of comparison.png (named under the plot)."
        )
    return "\n".join(lines) + "\n"


def write_csv(comparison: Comparison, path: Path) -> None:
    """The table with raw numbers (empty cell = no value), for spreadsheets and pandas."""
    table = build_table(comparison)

    with atomic_path(path) as temporary, temporary.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(table.header)
        writer.writerows([["" if v is None else v for v in row] for row in table.rows])
