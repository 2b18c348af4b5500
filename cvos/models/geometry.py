"""Where each network-input pixel reads its frame pixel: one affine map, two samplers.

Coordinates are (x, y) with pixel centres on integers; a frame of width W covers x in
[-0.5, W - 0.5]. Output pixels that read outside the frame get 0. Images are sampled
bilinearly; masks, motion vectors and residuals take the nearest pixel, which keeps them exact
(they are blockwise). Vectors are differences of points, so they transform by the map's linear
part only: a flip negates dx, a resize scales both components, a rotation rotates them.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class Affine:
    """Where each output pixel reads its input: p_in = matrix @ p_out + offset."""

    matrix: np.ndarray  # 2 x 2, output -> input
    offset: np.ndarray  # 2
    out_size: tuple[int, int]  # (h, w)

    @property
    def vector_map(self) -> np.ndarray:
        """2 x 2: how a displacement in the input becomes one in the output (forward, linear)."""
        return np.linalg.inv(self.matrix)

    def sources(self) -> tuple[np.ndarray, np.ndarray]:
        """x and y input coordinates of every output pixel: two h x w float64 arrays."""
        h, w = self.out_size
        cols = np.arange(w, dtype=np.float64)[None, :]
        rows = np.arange(h, dtype=np.float64)[:, None]
        (a, b), (c, d) = self.matrix
        return a * cols + b * rows + self.offset[0], c * cols + d * rows + self.offset[1]

    def input_box(self, height: int, width: int) -> tuple[int, int, int, int] | None:
        """(x0, y0, x1, y1): the part of an H x W input the output reads (1 px margin), or None."""
        h, w = self.out_size
        corners = np.array([[0, w - 1, 0, w - 1], [0, 0, h - 1, h - 1]], np.float64)  # 2 x 4 (x, y)
        inputs = self.matrix @ corners + self.offset[:, None]
        x0, y0 = (max(int(np.floor(v)) - 1, 0) for v in inputs.min(axis=1))
        x1 = min(int(np.ceil(inputs[0].max())) + 2, width)
        y1 = min(int(np.ceil(inputs[1].max())) + 2, height)
        return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


def resize_affine(in_size: tuple[int, int], out_size: tuple[int, int]) -> Affine:
    """Stretch an (H, W) frame onto (h, w): pixel edges meet pixel edges (align_corners=False)."""
    (in_h, in_w), (out_h, out_w) = in_size, out_size
    scale = np.array([in_w / out_w, in_h / out_h])
    return Affine(np.diag(scale), (scale - 1) / 2, (int(out_h), int(out_w)))


def map_vectors(vectors: Tensor, affine: Affine) -> Tensor:
    """... x 2 x h x w vectors sampled at the output, in input pixels -> in output pixels."""
    linear = torch.from_numpy(affine.vector_map).to(vectors.dtype)
    return torch.einsum("ij,...jhw->...ihw", linear, vectors)


def sample_nearest(arrays: list[np.ndarray], affine: Affine) -> Tensor:
    """H x W x C_i arrays (any dtype) -> (sum C_i) x h x w float32, nearest pixel, 0 outside.

    Gathers only the output's pixels with one flat index per array, so a large frame costs
    what the output costs.
    """
    height, width = arrays[0].shape[:2]
    rows, cols, inside = _nearest_index(affine, height, width)
    out = np.empty((sum(a.shape[2] for a in arrays), rows.size), np.float32)  # C x h*w
    first = 0
    for array in arrays:
        channels = array.shape[2]
        out[first : first + channels] = _gather(array, rows, cols).T
        first += channels
    if not inside.all():
        out *= inside
    return torch.from_numpy(out).view(-1, *affine.out_size)


def _nearest_index(affine: Affine, height: int, width: int) -> tuple[np.ndarray, ...]:
    """Row and column (h*w intp, clamped into the frame) of each output pixel's nearest input
    pixel, and whether it lies inside the frame (h*w bool); the last few maps are cached."""
    key = (affine.matrix.tobytes(), affine.offset.tobytes(), affine.out_size, height, width)
    return _nearest_index_of(key)


@functools.lru_cache(maxsize=8)
def _nearest_index_of(key: tuple) -> tuple[np.ndarray, ...]:
    matrix, offset, out_size, height, width = key
    affine = Affine(np.frombuffer(matrix).reshape(2, 2), np.frombuffer(offset), out_size)
    xs, ys = affine.sources()
    cols, rows = np.floor(xs + 0.5).astype(np.intp), np.floor(ys + 0.5).astype(np.intp)
    inside = (cols >= 0) & (cols < width) & (rows >= 0) & (rows < height)
    cols, rows = cols.clip(0, width - 1).ravel(), rows.clip(0, height - 1).ravel()
    return rows, cols, inside.ravel()


def _gather(array: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """array[rows, cols] (N x C) for an H x W x C array whose pixels are C-contiguous.

    numpy's two-index fancy indexing is ~10x slower than `np.take` with one flat index, and a
    cropped frame is a view whose rows lie `pitch` pixels apart in its parent: index the
    parent's memory from the crop's first pixel to its last.
    """
    height, width, channels = array.shape
    item = array.itemsize
    row_stride, pixel_stride, channel_stride = array.strides
    if channel_stride != item or pixel_stride != channels * item or row_stride % pixel_stride:
        array = np.ascontiguousarray(array)
        row_stride, pixel_stride, channel_stride = array.strides
    pitch = row_stride // pixel_stride
    span = (height - 1) * pitch + width  # pixels from the first to the last of the crop
    flat = np.lib.stride_tricks.as_strided(
        array, shape=(span, channels), strides=(pixel_stride, channel_stride), writeable=False
    )
    return np.take(flat, rows * pitch + cols, axis=0)


def sample_bilinear(arrays: list[np.ndarray], affine: Affine) -> Tensor:
    """H x W x C_i arrays -> (sum C_i) x h x w float32, bilinear inside the frame, 0 outside."""
    height, width = arrays[0].shape[:2]
    box = affine.input_box(height, width)
    if box is None:  # the output lies entirely outside the input
        return torch.zeros(sum(a.shape[2] for a in arrays), *affine.out_size)
    grid, inside = _bilinear_grid(affine, box, height, width)
    region = torch.from_numpy(_float_region(arrays, box))[None]  # 1 x C x rh x rw
    out = F.grid_sample(region, grid, mode="bilinear", padding_mode="border", align_corners=True)
    return out[0] if inside is None else out[0] * inside


def _bilinear_grid(
    affine: Affine, box: tuple[int, int, int, int], height: int, width: int
) -> tuple[Tensor, Tensor | None]:
    """The grid_sample grid (1 x h x w x 2) into `box` and where the output lies inside the
    frame (h x w, None when everywhere); the last few are cached."""
    key = (affine.matrix.tobytes(), affine.offset.tobytes(), affine.out_size, box, height, width)
    return _bilinear_grid_of(key)


@functools.lru_cache(maxsize=8)
def _bilinear_grid_of(key: tuple) -> tuple[Tensor, Tensor | None]:
    matrix, offset, out_size, (x0, y0, x1, y1), height, width = key
    affine = Affine(np.frombuffer(matrix).reshape(2, 2), np.frombuffer(offset), out_size)
    xs, ys = affine.sources()
    inside = (xs >= -0.5) & (xs <= width - 0.5) & (ys >= -0.5) & (ys <= height - 0.5)
    grid = np.stack((_to_unit(xs - x0, x1 - x0), _to_unit(ys - y0, y1 - y0)), axis=-1)
    mask = None if inside.all() else torch.from_numpy(inside)
    return torch.from_numpy(grid.astype(np.float32))[None], mask


def _to_unit(coords: np.ndarray, size: int) -> np.ndarray:
    """Pixel coordinates 0 .. size-1 of a region -> grid_sample's [-1, 1] (align_corners=True)."""
    return coords * (2.0 / max(size - 1, 1)) - 1.0


