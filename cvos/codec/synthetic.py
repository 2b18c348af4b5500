"""Synthetic videos with known motion, for tests and benchmarks that must run anywhere."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SyntheticVideo:
    frames: np.ndarray  # T x H x W x 3 uint8 RGB
    masks: np.ndarray  # T x H x W bool, True on the square


_SMOOTHING = 8
"""Box-filter width of the textures: the MPEG-4 encoder's diamond search only finds the
true motion of textures that vary smoothly over a few pixels (on raw noise it falls
back to intra blocks)."""


def _texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Random smooth RGB texture stretched over 0..255: H x W x 3 uint8."""
    noise = rng.random((height + _SMOOTHING, width + _SMOOTHING, 3))
    total = np.pad(noise.cumsum(0).cumsum(1), ((1, 0), (1, 0), (0, 0)))
    k = _SMOOTHING
    box = total[k:, k:] - total[:-k, k:] - total[k:, :-k] + total[:-k, :-k]  # sums over k x k
    box = box[:height, :width]
    return np.round(255 * (box - box.min()) / (box.max() - box.min())).astype(np.uint8)


def moving_square_video(
    num_frames: int,
    height: int,
    width: int,
    *,
    square_size: int = 48,
    square_start: tuple[int, int] = (8, 8),
    square_motion: tuple[int, int] = (5, 3),
    background_motion: tuple[int, int] = (-1, 2),
    seed: int = 0,
) -> SyntheticVideo:
    """A textured square moving by `square_motion` (dx, dy) px per frame over a textured
    background panning by `background_motion`. Motions are what the codec should
    report as dst - src. The square must stay inside the frame.
    """
    (x0, y0), (sx, sy), (bx, by) = square_start, square_motion, background_motion
    last_x, last_y = x0 + sx * (num_frames - 1), y0 + sy * (num_frames - 1)
    if (
        min(x0, y0, last_x, last_y) < 0
        or max(last_x, x0) + square_size > width
        or (max(last_y, y0) + square_size > height)
    ):
        raise ValueError("the square leaves the frame; use fewer frames or a smaller motion")
    rng = np.random.default_rng(seed)
    margin_x, margin_y = abs(bx) * num_frames, abs(by) * num_frames
    background = _texture(rng, height + margin_y, width + margin_x)
    square = _texture(rng, square_size, square_size)
    frames = np.empty((num_frames, height, width, 3), np.uint8)
    masks = np.zeros((num_frames, height, width), bool)
    for t in range(num_frames):
        top = margin_y - by * t if by > 0 else -by * t  # content moves by (bx, by) per frame
        left = margin_x - bx * t if bx > 0 else -bx * t
        frames[t] = background[top : top + height, left : left + width]
        y, x = y0 + sy * t, x0 + sx * t
        frames[t, y : y + square_size, x : x + square_size] = square
        masks[t, y : y + square_size, x : x + square_size] = True
    return SyntheticVideo(frames, masks)
