"""Per-pixel motion vectors, their accumulation and the residuals, with coviar's conventions.

FFmpeg exports one record per motion-compensated block (`AVMotionVector`: block size
`w`, `h`, block centres `src_x, src_y, dst_x, dst_y`). coviar paints every record
whose motion is non-zero into an H x W field, in record order, over the block's
pixels `dst + o` (offsets `-w/2 .. w/2-1`) whose destination and source `src + o`
both lie inside the frame. Every pixel's source is then inside the frame, which is
what makes the accumulation and the residuals below well defined:

    mv_acc[p]       = mv[p] + previous_mv_acc[p - mv[p]]
    residual[p]     = image[p] - reference[p - vectors[p]]

The loops run in C (`_kernels.c`, built when the package is installed), called
through ctypes, which releases the GIL: the reader's decoding thread and the
caller's thread then really run in parallel. Each is one pass over the pixels;
numpy needs five to ten array passes for the same work, and the reader is bound by
memory traffic.
"""

from __future__ import annotations

import ctypes
import platform
from functools import cache

import numpy as np

from cvos.errors import CodecError
from cvos.files import compiled_library

RECORD_FIELDS = ("w", "h", "src_x", "src_y", "dst_x", "dst_y")
"""The fields of FFmpeg's motion records that the painting reads."""

_IMAGE = np.ctypeslib.ndpointer(np.uint8, ndim=3, flags="C_CONTIGUOUS")
_FIELD = np.ctypeslib.ndpointer(np.int32, ndim=3, flags="C_CONTIGUOUS")
_LABELS = np.ctypeslib.ndpointer(np.uint8, ndim=2, flags="C_CONTIGUOUS")
_RECORDS = np.ctypeslib.ndpointer(np.int32, ndim=2, flags="C_CONTIGUOUS")
_SIZE = ctypes.c_int64


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters


@cache
def reuse_freed_memory() -> None:
    """Ask glibc to keep freed blocks for reuse instead of handing them back to the kernel.

    A frame's arrays are ~17 MB at 854x480. By default glibc maps blocks that large
    fresh from the kernel and unmaps them when freed, so every frame pays some 4,000
    page faults to get zeroed memory again: 1.7 ms per frame on our machines, more
    than decoding it. Blocks up to 32 MiB now come from the heap, which keeps up to
    64 MiB of freed memory. Process-wide; peak memory is unchanged. A no-op where
    the C library is not glibc.
    """
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is not None and platform.libc_ver()[0] == "glibc":
        mallopt(_M_MMAP_THRESHOLD, 32 << 20)
        mallopt(_M_TRIM_THRESHOLD, 64 << 20)


@cache
def _kernels() -> ctypes.CDLL:
    """The compiled loops, loaded once (the error says how to build them if they are missing)."""
    library = compiled_library("cvos.codec._kernels", CodecError)
    library.paint_motion.argtypes = [_RECORDS, _SIZE, _SIZE, _SIZE, _FIELD]
    library.paint_motion.restype = None
    library.accumulate_records.argtypes = [_RECORDS, _SIZE, _SIZE, _SIZE, _FIELD, _FIELD]
    library.accumulate_records.restype = None
    library.subtract_warped.argtypes = [_IMAGE, _IMAGE, _FIELD, _SIZE, _SIZE, _FIELD]
    library.subtract_warped.restype = ctypes.c_int
    axis = np.ctypeslib.ndpointer(np.int32, ndim=1, flags="C_CONTIGUOUS")
    library.subtract_warped_at.argtypes = [_IMAGE, _IMAGE, _FIELD, _SIZE, _SIZE, axis, _SIZE]
    library.subtract_warped_at.argtypes += [axis, _SIZE, _FIELD]
    library.subtract_warped_at.restype = ctypes.c_int
    library.warp_labels.argtypes = [_LABELS, ctypes.c_void_p, _SIZE, _SIZE, _SIZE, _LABELS]
    library.warp_labels.restype = None
    return library


def _record_table(records: np.ndarray) -> np.ndarray:
    """N x 6 int32 `RECORD_FIELDS` of FFmpeg's records (structured array)."""
    table = np.empty((records.size, len(RECORD_FIELDS)), np.int32)
    for column, name in enumerate(RECORD_FIELDS):
        table[:, column] = records[name]
    return table


