"""Backward warping with codec motion vectors.

Convention (the codec's): a motion field holds, per target position (x, y), (dx, dy) =
target position minus source position, so the source is (x - dx, y - dy). Warping samples
the source image (or features) there. Grids follow `align_corners=False`: position i of an
n-wide grid has its centre at normalised coordinate (2i + 1) / n - 1, which is also where a
stride-s feature cell's centre falls in the image, so image and feature grids agree.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from cvos.errors import DataError


def warp(feats: Tensor, flow: Tensor, mode: str = "bilinear") -> Tensor:
    """Sample `feats` (B x C x h x w) at the sources given by `flow` (B x 2 x h x w).

    `flow` is in units of the feats grid. Integer flows sample exactly at grid centres,
    so they shift without blurring; sources outside the grid take the border value
    (border padding, as the original). A flow with a batch of 1 moves all B maps (the
    objects of one frame): its sampling grid is built once.
    """
    if flow.shape[-2:] != feats.shape[-2:]:
        raise DataError(
            f"motion field of size {tuple(flow.shape[-2:])} does not match "
            f"the {tuple(feats.shape[-2:])} grid it warps"
        )
    _, _, h, w = feats.shape
    xs = torch.arange(w, dtype=flow.dtype, device=flow.device).view(1, 1, w)
    ys = torch.arange(h, dtype=flow.dtype, device=flow.device).view(1, h, 1)
    src_x = xs - flow[:, 0]  # B x h x w
    src_y = ys - flow[:, 1]
    grid = torch.stack(((2 * src_x + 1) / w - 1, (2 * src_y + 1) / h - 1), dim=-1)  # B x h x w x 2
    grid = grid.to(feats.dtype).expand(feats.shape[0], -1, -1, -1)
    return F.grid_sample(feats, grid, mode=mode, padding_mode="border", align_corners=False)


def downsample_flow(flow: Tensor, stride: int) -> Tensor:
    """B x 2 x H x W motion in pixels -> B x 2 x H/stride x W/stride in feature cells.

    Average pooling: a feature cell stands for a stride x stride block of pixels, and the
    block's mean displacement is the best single vector for it. Accumulated fields are no
    longer constant over codec blocks (accumulation mixes blocks), so picking the vector
    at one pixel (nearest) would be arbitrary at motion boundaries.
    """
    return F.avg_pool2d(flow, stride) / stride


def warp_mask(mask: Tensor, mv_acc: Tensor, mode: str = "bilinear") -> Tensor:
    """Warp masks or probabilities (B x C x H x W) with the accumulated motion (B x 2 x H x W).

    The `mask_warp` variant: no network on P-frames. Codec vectors are whole pixels, so
    bilinear and nearest give the same result for them; bilinear also suits sub-pixel flows.
    """
    return warp(mask, mv_acc.to(mask.dtype), mode=mode)
