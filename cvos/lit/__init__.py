"""LightningModules: the CVOS network with its losses, optimiser and validation metrics."""

from cvos.lit.module import CVOSLitModule, load_checkpoint, save_checkpoint

__all__ = ["CVOSLitModule", "load_checkpoint", "save_checkpoint"]
