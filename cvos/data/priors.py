"""Mask priors that look like the ones met at test time: `mask_warp` rollouts over real GOPs.

At inference the decoders read a prior that mask warping made: on a P-frame the I-frame's
output moved by the codec's accumulated vectors, on an I-frame the previous frame's output,
which has drifted over every GOP since the last good mask. Training on ground-truth masks
alone teaches the decoders a prior far better than the one they get. So for every annotated
I-frame s of a training sequence, `WarpedLabels` runs mask_warp from s's ground truth over the
next `depth` GOPs and keeps what it gives at the end of each (the prior of the next I-frame).
A P-frame's prior is then one of those (or the ground truth of its own I-frame) moved by the
frame's accumulated vectors, as at inference.
"""

from __future__ import annotations

import functools
import zlib
from dataclasses import dataclass, field

import numpy as np

from cvos.codec import CompressedVideo, PictureType
from cvos.codec.motion import warp_labels
from cvos.data.prepared import PreparedSequence

DRIFT_PROBABILITIES = (0.5, 0.25, 0.15, 0.1)  # a key prior drifted over 1, 2, 3, 4 GOPs


@dataclass
class WarpedLabels:
    """mask_warp's label map at the end of GOPs, started from earlier annotated I-frames.

    `prior(start, key)` is the label map mask_warp holds at frame key - 1 (the prior of I-frame
    `key`) when it started from the ground truth of I-frame `start`; stored compressed (a
    label map of a 480p frame takes a few KB).
    """

    shape: tuple[int, int]
    maps: dict[tuple[int, int], bytes] = field(default_factory=dict)

    def starts(self, key: int) -> list[int]:
        """The I-frames a prior of `key` can start from, nearest first."""
        return sorted((s for s, k in self.maps if k == key), reverse=True)

    def prior(self, start: int, key: int) -> np.ndarray:
        """H x W uint8 label map (read-only)."""
        return _decompressed(self.maps[start, key], self.shape)

    def draw_start(self, key: int, rng: np.random.Generator) -> int | None:
        """A start 1, 2, 3 or 4 GOPs back with `DRIFT_PROBABILITIES`; None if there is none."""
        starts = self.starts(key)[: len(DRIFT_PROBABILITIES)]
        if not starts:
            return None
        weights = np.array(DRIFT_PROBABILITIES[: len(starts)])
        return starts[int(rng.choice(len(starts), p=weights / weights.sum()))]


@functools.lru_cache(maxsize=16)
def _decompressed(blob: bytes, shape: tuple[int, int]) -> np.ndarray:
    """A stored label map, decompressed (read-only); the last few are kept, as the samples of a
    block (one I-frame) draw their priors from the same one to four (0.4 ms each at 480p)."""
    return np.frombuffer(zlib.decompress(blob), np.uint8).reshape(shape)


def warped_labels(
    prepared: PreparedSequence, depth: int = len(DRIFT_PROBABILITIES)
) -> WarpedLabels:
    """Run mask_warp from every annotated I-frame over the next `depth` GOPs, in one decode of
    the video: each label map moves by every P-frame's vectors as the streaming propagator
    moves it, so a prior is exactly what mask_warp holds at test time."""
    meta = prepared.meta
    height, width = meta.height, meta.width
    result = WarpedLabels(shape=(height, width))
    running: dict[int, tuple[np.ndarray, int]] = {}  # start -> (label map, GOPs ended)
    with CompressedVideo(prepared.video_path) as video:
        for frame in video:
            if frame.picture_type == PictureType.I:
                for start, (labels, ended) in list(running.items()):
                    if frame.index > start:
                        result.maps[start, frame.index] = zlib.compress(labels.tobytes(), 1)
                        running[start] = (labels, ended + 1)
                running = {s: r for s, r in running.items() if r[1] < depth}
                if frame.index in meta.objects:
                    running[frame.index] = (np.ascontiguousarray(prepared.label(frame.index)), 0)
                continue
            vectors = frame.mv[:height, :width]
            running = {s: (warp_labels(m, vectors), e) for s, (m, e) in running.items()}
    return result
