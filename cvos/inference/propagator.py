"""Streaming CVOS inference: one `Propagator` per video, stepped frame by frame in decode order.

I-frames go through the encoder; P-frames get their features (or, for `mask` propagation,
their masks) by warping the I-frame's with the accumulated motion vectors. Only the current
GOP's key features, the per-object references and the previous frame's probabilities are
kept, so memory stays flat however long the video is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cvos.codec import CompressedFrame, PictureType
from cvos.errors import ConfigError, DataError
from cvos.models import (
    NetConfig,
    NetInputs,
    Reference,
    frame_inputs,
    gaussian_prior,
    resize_affine,
    sample_nearest,
    soft_aggregate,
    warp_mask,
)


@dataclass
class FrameOutput:
    """The segmentation of one frame at the frame's own size."""

    probs: Tensor  # (O+1) x H x W, channel 0 = background, then objects in `object_ids` order
    labels: np.ndarray  # H x W uint8 label map holding the object ids
    object_ids: list[int]


@dataclass
class PropagatorState:
    """Everything carried from one frame to the next."""

    object_ids: list[int] = field(default_factory=list)
    references: list[Reference] = field(default_factory=list)  # one per object
    key_feats: Tensor | None = None  # 1 x D x h/8 x w/8, the current GOP's I-frame features
    key_probs: Tensor | None = None  # O x 1 x h x w, the I-frame's object probabilities
    prev_probs: Tensor | None = None  # O x 1 x h x w, the previous frame's object probabilities


def network_size(
    height: int, width: int, stride: int, input_size: tuple[int, int] | None
) -> tuple[int, int]:
    """The network's input size: `input_size`, else the frame size rounded up to the stride."""
    if input_size is not None:
        return int(input_size[0]), int(input_size[1])
    return stride * math.ceil(height / stride), stride * math.ceil(width / stride)


def batched_inputs(
    frame: CompressedFrame, size: tuple[int, int], fields: tuple[str, ...], device: torch.device
) -> NetInputs:
    """`frame_inputs` of the whole frame resized to `size`, with a batch dimension of one."""
    inputs = frame_inputs(frame, resize_affine(frame.bgr.shape[:2], size), fields)
    for name in fields:
        setattr(inputs, name, getattr(inputs, name)[None].to(device))
    return inputs


