"""Training samples as the method needs them: reference, I-frame ("key") and target, one object.

For a target frame t in GOP g the sample holds a reference frame with its mask; g's I-frame
with its mask, its mask prior (mask_warp's output at frame g - 1, drifted over 1 to 4 GOPs
from an earlier ground truth: `cvos.data.priors`) and the residual of frame g - 1 (where that
warp went wrong); t's accumulated motion vectors and residual back to g, t's plain motion
vectors, t's mask prior (g's ground truth or the drifted prior, moved by t's vectors, as
mask_warp would), a Gaussian location prior of that mask for SAM, and t's mask. I-frames are
targets too (gop_position 0), so the encoder path trains on its own output, and so is, for a
share of the samples, the target itself decoded as an I-frame ("pseudo I-frame").
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, get_worker_info

from cvos.codec import Picture
from cvos.codec.motion import warp_labels
from cvos.data.prepared import PreparedSequence
from cvos.data.priors import WarpedLabels
from cvos.data.sampling import Candidate, SampleKey, find_candidates
from cvos.data.sources import FrameStore
from cvos.data.transforms import Augment, dilate_or_erode, sample_affine, transform_masks
from cvos.data.transport import HEADER_BYTES, SegmentPool, hand_back, layout, packed_views
from cvos.models import Affine, NetInputs, frame_inputs, gaussian_prior
from cvos.models.geometry import sample_bilinear, unit_to_bytes

IMAGES = ("ref_image", "key_image", "target_image")  # in [0, 1]; packed as uint8 x 255
PACKED_DTYPES = {  # how each float32 field travels from loader workers: a third of the bytes
    **dict.fromkeys(IMAGES, torch.uint8),
    **dict.fromkeys(("ref_mask", "key_mask", "target_mask"), torch.uint8),
    **dict.fromkeys(
        ("mv_acc", "mv", "residual_acc", "key_residual", "key_prior", "target_prior", "gauss"),
        torch.float16,
    ),
}
SHARED_INPUTS = 16  # frame inputs a dataset keeps for the next samples of a block (~1.5 MB each)


def _packed_dtype(name: str, tensor: Tensor) -> torch.dtype:
    return PACKED_DTYPES.get(name, tensor.dtype)


def _pack_into(out: Tensor, name: str, tensor: Tensor) -> None:
    """Write one field of a sample into its slot of a packed batch (`PACKED_DTYPES`).

    Images become their bytes in one compiled pass (`unit_to_bytes`); masks hold 0 and 1, which
    numpy casts to uint8 as torch does, seven times faster than torch's scalar loop.
    """
    if name in IMAGES:
        unit_to_bytes(tensor.contiguous(), out)
    elif out.dtype == torch.uint8:
        np.copyto(out.numpy(), tensor.numpy(), casting="unsafe")
    else:
        out.copy_(tensor)


def _unpack(name: str, tensor: Tensor) -> Tensor:
    """A field of a packed batch as float32, in memory of its own (the packed batch's may go
    back to its worker); float32 fields are already unpacked."""
    if tensor.dtype == torch.float32:
        return tensor
    if name in IMAGES:
        return tensor.float().div_(255.0)
    return tensor.float() if name in PACKED_DTYPES else tensor.clone()


RELEASED = -1  # `TrainBatch.lease` of a packed batch whose segment went back to its worker


@dataclass
class TrainBatch:
    """One training batch (or, without the B dimension, one sample); H x W is the crop size.

    Samples and the batches a model sees are float32 as documented below. Between them,
    batches travel packed (`PACKED_DTYPES`: uint8 images and masks, float16 fields), because
    moving float32 between processes capped the loader at about 80 samples/s at 256 x 512
    on two cores; `VOSDataModule.on_after_batch_transfer` unpacks them on the device. A loader
    worker packs into shared memory that it reuses once the batch has been copied out
    (`cvos.data.transport`): unpacking, pinning or moving the batch to a device hands it back,
    after which the packed batch must not be read (its methods refuse).
    """

    ref_image: Tensor  # B x 3 x H x W float32 RGB in [0, 1]
    ref_mask: Tensor  # B x 1 x H x W float32 {0, 1}, one object per sample
    key_image: Tensor  # B x 3 x H x W, the GOP's I-frame
    key_mask: Tensor  # B x 1 x H x W
    key_prior: Tensor  # B x 1 x H x W in [0, 1], mask_warp's drifted mask at the frame before
    key_residual: Tensor  # B x 3 x H x W in [-1, 1], residual_acc of the frame before (or 0)
    target_image: Tensor  # B x 3 x H x W
    target_mask: Tensor  # B x 1 x H x W
    target_prior: Tensor  # B x 1 x H x W in [0, 1], the key's (true or drifted) mask warped
    mv_acc: Tensor  # B x 2 x H x W float32 pixels (dx, dy) back to the I-frame
    residual_acc: Tensor  # B x 3 x H x W float32 RGB, residual / 255 in [-1, 1]
    mv: Tensor  # B x 2 x H x W float32 plain motion vectors, pixels
    gauss: Tensor  # B x 1 x H x W in [0, 1], Gaussian location prior of the target prior
    gop_position: Tensor  # B int64; 0: the target is the I-frame (key == target, no motion)
    # the ticket of the worker's segment the batch lies in (0: memory of its own; RELEASED)
    lease: int = field(default=0, repr=False, compare=False)

    @classmethod
    def tensor_names(cls) -> tuple[str, ...]:
        """The fields that hold tensors (all but `lease`), in order."""
        return tuple(f.name for f in fields(cls) if f.name != "lease")

    @classmethod
    def collate(cls, samples: list[TrainBatch]) -> TrainBatch:
        """Stack unbatched samples into a packed batch (the DataLoader's collate_fn): each
        sample's fields are converted straight into their slots of the batch, which in a
        loader worker lie in one of its shared-memory segments."""
        shapes = {}
        for name in cls.tensor_names():
            first = getattr(samples[0], name)
            shapes[name] = (torch.Size((len(samples), *first.shape)), _packed_dtype(name, first))
        size = layout(shapes)[1]
        if get_worker_info() is None:
            batch, lease = packed_views(shapes, torch.UntypedStorage(size)), 0
        else:
            storage, lease = _SEGMENTS.take(size)
            batch = packed_views(shapes, storage, start=HEADER_BYTES)
        with _one_thread():
            for name, out in batch.items():
                for slot, sample in zip(out, samples, strict=True):
                    _pack_into(slot, name, getattr(sample, name))
        return cls(**batch, lease=lease)

    def tensors(self) -> dict[str, Tensor]:
        """Every tensor, by field name."""
        return {name: getattr(self, name) for name in self._held()}

    def unpacked(self) -> TrainBatch:
        """The float32 batch of a packed one (what `collate` made), which is then released; a
        no-op on float32 batches."""
        batch = TrainBatch(**{name: _unpack(name, t) for name, t in self.tensors().items()})
        self.release()
        return batch

    def apply(self, function: Callable[[Tensor], Tensor]) -> TrainBatch:
        """A batch with `function` applied to every tensor (no lease: its tensors are
        `function`'s)."""
        return TrainBatch(**{name: function(t) for name, t in self.tensors().items()})

    def pin_memory(self) -> TrainBatch:
        """Called by the DataLoader when `pin_memory=True`: a pinned copy; this one is
        released."""
        pinned = self.apply(Tensor.pin_memory)
        self.release()
        return pinned

    def to(self, device: torch.device | str, non_blocking: bool = False) -> TrainBatch:
        """The batch on `device`; this one is released if that took a copy. (A non-blocking copy
        from pageable memory has read it by the time it returns: CUDA stages it first.)"""
        moved = self.apply(lambda tensor: tensor.to(device, non_blocking=non_blocking))
        if moved.ref_image is self.ref_image:
            return self
        self.release()
        return moved

    def release(self) -> None:
        """Give the shared memory of a batch a loader worker packed back to the worker, to
        pack a later batch into: call it once every tensor has been copied out (`unpacked`,
        `pin_memory` and `to` another device do). A batch of its own memory is unaffected."""
        if self.lease > 0:
            hand_back(self.ref_image, self.lease)
            self.lease = RELEASED

    def _held(self) -> tuple[str, ...]:
        """The names of the tensors, once sure that they are still this batch's."""
        if self.lease == RELEASED:
            raise RuntimeError(
                "this packed batch went back to its loader worker (it was unpacked, pinned or "
                "moved already): use the batch that call returned"
            )
        return self.tensor_names()


_SEGMENTS = SegmentPool()  # this process's, when it is a loader worker


@dataclass(frozen=True)
class TrainAugment:
    """Augmentation of a training sample; the defaults are the original's (cvos-method.md)."""

    reference: Augment = Augment(
        flip_p=0.5, max_rotation=30.0, scale_range=(0.75, 1.25), max_translation=0.05
    )
    clip: Augment = Augment(max_rotation=10.0, max_translation=0.01)  # key and target jointly
    max_mask_kernel: int = 10  # SAM's mask is eroded or dilated by a square of 1..k px
    prior_jitter: float = 0.2  # Gaussian centre moves by up to this many spreads
    prior_scale: float = 1.4  # Gaussian spread scaled log-uniformly by 1/s .. s
    true_key_prior: float = 0.5  # how often a P-frame's prior starts from its key's truth
    perturb: float = 0.3  # how often a mask prior is dilated or eroded by 3, 5 or 7 px
    pseudo_iframes: float = 0.3  # how often a P-frame target is decoded as an I-frame instead


class TrainDataset(Dataset):
    """Map-style dataset of augmented `TrainBatch` samples (unbatched), one per `SampleKey`.

    The key names the candidate, its reference frame and the seed that drives every random
    augmentation of the sample, so a sample is the same whichever process builds it, whenever.
    `priors[i]` holds the drifted mask_warp priors of sequence i (None: priors start from the
    ground truth of the key, perturbed).
    """

    def __init__(
        self,
        sequences: list[PreparedSequence],
        frames: FrameStore,
        input_size: tuple[int, int] | None,
        crop_size: tuple[int, int] | None,
        augment: TrainAugment,
        priors: list[WarpedLabels] | None = None,
    ) -> None:
        self.sequences = sequences
        self.frames = frames
        self.input_size = input_size  # None: each sequence's own frame size
        self.crop_size = crop_size  # None: the whole input
        self.augment = augment
        self.priors = priors
        self.candidates = [c for i, s in enumerate(sequences) for c in find_candidates(s, i)]
        self._shared: OrderedDict[tuple, Tensor] = OrderedDict()  # see `_shared_input`

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_shared": OrderedDict()}  # a process keeps its own copies

    def __len__(self) -> int:
        return len(self.candidates)

    def __getitem__(self, key: SampleKey) -> TrainBatch:
        index, reference, seed = key
        with _one_thread():
            return self._sample(self.candidates[index], reference, np.random.default_rng(seed))

    def _sample(self, candidate: Candidate, reference: int, rng: np.random.Generator) -> TrainBatch:
        pseudo = candidate.target != candidate.key and rng.random() < self.augment.pseudo_iframes
        clip = self._pseudo_iframe(candidate, rng) if pseudo else self._clip(candidate, rng)
        ref_image, ref_mask = self._reference(candidate, reference, rng)
        key_prior = self._perturbed(clip.priors[0:1], rng)
        target_prior = self._perturbed(clip.priors[1:2], rng)
        return TrainBatch(
            ref_image=ref_image,
            ref_mask=ref_mask,
            key_image=clip.key_image,
            key_mask=clip.masks[0:1],
            key_prior=key_prior,
            key_residual=clip.key_residual,
            target_image=clip.target.image,
            target_mask=clip.masks[1:2],
            target_prior=target_prior if clip.moves else key_prior,
            mv_acc=clip.target.mv_acc,
            residual_acc=clip.target.residual_acc,
            mv=clip.target.mv,
            gauss=self._gauss(target_prior, rng),
            gop_position=torch.tensor(candidate.target - candidate.key if clip.moves else 0),
        )

    def affine(self, candidate: Candidate, augment: Augment, rng: np.random.Generator) -> Affine:
        """A random map from the sample's crop to the frames of the candidate's sequence."""
        meta = self.sequences[candidate.sequence].meta
        size = (meta.height, meta.width)
        input_size = self.input_size or size
        return sample_affine(size, input_size, self.crop_size or input_size, augment, rng)

    def _clip(self, candidate: Candidate, rng: np.random.Generator) -> ClipTensors:
        """The I-frame's image and residual before it, the target's inputs, the [key, target]
        masks and mask priors, all through one random map."""
        sequence = self.sequences[candidate.sequence]
        affine = self.affine(candidate, self.augment.clip, rng)
        target_frame = self.frames.frame(candidate.sequence, candidate.target)
        target = frame_inputs(target_frame, affine)
        key_image = self._shared_input("image", candidate.sequence, candidate.key, affine)
        key_labels, drifted = self._key_priors(candidate, rng)
        key_residual = torch.zeros_like(target.residual_acc)
        if candidate.key > 0:
            key_residual = self._shared_input(
                "residual_acc", candidate.sequence, candidate.key - 1, affine
            )
        start = key_labels if rng.random() < self.augment.true_key_prior else drifted
        target_labels = warp_labels(start, target_frame.mv_acc)
        frames = (candidate.key, candidate.target)
        masks = [_binary(sequence.label(t), candidate.object_id) for t in frames]
        priors = _binary_pair(drifted, target_labels, candidate.object_id)
        return ClipTensors(
            key_image=key_image,
            key_residual=key_residual,
            target=target,
            masks=transform_masks(masks, affine),
            priors=sample_bilinear([priors], affine),
            moves=candidate.target != candidate.key,
        )

    def _pseudo_iframe(self, candidate: Candidate, rng: np.random.Generator) -> ClipTensors:
        """The target as if it were an I-frame: encoded and decoded by the I-frame decoder with
        the prior mask_warp would hold at the frame before it (from its GOP's true or drifted
        key mask) and that frame's residual. Every frame becomes a lesson for the I-frame
        decoder, not only the few I-frames of a dataset; the sample has no P-frame target."""
        sequence = self.sequences[candidate.sequence]
        affine = self.affine(candidate, self.augment.clip, rng)
        before = self.frames.frame(candidate.sequence, candidate.target - 1)
        frame = self.frames.frame(candidate.sequence, candidate.target)
        key_labels, drifted = self._key_priors(candidate, rng)
        start = key_labels if rng.random() < self.augment.true_key_prior else drifted
        prior = _binary(warp_labels(start, before.mv_acc), candidate.object_id)
        image = frame_inputs(frame, affine, ("image",)).image
        residual = self._shared_input(
            "residual_acc", candidate.sequence, candidate.target - 1, affine
        )
        mask = transform_masks(
            [_binary(sequence.label(candidate.target), candidate.object_id)], affine
        )
        still = NetInputs(
            image=image,
            mv=torch.zeros(2, *image.shape[1:]),
            mv_acc=torch.zeros(2, *image.shape[1:]),
            residual_acc=torch.zeros_like(residual),
        )
        priors = sample_bilinear([prior[..., None]], affine).expand(2, -1, -1)
        return ClipTensors(image, residual, still, mask.expand(2, -1, -1), priors, moves=False)

    def _shared_input(self, name: str, sequence: int, index: int, affine: Affine) -> Tensor:
        """The "image" or "residual_acc" input of a frame that the samples of a block share
        (its I-frame, the frame before it) through `affine`, sampled once per map and copied:
        the 8 samples of a block read them through 2 maps when flips are the only
        augmentation. The last `SHARED_INPUTS` are kept."""
        key = (name, sequence, index, affine.matrix.tobytes(), affine.offset.tobytes())
        value = self._shared.pop(key, None)
        if value is None:
            if name == "image":  # a decoded image alone (a target's I-frame: after its target)
                frame = Picture.of(self.frames.image(sequence, index))
            else:
                frame = self.frames.frame(sequence, index)
            value = getattr(frame_inputs(frame, affine, (name,)), name)  # type: ignore[arg-type]
        self._shared[key] = value  # the most recent
        while len(self._shared) > SHARED_INPUTS:
            self._shared.popitem(last=False)
        return value.clone()

    def _key_priors(self, candidate: Candidate, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
        """The key's true label map and a drifted one (mask_warp from an earlier I-frame's
        truth; the truth itself where no earlier I-frame is annotated)."""
        truth = self.sequences[candidate.sequence].label(candidate.key)
        if self.priors is None:
            return truth, truth
        warped = self.priors[candidate.sequence]
        start = warped.draw_start(candidate.key, rng)
        return truth, truth if start is None else warped.prior(start, candidate.key)

    def _reference(
        self, candidate: Candidate, reference: int, rng: np.random.Generator
    ) -> tuple[Tensor, Tensor]:
        """The reference frame of the object and its mask, through its own random map."""
        labels = self.sequences[candidate.sequence].label(reference)
        affine = self.affine(candidate, self.augment.reference, rng)
        image = self.frames.image(candidate.sequence, reference)
        mask = transform_masks([_binary(labels, candidate.object_id)], affine)
        return frame_inputs(Picture.of(image), affine, ("image",)).image, mask  # type: ignore[arg-type]

    def _perturbed(self, prior: Tensor, rng: np.random.Generator) -> Tensor:
        """1 x h x w: the prior dilated or eroded by a 3, 5 or 7 px square (`perturb` of the
        time), as a network's output might be off."""
        if rng.random() >= self.augment.perturb:
            return prior
        k = int(rng.choice([3, 5, 7]))
        kernel = k if rng.random() < 0.5 else -k  # dilate or erode
        return torch.from_numpy(dilate_or_erode(prior[0].numpy(), kernel))[None]

    def _gauss(self, prior: Tensor, rng: np.random.Generator) -> Tensor:
        """1 x h x w Gaussian location prior of a mask, after a random erosion or dilation and
        jitter (the original's augmentation of the previous frame's mask)."""
        augment = self.augment
        kernel = int(rng.integers(1, augment.max_mask_kernel + 1)) * int(rng.choice([-1, 1]))
        mask = dilate_or_erode((prior[0] > 0.5).numpy().astype(np.uint8), kernel)
        scale_range = (1 / augment.prior_scale, augment.prior_scale)
        gauss = gaussian_prior(mask, jitter=augment.prior_jitter, scale_range=scale_range, rng=rng)
        return torch.from_numpy(gauss)[None]


@dataclass
class ClipTensors:
    """What a sample reads of its I-frame and target, through the clip's map."""

    key_image: Tensor  # 3 x h x w
    key_residual: Tensor  # 3 x h x w
    target: NetInputs
    masks: Tensor  # 2 x h x w {0, 1}: key, target
    priors: Tensor  # 2 x h x w [0, 1]: key's drifted prior, target's prior
    moves: bool  # the target is a P-frame reached by motion (else it is the key itself)


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


def _binary_pair(first: np.ndarray, second: np.ndarray, object_id: int) -> np.ndarray:
    """H x W x 2 uint8 {0, 1}: `_binary` of two label maps as the channels of one array, which
    the bilinear sampler reads at once (one gather a corner for both: two 1-channel masks cost
    it twice the time). Built as little-endian 16-bit words, second * 256 + first, in two
    passes (numpy writes interleaved bytes one at a time, several times slower)."""
    words = np.empty(first.shape, "<u2")
    np.multiply(second == object_id, 256, out=words, dtype=words.dtype)
    words += first == object_id
    return words.view(np.uint8).reshape(*first.shape, 2)
