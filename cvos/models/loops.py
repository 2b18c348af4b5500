"""The compiled loops of the network's fixed steps (`_loops.c`), behind torch-shaped calls.

CPU tensors only: callers keep torch's version for other devices (and as the tests' reference).
"""

from __future__ import annotations

import ctypes
import functools

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from cvos.files import compiled_library


@functools.cache
def _loops() -> tuple[ctypes.CDLL, int]:
    """The library, its signatures set once, and the top-k mean's block width."""
    library = compiled_library("cvos.models._loops")
    pointer, size = ctypes.c_void_p, ctypes.c_int64
    library.topk_mean_rows.argtypes = [pointer, size, pointer, pointer, size, size]
    library.topk_mean_rows.argtypes += [ctypes.c_float, pointer, pointer]
    library.topk_mean_rows.restype = None
    library.topk_lanes.restype = size
    library.boundary_band.argtypes = [pointer, size, size, size, size, size, size, pointer]
    library.boundary_band.argtypes += [pointer]
    library.boundary_band.restype = None
    return library, library.topk_lanes()


def topk_means(sim: Tensor, ranges: list[tuple[int, int]], k: int, empty: float) -> Tensor:
    """M: per column of sim (N x M), the mean of the k largest over the rows in `ranges`
    ([start, stop) pairs; all of them when fewer), `empty` where they hold none."""
    library, lanes = _loops()
    cells = sim.shape[1]
    sim = sim.float().contiguous()
    if cells < lanes:  # the kernel works on blocks of `lanes` cells
        sim = F.pad(sim, (0, lanes - cells))
    bounds = np.array(ranges, np.int64).reshape(-1, 2).T.copy()  # 2 x R: starts, stops
    out = torch.empty(sim.shape[1])
    scratch = torch.empty(k * lanes)
    library.topk_mean_rows(
        sim.data_ptr(), sim.shape[1], bounds[0].ctypes.data, bounds[1].ctypes.data,
        bounds.shape[1], k, empty, scratch.data_ptr(), out.data_ptr(),
    )  # fmt: skip
    return out[:cells]


def boundary_band(prior: Tensor, radius: int) -> Tensor:
    """N x 1 x H x W {0, 1} float32: where the (2 radius + 1) square around a pixel, clipped to
    the image, holds both prior > 0.5 and prior <= 0.5. prior: N x 1 x H x W float32, any
    layout whose rows are contiguous (a window of a larger map, NCHW or NHWC alike)."""
    n, _, height, width = prior.shape
    if prior.dtype != torch.float32 or (width > 1 and prior.stride(3) != 1):
        prior = prior.float().contiguous()
    out = torch.empty(n, 1, height, width)
    counts = torch.empty(width, dtype=torch.int32)
    _loops()[0].boundary_band(
        prior.data_ptr(), n, prior.stride(0), prior.stride(2), height, width, radius,
        counts.data_ptr(), out.data_ptr(),
    )  # fmt: skip
    return out
