"""Where a training sample's frames come from: the prepared video itself, or stored arrays.

Both give the same bytes (`tests/test_data_sources.py`): the codec's own `CompressedFrame`
of a target and the BGR image of an I-frame or a reference, cropped to the frame size.

`VideoFrames` decodes GOP by GOP with the single-pass reader, seeking to each GOP's I-frame.
It keeps a few GOP streams open per process and moves through each one forward only, so a run
of samples from the same GOPs in ascending target order (what `cvos.data.sampling` plans for
each loader worker) decodes every frame once; any other order is still right, only slower.
A stream also keeps the frame before its current one (a pseudo I-frame reads its target and the
frame before it), and a GOP may have several streams (two interleaved blocks of one GOP, or a
block's GOP that is also the GOP before another block's I-frame), so neither restarts a decode.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from typing import Any, Protocol

import numpy as np

from cvos.codec import CompressedFrame, CompressedVideo, DecodedStep, Picture, PictureType
from cvos.data.prepared import PreparedSequence


class FrameStore(Protocol):
    """Frames of the training sequences, by sequence number and frame index."""

    def frame(self, sequence: int, index: int) -> CompressedFrame:
        """Every representation of one frame (a sample's target)."""
        ...

    def image(self, sequence: int, index: int) -> np.ndarray:
        """H x W x 3 uint8 BGR image of one frame (an I-frame or a reference)."""
        ...


def stored_frame(prepared: PreparedSequence, index: int) -> CompressedFrame:
    """Frame `index` of a prepared sequence from its stored arrays (memory-mapped views)."""
    meta = prepared.meta
    position = (index, meta.gop_index(index), index - meta.key_index(index))
    arrays = (prepared.array(name)[index] for name in ("bgr", "mv", "mv_acc", "residual"))
    residual_acc = prepared.array("residual_acc")[index]
    kind = PictureType(meta.picture_types[index])
    return CompressedFrame.from_arrays(*position, kind, *arrays, residual_acc)


class ArrayFrames:
    """Frames from the stored arrays (`frames="arrays"`): slicing memory maps, no decoding."""

    def __init__(self, sequences: list[PreparedSequence]) -> None:
        self.sequences = sequences

    def frame(self, sequence: int, index: int) -> CompressedFrame:
        return stored_frame(self.sequences[sequence], index)

    def image(self, sequence: int, index: int) -> np.ndarray:
        return self.sequences[sequence].array("bgr")[index]


class GopStream:
    """One GOP decoded forward on demand. Without `frames` it keeps the picture of every frame
    passed (a reference asked for later costs no decoding, and only the images asked for are
    converted); with `frames`, the current decoding step, the one before it and the I-frame's
    picture (a target's key image), no other. A frames stream converts the image of a frame it
    serves alone: most frames it passes over only feed the motion's accumulation."""

    def __init__(self, video: CompressedVideo, gop_index: int, size: tuple[int, int], frames: bool):
        self.size = size  # (height, width) of the sequence: frames are cropped to it
        self._steps = video.gop_steps(gop_index) if frames else None
        self._pictures = None if frames else video.gop_pictures(gop_index)
        self.previous: DecodedStep | None = None
        self.current: DecodedStep | None = None
        self.decoded = 0  # frames decoded so far
        self.pictures: list[Picture] = []  # of the frames kept, from the I-frame
        self._served: dict[int, CompressedFrame] = {}  # cropped frames of current and previous

    def _advance_to(self, position: int) -> None:
        while self.decoded <= position:
            if self._steps is not None:
                self.previous, self.current = self.current, next(self._steps)
                if self.decoded == 0:
                    self.pictures.append(self.current.picture)
                self._served.pop(self.decoded - 2, None)
            else:
                self.pictures.append(next(self._pictures))
            self.decoded += 1

    def reaches(self, position: int) -> bool:
        """Whether this stream serves `position` without a new decode: any image it has or will
        have; a frame that is the current one, the one before it, or ahead."""
        return self._pictures is not None or position >= self.decoded - 2

    def frame(self, position: int) -> CompressedFrame:
        self._advance_to(position)
        served = self._served.get(position)
        if served is not None:
            return served
        for step in (self.current, self.previous):
            if step is not None and step.gop_position == position:
                self._served[position] = step.frame.cropped(*self.size)
                return self._served[position]
        raise AssertionError(f"GOP position {position} was passed")

    def has_image(self, position: int) -> bool:
        """Whether the picture of `position` is kept (a frames stream keeps its I-frame's)."""
        return position < len(self.pictures)

    def image(self, position: int) -> np.ndarray:
        """The image of a frame of an images stream, or of a frames stream's I-frame."""
        self._advance_to(position)
        height, width = self.size
        return self.pictures[position].bgr[:height, :width]

    def close(self) -> None:
        """Stop decoding (the iterators are generators that hold the file open)."""
        for iterator in (self._steps, self._pictures):
            if iterator is not None:
                iterator.close()


class VideoFrames:
    """Frames decoded from the prepared videos (`frames="video"`), up to `open_gops` GOPs open.

    Targets and images come from separate streams (keyed by role), so a reference further into
    a target's GOP never pushes that GOP's stream past the next target, and a reference GOP is
    only decoded, not traced for motion (`CompressedVideo.gop_pictures`).

    Every video's packets are indexed here, once: forked loader workers inherit the index
    (decoding opens the file anew each time) instead of demuxing each video again (~9 ms a
    480p DAVIS video, per worker and epoch).
    """

    def __init__(self, sequences: list[PreparedSequence], open_gops: int) -> None:
        self.sequences = sequences
        self.open_gops = open_gops
        self._videos = [CompressedVideo(sequence.video_path) for sequence in sequences]
        self._reset()

    def _reset(self) -> None:
        self._process = os.getpid()
        self._streams: OrderedDict[tuple[int, int, str, int], GopStream] = OrderedDict()
        self._serial = 0

    def __getstate__(self) -> dict[str, Any]:
        return {"sequences": self.sequences, "open_gops": self.open_gops, "_videos": self._videos}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._reset()

    def frame(self, sequence: int, index: int) -> CompressedFrame:
        meta = self.sequences[sequence].meta
        return self._stream(sequence, index, "frames").frame(index - meta.key_index(index))

    def image(self, sequence: int, index: int) -> np.ndarray:
        meta = self.sequences[sequence].meta
        position = index - meta.key_index(index)
        for _, stream in self._of_gop(sequence, meta.gop_index(index), "frames"):
            if stream.has_image(position):  # e.g. a target's I-frame
                return stream.image(position)
        return self._stream(sequence, index, "images").image(position)

    def _open(self) -> OrderedDict[tuple[int, int, str, int], GopStream]:
        """This process's open streams (a forked worker starts with none of its parent's),
        keyed by (sequence, GOP, role, serial number), least recently used first."""
        if self._process != os.getpid():
            self._reset()
        return self._streams

    def _of_gop(
        self, sequence: int, gop: int, role: str
    ) -> list[tuple[tuple[int, int, str, int], GopStream]]:
        """The open streams of one GOP for `role`, with their keys."""
        return [(k, s) for k, s in self._open().items() if k[:3] == (sequence, gop, role)]

    def _stream(self, sequence: int, index: int, role: str) -> GopStream:
        """The open stream of `index`'s GOP for `role` nearest before `index` (images: any),
        or a new one if every stream of that GOP has passed `index`."""
        streams = self._open()
        meta = self.sequences[sequence].meta
        gop, position = meta.gop_index(index), index - meta.key_index(index)
        usable = [
            (stream.decoded, key)
            for key, stream in self._of_gop(sequence, gop, role)
            if stream.reaches(position)
        ]
        if usable:
            key = max(usable)[1]
            streams.move_to_end(key)
            return streams[key]
        size = (meta.height, meta.width)
        stream = GopStream(self._videos[sequence], gop, size, frames=role == "frames")
        self._serial += 1
        streams[sequence, gop, role, self._serial] = stream
        while len(streams) > self.open_gops:
            streams.popitem(last=False)[1].close()
        return stream
