"""Where each network-input pixel reads its frame pixel: one affine map, two samplers.

Coordinates are (x, y) with pixel centres on integers; a frame of width W covers x in
[-0.5, W - 0.5]. Output pixels that read outside the frame get 0. Images are sampled
bilinearly; masks, motion vectors and residuals take the nearest pixel, which keeps them exact
(they are blockwise). Vectors are differences of points, so they transform by the map's linear
part only: a flip negates dx, a resize scales both components, a rotation rotates them.

Under a map without rotation (a resize, flips, zooms, crops: the default training augmentation
and inference), compiled loops (`_samplers.c`) read uint8 images and masks and int16 / int32
fields in place, with the very arithmetic of numpy indexing and torch's grid_sample; any other
map or dtype takes those two.
"""

from __future__ import annotations

import ctypes
import functools
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from cvos.files import compiled_library


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


@functools.cache
def _samplers() -> ctypes.CDLL:
    """The compiled sampling loops (`_samplers.c`), loaded once."""
    library = compiled_library("cvos.models._samplers")
    pointer, size = ctypes.c_void_p, ctypes.c_int64
    array = [pointer, size, size, size, size]  # data, row / pixel / channel strides, channels
    for name in _NEAREST_KERNELS.values():
        # rows, height, cols, width, inside, out
        getattr(library, name).argtypes = [*array, pointer, size, pointer, size, pointer, pointer]
        getattr(library, name).restype = None
    # rows, their weights, height, cols, their weights, width, inside, out, rows of the array,
    # fused
    axes = [pointer, pointer, size, pointer, pointer, size, pointer, pointer, size, ctypes.c_int]
    library.sample_bilinear_u8.argtypes = [*array, *axes]
    library.sample_bilinear_u8.restype = None
    library.unit_to_bytes.argtypes = [pointer, size, pointer]
    library.unit_to_bytes.restype = None
    return library


def unit_to_bytes(values: Tensor, out: Tensor) -> None:
    """out (uint8) = round(255 x values) of float32 values in [0, 1] (a sampled image), halves to
    even, exactly as `values.mul(255).round_()` cast to uint8: one compiled pass instead of
    three. Both tensors contiguous, of one shape."""
    if values.dtype != torch.float32 or out.dtype != torch.uint8 or values.shape != out.shape:
        raise ValueError(
            f"expected float32 values and a uint8 out of one shape, got {values.dtype}"
            f" {tuple(values.shape)} and {out.dtype} {tuple(out.shape)}"
        )
    if not (values.is_contiguous() and out.is_contiguous()):
        raise ValueError("unit_to_bytes: expected contiguous tensors")
    _samplers().unit_to_bytes(values.data_ptr(), values.numel(), out.data_ptr())


def resize_affine(in_size: tuple[int, int], out_size: tuple[int, int]) -> Affine:
    """Stretch an (H, W) frame onto (h, w): pixel edges meet pixel edges (align_corners=False)."""
    (in_h, in_w), (out_h, out_w) = in_size, out_size
    scale = np.array([in_w / out_w, in_h / out_h])
    return Affine(np.diag(scale), (scale - 1) / 2, (int(out_h), int(out_w)))


def map_vectors(vectors: Tensor, affine: Affine) -> Tensor:
    """... x 2 x h x w vectors sampled at the output, in input pixels -> in output pixels.

    Without rotation (a resize, flips: every inference frame) each component only scales, one
    multiply instead of a 2 x 2 product per vector (the same values: the other term is 0)."""
    linear = torch.from_numpy(affine.vector_map).to(vectors.dtype)
    if linear[0, 1] == 0 and linear[1, 0] == 0:
        return vectors * linear.diagonal()[:, None, None]
    return torch.einsum("ij,...jhw->...ihw", linear, vectors)


def sample_nearest(arrays: list[np.ndarray], affine: Affine) -> Tensor:
    """H x W x C_i arrays (any dtype) -> (sum C_i) x h x w float32, nearest pixel, 0 outside.

    Gathers only the output's pixels, so a large frame costs what the output costs. Under a
    map without rotation, a compiled loop reads uint8, int16 and int32 arrays in place and
    converts as it goes; otherwise numpy takes one flat index per array.
    """
    height, width = arrays[0].shape[:2]
    taps = _nearest_taps(affine, height, width)
    out = np.empty((sum(a.shape[2] for a in arrays), taps.rows.size), np.float32)  # C x h*w
    first = 0
    for array in arrays:
        part = out[first : first + array.shape[2]]
        if taps.axes is not None and array.dtype in _NEAREST_KERNELS:
            _gather_compiled(array, taps, part)
        else:
            part[...] = _gather(array, taps.rows, taps.cols).T
            if taps.inside is not None:
                part *= taps.inside
        first += array.shape[2]
    return torch.from_numpy(out).view(-1, *affine.out_size)


