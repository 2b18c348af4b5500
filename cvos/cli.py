"""Shared behaviour of the command-line entry points: user errors become one line and exit 1."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import TypeVar

from cvos.errors import CVOSError

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