class Propagator:
    """Segments one video, frame by frame, from the masks of the objects where they first appear."""

    def __init__(
        self, net: nn.Module | None, config: NetConfig, *, device: torch.device | str = "cpu"
    ) -> None:
        if net is None and config.needs_network:
            raise ConfigError(
                f"model {config.variant!r} ({config.propagation} propagation) needs a trained "
                "network; only mask propagation runs without one"
            )
        self.net = net
        self.config = config
        self.propagation = config.propagation
        self.device = torch.device(device)
        self.state = PropagatorState()

    @property
    def stride(self) -> int:
        return self.net.encoder.stride if self.net is not None else 8

    @torch.inference_mode()
    def step(self, frame: CompressedFrame, new_masks: np.ndarray | None = None) -> FrameOutput:
        """Segment the next frame; `new_masks` (H x W labels) adds the objects that start here."""
        height, width = frame.bgr.shape[:2]
        size = network_size(height, width, self.stride, self.config.input_size)
        inputs = batched_inputs(frame, size, self._fields(frame), self.device)
        feats = self._features(frame, inputs, size)
        probs = self._object_probs(frame, inputs, feats, size)  # O x 1 x h x w
        if new_masks is not None:
            probs = self._add_objects(new_masks, feats, probs, size)
        if frame.picture_type == PictureType.I or self.state.key_probs is None:
            self.state.key_probs = probs
        self.state.prev_probs = probs
        return self._output(probs, (height, width))

    def _fields(self, frame: CompressedFrame) -> tuple[str, ...]:
        """The inputs this frame needs: the image where the encoder runs, motion elsewhere."""
        if self.net is None:
            return ("mv_acc",)
        if self._is_key(frame) or self.propagation == "framewise":
            return ("image", "mv_acc")
        return ("mv_acc",) if self.propagation == "mask" else ("mv", "mv_acc", "residual_acc")

    def _is_key(self, frame: CompressedFrame) -> bool:
        return frame.picture_type == PictureType.I or self.state.key_feats is None

    def _features(
        self, frame: CompressedFrame, inputs: NetInputs, size: tuple[int, int]
    ) -> Tensor | None:
        """Features of this frame: encoder on I-frames (every frame for framewise), else warped."""
        if self.net is None:
            return None
        is_key = self._is_key(frame)
        if self.propagation == "framewise" or is_key:
            feats = self.net.encode(inputs.image)  # 1 x D x h/8 x w/8
            if is_key:
                self.state.key_feats = feats
            return feats
        if self.propagation == "mask":
            return None
        return self._propagate(inputs, size)

    def _propagate(self, inputs: NetInputs, size: tuple[int, int]) -> Tensor:
        """P-frame features, per object when SAM needs each object's prior: O x D x h/8 x w/8."""
        prev = self.state.prev_probs
        if self.net.use_sam and prev is not None and prev.shape[0] > 0:
            priors = self._priors(prev)
        else:
            priors = torch.ones(1, 1, *size, device=self.device)
        count = priors.shape[0]
        out = self.net.propagate(
            self.state.key_feats.expand(count, -1, -1, -1),
            inputs.mv_acc.expand(count, -1, -1, -1),
            inputs.residual_acc.expand(count, -1, -1, -1),
            inputs.mv.expand(count, -1, -1, -1),
            priors,
        )
        return out.feats

    def _priors(self, prev: Tensor) -> Tensor:
        """Gaussian location priors of the previous masks: O x 1 x h x w."""
        masks = (prev[:, 0] > 0.5).cpu().numpy()
        priors = [torch.from_numpy(gaussian_prior(mask)) for mask in masks]
        return torch.stack(priors)[:, None].to(self.device)

    def _object_probs(
        self, frame: CompressedFrame, inputs: NetInputs, feats: Tensor | None, size: tuple[int, int]
    ) -> Tensor:
        """Foreground probability of every known object: O x 1 x h x w."""
        state = self.state
        if not state.object_ids:
            return torch.zeros(0, 1, *size, device=self.device)
        if feats is None:
            return self._mask_probs(frame, inputs)
        probs = []
        for index, reference in enumerate(state.references):
            obj_feats = feats[min(index, feats.shape[0] - 1)][None]
            logits = self.net.decode(obj_feats, reference, size)  # 1 x 1 x 2 x h x w
            probs.append(logits.softmax(dim=2)[0, :, 1:])
        fg = torch.cat(probs)  # O x 1 x h x w
        if frame.picture_type == PictureType.I and state.prev_probs is not None:
            fg = fg * self._window(state.prev_probs)
        return fg

    def _mask_probs(self, frame: CompressedFrame, inputs: NetInputs) -> Tensor:
        """mask propagation: the I-frame's probabilities warped with the accumulated motion."""
        if frame.picture_type == PictureType.I:
            return self.state.prev_probs
        return warp_mask(
            self.state.key_probs, inputs.mv_acc.expand(len(self.state.object_ids), -1, -1, -1)
        )

    def _window(self, prev: Tensor) -> Tensor:
        """The previous masks dilated by a square, to keep each object localised at I-frames."""
        present = (prev > 0.5).float()
        dilated = F.max_pool2d(
            present, 2 * self.config.iframe_window + 1, stride=1, padding=self.config.iframe_window
        )
        empty = present.flatten(1).sum(dim=1) == 0
        dilated[empty] = 1.0
        return dilated

    def _add_objects(
        self, labels: np.ndarray, feats: Tensor | None, probs: Tensor, size: tuple[int, int]
    ) -> Tensor:
        """Register the objects that start on this frame; returns O x 1 x h x w with their masks."""
        ids = [int(i) for i in np.unique(labels) if i != 0]
        for object_id in ids:
            if object_id in self.state.object_ids:
                raise DataError(f"object {object_id} is given a first mask twice")
        affine = resize_affine(labels.shape, size)
        masks = sample_nearest([np.stack([labels == i for i in ids], axis=-1)], affine)
        masks = masks[:, None].to(self.device)  # O_new x 1 x h x w
        if feats is not None:
            frame_feats = feats[:1]  # with SAM, any object's features serve for a new reference
            for mask in masks:
                self.state.references.append(self.net.reference(frame_feats, mask[None]))
        self.state.object_ids.extend(ids)
        probs = torch.cat([probs, masks])
        self.state.key_probs = probs  # mask propagation restarts from the frame where objects start
        return probs

    def _output(self, probs: Tensor, frame_size: tuple[int, int]) -> FrameOutput:
        """Merge the objects with soft aggregation and bring them back to the frame's size."""
        ids = list(self.state.object_ids)
        if not ids:
            empty = torch.ones(1, *frame_size, device=self.device)
            return FrameOutput(probs=empty, labels=np.zeros(frame_size, np.uint8), object_ids=ids)
        merged = soft_aggregate(probs[:, 0][None])[0]  # (O+1) x h x w
        merged = F.interpolate(merged[None], size=frame_size, mode="bilinear", align_corners=False)[
            0
        ]
        lookup = torch.tensor([0, *ids], device=self.device, dtype=torch.uint8)
        labels = lookup[merged.argmax(dim=0)].cpu().numpy()
        return FrameOutput(probs=merged, labels=labels, object_ids=ids)
