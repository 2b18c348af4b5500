"""Training samples as the method needs them: reference, I-frame ("key") and target, one object.

For a target frame t in GOP g the sample holds a reference frame with its mask, g's I-frame
with its mask, t's accumulated motion vectors and residual back to that I-frame, t's plain
motion vectors, a Gaussian location prior from the previous frame's mask, and t's mask.
I-frames are targets too (gop_position 0), so the encoder path trains on its own output.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, Sampler, default_collate

from cvos.data.prepared import PreparedSequence
from cvos.data.sources import FrameSource
from cvos.data.transforms import Augment, dilate_or_erode, sample_affine, transform_masks
from cvos.models import Affine, NetInputs, frame_inputs, gaussian_prior

MIN_REFERENCE_BOX_AREA = 40  # px^2: smaller objects give too few features to match against


IMAGES = ("ref_image", "key_image", "target_image")  # in [0, 1]; packed as uint8 x 255
PACKED_DTYPES = {  # how each float32 field travels from loader workers: a third of the bytes
    **dict.fromkeys(IMAGES, torch.uint8),
    **dict.fromkeys(("ref_mask", "key_mask", "target_mask"), torch.uint8),
    **dict.fromkeys(("mv_acc", "mv", "residual_acc", "prior"), torch.float16),
}


def _pack(name: str, tensor: Tensor) -> Tensor:
    if name in IMAGES:
        return tensor.mul(255.0).round_().to(torch.uint8)
    return tensor.to(PACKED_DTYPES.get(name, tensor.dtype))


def _unpack(name: str, tensor: Tensor) -> Tensor:
    if name in IMAGES:
        return tensor.float().div_(255.0)
    return tensor.float() if name in PACKED_DTYPES else tensor


@dataclass
class TrainBatch:
    """One training batch (or, without the B dimension, one sample); H x W is the crop size.

    Samples and the batches a model sees are float32 as documented below. Between them,
    batches travel packed (`PACKED_DTYPES`: uint8 images and masks, float16 fields), because
    moving float32 between processes capped the loader at about 80 samples/s at 256 x 512
    on two cores; `VOSDataModule.on_after_batch_transfer` unpacks them on the device.
    """

    ref_image: Tensor  # B x 3 x H x W float32 RGB in [0, 1]
    ref_mask: Tensor  # B x 1 x H x W float32 {0, 1}, one object per sample
    key_image: Tensor  # B x 3 x H x W, the GOP's I-frame
    key_mask: Tensor  # B x 1 x H x W
    target_image: Tensor  # B x 3 x H x W
    target_mask: Tensor  # B x 1 x H x W
    mv_acc: Tensor  # B x 2 x H x W float32 pixels (dx, dy) back to the I-frame
    residual_acc: Tensor  # B x 3 x H x W float32 RGB, residual / 255 in [-1, 1]
    mv: Tensor  # B x 2 x H x W float32 plain motion vectors, pixels
    prior: Tensor  # B x 1 x H x W float32 in [0, 1], from the previous frame's mask
    gop_position: Tensor  # B int64; 0: the target is the I-frame (key == target, no motion)

    @classmethod
    def collate(cls, samples: list[TrainBatch]) -> TrainBatch:
        """Stack unbatched samples into a packed batch (the DataLoader's collate_fn).

        torch's `default_collate` stacks straight into shared memory inside a worker, which
        saves a copy of every batch on its way to the main process.
        """
        names = [f.name for f in fields(cls)]
        with _one_thread():
            stacked = {
                name: default_collate([_pack(name, getattr(s, name)) for s in samples])
                for name in names
            }
        return cls(**stacked)

    def unpacked(self) -> TrainBatch:
        """The float32 batch of a packed one (what `collate` made); a no-op on float32 batches."""
        return TrainBatch(**{f.name: _unpack(f.name, getattr(self, f.name)) for f in fields(self)})

    def apply(self, function: Callable[[Tensor], Tensor]) -> TrainBatch:
        """A batch with `function` applied to every tensor."""
        return TrainBatch(**{f.name: function(getattr(self, f.name)) for f in fields(self)})

    def pin_memory(self) -> TrainBatch:
        """Called by the DataLoader when `pin_memory=True`."""
        return self.apply(Tensor.pin_memory)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> TrainBatch:
        return self.apply(lambda tensor: tensor.to(device, non_blocking=non_blocking))


@dataclass(frozen=True)
class TrainAugment:
    """Augmentation of a training sample; the defaults are the original's (cvos-method.md)."""

    reference: Augment = Augment(
        flip_p=0.5, max_rotation=30.0, scale_range=(0.75, 1.25), max_translation=0.05
    )
    clip: Augment = Augment(max_rotation=10.0, max_translation=0.01)  # key and target jointly
    max_mask_kernel: int = 10  # the previous mask is eroded or dilated by a square of 1..k px
    prior_jitter: float = 0.2  # centre moves by up to this many spreads
    prior_scale: float = 1.4  # spread scaled log-uniformly by 1/s .. s


@dataclass(frozen=True)
class Candidate:
    """One (target frame, object) pair of a sequence and the frames its sample reads."""

    sequence: int  # index into the dataset's sequences
    target: int
    key: int  # the target's GOP's I-frame
    previous: int  # the annotated frame before the target (the target itself at the start)
    object_id: int
    # annotated frames where the object is large enough to be the reference
    references: tuple[int, ...] = field(repr=False)


def find_candidates(prepared: PreparedSequence, sequence_index: int) -> list[Candidate]:
    """Every annotated target whose I-frame is annotated too, for each object seen just before it.

    Where not every frame is annotated (YouTube-VOS), "previous" is the last annotated frame
    and GOPs whose I-frame has no mask give no samples.
    """
    meta = prepared.meta
    annotated = sorted(meta.objects)
    references: dict[int, list[int]] = {}
    for frame in annotated:
        for obj in meta.objects[frame]:
            if obj.box_area > MIN_REFERENCE_BOX_AREA:
                references.setdefault(obj.object_id, []).append(frame)
    candidates = []
    for position, target in enumerate(annotated):
        key = meta.key_index(target)
        if key not in meta.objects:
            continue
        previous = annotated[position - 1] if position > 0 else target
        for obj in meta.objects[previous]:
            if obj.area > 0 and obj.object_id in references:
                refs = tuple(references[obj.object_id])
                candidates.append(
                    Candidate(sequence_index, target, key, previous, obj.object_id, refs)
                )
    return candidates


class EpochSampler(Sampler[tuple[int, int]]):
    """Draws `(candidate index, augmentation seed)` pairs as a function of (seed, epoch) alone.

    Nothing depends on process-global random state, so a run resumed from a checkpoint (Lightning
    calls `set_epoch`) sees exactly the samples the uninterrupted run saw, whatever the workers.
    """

    def __init__(self, num_candidates: int, num_samples: int | None, seed: int) -> None:
        self.num_candidates = num_candidates
        self.num_samples = num_samples
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_candidates if self.num_samples is None else self.num_samples

    def __iter__(self) -> Iterator[tuple[int, int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        if self.num_samples is None:
            indices = rng.permutation(self.num_candidates)  # every candidate once
        else:
            indices = rng.integers(0, self.num_candidates, self.num_samples)  # with replacement
        seeds = rng.integers(0, 2**62, len(indices))
        yield from zip(indices.tolist(), seeds.tolist(), strict=True)


class TrainDataset(Dataset):
    """Map-style dataset of augmented `TrainBatch` samples (unbatched), one per candidate.

    An item is `(candidate index, seed)` from `EpochSampler`: the seed drives every random
    augmentation of that sample, so samples are reproducible and epochs differ.
    """

    def __init__(
        self,
        sequences: list[PreparedSequence],
        sources: list[FrameSource],
        input_size: tuple[int, int] | None,
        crop_size: tuple[int, int] | None,
        augment: TrainAugment,
    ) -> None:
        self.sequences = sequences
        self.sources = sources
        self.input_size = input_size  # None: each sequence's own frame size
        self.crop_size = crop_size  # None: the whole input
        self.augment = augment
        self.candidates = [c for i, s in enumerate(sequences) for c in find_candidates(s, i)]

    def __len__(self) -> int:
        return len(self.candidates)

    def __getitem__(self, key: tuple[int, int]) -> TrainBatch:
        index, seed = key
        with _one_thread():
            return self._sample(self.candidates[index], np.random.default_rng(seed))

    def _sample(self, candidate: Candidate, rng: np.random.Generator) -> TrainBatch:
        key_image, target, masks = self._clip(candidate, rng)
        ref_image, ref_mask = self._reference(candidate, rng)
        return TrainBatch(
            ref_image=ref_image,
            ref_mask=ref_mask,
            key_image=key_image,
            key_mask=masks[0:1],
            target_image=target.image,
            target_mask=masks[1:2],
            mv_acc=target.mv_acc,
            residual_acc=target.residual_acc,
            mv=target.mv,
            prior=self._prior(masks[2:3], rng),
            gop_position=torch.tensor(candidate.target - candidate.key),
        )

    def affine(self, candidate: Candidate, augment: Augment, rng: np.random.Generator) -> Affine:
        """A random map from the sample's crop to the frames of the candidate's sequence."""
        meta = self.sequences[candidate.sequence].meta
        size = (meta.height, meta.width)
        input_size = self.input_size or size
        return sample_affine(size, input_size, self.crop_size or input_size, augment, rng)

    def _clip(
        self, candidate: Candidate, rng: np.random.Generator
    ) -> tuple[Tensor, NetInputs, Tensor]:
        """The I-frame's image, the target's inputs and the [key, target, previous] masks
        (3 x h x w), all through one random map."""
        labels = self.sequences[candidate.sequence].labels  # T x H x W
        source = self.sources[candidate.sequence]
        affine = self.affine(candidate, self.augment.clip, rng)
        key = frame_inputs(source.frame(candidate.key), affine, ("image",))
        target = frame_inputs(source.frame(candidate.target), affine)
        frames = (candidate.key, candidate.target, candidate.previous)
        masks = transform_masks([_binary(labels[t], candidate.object_id) for t in frames], affine)
        return key.image, target, masks

    def _reference(self, candidate: Candidate, rng: np.random.Generator) -> tuple[Tensor, Tensor]:
        """A random reference frame of the object and its mask, through its own random map."""
        labels = self.sequences[candidate.sequence].labels
        reference = int(rng.choice(candidate.references))
        affine = self.affine(candidate, self.augment.reference, rng)
        frame = self.sources[candidate.sequence].frame(reference)
        mask = transform_masks([_binary(labels[reference], candidate.object_id)], affine)
        return frame_inputs(frame, affine, ("image",)).image, mask

    def _prior(self, prev_mask: Tensor, rng: np.random.Generator) -> Tensor:
        """1 x h x w prior of the previous mask, after a random erosion or dilation and jitter."""
        augment = self.augment
        kernel = int(rng.integers(1, augment.max_mask_kernel + 1)) * int(rng.choice([-1, 1]))
        mask = dilate_or_erode(prev_mask[0].numpy().astype(np.uint8), kernel)
        scale_range = (1 / augment.prior_scale, augment.prior_scale)
        prior = gaussian_prior(mask, jitter=augment.prior_jitter, scale_range=scale_range, rng=rng)
        return torch.from_numpy(prior)[None]


@contextmanager
def _one_thread() -> Iterator[None]:
    """Run torch on one thread: a sample is many small ops, and handing each to a thread pool
    costs more than the op (loader workers are single-threaded already; this covers
    `num_workers=0`, where one op took 50x longer on two threads of a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _binary(labels: np.ndarray, object_id: int) -> np.ndarray:
    """H x W uint8 {0, 1}: where `labels` holds `object_id`."""
    return (labels == object_id).view(np.uint8)
