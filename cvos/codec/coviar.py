"""Drop-in replacements for coviar's `load` and `get_num_frames` (pytorch-coviar).

Same conventions as coviar (see the package docstring), minus its bugs: the last
frame is decoded, every column is defined, and bad input raises `CodecError`.
"""

from __future__ import annotations

import os

import numpy as np

from cvos.codec.reader import CompressedVideo
from cvos.errors import CodecError

IMAGE, MOTION_VECTORS, RESIDUAL = 0, 1, 2


def load(
    path: str | os.PathLike, gop_index: int, frame_index: int, representation: int, accumulate: bool
) -> np.ndarray:
    """One representation of one frame, exactly as coviar computes it per call.

    Like coviar, each call opens the file and decodes the GOP from its I-frame up to
    `frame_index`; nothing is remembered between calls. To read many frames, iterate
    a `CompressedVideo` instead: every frame is then decoded once.
    representation 0: BGR uint8 H x W x 3 (`accumulate` ignored); 1: motion vectors
    int32 H x W x 2; 2: residual int32 H x W x 3.
    """
    if representation not in (IMAGE, MOTION_VECTORS, RESIDUAL):
        raise CodecError(
            f"{path}: representation must be 0 (image), 1 (motion vectors) or 2 (residual), "
            f"got {representation}"
        )
    with CompressedVideo(path) as video:
        frame = video.frame(gop_index, frame_index)
    if representation == IMAGE:
        return frame.bgr
    if representation == MOTION_VECTORS:
        return frame.mv_acc if accumulate else frame.mv
    return frame.residual_acc if accumulate else frame.residual


def get_num_frames(path: str | os.PathLike) -> int:
    """The number of frames in the video (coviar's count is one short: it skips the last)."""
    with CompressedVideo(path) as video:
        return video.num_frames
