"""Evaluation samples: whole prepared sequences, streamed frame by frame in decode order."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from cvos.codec import CompressedFrame, CompressedVideo, PictureType
from cvos.data.prepared import PreparedSequence

FIELDS = ("bgr", "mv", "mv_acc", "residual", "residual_acc")


@dataclass
class EvalSequence:
    """One validation or test video with the masks that start each object."""

    name: str
    height: int  # original frame size: masks and outputs are at this size
    width: int
    frame_names: list[str]  # every frame; temporal order = decode order
    object_ids: list[int]  # label ids of the objects, sorted
    first_frames: dict[int, int]  # object id -> index of the frame where its first mask is given
    init_masks: dict[
        int, np.ndarray
    ]  # frame index -> H x W uint8 labels of the objects starting there
    gt_masks: np.ndarray | None  # T x H x W uint8 when every frame is annotated, else None
    prepared: PreparedSequence = field(repr=False)
    decode: bool = False  # decode the video instead of reading the prepared arrays

    def frames(self) -> Iterator[CompressedFrame]:
        """Every frame in decode order, cropped to (height, width)."""
        return self._decoded_frames() if self.decode else self._cached_frames()

    def _cached_frames(self) -> Iterator[CompressedFrame]:
        meta = self.prepared.meta
        arrays = {name: self.prepared.array(name) for name in FIELDS}  # T x H x W x C memory maps
        for index, letter in enumerate(meta.picture_types):
            position = (index, meta.gop_index(index), index - meta.key_index(index))
            frame = {name: array[index] for name, array in arrays.items()}
            yield stored_frame(*position, PictureType(letter), frame)

    def _decoded_frames(self) -> Iterator[CompressedFrame]:
        with CompressedVideo(self.prepared.video_path) as video:
            for frame in video:
                yield frame.cropped(self.height, self.width)


def stored_frame(
    index: int,
    gop_index: int,
    gop_position: int,
    picture_type: PictureType,
    arrays: dict[str, np.ndarray],
) -> CompressedFrame:
    """A CompressedFrame from the `FIELDS` arrays of one frame, in the codec's dtypes."""
    return CompressedFrame.from_arrays(
        index,
        gop_index,
        gop_position,
        picture_type,
        bgr=np.ascontiguousarray(arrays["bgr"]),
        mv=np.asarray(arrays["mv"], np.int32),
        mv_acc=np.asarray(arrays["mv_acc"], np.int32),
        residual=np.asarray(arrays["residual"], np.int32),
        residual_acc=np.asarray(arrays["residual_acc"], np.int32),
    )


def eval_sequence(prepared: PreparedSequence, *, decode: bool = False) -> EvalSequence:
    """The evaluation view of a prepared sequence: objects start on their first annotated frame."""
    meta = prepared.meta
    labels = prepared.labels  # T x H x W
    first_frames: dict[int, int] = {}
    for frame in sorted(meta.objects):
        for obj in meta.objects[frame]:
            first_frames.setdefault(obj.object_id, frame)
    init_masks = {}
    for start in sorted(set(first_frames.values())):
        starting = [obj for obj, first in first_frames.items() if first == start]
        init_masks[start] = np.where(np.isin(labels[start], starting), labels[start], 0).astype(
            np.uint8
        )
    fully_annotated = len(meta.objects) == meta.num_frames
    return EvalSequence(
        name=meta.sequence,
        height=meta.height,
        width=meta.width,
        frame_names=list(meta.frame_names),
        object_ids=sorted(first_frames),
        first_frames=first_frames,
        init_masks=init_masks,
        gt_masks=np.array(labels) if fully_annotated else None,
        prepared=prepared,
        decode=decode,
    )
