"""Shared behaviour of the command-line entry points: user errors become one line and exit 1."""

from __future__ import annotations

import functools
import json
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from cvos.errors import ConfigError, CVOSError

T = TypeVar("T")


def debug_enabled() -> bool:
    """Full tracebacks are shown when HYDRA_FULL_ERROR=1 or CVOS_DEBUG=1."""
    return any(os.environ.get(name) == "1" for name in ("HYDRA_FULL_ERROR", "CVOS_DEBUG"))


def friendly_errors(func: Callable[..., T]) -> Callable[..., T]:
    """Run `func`; print a `CVOSError` as `error: <message>` on stderr and exit 1."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs) -> T:
        try:
            return func(*args, **kwargs)
        except CVOSError as err:
            if debug_enabled():
                raise
            print(f"error: {err}", file=sys.stderr)
            sys.exit(1)

    return wrapper


def record_failure(job_dir: Path, err: BaseException) -> None:
    """Write a failed sweep job's error where `cvos.compare` finds it; the sweep goes on."""
    job_dir.mkdir(parents=True, exist_ok=True)
    message = f"{type(err).__name__}: {err}"
    (job_dir / "metrics.json").write_text(
        json.dumps({"status": "failed", "error": message}, indent=2)
    )
    (job_dir / "error.txt").write_text("".join(traceback.format_exception(err)))
    print(f"error: job in {job_dir} failed: {message}", file=sys.stderr)


def run_job(task: Callable[[], T], job_dir: Path, *, in_sweep: bool) -> T | None:
    """Run one Hydra job: in a sweep a failure is recorded; a single run exits 1 on it."""
    if not in_sweep:
        return friendly_errors(task)()
    try:
        return task()
    except Exception as err:  # a sweep reports every failed job and carries on with the rest
        if debug_enabled():
            raise
        record_failure(job_dir, err)
        return None


def job_context() -> tuple[Path, bool]:
    """The current Hydra job's output folder, and whether it is one job of a sweep."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    config = HydraConfig.get()
    return Path(config.runtime.output_dir), config.mode == RunMode.MULTIRUN


def wandb_offline(offline: bool | None) -> bool:
    """W&B runs offline when asked, and by default exactly when no API key is set."""
    return "WANDB_API_KEY" not in os.environ if offline is None else bool(offline)


def check_data_config(data: Any) -> None:
    """Fail before any work on a data config that cannot run, saying what to set."""
    gop = data.gop_size
    if not isinstance(gop, int) or isinstance(gop, bool) or gop < 1:
        raise ConfigError(
            f"data.gop_size must be a whole number >= 1, got {gop!r}; set e.g. data.gop_size=12"
        )
    if data.get("synthetic") is not None:  # generated on first use: no folder to check
        return
    if data.root is None:
        raise ConfigError(f"data={data.name} needs its dataset folder: set data.root=<path>")
    if not Path(data.root).is_dir():
        raise ConfigError(
            f"data.root={data.root}: no such folder; set data.root to the {data.name} dataset"
        )


def instantiate(config: Any, **kwargs: Any) -> Any:
    """`hydra.utils.instantiate`, re-raising our own user errors instead of Hydra's wrapper."""
    import hydra
    from hydra.errors import InstantiationException

    try:
        return hydra.utils.instantiate(config, **kwargs, _convert_="all")
    except InstantiationException as err:
        if isinstance(err.__cause__, CVOSError):
            raise err.__cause__ from None
        raise
