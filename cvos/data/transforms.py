"""Geometric augmentation that keeps motion vectors and residuals consistent with the frames.

One affine map is drawn per group of frames that share motion (the I-frame, the target and the
target's motion fields) and applied to all of them. Vectors are differences of points, so they
transform by the map's linear part only: a flip negates dx, a resize scales both components,
a rotation rotates them, a crop or translation leaves them unchanged. Coordinates are (x, y)
with pixel centres on integers throughout.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import Tensor


@dataclass(frozen=True)
class Augment:
    """Ranges of one group's random geometry; the defaults: plain resize and centre crop."""

    flip_p: float = 0.0  # probability of a horizontal flip
    max_rotation: float = 0.0  # degrees, drawn uniformly in [-max, max]
    scale_range: tuple[float, float] = (1.0, 1.0)  # on top of the resize that covers the crop
    max_translation: float = 0.0  # fraction of the crop size, on top of the random crop position


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

    def input_box(self, height: int, width: int) -> tuple[int, int, int, int] | None:
        """(x0, y0, x1, y1): the part of an H x W input the output reads (1 px margin), or None."""
        h, w = self.out_size
        corners = np.array([[0, w - 1, 0, w - 1], [0, 0, h - 1, h - 1]], np.float64)  # 2 x 4 (x, y)
        inputs = self.matrix @ corners + self.offset[:, None]
        x0, y0 = (max(int(np.floor(v)) - 1, 0) for v in inputs.min(axis=1))
        x1 = min(int(np.ceil(inputs[0].max())) + 2, width)
        y1 = min(int(np.ceil(inputs[1].max())) + 2, height)
        return (x0, y0, x1, y1) if x1 - x0 >= 2 and y1 - y0 >= 2 else None

    def grid(self, box: tuple[int, int, int, int]) -> Tensor:
        """1 x h x w x 2 `grid_sample` grid (align_corners=True) into the input region `box`."""
        h, w = self.out_size
        cols, rows = np.arange(w)[None, :], np.arange(h)[:, None]
        grid = np.empty((1, h, w, 2), np.float32)
        for axis, (start, stop) in enumerate(((box[0], box[2]), (box[1], box[3]))):
            (along_x, along_y), offset = self.matrix[axis], self.offset[axis]
            to_unit = 2.0 / (stop - start - 1)  # region pixels -> [-1, 1]
            grid[0, :, :, axis] = to_unit * (along_x * cols + along_y * rows + offset - start) - 1.0
        return torch.from_numpy(grid)


def sample_affine(
    in_size: tuple[int, int],
    out_size: tuple[int, int],
    augment: Augment,
    rng: np.random.Generator,
) -> Affine:
    """Resize (H, W) to cover (h, w), then flip, rotate, scale and crop at random (`augment`)."""
    (in_h, in_w), (out_h, out_w) = in_size, out_size
    scale = max(out_h / in_h, out_w / in_w) * rng.uniform(*augment.scale_range)
    angle = math.radians(rng.uniform(-augment.max_rotation, augment.max_rotation))
    flip = -1.0 if rng.random() < augment.flip_p else 1.0
    cos, sin = math.cos(angle), math.sin(angle)
    forward = scale * np.array([[cos, -sin], [sin, cos]]) @ np.diag([flip, 1.0])  # input -> output
    slack_x = max(0.0, (scale * in_w - out_w) / 2) + augment.max_translation * out_w
    slack_y = max(0.0, (scale * in_h - out_h) / 2) + augment.max_translation * out_h
    out_centre = np.array(
        [
            (out_w - 1) / 2 + rng.uniform(-slack_x, slack_x),
            (out_h - 1) / 2 + rng.uniform(-slack_y, slack_y),
        ]
    )
    in_centre = np.array([(in_w - 1) / 2, (in_h - 1) / 2])
    matrix = np.linalg.inv(forward)
    return Affine(matrix=matrix, offset=in_centre - matrix @ out_centre, out_size=(out_h, out_w))


def resize_affine(in_size: tuple[int, int], out_size: tuple[int, int]) -> Affine:
    """The deterministic map: resize to cover the output, centred crop."""
    return sample_affine(in_size, out_size, Augment(), np.random.default_rng(0))


def _float_region(arrays: list[np.ndarray], box: tuple[int, int, int, int]) -> Tensor:
    """1 x C x rh x rw float32 copy of `box` of H x W x C_i arrays (any strides, even reversed)."""
    x0, y0, x1, y1 = box
    region = np.empty((sum(a.shape[2] for a in arrays), y1 - y0, x1 - x0), np.float32)
    first = 0
    for array in arrays:  # one strided, converting copy each
        crop = array[y0:y1, x0:x1].transpose(2, 0, 1)
        np.copyto(region[first : first + array.shape[2]], crop, casting="unsafe")
        first += array.shape[2]
    return torch.from_numpy(region)[None]


