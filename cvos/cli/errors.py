"""User errors become one line on stderr and exit status 1; in a sweep, a failed job's record."""

from __future__ import annotations

import functools
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from cvos.errors import CVOSError
from cvos.files import write_json, write_text

T = TypeVar("T")


def debug_enabled() -> bool:
    """Full tracebacks are shown when HYDRA_FULL_ERROR=1 or CVOS_DEBUG=1."""
    return any(os.environ.get(name) == "1" for name in ("HYDRA_FULL_ERROR", "CVOS_DEBUG"))


def one_line(err: BaseException) -> str:
    """The error's message on one line (messages quoted from libraries may span several)."""
    return " ".join(str(err).split())


def friendly_errors(func: Callable[..., T]) -> Callable[..., T]:
    """Run `func`; print a `CVOSError` as `error: <message>` on stderr and exit 1."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs) -> T:
        try:
            return func(*args, **kwargs)
        except CVOSError as err:
            if debug_enabled():
                raise
            print(f"error: {one_line(err)}", file=sys.stderr)
            sys.exit(1)

    return wrapper


def record_failure(job_dir: Path, err: BaseException) -> None:
    """Write a failed sweep job's error where `cvos.compare` finds it; the sweep goes on."""
    message = f"{type(err).__name__}: {err}"
    write_json(job_dir / "metrics.json", {"status": "failed", "error": message})
    write_text(job_dir / "error.txt", "".join(traceback.format_exception(err)))
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
