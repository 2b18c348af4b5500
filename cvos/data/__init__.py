"""Datasets in the compressed domain: layouts, the synthetic set, the prepared cache, samples.

`VOSData` is plain Python; `VOSDataModule`, its Lightning wrapper for training, is imported on
first use, so evaluation and preparation never load Lightning.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cvos.data.dataset import VOSData
from cvos.data.evaluation import EvalSequence
from cvos.data.layouts import Sequence, list_sequences
from cvos.data.prepared import PreparedSequence, prepare_sequences
from cvos.data.samples import TrainAugment, TrainBatch, TrainDataset
from cvos.data.synthetic import SyntheticSpec, ensure_synthetic
from cvos.data.transforms import Augment

if TYPE_CHECKING:
    from cvos.data.datamodule import VOSDataModule

__all__ = [
    "Augment",
    "EvalSequence",
    "PreparedSequence",
    "Sequence",
    "SyntheticSpec",
    "TrainAugment",
    "TrainBatch",
    "TrainDataset",
    "VOSData",
    "VOSDataModule",
    "ensure_synthetic",
    "list_sequences",
    "prepare_sequences",
]


def __getattr__(name: str) -> Any:
    if name == "VOSDataModule":
        from cvos.data.datamodule import VOSDataModule

        return VOSDataModule
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
