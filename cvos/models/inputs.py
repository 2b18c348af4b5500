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
from torch import Tensor

from cvos.models.geometry import Affine, map_vectors, sample_bilinear, sample_nearest

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
    if nearest:
        arrays = [getattr(frame, name) for name in nearest]
        sampled = sample_nearest(arrays, affine).split([a.shape[2] for a in arrays])
        for name, tensor in zip(nearest, sampled, strict=True):
            if name == "residual_acc":  # the codec's BGR order -> RGB, like the image
                setattr(inputs, name, tensor.flip(0) / RESIDUAL_SCALE)
            else:
                setattr(inputs, name, map_vectors(tensor, affine))
    return inputs
