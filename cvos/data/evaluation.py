"""Evaluation samples: whole prepared sequences, streamed frame by frame in decode order.

Frames are decoded from the prepared video in one pass; a dataset prepared with its arrays
(`frames="arrays"`) can read those instead (`decode=False`): the same bytes either way.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from cvos.codec import CompressedFrame, CompressedVideo
from cvos.data.prepared import PreparedSequence
from cvos.data.sources import stored_frame


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
    decode: bool = True  # False: read the stored arrays, where the dataset keeps them

    def frames(self) -> Iterator[CompressedFrame]:
        """Every frame in decode order, cropped to (height, width)."""
        if self.decode or not self.prepared.has_arrays():
            return self._decoded_frames()
        return self._cached_frames()

    def copy_first_masks(self) -> np.ndarray:
        """The copy-the-first-mask baseline: every frame keeps each object's first mask."""
        labels = np.zeros((len(self.frame_names), self.height, self.width), np.uint8)
        for start in sorted(self.init_masks):
            given = self.init_masks[start]
            labels[start:][:, given > 0] = given[given > 0]
        return labels

    def _cached_frames(self) -> Iterator[CompressedFrame]:
        for index in range(self.prepared.meta.num_frames):
            yield stored_frame(self.prepared, index)

    def _decoded_frames(self) -> Iterator[CompressedFrame]:
        with CompressedVideo(self.prepared.video_path) as video:
            for frame in video:
                yield frame.cropped(self.height, self.width)


def eval_sequence(prepared: PreparedSequence, *, decode: bool = True) -> EvalSequence:
    """The evaluation view of a prepared sequence: objects start on their first annotated frame."""
    meta = prepared.meta
    first_frames: dict[int, int] = {}
    for frame in sorted(meta.objects):
        for obj in meta.objects[frame]:
            first_frames.setdefault(obj.object_id, frame)
    init_masks = {}
    for start in sorted(set(first_frames.values())):
        starting = [obj for obj, first in first_frames.items() if first == start]
        labels = prepared.label(start)  # H x W
        init_masks[start] = np.where(np.isin(labels, starting), labels, 0).astype(np.uint8)
    fully_annotated = len(meta.objects) == meta.num_frames
    return EvalSequence(
        name=meta.sequence,
        height=meta.height,
        width=meta.width,
        frame_names=list(meta.frame_names),
        object_ids=sorted(first_frames),
        first_frames=first_frames,
        init_masks=init_masks,
        gt_masks=prepared.labels() if fully_annotated else None,
        prepared=prepared,
        decode=decode,
    )
