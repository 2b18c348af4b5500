"""Streaming propagation of object masks over a compressed video, on `cvos.codec` and
`cvos.models` alone: no dataset, training or configuration code is imported."""

from cvos.inference.network import prepare_network
from cvos.inference.propagator import (
    PRECISIONS,
    FrameOutput,
    Propagator,
    PropagatorState,
    StepTimes,
    merge_objects,
)
from cvos.inference.stream import StreamTiming, stream

__all__ = [
    "PRECISIONS",
    "FrameOutput",
    "Propagator",
    "PropagatorState",
    "StepTimes",
    "StreamTiming",
    "merge_objects",
    "prepare_network",
    "stream",
]