def paint_motion(records: np.ndarray, height: int, width: int) -> np.ndarray:
    """H x W x 2 int32 (dx, dy) = dst - src from FFmpeg's records (structured array)."""
    vectors = np.zeros((height, width, 2), np.int32)
    _kernels().paint_motion(_record_table(records), records.size, height, width, vectors)
    return vectors


def accumulate_records(records: np.ndarray, previous: np.ndarray) -> np.ndarray:
    """H x W x 2 int32 displacement back to the I-frame, `mv[p] + previous[p - mv[p]]` with
    `mv = paint_motion(records, H, W)`, computed without painting `mv`."""
    height, width = previous.shape[:2]
    _check_shape("previous vectors", previous, (height, width, 2))
    accumulated = np.empty_like(previous)
    table = _record_table(records)
    _kernels().accumulate_records(table, records.size, height, width, previous, accumulated)
    return accumulated


def subtract_warped(image: np.ndarray, reference: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """H x W x 3 int32 `image[p] - reference[p - vectors[p]]` of two uint8 images."""
    height, width = image.shape[:2]
    _check_shape("image", image, (height, width, 3))
    _check_shape("reference", reference, (height, width, 3))
    _check_shape("vectors", vectors, (height, width, 2))
    out = np.empty((height, width, 3), np.int32)
    _check_sources(_kernels().subtract_warped(image, reference, vectors, height, width, out))
    return out


def subtract_warped_at(
    image: np.ndarray,
    reference: np.ndarray,
    vectors: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
) -> np.ndarray:
    """h x w x 3 int32 `subtract_warped(image, reference, vectors)[rows][:, cols]`, computed at
    those pixels alone (a sampler reads a few of a frame's pixels: a third of them at 480p to
    256 x 512). `rows` (h) and `cols` (w) are int32 pixel indices inside the frame."""
    height, width = image.shape[:2]
    _check_shape("image", image, (height, width, 3))
    _check_shape("reference", reference, (height, width, 3))
    _check_shape("vectors", vectors, (height, width, 2))
    _check_axis("rows", rows, height)
    _check_axis("cols", cols, width)
    out = np.empty((rows.size, cols.size, 3), np.int32)
    status = _kernels().subtract_warped_at(
        image, reference, vectors, height, width, rows, rows.size, cols, cols.size, out
    )
    _check_sources(status)
    return out


def warp_labels(labels: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """H x W uint8 `labels[p - vectors[p]]`: a label map moved by whole-pixel motion, exactly.

    `vectors` (H x W x 2 integers; int32 is read in place) may be a crop of a larger field
    (its rows need not be adjacent); sources outside the frame take the nearest border pixel.
    """
    height, width = labels.shape
    _check_shape("vectors", vectors, (height, width, 2))
    if vectors.dtype != np.int32 and np.issubdtype(vectors.dtype, np.integer):
        vectors = vectors.astype(np.int32)  # e.g. the int16 of stored arrays
    if vectors.dtype != np.int32 or vectors.strides[1:] != (8, 4) or vectors.strides[0] % 4:
        raise ValueError("vectors: expected int32 with (dx, dy) pairs adjacent in each row")
    labels = np.ascontiguousarray(labels, np.uint8)
    out = np.empty_like(labels)
    stride = vectors.strides[0] // 4
    _kernels().warp_labels(labels, vectors.ctypes.data, stride, height, width, out)
    return out


def _check_shape(name: str, array: np.ndarray, shape: tuple[int, int, int]) -> None:
    if array.shape != shape:
        raise ValueError(f"{name}: expected shape {shape}, got {array.shape}")


def _check_axis(name: str, indices: np.ndarray, size: int) -> None:
    inside = indices.size == 0 or 0 <= indices.min() <= indices.max() < size
    if indices.ndim != 1 or indices.dtype != np.int32 or not inside:
        raise ValueError(f"{name}: expected int32 pixel indices in 0..{size - 1}")


def _check_sources(status: int) -> None:
    if status != 0:
        raise ValueError("a motion vector points outside the frame: not painted by paint_motion")
