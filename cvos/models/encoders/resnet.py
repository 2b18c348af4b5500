"""ResNets dilated to output stride 8 (DeepLab style) with torchvision's parameter names.

The module tree mirrors `torchvision.models.resnet` (conv1, bn1, layer1..4.N.conv1/bn1/...,
downsample.0/1), so a torchvision ImageNet state_dict loads unchanged apart from its fc head.
As with torchvision's `replace_stride_with_dilation=[False, True, True]`, layer3 and layer4
keep stride 1 and dilate by 2 and 4; the first block of a dilated layer uses the previous
dilation.
"""

from __future__ import annotations

from torch import Tensor, nn

from cvos.models.encoder import Encoder
from cvos.models.registry import register_encoder

OUTPUT_STRIDE = 8


def conv3x3(in_ch: int, out_ch: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    """3x3 conv whose padding keeps the size at stride 1 for any dilation."""
    return nn.Conv2d(
        in_ch, out_ch, 3, stride=stride, padding=dilation, dilation=dilation, bias=False
    )


def conv1x1(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convs with a shortcut (ResNet-18/34); dilation applies to both convs."""

    expansion = 1

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        dilation: int = 1,
        downsample: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride, dilation)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes, dilation=dilation)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + shortcut)


class Bottleneck(nn.Module):
    """1x1 reduce -> 3x3 (stride and dilation here, as torchvision's v1.5) -> 1x1 expand x4."""

    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        dilation: int = 1,
        downsample: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.conv1 = conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride, dilation)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + shortcut)


Block = type[BasicBlock] | type[Bottleneck]


def make_layer(
    block: Block,
    inplanes: int,
    planes: int,
    blocks: int,
    *,
    stride: int = 1,
    dilation: int = 1,
    first_dilation: int = 1,
) -> nn.Sequential:
    """A ResNet stage; the first block changes stride/width, the shortcut follows with 1x1."""
    out_ch = planes * block.expansion
    downsample = None
    if stride != 1 or inplanes != out_ch:
        downsample = nn.Sequential(conv1x1(inplanes, out_ch, stride), nn.BatchNorm2d(out_ch))
    layers = [block(inplanes, planes, stride, first_dilation, downsample)]
    layers += [block(out_ch, planes, dilation=dilation) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


class ResNetEncoder(Encoder):
    """torchvision's ResNet without avgpool/fc, layer3/4 dilated: output stride 8."""

    def __init__(self, block: Block, layers: tuple[int, int, int, int]) -> None:
        super().__init__(out_channels=512 * block.expansion, stride=OUTPUT_STRIDE)
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        e = block.expansion
        self.layer1 = make_layer(block, 64, 64, layers[0])
        self.layer2 = make_layer(block, 64 * e, 128, layers[1], stride=2)
        self.layer3 = make_layer(block, 128 * e, 256, layers[2], dilation=2)
        self.layer4 = make_layer(block, 256 * e, 512, layers[3], dilation=4, first_dilation=2)
        self._init_weights()

    def _init_weights(self) -> None:
        """torchvision's initialisation, so untrained runs behave like torchvision's."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # B x 64 x H/4 x W/4
        x = self.layer2(self.layer1(x))  # B x 128e x H/8 x W/8
        return self.layer4(self.layer3(x))  # B x 512e x H/8 x W/8 (dilated)


@register_encoder("resnet18", channels=512, stride=OUTPUT_STRIDE)
def resnet18() -> ResNetEncoder:
    return ResNetEncoder(BasicBlock, (2, 2, 2, 2))


@register_encoder("resnet34", channels=512, stride=OUTPUT_STRIDE)
def resnet34() -> ResNetEncoder:
    return ResNetEncoder(BasicBlock, (3, 4, 6, 3))


@register_encoder("resnet50", channels=2048, stride=OUTPUT_STRIDE)
def resnet50() -> ResNetEncoder:
    return ResNetEncoder(Bottleneck, (3, 4, 6, 3))


@register_encoder("resnet101", channels=2048, stride=OUTPUT_STRIDE)
def resnet101() -> ResNetEncoder:
    return ResNetEncoder(Bottleneck, (3, 4, 23, 3))
