"""One dataset class for every layout (`conf/data/` instantiates it): prepare, train, evaluate.

Plain Python and PyTorch: evaluation and preparation use it without Lightning;
`cvos.data.VOSDataModule` wraps it for training.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch.distributed as dist
from torch.utils.data import DataLoader, IterableDataset

from cvos.codec import EncodeSettings
from cvos.data.estimate import Projection, SplitListing, project
from cvos.data.evaluation import EvalSequence, eval_sequence
from cvos.data.layouts import LAYOUTS, Sequence, list_sequences
from cvos.data.prepared import (
    PreparedSequence,
    PrepareReport,
    open_prepared,
    prepare_sequences,
    settings_key,
    unfinished,
)
from cvos.data.priors import warped_labels
from cvos.data.samples import TrainAugment, TrainBatch, TrainDataset
from cvos.data.sampling import OPEN_BLOCKS, BlockDrawer, EpochSampler, PlanShape
from cvos.data.shards import Shard
from cvos.data.sources import ArrayFrames, VideoFrames
from cvos.data.synthetic import SyntheticSpec, ensure_synthetic
from cvos.data.transforms import Augment
from cvos.errors import ConfigError, DataError

log = logging.getLogger(__name__)


def train_augment(config: Mapping[str, Any] | None) -> TrainAugment:
    """A TrainAugment from plain config values (nested mappings, lists for ranges)."""
    if config is None:
        return TrainAugment()
    values = dict(config)
    try:
        for group in ("reference", "clip"):
            if group in values:
                spec = dict(values[group])
                if "scale_range" in spec:
                    spec["scale_range"] = tuple(spec["scale_range"])
                values[group] = Augment(**spec)
        return TrainAugment(**values)
    except TypeError as err:  # an unknown key
        raise ConfigError(f"data.augment: {err}") from err


def synthetic_spec(config: Mapping[str, Any] | None) -> SyntheticSpec | None:
    """The generator settings from plain config values (None: the dataset is not synthetic)."""
    if config is None:
        return None
    try:
        return SyntheticSpec(**config)
    except TypeError as err:  # an unknown key
        raise ConfigError(f"data.synthetic: {err}") from err


def _identity(item: Any) -> Any:
    """collate_fn that hands an item over unchanged (loaders with `batch_size=None`)."""
    return item


class ShardedSequences(IterableDataset):
    """Evaluation videos split across DDP processes without padding: rank r takes r, r + W, ...

    A DistributedSampler would repeat videos to even out the shards, counting them twice in
    the J&F synced across processes; here every video is scored exactly once.
    """

    def __init__(self, sequences: list[EvalSequence]) -> None:
        self.sequences = sequences

    def _shard(self) -> list[EvalSequence]:
        if dist.is_available() and dist.is_initialized():
            return self.sequences[dist.get_rank() :: dist.get_world_size()]
        return self.sequences

    def __iter__(self) -> Iterator[EvalSequence]:
        return iter(self._shard())

    def __len__(self) -> int:
        return len(self._shard())


FRAME_STORES = ("video", "arrays")


class VOSData:
    """Prepares a dataset once (encode + labels), then serves training batches and eval videos.

    `root=None` with a `synthetic` spec generates the synthetic dataset into `cache_dir` on
    first use. Prepared data lives in `cache_dir/prepared/<name>/<codec>-gop<G>-q<Q>/`, so
    every codec configuration has its own cache (`<name>-<spec key>` for the synthetic set).
    `frames="video"` decodes every sample from the prepared video (~26 KB a 480p frame);
    `frames="arrays"` also stores every decoded representation (~10 MB a frame) and reads those.
    """

    def __init__(
        self,
        *,
        name: str,
        layout: str = "davis2017",
        root: str | Path | None = None,
        cache_dir: str | Path = ".cache",
        codec: str = "mpeg4",
        gop_size: int = 12,
        quality: int = 5,
        input_size: tuple[int, int] | None = None,
        crop_size: tuple[int, int] | None = None,
        batch_size: int = 4,
        num_workers: int = 2,
        pin_memory: bool = False,
        persistent_workers: bool = True,
        samples_per_epoch: int | None = None,
        seed: int = 0,
        train_split: str = "train",
        val_split: str = "val",
        max_val_sequences: int | None = None,
        prepare_workers: int = 2,
        frames: str = "video",
        samples_per_gop: int = 8,
        augment: Mapping[str, Any] | None = None,
        synthetic: Mapping[str, Any] | None = None,
    ) -> None:
        if layout not in LAYOUTS:
            raise ConfigError(f"data.layout={layout!r}: expected one of {sorted(LAYOUTS)}")
        if root is None and synthetic is None:
            raise ConfigError(f"data={name} needs its dataset folder: set data.root=<path>")
        if root is not None and not Path(root).is_dir():
            raise ConfigError(
                f"data.root={root}: no such folder; set data.root to the {name} dataset"
            )
        if not isinstance(gop_size, int) or isinstance(gop_size, bool) or gop_size < 1:
            raise ConfigError(
                f"data.gop_size must be a whole number >= 1, got {gop_size!r}; "
                "set e.g. data.gop_size=12"
            )
        if frames not in FRAME_STORES:
            raise ConfigError(f"data.frames={frames!r}: expected one of {list(FRAME_STORES)}")
        if samples_per_gop < 1:
            raise ConfigError(f"data.samples_per_gop={samples_per_gop}: expected at least 1")
        self.input_size = _size_or_none("input_size", input_size)
        self.crop_size = _size_or_none("crop_size", crop_size)
        if samples_per_epoch is not None and samples_per_epoch < batch_size:
            raise ConfigError(
                f"data.samples_per_epoch={samples_per_epoch} is below data.batch_size={batch_size}"
            )
        self.name = name
        self.layout = layout
        self.root = None if root is None else Path(root)
        self.cache_dir = Path(cache_dir)
        self.settings = EncodeSettings(codec=codec, gop_size=gop_size, quality=quality)
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.persistent_workers = persistent_workers and num_workers > 0
        self.samples_per_epoch = samples_per_epoch
        self.seed = seed
        self.train_split = train_split
        self.val_split = val_split
        self.max_val_sequences = max_val_sequences
        self.prepare_workers = prepare_workers
        self.frames = frames
        self.samples_per_gop = samples_per_gop
        self.augment = train_augment(augment)
        self.synthetic = synthetic_spec(synthetic)
        self.train_dataset: TrainDataset | None = None

    @property
    def gop_size(self) -> int:
        """The GOP the data is encoded with (the model reads it from here)."""
        return self.settings.gop_size

    @property
    def prepared_dir(self) -> Path:
        """Where this dataset's sequences are cached for the current codec settings; a generated
        dataset's folder also names its spec, so changing the generator never reuses old data."""
        dataset = self.name if self.root is not None else f"{self.name}-{self.synthetic.key()}"
        return self.cache_dir / "prepared" / dataset / settings_key(self.settings)

    def dataset_root(self) -> Path:
        """The dataset folder: `root`, or the synthetic set (generated now if absent)."""
        if self.root is not None:
            return self.root
        return ensure_synthetic(self.cache_dir, self.synthetic)

    def sequences(self, split: str) -> list[Sequence]:
        """The split's sequences in the layout's order (val: only the first `max_val_sequences`)."""
        sequences = list_sequences(self.layout, self.dataset_root(), split)
        if split == self.val_split and self.max_val_sequences is not None:
            sequences = sequences[: self.max_val_sequences]
        return sequences

    def prepare(
        self, split: str, *, progress: bool = True, shard: Shard | None = None
    ) -> PrepareReport:
        """Encode a split's sequences (or one shard of them) that are not prepared yet."""
        return prepare_sequences(
            (shard or Shard()).select(self.sequences(split)),
            self.prepared_dir,
            self.settings,
            self.name,
            arrays=self.frames == "arrays",
            workers=self.prepare_workers,
            progress=progress,
        )

    def prepare_all(self) -> None:
        """Prepare the training and validation splits."""
        for split in dict.fromkeys((self.train_split, self.val_split)):
            self.prepare(split)

    def listing(self, split: str, shard: Shard | None = None) -> SplitListing:
        """A split's sequences (or one shard's) and those not prepared yet; writes nothing."""
        sequences = (shard or Shard()).select(self.sequences(split))
        return SplitListing(
            split, sequences, unfinished(sequences, self.prepared_dir, self.settings)
        )

    def projection(self, listings: list[SplitListing]) -> Projection:
        """Size and time of preparing what `listings` leave to do, from a short measured sample."""
        todo = [s for listing in listings for s in listing.todo]
        measured = todo or [s for listing in listings for s in listing.sequences]
        return project(
            measured,
            sum(listing.todo_frames for listing in listings),
            self.settings,
            self.name,
            arrays=self.frames == "arrays",
            workers=min(self.prepare_workers, max(len(todo), 1)),
        )

    def open_split(self, split: str) -> list[PreparedSequence]:
        """The split's prepared sequences, verified against the settings and the dataset."""
        return [
            open_prepared(self.prepared_dir / s.name, s, self.settings)
            for s in self.sequences(split)
        ]

    def training_set(self) -> TrainDataset:
        """The training split's samples (built on first use, then kept)."""
        if self.train_dataset is not None:
            return self.train_dataset
        prepared = self.open_split(self.train_split)
        if self.frames == "arrays":
            store = ArrayFrames(prepared)
            for sequence in prepared:
                sequence.representations()  # mapped here, so forked loader workers share it
        else:
            # each open block reads its target GOP, the GOP before (the residual at its I-frame)
            # and its reference GOP
            store = VideoFrames(prepared, open_gops=3 * OPEN_BLOCKS + 2)
        priors = [warped_labels(sequence) for sequence in prepared]
        dataset = TrainDataset(
            prepared, store, self.input_size, self.crop_size, self.augment, priors
        )
        if len(dataset) == 0:
            raise DataError(
                f"split {self.train_split!r} of {self.dataset_root()} gives no training samples"
            )
        log.info("%d training candidates from %d sequences", len(dataset), len(prepared))
        self.train_dataset = dataset
        return dataset

    def sampler(self) -> EpochSampler:
        """The sampler of the training loader: GOP blocks planned for `num_workers` workers."""
        shape = PlanShape(
            num_samples=self.samples_per_epoch,
            batch_size=self.batch_size,
            samples_per_gop=self.samples_per_gop,
            workers=self.num_workers,
        )
        return EpochSampler(BlockDrawer(self.training_set().candidates), shape, self.seed)

    def train_loader(self, sampler: EpochSampler | None = None) -> DataLoader:
        """Packed `TrainBatch`es (see `TrainBatch.collate`) in the order `sampler` plans."""
        return DataLoader(
            self.training_set(),
            batch_size=self.batch_size,
            sampler=sampler or self.sampler(),
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers,
            collate_fn=TrainBatch.collate,
            drop_last=True,
        )

    def eval_sequences(self, split: str) -> list[EvalSequence]:
        """Every sequence of `split` for streaming evaluation, prepared first if needed."""
        self.prepare(split, progress=False)
        decode = self.frames == "video"
        return [eval_sequence(p, decode=decode) for p in self.open_split(split)]

    def val_loader(self) -> DataLoader:
        """EvalSequence objects one at a time, read in the main process (frames stream lazily)."""
        sequences = ShardedSequences(self.eval_sequences(self.val_split))
        return DataLoader(sequences, batch_size=None, collate_fn=_identity)


def _size_or_none(name: str, size: Any) -> tuple[int, int] | None:
    """[height, width] as a tuple, each at least 8 pixels; None stays None."""
    if size is None:
        return None
    if len(size) != 2 or min(size) < 8:
        raise ConfigError(f"data.{name}={list(size)}: expected [height, width], each >= 8")
    return int(size[0]), int(size[1])
