"""Per-pixel motion vectors and warps with coviar's conventions, vectorised with numpy.

FFmpeg exports one record per motion-compensated block (`AVMotionVector`: block size
`w`, `h`, block centres `src_x, src_y, dst_x, dst_y`). coviar paints every record
whose motion is non-zero into an H x W field, in record order, over the block's
pixels `dst + o` (offsets `-w/2 .. w/2-1`) whose destination and source `src + o`
both lie inside the frame. This module builds the same field without a Python loop
over blocks, plus the warp `out[y, x] = image[y - dy, x - dx]` that the residuals
and the accumulation back to the I-frame need.

Fast path: MPEG-4 and H.264 partitions are 8-pixel aligned and never overlap, so
the field is constant on 8 x 8 cells; it is painted on the cell grid and pixels are
gathered in runs of 8 (one memory copy per run instead of per pixel). Only cells
whose source block leaves the frame are resolved pixel by pixel. Any other input
(unaligned or overlapping blocks, sizes not a multiple of 8) takes the exact
per-pixel path, where later records win as in coviar's loop.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CELL = 8
"""Side of the cells of the fast path: macroblock partitions are multiples of 8 pixels."""


@dataclass(frozen=True)
class _Blocks:
    """Moving blocks of one frame: destination rectangles [x0, x1) x [y0, y1) and motion."""

    x0: np.ndarray  # N, int64
    x1: np.ndarray
    y0: np.ndarray
    y1: np.ndarray
    dx: np.ndarray  # N, int64: dst - src
    dy: np.ndarray

    @classmethod
    def from_records(cls, records: np.ndarray) -> _Blocks:
        """Keep the records that move (coviar skips zero motion), in record order."""
        dx = records["dst_x"].astype(np.int64) - records["src_x"]
        dy = records["dst_y"].astype(np.int64) - records["src_y"]
        moving = (dx != 0) | (dy != 0)
        half_w = records["w"][moving].astype(np.int64) // 2
        half_h = records["h"][moving].astype(np.int64) // 2
        dst_x = records["dst_x"][moving].astype(np.int64)
        dst_y = records["dst_y"][moving].astype(np.int64)
        return cls(
            dst_x - half_w, dst_x + half_w, dst_y - half_h, dst_y + half_h, dx[moving], dy[moving]
        )

    def clipped(self, height: int, width: int, *, sources_inside: bool) -> _Blocks:
        """Clip to pixels inside the frame (and with sources inside, if asked); drop empties."""
        x0, x1 = np.maximum(self.x0, 0), np.minimum(self.x1, width)
        y0, y1 = np.maximum(self.y0, 0), np.minimum(self.y1, height)
        if sources_inside:  # source pixel = destination - motion must be inside too
            x0, x1 = np.maximum(x0, self.dx), np.minimum(x1, width + self.dx)
            y0, y1 = np.maximum(y0, self.dy), np.minimum(y1, height + self.dy)
        keep = (x1 > x0) & (y1 > y0)
        return _Blocks(x0[keep], x1[keep], y0[keep], y1[keep], self.dx[keep], self.dy[keep])

    def aligned_to(self, step: int) -> bool:
        edges = np.concatenate([self.x0, self.x1, self.y0, self.y1])
        return bool(np.all(edges % step == 0))

    def motion_table(self) -> np.ndarray:
        """(N + 1) x 2 int32 (dx, dy) with a zero row first, indexed by `owner + 1`."""
        table = np.zeros((self.dx.size + 1, 2), np.int32)
        table[1:, 0], table[1:, 1] = self.dx, self.dy
        return table


def _rectangle_cells(
    x0: np.ndarray, x1: np.ndarray, y0: np.ndarray, y1: np.ndarray, grid_width: int
) -> tuple[np.ndarray, np.ndarray]:
    """Flat grid index of every cell of every rectangle, and which rectangle it belongs to."""
    widths = x1 - x0
    areas = widths * (y1 - y0)
    owner = np.repeat(np.arange(areas.size), areas)
    local = np.arange(owner.size) - np.repeat(np.cumsum(areas) - areas, areas)
    row, col = np.divmod(local, widths[owner])
    return (y0[owner] + row) * grid_width + x0[owner] + col, owner


def _paint(
    x0: np.ndarray, x1: np.ndarray, y0: np.ndarray, y1: np.ndarray, shape: tuple[int, int]
) -> tuple[np.ndarray, bool]:
    """Paint rectangles in order: grid of the last rectangle covering each cell (-1: none).

    Also says whether any two rectangles overlap. numpy's scatter picks an arbitrary
    writer for repeated indices, so overlaps are resolved with a max: later wins.
    """
    grid = np.full(shape[0] * shape[1], -1, np.intp)
    cells, owner = _rectangle_cells(x0, x1, y0, y1, shape[1])
    grid[cells] = owner
    overlapped = not np.array_equal(grid[cells], owner)
    if overlapped:
        np.maximum.at(grid, cells, owner)
    return grid.reshape(shape), overlapped


@dataclass(frozen=True)
class MotionField:
    """The motion of one frame: coviar's per-pixel vectors and the warp they define.

    `warp` gathers pixels in horizontal runs of `run` pixels that share one source
    offset; `patch_dst`/`patch_src` are single pixels fixed up after the runs.
    """

    vectors: np.ndarray  # H x W x 2 int32, (dx, dy) = dst - src in whole pixels
    run: int
    run_starts: np.ndarray  # H * W / run, intp: flat index of each run's first source pixel
    patch_dst: np.ndarray  # K, intp: flat destination pixels gathered one by one
    patch_src: np.ndarray  # K, intp: their flat source pixels

    @classmethod
    def still(cls, height: int, width: int) -> MotionField:
        """No motion (I-frames, P-frames without exported vectors): the warp is the identity."""
        no_patch = np.empty(0, np.intp)
        return cls(
            np.zeros((height, width, 2), np.int32),
            width,
            np.arange(height, dtype=np.intp) * width,
            no_patch,
            no_patch,
        )

    @classmethod
    def from_records(cls, records: np.ndarray, height: int, width: int) -> MotionField:
        """Build the field of one frame from FFmpeg's motion-vector records (structured array)."""
        blocks = _Blocks.from_records(records)
        if blocks.dx.size == 0:
            return cls.still(height, width)
        if height % CELL == 0 and width % CELL == 0:
            on_cells = blocks.clipped(height, width, sources_inside=False)
            if on_cells.aligned_to(CELL):
                field = cls._from_cells(on_cells, height, width)
                if field is not None:
                    return field
        return cls._from_pixels(blocks.clipped(height, width, sources_inside=True), height, width)

    @classmethod
    def _from_cells(cls, blocks: _Blocks, height: int, width: int) -> MotionField | None:
        """Fast path for 8-aligned, non-overlapping blocks; None if blocks overlap."""
        cell_rows, cell_cols = height // CELL, width // CELL
        owner, overlapped = _paint(
            blocks.x0 // CELL, blocks.x1 // CELL, blocks.y0 // CELL, blocks.y1 // CELL,
            (cell_rows, cell_cols),
        )  # fmt: skip
        if overlapped:  # a pixel may then fall back to an earlier block: needs the pixel path
            return None
        cell_motion = blocks.motion_table()[owner + 1]  # H/8 x W/8 x 2
        vectors = _upsample_cells(cell_motion)  # H x W x 2
        offsets = cell_motion[..., 0].astype(np.intp) + cell_motion[..., 1].astype(np.intp) * width
        starts = np.arange(height, dtype=np.intp)[:, None] * width
        starts = starts + np.arange(0, width, CELL) - np.repeat(offsets, CELL, axis=0)
        patch_dst, patch_src = _resolve_border_cells(vectors, cell_motion)
        np.clip(starts, 0, height * width - CELL, out=starts)  # border cells' runs are patched
        return cls(vectors, CELL, starts.reshape(-1), patch_dst, patch_src)

    @classmethod
    def _from_pixels(cls, blocks: _Blocks, height: int, width: int) -> MotionField:
        """Exact general path: paint the clipped blocks pixel by pixel, later records win."""
        owner, _ = _paint(blocks.x0, blocks.x1, blocks.y0, blocks.y1, (height, width))
        vectors = blocks.motion_table()[owner + 1]  # H x W x 2
        offsets = vectors[..., 0].astype(np.intp) + vectors[..., 1].astype(np.intp) * width
        starts = np.arange(height * width, dtype=np.intp) - offsets.reshape(-1)
        no_patch = np.empty(0, np.intp)
        return cls(vectors, 1, starts, no_patch, no_patch)

    def warp(self, image: np.ndarray) -> np.ndarray:
        """Return `out[y, x] = image[y - dy, x - dx]` for an H x W (x C) image of any dtype."""
        image = np.ascontiguousarray(image)
        height, width = image.shape[:2]
        pixel = np.dtype((np.void, image.strides[1]))  # one pixel, all channels, as one item
        runs = np.ndarray(  # overlapping view: item i = `run` pixels starting at flat pixel i
            shape=(height * width - self.run + 1,),
            dtype=np.dtype((np.void, pixel.itemsize * self.run)),
            buffer=image,
            strides=(pixel.itemsize,),
        )
        out = runs[self.run_starts].view(image.dtype).reshape(image.shape)
        if self.patch_dst.size:
            out_pixels = out.view(pixel).reshape(-1)
            out_pixels[self.patch_dst] = image.view(pixel).reshape(-1)[self.patch_src]
        return out


