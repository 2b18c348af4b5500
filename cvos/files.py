"""Atomic file and folder writes (a reader sees the old content or the new, never half of it),
and the project's compiled C loops.

Everything the project writes (reports, masks, caches, checkpoints, encoded videos) goes through
`atomic_path`: the content is written under a temporary name in the same folder, then renamed
into place, so a crash or a kill leaves no half-written file that a later run would read.
"""

from __future__ import annotations

import ctypes
import importlib.util
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cvos.errors import CVOSError


def temporary_name(path: Path) -> Path:
    """A hidden sibling of `path` that no other writer picks: `.<name>.<random>.tmp`."""
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write a file or a folder into; it becomes `path` on success.

    A folder replaces only a missing or empty `path` (the rename fails otherwise). On an
    exception the temporary file or folder is removed and `path` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_name(path)
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        if temporary.is_dir():
            shutil.rmtree(temporary, ignore_errors=True)
        else:
            temporary.unlink(missing_ok=True)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write `text` to `path` atomically; returns the path."""
    with atomic_path(path) as temporary:
        temporary.write_text(text)
    return Path(path)


def write_json(path: str | os.PathLike, data: Any) -> Path:
    """Write `data` as indented JSON (with a final newline) atomically; returns the path."""
    return write_text(path, json.dumps(data, indent=2) + "\n")


def compiled_library(module: str, error: type[CVOSError] = CVOSError) -> ctypes.CDLL:
    """The C extension `module` (e.g. "cvos.codec._kernels") opened with ctypes; `error` says
    how to build it when it is missing."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        source = module.replace(".", "/") + ".c"
        raise error(
            f"{source} is not compiled: reinstall cvos (`make install` or `pip install -e .`) "
            "on a machine with a C compiler"
        )
    return ctypes.CDLL(spec.origin)
