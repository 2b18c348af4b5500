"""`python -m cvos.compare <sweep dir>... --out <dir>`: compare the runs of Hydra sweeps.

Writes `comparison.md`, `comparison.csv` (one row per run: the overrides that tell the runs
apart, J&F, J, F, frames per second, parameters, status, error) and `comparison.png` (J&F
against frames per second). Failed runs are listed with their error, never dropped.
`--wandb entity/project` reads the same from Weights & Biases instead of sweep folders.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import textwrap
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml
from matplotlib.figure import Figure

from cvos.cli import friendly_errors
from cvos.errors import ConfigError, DataError

NO_METRICS = "no metrics.json (the job did not finish)"
SCORE_KEYS = ("J&F", "J", "F", "fps")
WANDB_PREFIX = "final/"  # cvos.train logs its final validation scores under this prefix
COLUMNS_AFTER_OVERRIDES = ("J&F", "J", "F", "fps", "params", "status", "error")


@dataclass(frozen=True)
class Scores:
    """Final validation scores and speed of a run that finished."""

    jf: float
    j: float
    f: float
    fps: float
    params: int | None  # None when the source did not record it


@dataclass(frozen=True)
class RunRecord:
    """One run, read from a sweep folder or from W&B: what was set and how it did."""

    name: str  # "<sweep folder>/<job num>" or the W&B run name
    overrides: dict[str, str]  # override key -> value, e.g. {"model": "rsm", "data.gop_size": "8"}
    scores: Scores | None  # None when the run failed
    error: str = ""  # why a failed run has no scores

    @property
    def status(self) -> str:
        return "ok" if self.scores is not None else "failed"


@dataclass(frozen=True)
class Comparison:
    """Runs sorted best first (failed last) and the override keys that differ between them."""

    runs: list[RunRecord]
    keys: list[str]  # empty: every run has the same overrides

    def label(self, run: RunRecord) -> str:
        """What sets a run apart from the others, e.g. `model=rsm_sam, data.gop_size=8`."""
        parts = [f"{key}={run.overrides[key]}" for key in self.keys if key in run.overrides]
        return ", ".join(parts) or run.name


@dataclass(frozen=True)
class ComparisonFiles:
    """Where the comparison was written."""

    markdown: Path
    csv: Path
    png: Path

    def all(self) -> list[Path]:
        return [self.markdown, self.csv, self.png]


class WandbRun(Protocol):
    """The part of `wandb.apis.public.Run` that the comparison reads."""

    name: str
    state: str  # "finished", "failed", "crashed", "running", ...
    config: Mapping[str, Any]
    summary: Mapping[str, Any]


class WandbApi(Protocol):
    """The part of `wandb.Api` that the comparison uses; tests pass a fake one."""

    def runs(self, path: str, filters: dict[str, Any] | None = None) -> Iterable[WandbRun]: ...


@dataclass
class _Table:
    """Header and rows of raw cell values (None = empty), shared by the Markdown and CSV writers."""

    header: list[str]
    rows: list[list[Any]] = field(default_factory=list)


def scores_from(values: Mapping[str, Any], prefix: str, where: str) -> Scores:
    """Scores from metrics.json (no prefix) or a W&B summary (`final/`); DataError if missing."""
    missing = [prefix + key for key in SCORE_KEYS if values.get(prefix + key) is None]
    if missing:
        raise DataError(f"{where} has no {', '.join(missing)}")
    params = values.get(prefix + "params")
    try:
        numbers = [float(values[prefix + key]) for key in SCORE_KEYS]
        return Scores(*numbers, params=None if params is None else int(params))
    except (TypeError, ValueError) as err:
        raise DataError(f"{where} has a score that is not a number: {err}") from err


def read_outcome(metrics_path: Path) -> tuple[Scores | None, str]:
    """A job's scores, or None and why: failed, killed and garbled jobs all become failed runs."""
    if not metrics_path.is_file():
        return None, NO_METRICS
    try:
        metrics = json.loads(metrics_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        return None, f"unreadable metrics.json: {err}"
    if not isinstance(metrics, dict):
        return None, "metrics.json is not a JSON object"
    if metrics.get("status") != "ok":
        return None, str(metrics.get("error") or f"status {metrics.get('status')!r} and no error")
    try:
        return scores_from(metrics, "", "metrics.json"), ""
    except DataError as err:
        return None, str(err)


def read_overrides(path: Path) -> dict[str, str]:
    """Hydra's `overrides.yaml` (a list like `model=rsm`, `+x=1`) as key -> value."""
    try:
        items = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise DataError(f"{path}: cannot read the job's overrides: {err}") from err
    if items is None:
        return {}
    if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
        raise DataError(f"{path}: expected a YAML list of `key=value` strings")
    overrides = {}
    for item in items:
        key, _, value = item.partition("=")
        overrides[key.lstrip("+~")] = value
    return overrides


def read_job(job_dir: Path, name: str) -> RunRecord:
    """One job folder of a sweep: its overrides and final metrics."""
    overrides = read_overrides(job_dir / ".hydra" / "overrides.yaml")
    scores, error = read_outcome(job_dir / "metrics.json")
    return RunRecord(name=name, overrides=overrides, scores=scores, error=error)


def _job_order(job_dir: Path) -> tuple[int, int | str]:
    """Hydra numbers its jobs 0, 1, ..., 10: sort them as numbers, anything else after by name."""
    return (0, int(job_dir.name)) if job_dir.name.isdigit() else (1, job_dir.name)


def read_sweep(sweep_dir: Path) -> list[RunRecord]:
    """Every job of one Hydra multirun folder (a job folder is one holding `.hydra/`)."""
    if not sweep_dir.is_dir():
        raise DataError(
            f"{sweep_dir}: not a folder; pass the sweep folder of `python -m cvos.train -m`"
        )
    job_dirs = sorted((d for d in sweep_dir.iterdir() if (d / ".hydra").is_dir()), key=_job_order)
    if not job_dirs:
        raise DataError(
            f"{sweep_dir}: no job folders (sub-folders with .hydra/) in this sweep folder"
        )
    return [read_job(job_dir, f"{sweep_dir.name}/{job_dir.name}") for job_dir in job_dirs]


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested config -> dotted keys with string values, comparable with Hydra override keys."""
    flat: dict[str, str] = {}
    for key, value in config.items():
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = str(value)
    return flat


def wandb_record(run: WandbRun) -> RunRecord:
    """One W&B run: a finished run with final scores is ok, anything else failed."""
    overrides = flatten(run.config)
    if run.state != "finished":
        return RunRecord(run.name, overrides, None, f"W&B run state is {run.state!r}")
    try:
        scores = scores_from(run.summary, WANDB_PREFIX, "the W&B run summary")
    except DataError as err:  # a job that failed still finishes its W&B run, without final scores
        return RunRecord(run.name, overrides, None, str(err))
    return RunRecord(run.name, overrides, scores)


def read_wandb(api: WandbApi, project: str, group: str | None = None) -> list[RunRecord]:
    """The runs of a W&B project (`entity/project`), optionally only one group."""
    filters = {"group": group} if group is not None else None
    runs = [wandb_record(run) for run in api.runs(project, filters=filters)]
    if not runs:
        raise DataError(f"W&B {project}: no runs" + (f" in group {group}" if group else ""))
    return runs


def fetch_wandb(project: str, group: str | None) -> list[RunRecord]:
    """`read_wandb` with a logged-in `wandb.Api`; the key comes from WANDB_API_KEY."""
    if project.count("/") != 1:
        raise ConfigError(f"--wandb {project}: expected ENTITY/PROJECT, e.g. my-team/cvos")
    if not os.environ.get("WANDB_API_KEY"):
        raise ConfigError("--wandb needs a W&B API key: set WANDB_API_KEY=<your key>")
    import wandb  # imported here: reading sweep folders must not need W&B

    try:
        return read_wandb(wandb.Api(), project, group)
    except (wandb.errors.Error, ValueError) as err:  # unknown project, no access, network down
        raise DataError(f"W&B {project}: cannot read its runs: {err}") from err


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
        scores = [s.jf, s.j, s.f, s.fps, s.params] if s else [None] * 5
        table.rows.append([run.name, *overrides, *scores, run.status, run.error or None])
    return table


def _markdown_cell(column: str, value: Any) -> str:
    """Scores with 3 decimals, fps with 1, params with thousands separators; `|` escaped."""
    if value is None:
        return "-"
    if column in ("J&F", "J", "F"):
        return f"{value:.3f}"
    if column == "fps":
        return f"{value:.1f}"
    if column == "params":
        return f"{value:,}"
    return " ".join(str(value).split()).replace("|", "\\|")


def markdown_table(comparison: Comparison) -> str:
    """The comparison as a GitHub-flavoured Markdown table, numbers right-aligned."""
    table = build_table(comparison)
    numeric = set(SCORE_KEYS) | {"params"}
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
        "J&F, J, F: validation scores; fps: frames per second; params: model parameters.",
    ]
    if failed:
        lines.append(
            f"{len(failed)} failed run(s) are listed above with their error "
            "and left out of comparison.png (named under the plot)."
        )
    return "\n".join(lines) + "\n"


def write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """Write through a temporary file in the same folder, so a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_csv(comparison: Comparison, path: Path) -> None:
    """The table with raw numbers (empty cell = no value), for spreadsheets and pandas."""
    table = build_table(comparison)

    def write(tmp: Path) -> None:
        with tmp.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(table.header)
            writer.writerows([["" if v is None else v for v in row] for row in table.rows])

    write_atomically(path, write)


def plot_comparison(comparison: Comparison, path: Path, title: str) -> None:
    """J&F against frames per second, one labelled point per successful run; failed named below."""
    done = [run for run in comparison.runs if run.scores is not None]
    failed = [run.name for run in comparison.runs if run.scores is None]
    fig = Figure(figsize=(8, 5.5), dpi=120)  # no pyplot: no global backend state, renders with Agg
    ax = fig.add_subplot()
    for run in done:
        ax.scatter(run.scores.fps, run.scores.jf, s=36, zorder=3)
        ax.annotate(
            comparison.label(run),
            (run.scores.fps, run.scores.jf),
            xytext=(5, 5),
            textcoords="offset points",
            fontsize=8,
        )
    fps = [run.scores.fps for run in done]
    if fps and min(fps) > 0 and max(fps) / min(fps) >= 10:
        ax.set_xscale("log")
    if not done:
        ax.text(0.5, 0.5, "no successful runs", transform=ax.transAxes, ha="center", va="center")
    ax.set_xlabel("frames per second")
    ax.set_ylabel("J&F (validation)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    if failed:
        note = textwrap.fill("failed, not plotted: " + ", ".join(failed), width=110)
        fig.subplots_adjust(bottom=0.16 + 0.03 * note.count("\n"))
        fig.text(0.01, 0.01, note, fontsize=7, va="bottom")
    write_atomically(path, lambda tmp: fig.savefig(tmp, format="png", bbox_inches="tight"))


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
    write_atomically(files.markdown, lambda tmp: tmp.write_text(report))
    write_csv(comparison, files.csv)
    plot_comparison(comparison, files.png, f"J&F against speed ({len(comparison.runs)} runs)")
    return files


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
