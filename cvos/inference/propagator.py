"""Streaming CVOS inference: one `Propagator` per video, stepped frame by frame in decode order.

I-frames go through the encoder and the I-frame decoder, with the previous frame's output as
the mask prior; P-frames get their features by warping the I-frame's with the accumulated
motion vectors (+ RSM, SAM) and the light P-frame decoder reads the I-frame's output warped
the same way as prior. For `mask` propagation P-frames instead move the previous label map
with the codec's whole-pixel vectors: an exact integer gather, no network. Everything around
the network is kept cheap: inputs are built only for the fields a frame needs, objects share
the encoder, the warp, RSM and the reference keys, and outputs are merged after one bilinear
upsample to the frame size. Only the current GOP's key features and output, the references
and the previous output are kept, so memory stays flat however long the video is.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from functools import cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cvos.codec import CompressedFrame, PictureType
from cvos.codec.motion import warp_labels
from cvos.errors import ConfigError, DataError
from cvos.models import (
    NetConfig,
    NetInputs,
    dilate,
    frame_inputs,
    gaussian_prior,
    resize_affine,
    warp_mask,
)
from cvos.models.matching import SharedBanks

PRECISIONS = ("float32", "bf16")
PROB_EPS = 1e-6  # probabilities are clamped this far from 0 and 1 before taking logits


@dataclass
class StepTimes:
    """Seconds one frame spent in each stage of `Propagator.step`."""

    inputs: float = 0.0  # the frame's arrays -> network input tensors
    features: float = 0.0  # the I-frame path (encoder) or the P-frame path (warp, RSM, SAM)
    matching: float = 0.0  # the matching decoder, and the banks of objects starting here
    post: float = 0.0  # mask warping, upsampling, merging objects into a label map

    @property
    def network(self) -> float:
        return self.features + self.matching

    def add(self, other: StepTimes) -> None:
        self.inputs += other.inputs
        self.features += other.features
        self.matching += other.matching
        self.post += other.post


@dataclass
class FrameOutput:
    """The segmentation of one frame at the frame's own size."""

    labels: np.ndarray  # H x W uint8 label map holding the object ids
    object_ids: list[int]
    times: StepTimes


@dataclass
class PropagatorState:
    """Everything carried from one frame to the next."""

    object_ids: list[int] = field(default_factory=list)
    banks: list[SharedBanks] = field(default_factory=list)  # per frame where objects start
    key_feats: Tensor | None = None  # 1 x D x h/8 x w/8, the current GOP's I-frame features
    key_probs: Tensor | None = None  # O x 1 x h x w, the I-frame's foreground probabilities
    probs: Tensor | None = None  # O x 1 x h x w, the previous frame's (None after mask warping)
    prior: Tensor | None = None  # O x 1 x h x w, the previous P-frame's mask prior (warped key)
    residual: Tensor | None = None  # 1 x 3 x h x w, the previous P-frame's accumulated residual
    labels: np.ndarray | None = None  # H x W uint8, the previous frame's output


class Stopwatch:
    """Splits a step into stages; waits for the GPU first, so each stage is charged its own time."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.last = time.perf_counter()

    def lap(self) -> float:
        """Seconds since the previous lap."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        now = time.perf_counter()
        elapsed, self.last = now - self.last, now
        return elapsed


def network_size(
    height: int, width: int, stride: int, input_size: tuple[int, int] | None
) -> tuple[int, int]:
    """The network's input size: `input_size`, else the frame size rounded up to the stride."""
    if input_size is not None:
        return int(input_size[0]), int(input_size[1])
    return stride * math.ceil(height / stride), stride * math.ceil(width / stride)


