"""Light strided conv stacks: the tiny encoder and the RSM/SAM encoders are built from them."""

from __future__ import annotations

from torch import Tensor, nn

# Channel widths of the light encoders used on P-frames: three stride-2 stages reach
# stride 8 for a few percent of a ResNet-50's cost.
LIGHT_WIDTHS = (32, 64, 128)


def conv_bn_relu(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    """3x3 conv (no bias: the batch norm has one) -> batch norm -> ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class LightEncoder(nn.Module):
    """One stride-2 `conv_bn_relu` per width: B x C x H x W -> B x widths[-1] x H/2^n x W/2^n."""

    def __init__(self, in_channels: int, widths: tuple[int, ...] = LIGHT_WIDTHS) -> None:
        super().__init__()
        ins = (in_channels, *widths[:-1])
        self.stages = nn.Sequential(
            *(conv_bn_relu(i, o, stride=2) for i, o in zip(ins, widths, strict=True))
        )
        self.out_channels = widths[-1]
        self.stride = 2 ** len(widths)

    def forward(self, x: Tensor) -> Tensor:
        return self.stages(x)
