"""Run a propagator over a stream of decoded frames, timing decode and network apart."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch

from cvos.codec import CompressedFrame, PictureType
from cvos.inference.propagator import FrameOutput, Propagator


@dataclass
class StreamTiming:
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

    @property
    def fps(self) -> float:
        return self.frames / max(self.total_s, 1e-9)

    def merge(self, other: StreamTiming) -> None:
        """Add another stream's times to this one's."""
        self.decode_s += other.decode_s
        self.iframe_s.extend(other.iframe_s)
        self.pframe_s.extend(other.pframe_s)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def stream(
    propagator: Propagator,
    frames: Iterable[CompressedFrame],
    first_masks: Mapping[int, np.ndarray],
    timing: StreamTiming,
) -> Iterator[tuple[CompressedFrame, FrameOutput]]:
    """Segment `frames` in decode order; objects start on the frames `first_masks` names
    (position in the stream -> H x W labels of the objects starting there)."""
    frames = iter(frames)
    position = 0
    while True:
        start = time.perf_counter()
        frame = next(frames, None)
        timing.decode_s += time.perf_counter() - start
        if frame is None:
            return
        start = time.perf_counter()
        output = propagator.step(frame, first_masks.get(position))
        _synchronize(propagator.device)
        elapsed = time.perf_counter() - start
        is_key = frame.picture_type == PictureType.I
        (timing.iframe_s if is_key else timing.pframe_s).append(elapsed)
        yield frame, output
        position += 1
