"""A tiny stride-8 encoder: fast enough for unit tests and CPU training of the toy dataset."""

from __future__ import annotations

from torch import Tensor

from cvos.models.encoder import Encoder
from cvos.models.light import LightEncoder, conv_bn_relu
from cvos.models.registry import register_encoder

TINY_WIDTHS = (32, 64, 128)


@register_encoder("tiny", channels=TINY_WIDTHS[-1], stride=2 ** len(TINY_WIDTHS))
class TinyEncoder(Encoder):
    """Three stride-2 conv blocks and one more at stride 8 for a wider receptive field."""

    def __init__(self) -> None:
        body = LightEncoder(3, TINY_WIDTHS)
        super().__init__(out_channels=body.out_channels, stride=body.stride)
        self.body = body
        self.head = conv_bn_relu(body.out_channels, body.out_channels)

    def forward(self, x: Tensor) -> Tensor:
        # B x 3 x H x W -> B x 128 x H/8 x W/8
        return self.head(self.body(x))
