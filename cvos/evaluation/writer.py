"""Mask PNGs (and any other per-frame output) written in a background thread, off the hot path."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import Any

import numpy as np

from cvos.masks import write_label_png

MAX_PENDING = 16
"""Writes queued at most; the producer waits beyond, so memory stays flat when writing is
slower than segmenting (each queued frame holds its arrays)."""


class MaskWriter:
    """Queue writes in order on one thread; `close()` waits for them and re-raises the first error.

    PNG compression runs in its own thread (zlib releases the GIL), so writing overlaps the
    next frame's decoding and segmentation; `seconds` is the time the writes took there.
    """

    def __init__(self, max_pending: int = MAX_PENDING) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cvos-writer")
        self._slots = threading.BoundedSemaphore(max_pending)
        self._failures: list[Future] = []
        self._lock = threading.Lock()
        self.seconds = 0.0
        self.count = 0

    def write(self, path: str | os.PathLike, labels: np.ndarray) -> None:
        """Write `labels` (H x W uint8) to `path` as an indexed PNG, in the background."""
        self.submit(write_label_png, path, labels)

    def submit(self, function: Callable[..., Any], *args: Any) -> None:
        """Run `function(*args)` in the writer thread, after every write queued before it."""
        self._slots.acquire()
        job = self._pool.submit(self._run, function, *args)
        job.add_done_callback(self._done)

    def _run(self, function: Callable[..., Any], *args: Any) -> None:
        start = time.perf_counter()
        try:
            function(*args)
        finally:
            with self._lock:
                self.seconds += time.perf_counter() - start
                self.count += 1

    def _done(self, job: Future) -> None:
        self._slots.release()
        if not job.cancelled() and job.exception() is not None:
            with self._lock:
                self._failures.append(job)

    def close(self) -> None:
        """Wait for every queued write; raise the first that failed."""
        self._pool.shutdown(wait=True)
        if self._failures:
            self._failures[0].result()

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
