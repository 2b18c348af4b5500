"""Random geometry for training samples, consistent across frames, masks and motion vectors.

A sample's frame is first stretched to the network input size, exactly as the streaming
propagator resizes it (`cvos.models.resize_affine`), then flipped, rotated, scaled and cropped
at random. One map is drawn per group of frames that share motion (the I-frame, the target and
the target's motion fields) and `cvos.models.frame_inputs` applies it to all of them; with no
augmentation and a crop of the whole input, a sample holds exactly the propagator's inputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from torch import Tensor

from cvos.models.geometry import Affine, resize_affine, sample_nearest


@dataclass(frozen=True)
class Augment:
    """Ranges of one group's random geometry; the defaults: none (a plain resize)."""

    flip_p: float = 0.0  # probability of a horizontal flip
    max_rotation: float = 0.0  # degrees, drawn uniformly in [-max, max]
    scale_range: tuple[float, float] = (1.0, 1.0)  # zoom on top of the resize to the input size
    max_translation: float = 0.0  # fraction of the crop size, on top of the random crop position


def sample_affine(
    in_size: tuple[int, int],
    input_size: tuple[int, int],
    crop_size: tuple[int, int],
    augment: Augment,
    rng: np.random.Generator,
) -> Affine:
    """Stretch (H, W) to `input_size`, flip, rotate and zoom about its centre, then take a
    `crop_size` window at a random position (and translation): the map from crop to frame."""
    resize = resize_affine(in_size, input_size)
    (in_h, in_w), (crop_h, crop_w) = input_size, crop_size
    scale = rng.uniform(*augment.scale_range)
    angle = math.radians(rng.uniform(-augment.max_rotation, augment.max_rotation))
    flip = -1.0 if rng.random() < augment.flip_p else 1.0
    cos, sin = math.cos(angle), math.sin(angle)
    forward = scale * np.array([[cos, -sin], [sin, cos]]) @ np.diag([flip, 1.0])  # resized -> crop
    slack_x = max(0.0, (scale * in_w - crop_w) / 2) + augment.max_translation * crop_w
    slack_y = max(0.0, (scale * in_h - crop_h) / 2) + augment.max_translation * crop_h
    shift = np.array([rng.uniform(-slack_x, slack_x), rng.uniform(-slack_y, slack_y)])
    crop_centre = np.array([(crop_w - 1) / 2, (crop_h - 1) / 2])
    resized_centre = np.array([(in_w - 1) / 2, (in_h - 1) / 2])
    to_resized = np.linalg.inv(forward)  # crop -> resized input
    matrix = resize.matrix @ to_resized
    offset = resize.matrix @ (resized_centre - to_resized @ (crop_centre + shift)) + resize.offset
    return Affine(matrix=matrix, offset=offset, out_size=(int(crop_h), int(crop_w)))


def transform_masks(masks: list[np.ndarray], affine: Affine) -> Tensor:
    """H x W {0, 1} masks -> K x h x w float32 {0, 1}, nearest pixel (0 outside the frame)."""
    return sample_nearest([mask[..., None] for mask in masks], affine)


def dilate_or_erode(mask: np.ndarray, kernel: int) -> np.ndarray:
    """H x W {0, 1}: positive `kernel` dilates with a kernel x kernel square, negative erodes.

    The frame border counts as neither object nor background (it never erodes the object):
    scipy's maximum / minimum filter with mode "nearest", computed as shifted extremes of the
    pixels inside the frame (border copies add no new values), several times faster.
    """
    size = abs(kernel)
    if size <= 1:
        return mask
    extreme = np.maximum if kernel > 0 else np.minimum
    return _window_extreme(_window_extreme(mask, size, 0, extreme), size, 1, extreme)


def _window_extreme(values: np.ndarray, size: int, axis: int, extreme: np.ufunc) -> np.ndarray:
    """`extreme` over scipy's window of `size` along `axis` (offsets -(size // 2) to
    (size - 1) // 2), of the values inside the array."""
    out = values.copy()
    length = values.shape[axis]
    for offset in range(-(size // 2), (size - 1) // 2 + 1):
        if offset == 0 or abs(offset) >= length:
            continue
        span = length - abs(offset)
        here = [slice(None)] * values.ndim
        there = [slice(None)] * values.ndim
        here[axis] = slice(max(-offset, 0), max(-offset, 0) + span)
        there[axis] = slice(max(offset, 0), max(offset, 0) + span)
        view = out[tuple(here)]
        extreme(view, values[tuple(there)], out=view)
    return out