def nearest_axes(affine: Affine, height: int, width: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The frame row of each output row (h int32) and column of each output column (w int32)
    that `sample_nearest` reads, when the map has no rotation and reads inside the frame alone;
    else None. A field computed at those pixels alone is then exactly what it samples."""
    taps = _nearest_taps(affine, height, width)
    return taps.axes if taps.inside is None else None


@dataclass(frozen=True)
class _NearestTaps:
    """The input pixel each output pixel takes (h*w of them)."""

    rows: np.ndarray  # h*w int64, clamped into the frame
    cols: np.ndarray  # h*w int64
    inside: np.ndarray | None  # h*w bool: whether the pixel lies inside the frame; None: all
    axes: tuple[np.ndarray, np.ndarray] | None  # the row of each output row (h int32) and the
    # column of each output column (w int32), when rows and columns are that (no rotation)


_NEAREST_KERNELS = {
    np.dtype(np.uint8): "gather_nearest_u8",
    np.dtype(np.int16): "gather_nearest_i16",
    np.dtype(np.int32): "gather_nearest_i32",
}


def _gather_compiled(array: np.ndarray, taps: _NearestTaps, out: np.ndarray) -> None:
    """out (C x h*w float32, C-contiguous) = array (H x W x C) at `taps` (with axes)."""
    rows, cols = taps.axes
    strides = (stride // array.itemsize for stride in array.strides)
    getattr(_samplers(), _NEAREST_KERNELS[array.dtype])(
        _address(array), *strides, array.shape[2], _address(rows), rows.size,
        _address(cols), cols.size, _address(taps.inside), _address(out),
    )  # fmt: skip


def _address(array: np.ndarray | None) -> int | None:
    """The data pointer of an optional array (None: a NULL pointer); a third of the time of
    `array.ctypes.data`, which counts at a dozen calls a sample."""
    return None if array is None else array.__array_interface__["data"][0]


def _nearest_taps(affine: Affine, height: int, width: int) -> _NearestTaps:
    """The taps of `affine` on an H x W frame; the last few are cached."""
    key = (affine.matrix.tobytes(), affine.offset.tobytes(), affine.out_size, height, width)
    return _nearest_taps_of(key)


@functools.lru_cache(maxsize=8)
def _nearest_taps_of(key: tuple) -> _NearestTaps:
    matrix, offset, out_size, height, width = key
    affine = Affine(np.frombuffer(matrix).reshape(2, 2), np.frombuffer(offset), out_size)
    xs, ys = affine.sources()
    cols, rows = np.floor(xs + 0.5).astype(np.int64), np.floor(ys + 0.5).astype(np.int64)
    inside = (cols >= 0) & (cols < width) & (rows >= 0) & (rows < height)
    cols, rows = cols.clip(0, width - 1), rows.clip(0, height - 1)  # h x w each
    axes = None
    if (rows == rows[:, :1]).all() and (cols == cols[:1]).all():
        axes = (rows[:, 0].astype(np.int32), cols[0].astype(np.int32))
    mask = None if inside.all() else inside.ravel()
    return _NearestTaps(rows.ravel(), cols.ravel(), mask, axes)


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
    """H x W x C_i arrays -> (sum C_i) x h x w float32, bilinear inside the frame, 0 outside.

    torch's grid_sample on a float copy of the part of the frame the output reads. Under a
    map without rotation, uint8 arrays (images, masks) skip the copy: a compiled loop does
    grid_sample's arithmetic on them in place, giving its values bit for bit, several times
    faster.
    """
    height, width = arrays[0].shape[:2]
    box = affine.input_box(height, width)
    if box is None:  # the output lies entirely outside the input
        return torch.zeros(sum(a.shape[2] for a in arrays), *affine.out_size)
    taps = _bilinear_taps(affine, box, height, width)
    if taps.axes is not None and all(a.dtype == np.uint8 for a in arrays):
        return _bilinear_compiled(arrays, box, taps).view(-1, *affine.out_size)
    region = torch.from_numpy(_float_region(arrays, box))[None]  # 1 x C x rh x rw
    grid = torch.from_numpy(taps.grid)[None]
    out = F.grid_sample(region, grid, mode="bilinear", padding_mode="border", align_corners=True)
    if taps.inside is None:
        return out[0]
    return out[0] * torch.from_numpy(taps.inside).view(affine.out_size)


@dataclass(frozen=True)
class _Corners:
    """Along one axis of the output, grid_sample's two neighbouring input indices and their
    weights, computed as grid_sample computes them (the far index clamped into the region,
    where its weight is 0)."""

    index: np.ndarray  # 2 x n int32: near (north or west), far (south or east)
    weight: np.ndarray  # 2 x n float32: of the near one (s or e), of the far one (n or w)


@dataclass(frozen=True)
class _BilinearTaps:
    """What each output pixel reads of the region `box` of a frame (h x w of them)."""

    grid: np.ndarray  # h x w x 2 float32 (x, y) in [-1, 1] over the region: grid_sample's
    inside: np.ndarray | None  # h*w bool: whether the pixel lies inside the frame; None: all
    axes: tuple[_Corners, _Corners] | None  # rows, columns: when x depends on the column alone
    # and y on the row alone (no rotation)


def _bilinear_compiled(
    arrays: list[np.ndarray], box: tuple[int, int, int, int], taps: _BilinearTaps
) -> Tensor:
    """(sum C_i) x h*w float32: `box` of H x W x C_i uint8 arrays at `taps` (with axes)."""
    x0, y0, x1, y1 = box
    rows, cols = taps.axes
    count = rows.index.shape[1] * cols.index.shape[1]
    out = np.empty((sum(a.shape[2] for a in arrays), count), np.float32)  # C x h*w
    first = 0
    for array in arrays:
        region = array[y0:y1, x0:x1]
        _samplers().sample_bilinear_u8(
            _address(region), *region.strides, region.shape[2],  # uint8: strides in elements
            _address(rows.index), _address(rows.weight), rows.index.shape[1],
            _address(cols.index), _address(cols.weight), cols.index.shape[1],
            _address(taps.inside), _address(out[first]), region.shape[0], _fused_multiply_add(),
        )  # fmt: skip
        first += region.shape[2]
    return torch.from_numpy(out)


@functools.cache
def _fused_multiply_add() -> bool:
    """Whether ATen's grid_sample sums with fused multiply-adds: its vectorised kernels do,
    its plain C++ one (`ATEN_CPU_CAPABILITY=default`) does not."""
    return torch.backends.cpu.get_cpu_capability() != "DEFAULT"


def _bilinear_taps(
    affine: Affine, box: tuple[int, int, int, int], height: int, width: int
) -> _BilinearTaps:
    """The taps of `affine` into `box` of an H x W frame; the last few are cached."""
    key = (affine.matrix.tobytes(), affine.offset.tobytes(), affine.out_size, box, height, width)
    return _bilinear_taps_of(key)


@functools.lru_cache(maxsize=8)
def _bilinear_taps_of(key: tuple) -> _BilinearTaps:
    matrix, offset, out_size, (x0, y0, x1, y1), height, width = key
    affine = Affine(np.frombuffer(matrix).reshape(2, 2), np.frombuffer(offset), out_size)
    xs, ys = affine.sources()
    inside = (xs >= -0.5) & (xs <= width - 0.5) & (ys >= -0.5) & (ys <= height - 0.5)
    grid = np.stack((_to_unit(xs - x0, x1 - x0), _to_unit(ys - y0, y1 - y0)), axis=-1)
    grid = grid.astype(np.float32)  # h x w x 2
    axes = None
    if (grid[..., 0] == grid[:1, :, 0]).all() and (grid[..., 1] == grid[:, :1, 1]).all():
        axes = (_corners(grid[:, 0, 1], y1 - y0), _corners(grid[0, :, 0], x1 - x0))
    return _BilinearTaps(grid, None if inside.all() else inside.ravel(), axes)


def _corners(coords: np.ndarray, size: int) -> _Corners:
    """grid_sample's float32 steps along one axis of `size` pixels (align_corners=True, border
    padding): unnormalise, clip, floor, and the distances to both neighbours."""
    one = np.float32(1)
    position = (coords + one) * (np.float32(size - 1) / np.float32(2))
    position = np.minimum(np.float32(size - 1), np.maximum(position, np.float32(0)))
    near = np.floor(position)
    far_weight = position - near
    index = near.astype(np.int32)
    indices = np.stack((index, np.minimum(index + 1, size - 1)))
    return _Corners(indices, np.stack((one - far_weight, far_weight)))


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