def _upsample_cells(cell_motion: np.ndarray) -> np.ndarray:
    """H/8 x W/8 x 2 int32 -> H x W x 2, each cell's (dx, dy) over its 8 x 8 pixels.

    Repeats each (dx, dy) pair as one int64 item: half the items of repeating int32s.
    """
    cell_rows, cell_cols = cell_motion.shape[:2]
    pairs = np.ascontiguousarray(cell_motion).view(np.int64)[..., 0]  # H/8 x W/8
    pixels = np.repeat(np.repeat(pairs, CELL, axis=1), CELL, axis=0)  # H x W
    return pixels.view(np.int32).reshape(cell_rows * CELL, cell_cols * CELL, 2)


def _resolve_border_cells(
    vectors: np.ndarray, cell_motion: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Apply coviar's per-pixel rule in cells whose source block is not inside the frame.

    Pixels whose source falls outside get zero motion (in place in `vectors`); every
    pixel of those cells is returned as a (destination, source) patch for the warp.
    """
    height, width = vectors.shape[:2]
    cell_y, cell_x = np.mgrid[0:height:CELL, 0:width:CELL]
    src_x, src_y = cell_x - cell_motion[..., 0], cell_y - cell_motion[..., 1]
    inside = (src_x >= 0) & (src_x + CELL <= width) & (src_y >= 0) & (src_y + CELL <= height)
    rows, cols = np.nonzero(~inside)
    offset = np.arange(CELL)
    ys = (rows * CELL)[:, None, None] + offset[None, :, None]  # K x 8 x 1
    xs = (cols * CELL)[:, None, None] + offset[None, None, :]  # K x 1 x 8
    dx = cell_motion[rows, cols, 0][:, None, None]  # K x 1 x 1
    dy = cell_motion[rows, cols, 1][:, None, None]
    valid = (xs - dx >= 0) & (xs - dx < width) & (ys - dy >= 0) & (ys - dy < height)  # K x 8 x 8
    dst = (ys * width + xs).astype(np.intp)  # K x 8 x 8
    vectors.reshape(-1, 2)[dst[~valid]] = 0
    src = np.where(valid, dst - (dx + dy * width), dst)
    return dst.reshape(-1), src.reshape(-1).astype(np.intp)
