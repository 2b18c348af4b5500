"""A compact stride-8 encoder that trains from scratch on a CPU in minutes.

Three stride-2 stages (32, 64, 128 channels) with residual blocks, and dilated blocks at
stride 8 (dilations 1, 2, 4) for a receptive field of about 100 pixels: a twentieth of a
dilated ResNet-18's multiply-adds, which is what the DAVIS CPU recipe can afford to train.
"""

from __future__ import annotations

from torch import Tensor, nn

from cvos.models.encoder import Encoder
from cvos.models.light import ResidualBlock, conv_bn_relu
from cvos.models.registry import register_encoder

COMPACT_WIDTHS = (32, 64, 128)
STRIDE8_DILATIONS = (1, 2, 4)


@register_encoder("compact", channels=COMPACT_WIDTHS[-1], stride=8)
class CompactEncoder(Encoder):
    """B x 3 x H x W normalised RGB -> B x 128 x H/8 x W/8."""

    def __init__(
        self,
        widths: tuple[int, int, int] = COMPACT_WIDTHS,
        dilations: tuple[int, ...] = STRIDE8_DILATIONS,
    ) -> None:
        super().__init__(out_channels=widths[2], stride=8)
        a, b, c = widths
        self.stage2 = nn.Sequential(conv_bn_relu(3, a, stride=2), conv_bn_relu(a, a))
        self.stage4 = nn.Sequential(conv_bn_relu(a, b, stride=2), ResidualBlock(b))
        self.stage8 = nn.Sequential(
            conv_bn_relu(b, c, stride=2), *(ResidualBlock(c, d) for d in dilations)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.stage8(self.stage4(self.stage2(x)))
