"""Where a training sample's decoded frames come from: the prepared arrays, or the video itself.

Both give the codec's own `CompressedFrame`, cropped to the frame size: the cache slices its
memory maps, decoding on the fly re-decodes the frame's GOP up to it.
"""

from __future__ import annotations

from typing import Protocol

from cvos.codec import CompressedFrame, CompressedVideo, PictureType
from cvos.data.prepared import PreparedSequence

FIELDS = ("bgr", "mv", "mv_acc", "residual", "residual_acc")


class FrameSource(Protocol):
    def frame(self, index: int) -> CompressedFrame: ...


def stored_frame(prepared: PreparedSequence, index: int) -> CompressedFrame:
    """Frame `index` of a prepared sequence from its stored arrays (memory-mapped views)."""
    meta = prepared.meta
    position = (index, meta.gop_index(index), index - meta.key_index(index))
    arrays = (prepared.array(name)[index] for name in FIELDS)
    return CompressedFrame.from_arrays(*position, PictureType(meta.picture_types[index]), *arrays)


class CachedFrames:
    """Frames from the prepared arrays: slicing memory maps, no decoding."""

    def __init__(self, prepared: PreparedSequence) -> None:
        self.prepared = prepared

    def frame(self, index: int) -> CompressedFrame:
        return stored_frame(self.prepared, index)


class DecodedFrames:
    """Frames decoded from the prepared video on every request, from the start of their GOP."""

    def __init__(self, prepared: PreparedSequence) -> None:
        self.prepared = prepared

    def frame(self, index: int) -> CompressedFrame:
        meta = self.prepared.meta
        with CompressedVideo(self.prepared.video_path) as video:
            frame = video.frame(meta.gop_index(index), index - meta.key_index(index))
        return frame.cropped(meta.height, meta.width)
