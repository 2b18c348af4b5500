"""The one place where a decoded frame becomes network inputs, for training and inference alike.

Training samples call `frame_inputs` with a random augmentation map, the streaming propagator
with `resize_affine(frame size, network size)`; without augmentation the two are the same call,
so a network sees at test time exactly the kind of tensors it was trained on.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torch import Tensor

from cvos.models.geometry import (
    Affine,
    map_vectors,
    nearest_axes,
    sample_bilinear,
    sample_nearest,
)

FIELDS = ("image", "mv", "mv_acc", "residual_acc")
RESIDUAL_SCALE = 255.0  # residuals of 8-bit images lie in -255..255


class CodedFrame(Protocol):
    """What `frame_inputs` reads of a frame (`cvos.codec.CompressedFrame` has it all)."""

    bgr: np.ndarray  # H x W x 3 uint8
    mv: np.ndarray  # H x W x 2 int, (dx, dy) = dst - src, back to the previous frame
    mv_acc: np.ndarray  # H x W x 2 int, back to the GOP's I-frame
    residual_acc: np.ndarray  # H x W x 3 int BGR, the frame minus the warped I-frame


@dataclass
class NetInputs:
    """One frame at network resolution (no batch dimension); fields not asked for are None."""

    image: Tensor | None = None  # 3 x h x w RGB in [0, 1]
    mv: Tensor | None = None  # 2 x h x w, pixels of the network input
    mv_acc: Tensor | None = None  # 2 x h x w, pixels of the network input
    residual_acc: Tensor | None = None  # 3 x h x w RGB in [-1, 1]


def frame_inputs(frame: CodedFrame, affine: Affine, fields: Collection[str] = FIELDS) -> NetInputs:
    """The requested `fields` of `frame` sampled through `affine` (see `cvos.models.geometry`)."""
    unknown = set(fields) - set(FIELDS)
    if unknown:
        raise ValueError(f"unknown network input fields {sorted(unknown)}; known: {FIELDS}")
    inputs = NetInputs()
    if "image" in fields:
        rgb = frame.bgr[..., ::-1]
        inputs.image = sample_bilinear([rgb], affine).div_(255.0).clamp_(0.0, 1.0)
    nearest = [name for name in ("mv", "mv_acc", "residual_acc") if name in fields]
    at_taps = _residual_at_taps(frame, affine) if "residual_acc" in nearest else None
    if at_taps is not None:
        nearest.remove("residual_acc")
    sampled = {}
    if nearest:
        arrays = [_nearest_field(frame, name) for name in nearest]
        parts = sample_nearest(arrays, affine).split([a.shape[2] for a in arrays])
        sampled = dict(zip(nearest, parts, strict=True))
    if at_taps is not None:
        sampled["residual_acc"] = at_taps
    for name, tensor in sampled.items():
        if name == "residual_acc":  # RGB, like the image
            setattr(inputs, name, tensor.div_(RESIDUAL_SCALE))
        else:
            setattr(inputs, name, map_vectors(tensor, affine))
    return inputs


def _nearest_field(frame: CodedFrame, name: str) -> np.ndarray:
    """A field as `sample_nearest` reads it: the accumulated residual as an RGB view (the
    codec's is BGR; the compiled gather reads the channels backwards in place)."""
    array = getattr(frame, name)
    return array[..., ::-1] if name == "residual_acc" else array


def _residual_at_taps(frame: CodedFrame, affine: Affine) -> Tensor | None:
    """3 x h x w float32 RGB: the accumulated residual at the nearest taps alone, as
    `sample_nearest` would read it from the full residual (a quarter of a 480p frame's pixels
    at 256 x 512); None where the frame cannot (no `residual_acc_at`, or the full residual is
    at hand) or the taps are not axis-aligned inside the frame."""
    compute = getattr(frame, "residual_acc_at", None)
    axes = None if compute is None else nearest_axes(affine, *frame.bgr.shape[:2])
    values = None if axes is None else compute(*axes)  # h x w x 3 int32
    if values is None:
        return None
    return torch.from_numpy(values[..., ::-1].transpose(2, 0, 1).astype(np.float32, order="C"))
