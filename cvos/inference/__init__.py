"""Streaming propagation of object masks over a compressed video, on `cvos.codec` and
`cvos.models` alone: no dataset, training or configuration code is imported."""

from cvos.inference.propagator import FrameOutput, Propagator, PropagatorState
from cvos.inference.stream import StreamTiming, stream

__all__ = ["FrameOutput", "Propagator", "PropagatorState", "StreamTiming", "stream"]