@cache
def _nearest_rows_cols(
    in_size: tuple[int, int], out_size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """The input row of every output row and column of every output column: nearest-pixel
    resizing, the same pixels `sample_nearest` picks through `resize_affine`."""
    return tuple(
        np.minimum(((np.arange(o) + 0.5) * (i / o)).astype(np.intp), i - 1)
        for i, o in zip(in_size, out_size, strict=True)
    )


def resize_labels(labels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """H x W label map -> h x w, nearest pixel (a resize is separable: one gather per axis)."""
    rows, cols = _nearest_rows_cols(labels.shape, size)
    return labels[rows[:, None], cols]


def object_masks(labels: np.ndarray, ids: list[int], size: tuple[int, int]) -> np.ndarray:
    """O x h x w bool: each object's pixels in `labels` (H x W) resized to `size`."""
    small = resize_labels(labels, size)
    return np.stack([small == i for i in ids])


def merge_objects(logits: Tensor, ids: list[int], window: Tensor | None = None) -> np.ndarray:
    """Label map from per-object foreground-minus-background logits (O x H x W).

    The argmax of soft aggregation ([prod(1 - p), p_1 .. p_O], p = sigmoid(logit)), done as
    O running comparisons rather than an argmax over a channel dimension; one object needs
    only the sign. `window` (O x H x W, {0, 1}) zeroes each object's probability outside it.
    """
    if len(ids) == 1 and window is None:
        inside = (logits[0] > 0).cpu().numpy().view(np.uint8)  # a bool's byte is 0 or 1
        return inside if ids[0] == 1 else inside * np.uint8(ids[0])
    probs = logits.sigmoid()
    if window is not None:
        probs = probs * window
    best = torch.prod(1 - probs, dim=0)  # H x W, the background
    index = torch.zeros(logits.shape[1:], dtype=torch.uint8, device=logits.device)
    for number, prob in enumerate(probs, start=1):
        index.masked_fill_(prob > best, number)
        best = torch.maximum(best, prob)
    index = index.cpu().numpy()
    return index if ids == list(range(1, len(ids) + 1)) else np.array([0, *ids], np.uint8)[index]


class Propagator:
    """Segments one video, frame by frame, from the masks of the objects where they first appear.

    `precision="bf16"` runs the network under bfloat16 autocast and `channels_last` feeds it
    NHWC tensors (prepare the network with `prepare_network`); outputs are merged in float32.
    """

    def __init__(
        self,
        net: nn.Module | None,
        config: NetConfig,
        *,
        device: torch.device | str = "cpu",
        precision: str = "float32",
        channels_last: bool = False,
    ) -> None:
        if net is None and config.needs_network:
            raise ConfigError(
                f"model {config.variant!r} ({config.propagation} propagation) needs a trained "
                "network; only mask propagation runs without one"
            )
        if precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        self.net = net
        self.config = config
        self.propagation = config.propagation
        self.device = torch.device(device)
        self.precision = precision
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.state = PropagatorState()

    @property
    def stride(self) -> int:
        return self.net.encoder.stride if self.net is not None else 8

    @torch.inference_mode()
    def sample_inputs(self, frame: CompressedFrame) -> NetInputs | None:
        """The network inputs `step` reads for `frame`, for a reader thread to sample ahead while
        `step` runs on an earlier frame (it reads nothing `step` changes). None where the frame
        needs none (no network; mask propagation's P-frames): `step` then samples what it needs.
        """
        if self.net is None or (self.propagation == "mask" and frame.picture_type != PictureType.I):
            return None
        size = network_size(*frame.bgr.shape[:2], self.stride, self.config.input_size)
        return self._inputs(frame, size, key=frame.picture_type == PictureType.I)

    @torch.inference_mode()
    def step(
        self,
        frame: CompressedFrame,
        new_masks: np.ndarray | None = None,
        inputs: NetInputs | None = None,
    ) -> FrameOutput:
        """Segment the next frame; `new_masks` (H x W labels) adds the objects that start here;
        `inputs` are the frame's `sample_inputs`, when sampled ahead."""
        new_ids = self._new_ids(new_masks)
        watch, times = Stopwatch(self.device), StepTimes()
        frame_size = frame.bgr.shape[:2]
        key = self._is_key(frame)
        segments = self.net is not None and (self.propagation != "mask" or key)
        size = network_size(*frame_size, self.stride, self.config.input_size)
        probs = None
        if segments:
            if inputs is None:
                inputs = self._inputs(frame, size, key)
            times.inputs = watch.lap()
            with self._autocast():
                shared, per_object = self._features(inputs, key, size, bool(new_ids))
                times.features = watch.lap()
                if self.state.object_ids:
                    probs = self._probs(inputs, per_object, key, size)
                if new_ids:
                    self._add_references(new_masks, new_ids, shared, size)
            times.matching = watch.lap()
            labels = self._labels(frame, probs, frame_size, size)
        else:
            labels = self._warped_labels(frame_size, frame)
        if new_ids:
            labels = np.where(np.isin(new_masks, new_ids), new_masks, labels).astype(np.uint8)
            probs = self._with_new_objects(probs, new_masks, new_ids, size)
            self.state.object_ids.extend(new_ids)
        times.post = watch.lap()
        self._remember(key, labels, probs, inputs if segments else None)
        return FrameOutput(labels=labels, object_ids=list(self.state.object_ids), times=times)

    def _remember(
        self, key: bool, labels: np.ndarray, probs: Tensor | None, inputs: NetInputs | None
    ) -> None:
        """What the next frames read: the output (label map and probabilities), the GOP's key
        output, and the residual of a P-frame (the next I-frame's decoder reads it)."""
        state = self.state
        state.labels, state.probs = labels, probs
        if key or state.key_probs is None:
            state.key_probs, state.prior = probs, None
        state.residual = None if key or inputs is None else inputs.residual_acc

    def _new_ids(self, new_masks: np.ndarray | None) -> list[int]:
        if new_masks is None:
            return []
        ids = [int(i) for i in np.unique(new_masks) if i != 0]
        for object_id in ids:
            if object_id in self.state.object_ids:
                raise DataError(f"object {object_id} is given a first mask twice")
        return ids

    def _is_key(self, frame: CompressedFrame) -> bool:
        """I-frames, and the first frame the network sees: the encoder runs and its features
        are the GOP's key features (without a network nothing is encoded)."""
        if self.net is None:
            return False
        return frame.picture_type == PictureType.I or self.state.key_feats is None

    def _inputs(self, frame: CompressedFrame, size: tuple[int, int], key: bool) -> NetInputs:
        """`frame_inputs` of the fields this frame needs, batched and on the device: the image
        (encoder and decoders' fine path) and, on P-frames, the motion and residual."""
        fields = ("image",) if key else ("image", "mv_acc", "residual_acc", "mv")
        inputs = frame_inputs(frame, resize_affine(frame.bgr.shape[:2], size), fields)
        for name in fields:
            tensor = getattr(inputs, name)[None]
            setattr(inputs, name, tensor.to(self.device, memory_format=self.memory_format))
        return inputs

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.precision == "float32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def _features(
        self, inputs: NetInputs, key: bool, size: tuple[int, int], new_objects: bool
    ) -> tuple[Tensor | None, Tensor]:
        """Features of this frame: those new objects' banks are built from (1 x D x h/8 x w/8:
        the encoder's, or the key features warped + RSM; None without new objects where
        they are not computed anyway) and those each object is matched with (SAM: O x D ...)."""
        if key or self.propagation == "framewise":
            feats = self.net.encode(inputs.image)
            if key:
                self.state.key_feats = feats
            return feats, feats
        key_feats, mv_acc, residual = self.state.key_feats, inputs.mv_acc, inputs.residual_acc
        if not self.net.use_sam:
            feats = self.net.propagate(key_feats, mv_acc, residual, None, None).feats
            return feats, feats
        shared = self.net.carry(key_feats, mv_acc, residual) if new_objects else None
        if not self.state.object_ids:
            return shared, shared
        gauss = self._gaussians(size)  # O x 1 x h x w: the objects share the rest of the batch
        return shared, self.net.propagate(key_feats, mv_acc, residual, inputs.mv, gauss).feats

    def _gaussians(self, size: tuple[int, int]) -> Tensor:
        """Gaussian location priors of the objects in the previous label map: O x 1 x h x w."""
        masks = object_masks(self.state.labels, self.state.object_ids, size)
        priors = np.stack([gaussian_prior(mask) for mask in masks])
        return torch.from_numpy(priors)[:, None].to(self.device, memory_format=self.memory_format)

    def _probs(self, inputs: NetInputs, feats: Tensor, key: bool, size: tuple[int, int]) -> Tensor:
        """Foreground probabilities of every known object: O x 1 x h x w, float32.

        The decoders start from the mask prior, what mask_warp would hold: on P-frames the
        I-frame's output warped by the accumulated motion, on I-frames the previous P-frame's
        prior (the P-frame decoder's outputs never feed forward, so its errors do not compound
        from GOP to GOP; training draws I-frame priors from the same kind of chains). Shared
        features are matched once for all objects, SAM's per object.
        """
        iframe = key or self.propagation == "framewise"
        if key:
            prior = self.state.prior if self.state.prior is not None else self._previous_probs(size)
            residual = self.state.residual
            if residual is None:
                residual = torch.zeros_like(inputs.image)
        else:
            prior = self.state.prior = self._warped_prior(inputs)
            residual = inputs.residual_acc
        scores = self.net.shared_scores(feats, self.state.banks)  # O x 2 x h/8 x w/8
        if feats.shape[0] != scores.shape[0]:
            feats = feats.expand(scores.shape[0], -1, -1, -1)
        scale = self.config.iframe_correction if iframe else 1.0
        logits = self.net.decode(
            feats, scores, inputs.image, residual, prior, key=iframe, correction_scale=scale
        )
        return logits.float().sigmoid()

    def _warped_prior(self, inputs: NetInputs) -> Tensor:
        """O x 1 x h x w: the I-frame's output moved by the accumulated motion, as mask_warp
        would; objects that started after the I-frame move from the previous frame by the plain
        motion (their mask never was at the I-frame)."""
        key_probs, probs = self.state.key_probs, self.state.probs
        prior = warp_mask(key_probs, inputs.mv_acc)  # one grid for every object
        late = probs[len(key_probs) :]
        if len(late):
            prior = torch.cat((prior, warp_mask(late, inputs.mv)))
        return prior

    def _previous_probs(self, size: tuple[int, int]) -> Tensor:
        """O x 1 x h x w: the previous frame's probabilities, or (after mask warping) its label
        map's objects."""
        if self.state.probs is not None:
            return self.state.probs
        masks = object_masks(self.state.labels, self.state.object_ids, size)[:, None]
        return torch.from_numpy(masks).to(self.device, torch.float32)

    def _with_new_objects(
        self, probs: Tensor | None, masks: np.ndarray, ids: list[int], size: tuple[int, int]
    ) -> Tensor | None:
        """The probabilities with the objects starting here appended: their given masks."""
        if self.net is None:
            return None
        given = torch.from_numpy(object_masks(masks, ids, size)[:, None]).float()
        given = given.to(self.device)
        if self.state.prior is not None:
            self.state.prior = torch.cat((self.state.prior, given))
        return given if probs is None else torch.cat((probs, given))

    def _add_references(
        self, labels: np.ndarray, ids: list[int], feats: Tensor, size: tuple[int, int]
    ) -> None:
        """Banks of the objects that start on this frame, from its shared features."""
        masks = torch.from_numpy(object_masks(labels, ids, size))[None].to(self.device)
        self.state.banks.append(self.net.shared_banks(feats.float(), masks, self.config.bank_cap))

    def _labels(
        self,
        frame: CompressedFrame,
        probs: Tensor | None,
        frame_size: tuple[int, int],
        size: tuple[int, int],
    ) -> np.ndarray:
        """The label map at the frame's size from the probabilities (one bilinear upsample of
        their logits)."""
        if probs is None:
            return np.zeros(frame_size, np.uint8)
        logits = torch.logit(probs[:, 0].clamp(PROB_EPS, 1 - PROB_EPS))
        up = F.interpolate(logits[None], size=frame_size, mode="bilinear", align_corners=False)
        window = None
        if frame.picture_type == PictureType.I and self.state.labels is not None:
            window = self._window(frame_size, size)
        return merge_objects(up[0], self.state.object_ids, window)

    def _window(self, frame_size: tuple[int, int], size: tuple[int, int]) -> Tensor:
        """The previous masks dilated by a square of `iframe_window` network pixels, to keep each
        object localised at I-frames: O x H x W in {0, 1}, 1 everywhere for an absent object.

        Dilated at the network's resolution (as the masks it was trained on), then brought to
        the frame's size by nearest pixel.
        """
        present = torch.from_numpy(object_masks(self.state.labels, self.state.object_ids, size))
        present = present.to(self.device, torch.float32)  # O x h x w
        dilated = dilate(present, self.config.iframe_window)
        dilated[present.flatten(1).amax(dim=1) == 0] = 1.0
        rows, cols = (
            torch.from_numpy(i).to(self.device) for i in _nearest_rows_cols(size, frame_size)
        )
        return dilated[:, rows[:, None], cols]

    def _warped_labels(self, frame_size: tuple[int, int], frame: CompressedFrame) -> np.ndarray:
        """The previous label map moved by the frame's motion vectors (zero at I-frames).

        Chaining the plain vectors frame to frame equals moving the I-frame's map by the
        accumulated ones (that is how they accumulate), and objects that start mid-GOP move
        from their own frame.
        """
        if self.state.labels is None or not self.state.object_ids:
            return np.zeros(frame_size, np.uint8)
        return warp_labels(self.state.labels, frame.mv)
