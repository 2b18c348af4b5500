"""Training samples as the method needs them: reference, I-frame ("key") and target, one object.

For a target frame t in GOP g the sample holds a reference frame with its mask, g's I-frame
with its mask, t's accumulated motion vectors and residual back to that I-frame, t's plain
motion vectors, a Gaussian location prior from the previous frame's mask, and t's mask.
I-frames are targets too (gop_position 0), so the encoder path trains on its own output.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, default_collate

from cvos.data.prepared import PreparedSequence
from cvos.data.sampling import Candidate, SampleKey, find_candidates
from cvos.data.sources import FrameStore
from cvos.data.transforms import Augment, dilate_or_erode, sample_affine, transform_masks
from cvos.models import Affine, NetInputs, frame_inputs, gaussian_prior

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
class Picture:
    """A decoded image alone: all that `frame_inputs(picture, affine, ("image",))` reads."""

    bgr: np.ndarray  # H x W x 3 uint8


class TrainDataset(Dataset):
    """Map-style dataset of augmented `TrainBatch` samples (unbatched), one per `SampleKey`.

    The key names the candidate, its reference frame and the seed that drives every random
    augmentation of the sample, so a sample is the same whichever process builds it, whenever.
    """

    def __init__(
        self,
        sequences: list[PreparedSequence],
        frames: FrameStore,
        input_size: tuple[int, int] | None,
        crop_size: tuple[int, int] | None,
        augment: TrainAugment,
    ) -> None:
        self.sequences = sequences
        self.frames = frames
        self.input_size = input_size  # None: each sequence's own frame size
        self.crop_size = crop_size  # None: the whole input
        self.augment = augment
        self.candidates = [c for i, s in enumerate(sequences) for c in find_candidates(s, i)]

    def __len__(self) -> int:
        return len(self.candidates)

    def __getitem__(self, key: SampleKey) -> TrainBatch:
        index, reference, seed = key
        with _one_thread():
            return self._sample(self.candidates[index], reference, np.random.default_rng(seed))

    def _sample(self, candidate: Candidate, reference: int, rng: np.random.Generator) -> TrainBatch:
        key_image, target, masks = self._clip(candidate, rng)
        ref_image, ref_mask = self._reference(candidate, reference, rng)
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
        sequence = self.sequences[candidate.sequence]
        affine = self.affine(candidate, self.augment.clip, rng)
        target = frame_inputs(self.frames.frame(candidate.sequence, candidate.target), affine)
        key_image = self.frames.image(candidate.sequence, candidate.key)  # after its target
        key = frame_inputs(Picture(key_image), affine, ("image",))  # type: ignore[arg-type]
        frames = (candidate.key, candidate.target, candidate.previous)
        masks = [_binary(sequence.label(t), candidate.object_id) for t in frames]
        return key.image, target, transform_masks(masks, affine)

    def _reference(
        self, candidate: Candidate, reference: int, rng: np.random.Generator
    ) -> tuple[Tensor, Tensor]:
        """The reference frame of the object and its mask, through its own random map."""
        labels = self.sequences[candidate.sequence].label(reference)
        affine = self.affine(candidate, self.augment.reference, rng)
        image = self.frames.image(candidate.sequence, reference)
        mask = transform_masks([_binary(labels, candidate.object_id)], affine)
        return frame_inputs(Picture(image), affine, ("image",)).image, mask  # type: ignore[arg-type]

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
