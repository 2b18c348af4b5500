"""The P-frame modules: Residual Supplement (RSM) and Spatial Attention (SAM).

Both use a light strided encoder instead of the original's ResNets: the P-frame path
must cost a small fraction of the I-frame path for the method to be worth it. With fewer
stride-2 stages than the encoder's stride needs, their inputs are first average-pooled to make
up the difference (block motion vectors lose nothing at half resolution).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cvos.errors import ConfigError
from cvos.models.light import LIGHT_WIDTHS, LightEncoder

# Motion vectors are whole pixels; dividing by a macroblock's size keeps typical values
# near 1 so they enter the first conv on the same scale as the [0, 1] prior.
MOTION_SCALE = 16.0


def input_pool(stride: int, body: LightEncoder) -> int:
    """The average pooling that brings a light encoder's stride up to the features' `stride`."""
    if stride % body.stride:
        raise ConfigError(
            f"a light encoder of stride {body.stride} cannot reach the features' stride {stride}"
        )
    return stride // body.stride


def pooled(x: Tensor, factor: int) -> Tensor:
    return x if factor == 1 else F.avg_pool2d(x, factor)


class ResidualSupplement(nn.Module):
    """RSM: restore appearance lost in warping from the codec's accumulated residual.

    As the original: residual features (1x1 to D) concatenated with the warped features,
    then BN -> ReLU -> 3x3 conv 2D -> D.
    """

    def __init__(self, dim: int, widths: tuple[int, ...] = LIGHT_WIDTHS, stride: int = 8) -> None:
        super().__init__()
        body = LightEncoder(3, widths)
        self.encoder = nn.Sequential(body, nn.Conv2d(body.out_channels, dim, 1))
        self.pool = input_pool(stride, body)
        self.stride = stride
        self.fuse = nn.Sequential(
            nn.BatchNorm2d(2 * dim),
            nn.ReLU(inplace=True),
            nn.Conv2d(2 * dim, dim, 3, padding=1),
        )

    def forward(self, warped: Tensor, residual: Tensor) -> Tensor:
        # warped B x D x h x w, residual B x 3 x H x W in [-1, 1] -> B x D x h x w
        supplement = self.encoder(pooled(residual, self.pool))  # B x D x H/8 x W/8
        return self.fuse(torch.cat((warped, supplement), dim=1))


class SpatialAttention(nn.Module):
    """SAM: re-weight propagated features where motion and the previous mask point.

    A light encoder on [plain motion (2), Gaussian prior (1)] gives 2-class logits at 1/8
    (trained with an auxiliary loss against the target mask); their foreground softmax `a`
    gates a residual update, as the original: f + conv1x1(relu(bn(f))) * a.
    """

    def __init__(self, dim: int, widths: tuple[int, ...] = LIGHT_WIDTHS, stride: int = 8) -> None:
        super().__init__()
        body = LightEncoder(3, widths)
        self.encoder = body
        self.pool = input_pool(stride, body)
        self.stride = stride
        self.head = nn.Conv2d(body.out_channels, 2, 3, padding=1)
        self.transform = nn.Sequential(
            nn.BatchNorm2d(dim), nn.ReLU(inplace=True), nn.Conv2d(dim, dim, 1)
        )

    def forward(self, feats: Tensor, mv: Tensor, gauss: Tensor) -> tuple[Tensor, Tensor]:
        """feats B x D x h x w, mv B x 2 x H x W pixels, gauss B x 1 x H x W (location prior).

        Returns the re-weighted features (B x D x h x w) and the logits (B x 2 x h x w).
        feats and mv may have a batch of 1 for a batch of Gaussians: the O objects of one frame.
        They then share what does not depend on the object: the first conv is linear in its
        input, so its motion half runs once and only its prior half per object (the same
        numbers as the conv of [motion, prior]); the feature transform runs once.
        """
        conv, *rest = self.encoder.stages[0]  # conv (-> bn) -> relu
        motion, prior = pooled(mv, self.pool), pooled(gauss, self.pool)
        # the motion scaled by a power of two: exactly the same products on the weights' side
        weight = conv.weight[:, :2] / MOTION_SCALE
        x = F.conv2d(motion, weight, conv.bias, conv.stride, conv.padding)
        x = x + F.conv2d(prior, conv.weight[:, 2:], None, conv.stride, conv.padding)
        for layer in rest:
            x = layer(x)  # B x C x H/(2 pool) x W/(2 pool)
        logits = self.head(self.encoder.stages[1:](x))  # B x 2 x h x w
        attention = logits.softmax(dim=1)[:, 1:]  # B x 1 x h x w
        return feats + self.transform(feats) * attention, logits
