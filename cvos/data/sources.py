"""Where a training sample's decoded frames come from: the prepared arrays, or the video itself.

Both give the same `CodedFrame`; the cache reads memory-mapped slices, decoding on the fly
re-decodes the frame's GOP up to it (the slow path the data benchmark compares against).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from cvos.codec import CompressedVideo
from cvos.data.prepared import PreparedSequence


@dataclass
class CodedFrame:
    """What a training sample reads of one frame, at the frame size (views where possible)."""

    rgb: np.ndarray  # H x W x 3 uint8
    mv: np.ndarray  # H x W x 2 int (dx, dy) back to the previous frame
    mv_acc: np.ndarray  # H x W x 2 int (dx, dy) back to the GOP's I-frame
    residual_acc: np.ndarray  # H x W x 3 int RGB, in -255..255


class FrameSource(Protocol):
    def frame(self, index: int) -> CodedFrame: ...


class CachedFrames:
    """Frames from the prepared arrays: slicing memory maps, no decoding."""

    def __init__(self, prepared: PreparedSequence) -> None:
        self.prepared = prepared

    def frame(self, index: int) -> CodedFrame:
        array = self.prepared.array
        return CodedFrame(
            rgb=array("bgr")[index, :, :, ::-1],
            mv=array("mv")[index],
            mv_acc=array("mv_acc")[index],
            residual_acc=array("residual_acc")[index, :, :, ::-1],
        )


class DecodedFrames:
    """Frames decoded from the prepared video on every request, from the start of their GOP."""

    def __init__(self, prepared: PreparedSequence) -> None:
        self.prepared = prepared

    def frame(self, index: int) -> CodedFrame:
        meta = self.prepared.meta
        height, width = meta.height, meta.width
        with CompressedVideo(self.prepared.video_path) as video:
            frame = video.frame(meta.gop_index(index), index - meta.key_index(index))
        return CodedFrame(
            rgb=frame.rgb[:height, :width],
            mv=frame.mv[:height, :width],
            mv_acc=frame.mv_acc[:height, :width],
            residual_acc=frame.residual_acc[:height, :width, ::-1],
        )
