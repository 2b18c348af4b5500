"""Runs to compare, read from Hydra sweep folders or from Weights & Biases.

A sweep job's folder holds `.hydra/overrides.yaml` (what was set) and `metrics.json` (how it
did, written by `cvos.train`); a W&B run holds the same in its config and summary (`final/`).
Failed, killed and garbled jobs all become failed runs, listed with why; none is dropped.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import yaml

from cvos.errors import ConfigError, DataError

NO_METRICS = "no metrics.json (the job did not finish)"
SCORE_KEYS = ("J&F", "J", "F", "fps")
FRAME_MS_KEYS = ("ms_per_iframe", "ms_per_pframe")  # optional: runs before 0.3 lack them
WANDB_PREFIX = "final/"  # cvos.train logs its final validation scores under this prefix


@dataclass(frozen=True)
class Scores:
    """Final validation scores and speed of a run that finished."""

    jf: float
    j: float
    f: float
    fps: float
    params: int | None  # None when the source did not record it
    iframe_ms: float | None = None  # mean ms per I-frame and P-frame (None: not recorded)
    pframe_ms: float | None = None


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


class WandbRun(Protocol):
    """The part of `wandb.apis.public.Run` that the comparison reads."""

    name: str
    state: str  # "finished", "failed", "crashed", "running", ...
    config: Mapping[str, Any]
    summary: Mapping[str, Any]


class WandbApi(Protocol):
    """The part of `wandb.Api` that the comparison uses; tests pass a fake one."""

    def runs(self, path: str, filters: dict[str, Any] | None = None) -> Iterable[WandbRun]: ...


def scores_from(values: Mapping[str, Any], prefix: str, where: str) -> Scores:
    """Scores from metrics.json (no prefix) or a W&B summary (`final/`); DataError if missing."""
    missing = [prefix + key for key in SCORE_KEYS if values.get(prefix + key) is None]
    if missing:
        raise DataError(f"{where} has no {', '.join(missing)}")
    params = values.get(prefix + "params")
    times = [values.get(prefix + key) for key in FRAME_MS_KEYS]
    try:
        numbers = [float(values[prefix + key]) for key in SCORE_KEYS]
        iframe_ms, pframe_ms = (None if t is None else float(t) for t in times)
        return Scores(
            *numbers, params=None if params is None else int(params),
            iframe_ms=iframe_ms, pframe_ms=pframe_ms,
        )  # fmt: skip
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
