"""Run an iterator in a background thread, a few items ahead of its consumer."""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterator
from typing import TypeVar

T = TypeVar("T")

_DONE = object()


class _Failure:
    """An exception raised by the background iterator, on its way to the consumer."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


def read_ahead(items: Iterator[T], depth: int = 2) -> Iterator[T]:
    """Yield `items` while a background thread computes up to `depth` of them ahead.

    FFmpeg and numpy release the GIL, so decoding the next frame overlaps the
    caller's work on this one. An exception raised by `items` is re-raised here;
    closing (or dropping) the returned generator stops the thread before returning.
    """
    buffer: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                if stop.is_set():
                    return
                buffer.put(item)
            buffer.put(_DONE)
        except BaseException as error:  # handed to the consumer, which re-raises it
            buffer.put(_Failure(error))

    thread = threading.Thread(target=produce, name="cvos-read-ahead", daemon=True)
    thread.start()
    try:
        while (item := buffer.get()) is not _DONE:
            if isinstance(item, _Failure):
                raise item.error
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full buffer
            with contextlib.suppress(queue.Empty):
                buffer.get(timeout=0.01)
