"""The P-frame modules: Residual Supplement (RSM) and Spatial Attention (SAM).

Both use a light strided encoder instead of the original's ResNets: the P-frame path
must cost a small fraction of the I-frame path for the method to be worth it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cvos.models.light import LIGHT_WIDTHS, LightEncoder

# Motion vectors are whole pixels; dividing by a macroblock's size keeps typical values
# near 1 so they enter the first conv on the same scale as the [0, 1] prior.
MOTION_SCALE = 16.0


class ResidualSupplement(nn.Module):
    """RSM: restore appearance lost in warping from the codec's accumulated residual.

    As the original: residual features (1x1 to D) concatenated with the warped features,
    then BN -> ReLU -> 3x3 conv 2D -> D.
    """

    def __init__(self, dim: int, widths: tuple[int, ...] = LIGHT_WIDTHS) -> None:
        super().__init__()
        body = LightEncoder(3, widths)
        self.encoder = nn.Sequential(body, nn.Conv2d(body.out_channels, dim, 1))
        self.stride = body.stride
        self.fuse = nn.Sequential(
            nn.BatchNorm2d(2 * dim),
            nn.ReLU(inplace=True),
            nn.Conv2d(2 * dim, dim, 3, padding=1),
        )

    def forward(self, warped: Tensor, residual: Tensor) -> Tensor:
        # warped B x D x h x w, residual B x 3 x H x W in [-1, 1] -> B x D x h x w
        supplement = self.encoder(residual)  # B x D x H/8 x W/8
        return self.fuse(torch.cat((warped, supplement), dim=1))


class SpatialAttention(nn.Module):
    """SAM: re-weight propagated features where motion and the previous mask point.

    A light encoder on [plain motion (2), Gaussian prior (1)] gives 2-class logits at 1/8
    (trained with an auxiliary loss against the target mask); their foreground softmax `a`
    gates a residual update, as the original: f + conv1x1(relu(bn(f))) * a.
    """

    def __init__(self, dim: int, widths: tuple[int, ...] = LIGHT_WIDTHS) -> None:
        super().__init__()
        body = LightEncoder(3, widths)
        self.encoder = body
        self.stride = body.stride
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
        x = F.conv2d(mv / MOTION_SCALE, conv.weight[:, :2], conv.bias, conv.stride, conv.padding)
        x = x + F.conv2d(gauss, conv.weight[:, 2:], None, conv.stride, conv.padding)
        for layer in rest:
            x = layer(x)  # B x C x H/2 x W/2
        logits = self.head(self.encoder.stages[1:](x))  # B x 2 x h x w
        attention = logits.softmax(dim=1)[:, 1:]  # B x 1 x h x w
        return feats + self.transform(feats) * attention, logits
