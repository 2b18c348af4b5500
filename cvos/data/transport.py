"""How a packed training batch leaves a loader worker: in shared memory the worker reuses.

A worker packs each batch straight into a *segment*, a shared-memory storage of its own that
travels to the main process uncopied (torch passes its file descriptor). Once the main
process has copied the batch out (unpacked it, pinned it or moved it to a device), it hands
the segment back (`hand_back`), and the worker packs a later batch into the same memory,
whose pages are then already there: filling fresh shared memory costs the kernel a page
allocation every 4 KB, 11 ms for a 20 MB batch (four 256 x 512 samples) written at once,
18 ms filled in place, against 2 ms of plain copying into a reused segment.

A segment starts with a header: a magic number, the word both processes write (the ticket
of the batch packed in it, or 0 once handed back), then the worker's process id and the
segment's number in it. The word is read and written with atomic operations
(`_segments.c`) that order the main process's reads before the worker's next writes. A
segment that is never handed back is simply not reused: a worker keeps `KEPT_SEGMENTS` and
makes a new one when none is free.
"""

from __future__ import annotations

import ctypes
import functools
import itertools
import os
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from cvos.files import compiled_library

BATCH_ALIGNMENT = 64  # bytes: each field of a packed batch starts at a multiple of this
HEADER_BYTES = 64  # a segment's header; its first field starts after it
MAGIC = b"cvosseg1"  # bytes 0..7 of a segment's header
WORD = 8  # byte offset of the header's shared word (int64), followed by the creator's process id
# and the segment's number in that process (int64 each)
KEPT_SEGMENTS = 8  # per worker: more than a loader holds in flight (prefetch, pinning, the step)

Shapes = dict[str, tuple[torch.Size, torch.dtype]]


def layout(shapes: Shapes) -> tuple[dict[str, int], int]:
    """Each field's byte offset in a packed batch (a multiple of BATCH_ALIGNMENT), and its end."""
    offsets, end = {}, 0
    for name, (shape, dtype) in shapes.items():
        offsets[name] = end
        end += -(-shape.numel() * dtype.itemsize // BATCH_ALIGNMENT) * BATCH_ALIGNMENT
    return offsets, end


def packed_views(
    shapes: Shapes, storage: torch.UntypedStorage, start: int = 0
) -> dict[str, Tensor]:
    """Uninitialised tensors of the given shapes and dtypes, views of `storage` from byte
    `start` on (at least `layout`'s end past it): a batch that moves between processes as one
    storage, not one per field (fourteen of them cost about 1.7 ms of system time a 256 x 512
    sample)."""
    offsets, _ = layout(shapes)
    views = {}
    for name, (shape, dtype) in shapes.items():
        first = (start + offsets[name]) // dtype.itemsize  # in elements of its dtype
        views[name] = torch.empty(0, dtype=dtype).set_(storage, first, shape)
    return views


@functools.cache
def _segments() -> ctypes.CDLL:
    """The atomic operations on a header's word (`_segments.c`), loaded once."""
    library = compiled_library("cvos.data._segments")
    word, ticket = ctypes.c_void_p, ctypes.c_int64
    library.segment_word.argtypes, library.segment_word.restype = [word], ticket
    library.segment_claim.argtypes, library.segment_claim.restype = [word, ticket], None
    library.segment_hand_back.argtypes = [word, ticket]
    library.segment_hand_back.restype = ctypes.c_int
    return library


def _header(storage: torch.UntypedStorage) -> np.ndarray:
    """The first HEADER_BYTES of a storage, as a uint8 array over its memory."""
    return torch.empty(0, dtype=torch.uint8).set_(storage, 0, (HEADER_BYTES,)).numpy()


def _word(header: np.ndarray) -> int:
    """The address of a header's shared word."""
    return header.__array_interface__["data"][0] + WORD


@dataclass
class _Segment:
    storage: torch.UntypedStorage  # shared; the header, then a batch
    header: np.ndarray  # HEADER_BYTES uint8, a view of the storage's first bytes

    @classmethod
    def create(cls, nbytes: int, number: int) -> _Segment:
        storage = torch.UntypedStorage._new_shared(nbytes)
        header = _header(storage)
        header[:WORD] = np.frombuffer(MAGIC, np.uint8)
        header[WORD:].view(np.int64)[:3] = (0, os.getpid(), number)  # free
        return cls(storage, header)


class SegmentPool:
    """A loader worker's segments: `take` gives a free one (or a new one) and claims it."""

    def __init__(self, kept: int = KEPT_SEGMENTS) -> None:
        self.kept = kept
        self._process: int | None = None
        self._segments: list[_Segment] = []
        self._tickets = itertools.count(1)
        self._made = 0  # segments this process made

    def take(self, nbytes: int) -> tuple[torch.UntypedStorage, int]:
        """A segment with room for a `nbytes` batch after its header, claimed with a new ticket
        (> 0): the batch is packed from byte HEADER_BYTES on, and the ticket travels with it."""
        if self._process != os.getpid():  # a forked worker starts with none of its parent's
            self._process, self._segments, self._made = os.getpid(), [], 0
        size = HEADER_BYTES + nbytes
        free = (
            s
            for s in self._segments
            if s.storage.nbytes() >= size and _segments().segment_word(_word(s.header)) == 0
        )
        segment = next(free, None)
        if segment is None:
            self._made += 1
            segment = _Segment.create(size, self._made)
            self._segments = [*self._segments, segment][-self.kept :]
        ticket = next(self._tickets)
        _segments().segment_claim(_word(segment.header), ticket)
        return segment.storage, ticket


def hand_back(tensor: Tensor, ticket: int) -> None:
    """Give the segment that `tensor` (a field of a batch packed with `ticket`) lies in back
    to its worker. Nothing happens if the segment holds a later batch by now."""
    storage = tensor.untyped_storage()
    if tensor.device.type != "cpu" or storage.nbytes() < HEADER_BYTES:
        raise ValueError(f"a tensor on {tensor.device} of {storage.nbytes()} bytes is no segment")
    header = _header(storage)
    if header[:WORD].tobytes() != MAGIC:
        raise ValueError("the tensor's storage does not start with a batch segment's header")
    _segments().segment_hand_back(_word(header), ticket)