def _float_region(arrays: list[np.ndarray], box: tuple[int, int, int, int]) -> np.ndarray:
    """C x rh x rw float32 copy of `box` of H x W x C_i arrays, one converting copy each."""
    x0, y0, x1, y1 = box
    region = np.empty((sum(a.shape[2] for a in arrays), y1 - y0, x1 - x0), np.float32)
    first = 0
    for array in arrays:
        crop = array[y0:y1, x0:x1].transpose(2, 0, 1)
        np.copyto(region[first : first + array.shape[2]], crop, casting="unsafe")
        first += array.shape[2]
    return region


def dilate(masks: Tensor, radius: int) -> Tensor:
    """... x h x w {0, 1} masks dilated by a (2 radius + 1) square, {0, 1} float32.

    Counts the mask's pixels in every square with a summed-area table: four lookups a pixel
    whatever the radius (a max-pool compares (2 radius + 1)^2 pixels; exact up to 2^24 pixels).
    """
    k = 2 * radius + 1
    padded = F.pad(masks.float(), (radius + 1, radius, radius + 1, radius))  # leading zero row
    table = padded.cumsum(-1).cumsum(-2)
    box = table[..., k:, k:] - table[..., :-k, k:] - table[..., k:, :-k] + table[..., :-k, :-k]
    return (box > 0.5).float()
