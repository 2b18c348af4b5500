"""The Lightning face of `VOSData`: the hooks a Trainer calls, nothing else."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from torch.utils.data import DataLoader

from cvos.data.dataset import VOSData
from cvos.data.samples import TrainBatch


class VOSDataModule(pl.LightningDataModule):
    """Serves a `VOSData`'s training batches and validation videos to a Lightning Trainer."""

    def __init__(self, data: VOSData) -> None:
        super().__init__()
        self.data = data

    def prepare_data(self) -> None:
        self.data.prepare_all()

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit"):
            self.data.training_set()

    def train_dataloader(self) -> DataLoader:
        return self.data.train_loader()

    def val_dataloader(self) -> DataLoader:
        return self.data.val_loader()

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Unpack training batches to float32 once they are on the device."""
        return batch.unpacked() if isinstance(batch, TrainBatch) else batch