def warp_groups(groups: list[tuple[list[np.ndarray], str]], affine: Affine) -> list[Tensor]:
    """Sample groups of H x W x C_i arrays, each with its mode ("bilinear" or "nearest"), on one
    grid: a (sum C_i) x h x w float32 tensor per group.

    Only the input region the output reads is converted to float, which keeps large frames
    cheap; outside the input everything reads 0.
    """
    height, width = groups[0][0][0].shape[:2]
    box = affine.input_box(height, width)
    if box is None:  # the output lies entirely outside the input
        channels = [sum(a.shape[2] for a in arrays) for arrays, _ in groups]
        return [torch.zeros(c, *affine.out_size) for c in channels]
    grid = affine.grid(box)
    return [
        F.grid_sample(_float_region(arrays, box), grid, mode=mode, align_corners=True)[0]
        for arrays, mode in groups
    ]


def warp(arrays: list[np.ndarray], affine: Affine, mode: str) -> Tensor:
    """Sample H x W x C_i arrays with one mode: (sum C_i) x h x w float32 (see `warp_groups`)."""
    return warp_groups([(arrays, mode)], affine)[0]


def map_vectors(vectors: Tensor, affine: Affine) -> Tensor:
    """... x 2 x h x w vectors sampled at the output, in input pixels -> in output pixels."""
    linear = torch.from_numpy(affine.vector_map).float()
    return torch.einsum("ij,...jhw->...ihw", linear, vectors)


def dilate_or_erode(mask: np.ndarray, kernel: int) -> np.ndarray:
    """H x W {0, 1}: positive `kernel` dilates with a kernel x kernel square, negative erodes.

    The frame border counts as neither object nor background (it never erodes the object).
    """
    size = abs(kernel)
    if size <= 1:
        return mask
    morphology = ndimage.maximum_filter if kernel > 0 else ndimage.minimum_filter
    return morphology(mask, size=size, mode="nearest")


@dataclass
class ClipArrays:
    """The frames that share one GOP's motion, at the source resolution (numpy, channels last)."""

    key_image: np.ndarray  # H x W x 3 uint8 RGB, the GOP's I-frame
    target_image: np.ndarray  # H x W x 3 uint8 RGB
    residual_acc: np.ndarray  # H x W x 3 int16 RGB, target minus the I-frame warped by mv_acc
    mv_acc: np.ndarray  # H x W x 2 int16 (dx, dy) back to the I-frame
    mv: np.ndarray  # H x W x 2 int16 (dx, dy) back to the previous frame
    key_mask: np.ndarray  # H x W uint8 {0, 1}
    target_mask: np.ndarray  # H x W uint8 {0, 1}
    prev_mask: np.ndarray  # H x W uint8 {0, 1}, the previous frame's, source of the location prior


@dataclass
class ClipTensors:
    """`ClipArrays` after one shared affine map: channels first, float32, at the crop size."""

    key_image: Tensor  # 3 x h x w in [0, 1]
    target_image: Tensor  # 3 x h x w in [0, 1]
    residual_acc: Tensor  # 3 x h x w in [-1, 1]
    mv_acc: Tensor  # 2 x h x w, output pixels
    mv: Tensor  # 2 x h x w, output pixels
    key_mask: Tensor  # 1 x h x w {0, 1}
    target_mask: Tensor  # 1 x h x w {0, 1}
    prev_mask: Tensor  # 1 x h x w {0, 1}


def transform_clip(clip: ClipArrays, affine: Affine) -> ClipTensors:
    """Apply one map to every frame, mask and motion field of the clip, consistently.

    Frames are interpolated bilinearly; masks, vectors and residuals take the nearest
    value, which keeps them exact (residuals are blockwise, as at inference).
    """
    # the three masks as three bits of one channel: one nearest-sampled channel instead of three
    masks = clip.key_mask | (clip.target_mask << 1) | (clip.prev_mask << 2)
    images, nearest = warp_groups(
        [
            ([clip.key_image, clip.target_image], "bilinear"),
            ([masks[..., None], clip.mv_acc, clip.mv, clip.residual_acc], "nearest"),
        ],
        affine,
    )
    # float32 interpolation weights can overshoot 1 by an ulp
    images = (images / 255.0).clamp_(0.0, 1.0)
    bits = nearest[0:1].to(torch.uint8)
    vectors = map_vectors(nearest[1:5].unflatten(0, (2, 2)), affine)  # 2 x 2 x h x w
    return ClipTensors(
        key_image=images[0:3],
        target_image=images[3:6],
        residual_acc=nearest[5:8] / 255.0,
        mv_acc=vectors[0],
        mv=vectors[1],
        key_mask=(bits & 1).float(),
        target_mask=((bits >> 1) & 1).float(),
        prev_mask=((bits >> 2) & 1).float(),
    )


def transform_reference(
    image: np.ndarray, mask: np.ndarray, affine: Affine
) -> tuple[Tensor, Tensor]:
    """H x W x 3 uint8 RGB and H x W {0, 1} -> 3 x h x w in [0, 1] and 1 x h x w {0, 1}."""
    image_out, mask_out = warp_groups(
        [([image], "bilinear"), ([mask[..., None]], "nearest")], affine
    )
    return (image_out / 255.0).clamp_(0.0, 1.0), mask_out
