"""Training with PyTorch Lightning: the LightningModule, its losses, and the logger factory."""

from cvos.lit.module import CVOSLitModule

__all__ = ["CVOSLitModule"]
