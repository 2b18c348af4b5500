"""Datasets in the compressed domain: layouts, the synthetic set, the prepared cache, samples."""

from cvos.data.datamodule import VOSDataModule
from cvos.data.evaluation import EvalSequence
from cvos.data.layouts import Sequence, list_sequences
from cvos.data.prepared import PreparedSequence, prepare_sequences
from cvos.data.prior import gaussian_prior
from cvos.data.samples import TrainAugment, TrainBatch, TrainDataset
from cvos.data.synthetic import SyntheticSpec, ensure_synthetic
from cvos.data.transforms import Augment

__all__ = [
    "Augment",
    "EvalSequence",
    "PreparedSequence",
    "Sequence",
    "SyntheticSpec",
    "TrainAugment",
    "TrainBatch",
    "TrainDataset",
    "VOSDataModule",
    "ensure_synthetic",
    "gaussian_prior",
    "list_sequences",
    "prepare_sequences",
]
