"""Mask PNGs written in a background thread, off the segmentation's hot path."""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType

import numpy as np

from cvos.masks import write_label_png


class MaskWriter:
    """Queue label maps for writing; `close()` waits for them and re-raises the first error.

    PNG compression runs in its own thread (zlib releases the GIL), so writing overlaps the
    next frame's decoding and segmentation; `seconds` is the time the writes took there.
    """

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cvos-masks")
        self._pending: list[Future] = []
        self._lock = threading.Lock()
        self.seconds = 0.0
        self.count = 0

    def write(self, path: str | os.PathLike, labels: np.ndarray) -> None:
        """Write `labels` (H x W uint8) to `path` as an indexed PNG, in the background."""
        self._pending.append(self._pool.submit(self._write, path, labels))

    def _write(self, path: str | os.PathLike, labels: np.ndarray) -> None:
        start = time.perf_counter()
        write_label_png(path, labels)
        with self._lock:
            self.seconds += time.perf_counter() - start
            self.count += 1

    def close(self) -> None:
        """Wait for every queued write; raise the first that failed."""
        self._pool.shutdown(wait=True)
        for job in self._pending:
            job.result()
        self._pending.clear()

    def __enter__(self) -> MaskWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self._pool.shutdown(wait=True, cancel_futures=True)
