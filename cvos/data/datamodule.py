"""The Lightning face of `VOSData`: the hooks a Trainer calls, and where training stands.

Resuming exactly: the checkpoint records the loader's position (epoch, training batches
delivered in it), and a resumed run's sampler starts there. Lightning builds the resumed run's
first loader iterator (whose workers draw their first batches at once) before it tells the
sampler the epoch, so without this the first epoch after a resume replayed epoch 0's samples.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from torch.utils.data import DataLoader

from cvos.data.dataset import VOSData
from cvos.data.samples import TrainBatch
from cvos.data.sampling import EpochSampler


class VOSDataModule(pl.LightningDataModule):
    """Serves a `VOSData`'s training batches and validation videos to a Lightning Trainer."""

    def __init__(self, data: VOSData) -> None:
        super().__init__()
        self.data = data
        self.sampler: EpochSampler | None = None
        self.position = (0, 0)  # (epoch, training batches delivered in it)

    def prepare_data(self) -> None:
        self.data.prepare_all()

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit"):
            self.data.training_set()

    def train_dataloader(self) -> DataLoader:
        self.sampler = self.data.sampler()
        self.sampler.resume(*self.position)
        return self.data.train_loader(self.sampler)

    def val_dataloader(self) -> DataLoader:
        return self.data.val_loader()

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Count training batches (for the checkpoint), then unpack them to float32 on the
        device."""
        if not isinstance(batch, TrainBatch):
            return batch
        if self.sampler is not None:
            epoch, done = self.position
            self.position = (
                (epoch, done + 1) if epoch == self.sampler.epoch else (self.sampler.epoch, 1)
            )
        return batch.unpacked()

    def state_dict(self) -> dict[str, int]:
        epoch, batches = self.position
        return {"epoch": epoch, "batches": batches}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.position = (int(state_dict["epoch"]), int(state_dict["batches"]))
