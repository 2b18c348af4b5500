"""The mask decoder: matching scores, the codec's mask prior and a fine path, per object.

At 1/8 it reads the frame's features, the top-k matching scores against the first frame and
the mask prior (what `mask_warp` would output: on P-frames the I-frame's output warped by the
accumulated motion, on I-frames the previous frame's output). A fine path reads the image, the
codec residual (where warping went wrong) and the prior at full resolution, so the blocky
warped boundary can snap to image edges. The fine path starts at 1/2 (a stride-2 conv) or, for
the light P-frame decoder, at 1/4 (a 4 x 4 patch conv, no 1/2-resolution conv at all, and the
correction comes back to full resolution by pixel shuffle). The output is
`logit(prior) + correction` with the correction's last conv starting at zero: an untrained
decoder reproduces `mask_warp`, and training learns only where to depart from it. Where the
correction is confined to a band around the prior's boundary, inference runs the fine path of
each object on its band's window only (`band_window`): the same numbers, for the cost of the
object's box.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cvos.errors import ConfigError
from cvos.models import loops
from cvos.models.geometry import dilate
from cvos.models.light import ImageNorm, conv_bn_relu, patch_conv_bn_relu

PRIOR_CLAMP = 0.02  # prior probabilities are clamped to [c, 1 - c] before the logit
IMAGE_CHANNELS, RESIDUAL_CHANNELS = 3, 3
PATCH = 4  # cell size of the decoder whose fine path starts at 1/4
# The window around the band reaches this many feature cells further: more than the fine path's
# receptive field (about 24 pixels from 1/2, fewer from 1/4) plus a cell for the upsampling.
WINDOW_MARGIN_CELLS = 4


@dataclass(frozen=True)
class DecoderWidths:
    """Channels of the decoder's convs: at 1/8, the fine path at 1/2 and 1/4, the fusion.

    fine2 = fuse2 = 0: the fine path starts at 1/4 (nothing runs at 1/2 resolution)."""

    coarse: int
    fine2: int
    fine4: int
    fuse4: int
    fuse2: int

    def __post_init__(self) -> None:
        if (self.fine2 == 0) != (self.fuse2 == 0) or min(self.coarse, self.fine4, self.fuse4) < 1:
            raise ConfigError(
                f"decoder widths {self}: coarse, fine4 and fuse4 must be positive, and fine2 "
                "and fuse2 both positive (fine path from 1/2) or both 0 (from 1/4)"
            )


def upsample(x: Tensor, size: tuple[int, int]) -> Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def boundary_band(prior: Tensor, radius: int) -> Tensor:
    """N x 1 x H x W {0, 1}: within `radius` pixels of the prior's boundary (dilation minus
    erosion of prior > 0.5 by a (2 radius + 1) square; outside the frame counts as neither).

    On every P-frame: a compiled loop on the CPU (`loops.boundary_band`, the same values),
    elsewhere summed-area tables (`dilate`; 13 x 13 max-pools cost more than the rest of the
    light decoder)."""
    if prior.device.type == "cpu":
        return loops.boundary_band(prior, radius)
    return summed_area_band(prior, radius)


def summed_area_band(prior: Tensor, radius: int) -> Tensor:
    """`boundary_band` from summed-area tables, for any device."""
    hard = (prior > 0.5).float()
    eroded = 1.0 - dilate(1.0 - hard, radius)
    return dilate(hard, radius) - eroded


def cell_band(prior: Tensor, radius: int, cell: int) -> Tensor:
    """N x 1 x H/cell x W/cell {0, 1}: `boundary_band` on the grid of cell x cell cells, with
    ceil(radius / cell) cells for the radius: the cells near a cell that holds some foreground
    (prior > 0.5) minus those whose neighbourhood is all foreground. For the decoder whose
    correction is computed per cell: a few pooling ops at 1/cell, and at least as wide."""
    hard = (prior > 0.5).float()
    some, every = F.max_pool2d(hard, cell), -F.max_pool2d(-hard, cell)  # N x 1 x H/c x W/c
    reach = math.ceil(radius / cell)
    near_some = F.max_pool2d(some, 2 * reach + 1, stride=1, padding=reach)
    near_all = -F.max_pool2d(-every, 2 * reach + 1, stride=1, padding=reach)
    return near_some - near_all


@dataclass(frozen=True)
class Window:
    """Rows [top, bottom) and columns [left, right) of the frame, on whole feature cells."""

    top: int
    bottom: int
    left: int
    right: int

    @property
    def empty(self) -> bool:
        return self.bottom <= self.top

    def of(self, x: Tensor, cell: int = 1) -> Tensor:
        """... x H/cell x W/cell -> the window's part of it (a view)."""
        return x[
            ..., self.top // cell : self.bottom // cell, self.left // cell : self.right // cell
        ]


