"""Light conv stacks (the tiny and compact encoders, RSM, SAM and the decoders use them), and
the image normalisation in front of the encoder and the decoders."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# torchvision's ImageNet statistics (RGB, [0, 1] input), matching its pretrained weights.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Channel widths of the light encoders used on P-frames: three stride-2 stages reach
# stride 8 for a few percent of a ResNet-50's cost.
LIGHT_WIDTHS = (32, 64, 128)


class ImageNorm(nn.Module):
    """B x 3 x H x W RGB in [0, 1] -> ImageNet statistics: what torchvision's weights expect.

    A module of its own, so that each user normalises only what it reads (the P-frame decoder
    a window)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, image: Tensor) -> Tensor:
        return (image - self.mean) / self.std


def conv_bn_relu(
    in_channels: int, out_channels: int, stride: int = 1, dilation: int = 1
) -> nn.Sequential:
    """3x3 conv (no bias: the batch norm has one) -> batch norm -> ReLU; the size is kept at
    stride 1 whatever the dilation."""
    return nn.Sequential(
        nn.Conv2d(
            in_channels,
            out_channels,
            3,
            stride=stride,
            padding=dilation,
            dilation=dilation,
            bias=False,
        ),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def patch_conv_bn_relu(in_channels: int, out_channels: int, patch: int) -> nn.Sequential:
    """Non-overlapping patch x patch conv (stride = patch) -> batch norm -> ReLU: reaches
    1/patch resolution in one step, still seeing every input pixel."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, patch, stride=patch, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class ResidualBlock(nn.Module):
    """Two dilated 3x3 conv-bn with an identity shortcut: B x C x H x W -> B x C x H x W."""

    def __init__(self, channels: int, dilation: int = 1) -> None:
        super().__init__()
        self.body = nn.Sequential(
            *conv_bn_relu(channels, channels, dilation=dilation),
            *conv_bn_relu(channels, channels, dilation=dilation)[:2],  # no ReLU before the sum
        )

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(x + self.body(x))


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
