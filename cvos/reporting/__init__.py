"""Reports over many runs: read sweeps or W&B runs, rank them, write a table and a plot."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cvos.errors import ConfigError
from cvos.files import write_text
from cvos.reporting.plots import plot_comparison
from cvos.reporting.runs import (
    RunRecord,
    Scores,
    WandbApi,
    fetch_wandb,
    read_outcome,
    read_overrides,
    read_sweep,
    read_wandb,
)
from cvos.reporting.tables import (
    Comparison,
    build_table,
    compare,
    markdown_report,
    markdown_table,
    write_csv,
)

__all__ = [
    "Comparison",
    "ComparisonFiles",
    "RunRecord",
    "Scores",
    "WandbApi",
    "build_table",
    "compare",
    "fetch_wandb",
    "markdown_report",
    "markdown_table",
    "plot_comparison",
    "read_outcome",
    "read_overrides",
    "read_sweep",
    "read_wandb",
    "write_comparison",
    "write_csv",
]


@dataclass(frozen=True)
class ComparisonFiles:
    """Where the comparison was written."""

    markdown: Path
    csv: Path
    png: Path

    def all(self) -> list[Path]:
        return [self.markdown, self.csv, self.png]


def write_comparison(comparison: Comparison, out_dir: Path, source: str) -> ComparisonFiles:
    """Write comparison.md, comparison.csv and comparison.png into `out_dir`."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out {out_dir}: exists and is not a folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    files = ComparisonFiles(
        markdown=out_dir / "comparison.md",
        csv=out_dir / "comparison.csv",
        png=out_dir / "comparison.png",
    )
    report = markdown_report(comparison, source)
    write_text(files.markdown, report)
    write_csv(comparison, files.csv)
    plot_comparison(comparison, files.png, f"J&F against speed ({len(comparison.runs)} runs)")
    return files