def band_window(prior: Tensor, radius: int, cell: int) -> Window:
    """Where a correction confined to `boundary_band(prior, radius)` (or `cell_band`) can be
    non-zero, grown by the fine path's reach: outside it the output is the prior's logit.

    prior 1 x H x W. The box of the foreground (prior > 0.5) grown by the radius and
    `WINDOW_MARGIN_CELLS`, on whole cells of `cell` pixels (so strided convs and upsampling see
    the grid they see on the whole frame) and clipped to the frame, where convs pad as they do
    on the whole frame. Empty without foreground; the whole frame if it is not whole cells.
    """
    height, width = prior.shape[-2:]
    if height % cell or width % cell:
        return Window(0, height, 0, width)
    hard = prior[0] > 0.5  # H x W
    rows = hard.any(dim=1).nonzero()[:, 0]  # the rows that hold foreground
    if len(rows) == 0:
        return Window(0, 0, 0, 0)
    cols = hard.any(dim=0).nonzero()[:, 0]
    grow = radius + WINDOW_MARGIN_CELLS * cell
    top, left = (max(0, (int(v[0]) - grow) // cell * cell) for v in (rows, cols))
    bottom, right = (
        min(size, -(-(int(v[-1]) + 1 + grow) // cell) * cell)
        for v, size in ((rows, height), (cols, width))
    )
    return Window(top, bottom, left, right)


class MaskDecoder(nn.Module):
    """features, scores, image, residual and prior -> one object's foreground logits.

    `use_prior=False` gives the plain matching decoder with the same refinement (the prior is
    then 0.5 everywhere and the logits are the correction alone). `band > 0` lets the correction
    act only within `band` pixels of the prior's boundary (whole 4 x 4 cells for the decoder
    from 1/4, see `cell_band`).
    """

    def __init__(
        self, dim: int, widths: DecoderWidths, *, use_prior: bool = True, band: int = 0
    ) -> None:
        super().__init__()
        self.use_prior = use_prior
        self.band = band
        self.normalise = ImageNorm()
        w = widths
        self.coarse = nn.Sequential(
            conv_bn_relu(dim + 2 + 1, w.coarse), conv_bn_relu(w.coarse, w.coarse, dilation=2)
        )
        inputs = IMAGE_CHANNELS + RESIDUAL_CHANNELS + 1
        self.fine2 = self.patch = self.fuse2 = None  # the first fine conv is one of fine2, patch
        if w.fine2:  # modules are created in 0.3's order, which fixes their initial weights
            self.fine2 = conv_bn_relu(inputs, w.fine2, stride=2)  # -> H/2
            self.fine4 = nn.Sequential(
                conv_bn_relu(w.fine2, w.fine4, stride=2), conv_bn_relu(w.fine4, w.fine4)
            )
        else:  # a 4 x 4 patch conv straight to H/4, and a sub-pixel output
            self.patch = patch_conv_bn_relu(inputs, w.fine4, PATCH)
            self.fine4 = conv_bn_relu(w.fine4, w.fine4)
        self.fuse4 = conv_bn_relu(w.coarse + w.fine4, w.fuse4)
        if w.fine2:
            self.fuse2 = conv_bn_relu(w.fuse4 + w.fine2, w.fuse2)
            self.out = nn.Conv2d(w.fuse2, 1, 3, padding=1)
        else:
            self.out = nn.Conv2d(w.fuse4, PATCH * PATCH, 3, padding=1)  # a cell's pixels
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(
        self,
        feats: Tensor,
        scores: Tensor,
        image: Tensor,
        residual: Tensor,
        prior: Tensor,
        correction_scale: float = 1.0,
    ) -> Tensor:
        """feats N x D x h x w; scores N x 2 x h x w ([background, foreground], temperature-
        scaled); image 1|N x 3 x H x W (RGB in [0, 1]) and residual 1|N x 3 x H x W in [-1, 1]:
        a batch of 1 is shared by the N objects of one frame; prior N x 1 x H x W in [0, 1]
        -> N x 1 x H x W logits. `correction_scale` < 1 trusts the prior more (inference)."""
        if not self.use_prior:
            prior = torch.full_like(prior, 0.5)
        prior8 = F.adaptive_avg_pool2d(prior, feats.shape[-2:])
        x8 = self.coarse(torch.cat((feats, scores, prior8), dim=1))  # N x C x h x w
        if self.use_prior:
            logits = torch.logit(prior.clamp(PRIOR_CLAMP, 1 - PRIOR_CLAMP))
        else:
            logits = torch.zeros_like(prior)
        if self.training or self.band == 0 or torch.compiler.is_compiling():
            return logits + correction_scale * self._fine(x8, image, residual, prior)
        cell = prior.shape[-1] // x8.shape[-1]
        for n in range(len(prior)):  # each object on its band's window: zero outside it
            window = band_window(prior[n], self.band, cell)
            if window.empty:
                continue
            own = [x if len(x) == 1 else x[n : n + 1] for x in (image, residual)]
            inputs = (window.of(x8[n : n + 1], cell), *(window.of(x) for x in own))
            fine = self._fine(*inputs, window.of(prior[n : n + 1]))
            window.of(logits[n : n + 1]).add_(fine, alpha=correction_scale)
        return logits

    def _fine(self, x8: Tensor, image: Tensor, residual: Tensor, prior: Tensor) -> Tensor:
        """The correction, N x 1 x H x W, from the coarse output x8 (N x C x h x w) and the fine
        path on image, residual and prior."""
        first = self._first(image, residual, prior)  # N x F x H/2 x W/2 (H/4 from the patch)
        f4 = self.fine4(first)  # N x F4 x H/4 x W/4
        x4 = self.fuse4(torch.cat((upsample(x8, f4.shape[-2:]), f4), dim=1))
        return self._correction(x4, first, prior)

    def _correction(self, x4: Tensor, first: Tensor, prior: Tensor) -> Tensor:
        """N x 1 x H x W, zero outside the band: from x4 (N x C x H/4 x W/4) through the 1/2
        fusion and a bilinear upsample, or straight from 1/4 by pixel shuffle."""
        if self.fuse2 is None:
            cells = self.out(x4)  # N x 16 x H/4 x W/4: each cell's 4 x 4 pixels
            if self.band > 0:
                cells = cells * cell_band(prior, self.band, PATCH)
            return F.pixel_shuffle(cells, PATCH)
        x2 = self.fuse2(torch.cat((upsample(x4, first.shape[-2:]), first), dim=1))
        correction = upsample(self.out(x2), tuple(prior.shape[-2:]))
        return correction if self.band == 0 else correction * boundary_band(prior, self.band)

    def _first(self, image: Tensor, residual: Tensor, prior: Tensor) -> Tensor:
        """The first fine conv on [image, residual, prior]. The conv is linear in its input, so
        the image and residual part runs once for all objects sharing them and only the prior
        part per object (the same numbers as the conv of the concatenation)."""
        conv, *rest = self.fine2 if self.fine2 is not None else self.patch
        shared = F.conv2d(
            torch.cat((self.normalise(image), residual), dim=1), conv.weight[:, :-1], conv.bias,
            conv.stride, conv.padding,
        )  # fmt: skip
        x = shared + F.conv2d(prior, conv.weight[:, -1:], None, conv.stride, conv.padding)
        for layer in rest:
            x = layer(x)
        return x
