"""Run a propagator over a whole evaluation sequence, timing decode and network apart."""

from __future__ import annotations

import time
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from cvos.codec import CompressedFrame, PictureType
from cvos.data import EvalSequence
from cvos.inference.propagator import FrameOutput, Propagator


@dataclass
class SequenceTiming:
    """Seconds spent reading frames and in the network, I- and P-frames apart."""

    decode_s: float = 0.0
    iframe_s: list[float] = field(default_factory=list)
    pframe_s: list[float] = field(default_factory=list)

    @property
    def frames(self) -> int:
        return len(self.iframe_s) + len(self.pframe_s)

    @property
    def total_s(self) -> float:
        return self.decode_s + sum(self.iframe_s) + sum(self.pframe_s)


@dataclass
class SequenceResult:
    """Label maps of every frame (T x H x W uint8) with the timing that produced them."""

    name: str
    labels: np.ndarray
    timing: SequenceTiming
    kept: dict[int, np.ndarray] = field(default_factory=dict)  # frame index -> H x W x 3 RGB


def _timed_frames(
    frames: Iterator[CompressedFrame], timing: SequenceTiming
) -> Iterator[CompressedFrame]:
    """Yield frames while adding the time spent producing them to `timing.decode_s`."""
    while True:
        start = time.perf_counter()
        frame = next(frames, None)
        timing.decode_s += time.perf_counter() - start
        if frame is None:
            return
        yield frame


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def segment_sequence(
    propagator: Propagator, sequence: EvalSequence, keep_frames: Collection[int] = ()
) -> SequenceResult:
    """Segment every frame of `sequence` in decode order; objects start where their mask is given.

    The RGB images of `keep_frames` are returned too (for overlays), so nothing is decoded twice.
    """
    timing = SequenceTiming()
    kept: dict[int, np.ndarray] = {}
    labels = np.zeros((len(sequence.frame_names), sequence.height, sequence.width), np.uint8)
    for index, frame in enumerate(_timed_frames(iter(sequence.frames()), timing)):
        start = time.perf_counter()
        output: FrameOutput = propagator.step(frame, sequence.init_masks.get(index))
        _synchronize(propagator.device)
        elapsed = time.perf_counter() - start
        (timing.iframe_s if frame.picture_type == PictureType.I else timing.pframe_s).append(
            elapsed
        )
        labels[index] = output.labels
        if index in keep_frames:
            kept[index] = frame.rgb.copy()
    return SequenceResult(name=sequence.name, labels=labels, timing=timing, kept=kept)


def copy_first_masks(sequence: EvalSequence) -> np.ndarray:
    """The copy-the-first-mask baseline: every frame keeps each object's first mask (T x H x W)."""
    labels = np.zeros((len(sequence.frame_names), sequence.height, sequence.width), np.uint8)
    for start in sorted(sequence.init_masks):
        given = sequence.init_masks[start]
        labels[start:][:, given > 0] = given[given > 0]
    return labels
