"""Streaming propagation of object masks over a compressed video."""

from cvos.inference.propagator import FrameOutput, Propagator, PropagatorState
from cvos.inference.sequence import (
    SequenceResult,
    SequenceTiming,
    copy_first_masks,
    segment_sequence,
)

__all__ = [
    "FrameOutput",
    "Propagator",
    "PropagatorState",
    "SequenceResult",
    "SequenceTiming",
    "copy_first_masks",
    "segment_sequence",
]
