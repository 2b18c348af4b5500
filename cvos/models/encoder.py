"""The encoder interface shared by every backbone, with optional frozen batch norm."""

from __future__ import annotations

from collections.abc import Iterator

from torch import nn


class Encoder(nn.Module):
    """A backbone: B x 3 x H x W normalised RGB -> B x out_channels x H/stride x W/stride.

    Subclasses build their layers and define `forward`. Input normalisation is the
    caller's job (`CVOSNet.encode`), so the state_dict holds only the backbone.
    """

    out_channels: int
    stride: int

    def __init__(self, out_channels: int, stride: int) -> None:
        super().__init__()
        self.out_channels = out_channels
        self.stride = stride
        self.frozen_bn = False

    def freeze_bn(self) -> None:
        """Fix batch-norm statistics and affine parameters.

        Batches of a few frames are too small to re-estimate ImageNet statistics,
        so fine-tuning a pretrained backbone usually keeps them as loaded.
        """
        self.frozen_bn = True
        for bn in self._batch_norms():
            bn.weight.requires_grad_(False)
            bn.bias.requires_grad_(False)
        self.train(self.training)

    def train(self, mode: bool = True) -> Encoder:
        """Switch modes as usual, but frozen batch norms always stay in eval mode."""
        super().train(mode)
        if self.frozen_bn:
            for bn in self._batch_norms():
                bn.eval()
        return self

    def _batch_norms(self) -> Iterator[nn.BatchNorm2d]:
        return (m for m in self.modules() if isinstance(m, nn.BatchNorm2d))
