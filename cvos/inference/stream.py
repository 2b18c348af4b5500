"""Run a propagator over a stream of decoded frames, timing where each frame's time goes."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch

from cvos.codec import CompressedFrame, PictureType
from cvos.codec.readahead import read_ahead
from cvos.inference.propagator import FrameOutput, Propagator, StepTimes
from cvos.models import NetInputs


@dataclass
class StreamTiming:
    """Seconds spent waiting for decoded frames and segmenting them, I- and P-frames apart.

    `decode_s` is the time the caller waited for the next frame (decoding and sampling the
    network inputs run ahead in threads, so it is what they did not hide); `inputs_ahead_s` is
    the time the sampling took in its thread; `cpu_s` is the process's CPU time
    over the same spans, all threads included. Frames on which no object was known yet (up to
    the one where the first masks are given: the encoder and the reference banks run, no
    decoder) are `start_s`, so that I-frame figures are those of frames that segment.
    """

    decode_s: float = 0.0
    inputs_ahead_s: float = 0.0  # sampling network inputs, in the read-ahead thread
    cpu_s: float = 0.0
    start_s: list[float] = field(default_factory=list)
    iframe_s: list[float] = field(default_factory=list)
    pframe_s: list[float] = field(default_factory=list)
    start_stages: StepTimes = field(default_factory=StepTimes)
    iframe_stages: StepTimes = field(default_factory=StepTimes)
    pframe_stages: StepTimes = field(default_factory=StepTimes)

    @property
    def frames(self) -> int:
        return len(self.start_s) + len(self.iframe_s) + len(self.pframe_s)

    @property
    def total_s(self) -> float:
        return self.decode_s + sum(self.start_s) + sum(self.iframe_s) + sum(self.pframe_s)

    @property
    def fps(self) -> float:
        return self.frames / max(self.total_s, 1e-9)

    def merge(self, other: StreamTiming) -> None:
        """Add another stream's times to this one's."""
        self.decode_s += other.decode_s
        self.inputs_ahead_s += other.inputs_ahead_s
        self.cpu_s += other.cpu_s
        self.start_s.extend(other.start_s)
        self.iframe_s.extend(other.iframe_s)
        self.pframe_s.extend(other.pframe_s)
        self.start_stages.add(other.start_stages)
        self.iframe_stages.add(other.iframe_stages)
        self.pframe_stages.add(other.pframe_stages)


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
    (position in the stream -> H x W labels of the objects starting there). A thread samples
    each frame's network inputs while the network runs on the frame before (a propagator without
    a network samples none and needs no thread). What the caller does with each output
    (writing, scoring) is not timed."""
    pairs = _with_inputs(propagator, frames, timing)
    ahead = pairs if propagator.net is None else read_ahead(pairs)  # nothing to sample ahead
    position = 0
    while True:
        start, cpu = time.perf_counter(), time.process_time()
        frame, inputs = next(ahead, (None, None))
        timing.decode_s += time.perf_counter() - start
        if frame is None:
            timing.cpu_s += time.process_time() - cpu
            return
        starting = not propagator.state.object_ids
        start = time.perf_counter()
        output = propagator.step(frame, first_masks.get(position), inputs)
        _synchronize(propagator.device)
        elapsed = time.perf_counter() - start
        timing.cpu_s += time.process_time() - cpu
        if starting:
            timing.start_s.append(elapsed)
            timing.start_stages.add(output.times)
        elif frame.picture_type == PictureType.I:
            timing.iframe_s.append(elapsed)
            timing.iframe_stages.add(output.times)
        else:
            timing.pframe_s.append(elapsed)
            timing.pframe_stages.add(output.times)
        yield frame, output
        position += 1


def _with_inputs(
    propagator: Propagator, frames: Iterable[CompressedFrame], timing: StreamTiming
) -> Iterator[tuple[CompressedFrame, NetInputs | None]]:
    """Each frame with its `Propagator.sample_inputs`, the sampling timed apart (frames that
    need no inputs take none)."""
    for frame in frames:
        start = time.perf_counter()
        inputs = propagator.sample_inputs(frame)
        if inputs is not None:
            timing.inputs_ahead_s += time.perf_counter() - start
        yield frame, inputs
