"""What preparing a dataset will cost, projected from a short measured sample (a dry run).

A few sequences spread over the list are cut to their first two GOPs and prepared into a
temporary folder that is deleted afterwards: the measured bytes and seconds per frame, times
the frames still to prepare, give the projection. Nothing is written into the cache.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

from cvos.codec import EncodeSettings
from cvos.data.layouts import Sequence
from cvos.data.prepared import folder_bytes, prepare_sequence

SAMPLE_SEQUENCES = 3  # spread over the list: first, middle, last
SAMPLE_GOPS = 2  # frames measured per sequence, in GOPs


@dataclass(frozen=True)
class SplitListing:
    """One split as found: its sequences and those not prepared yet."""

    split: str
    sequences: list[Sequence]
    todo: list[Sequence]

    @property
    def frames(self) -> int:
        return sum(len(s.frame_names) for s in self.sequences)

    @property
    def todo_frames(self) -> int:
        return sum(len(s.frame_names) for s in self.todo)


@dataclass(frozen=True)
class Projection:
    """Measured cost of a sample, and what it projects for the frames still to prepare."""

    sample_frames: int
    sample_sequences: int
    bytes_per_frame: float
    seconds_per_frame: float  # wall time of one process
    frames: int  # still to prepare
    workers: int

    @property
    def bytes(self) -> float:
        return self.bytes_per_frame * self.frames

    @property
    def seconds(self) -> float:
        return self.seconds_per_frame * self.frames / max(self.workers, 1)


def sample_of(sequence: Sequence, frames: int) -> Sequence:
    """The sequence cut to its first `frames` frames (more if its first mask comes later)."""
    indices = sequence.annotated_indices()
    count = max(frames, indices[0] + 1 if indices else frames)
    names = sequence.frame_names[:count]
    kept = set(names)
    return replace(
        sequence, frame_names=names, annotated=[a for a in sequence.annotated if a in kept]
    )


def spread(sequences: list[Sequence], count: int) -> list[Sequence]:
    """Up to `count` sequences evenly spaced over the list (first and last included)."""
    if len(sequences) <= count:
        return list(sequences)
    step = (len(sequences) - 1) / (count - 1)
    return [sequences[round(i * step)] for i in range(count)]


def project(
    sequences: list[Sequence],
    frames: int,
    settings: EncodeSettings,
    dataset: str,
    *,
    arrays: bool,
    workers: int,
) -> Projection:
    """Prepare the first GOPs of a few of `sequences` into a temporary folder, timed, and project
    the cost of `frames` frames from them."""
    samples = [
        sample_of(s, SAMPLE_GOPS * settings.gop_size) for s in spread(sequences, SAMPLE_SEQUENCES)
    ]
    measured_bytes, seconds = 0, 0.0
    with tempfile.TemporaryDirectory(prefix="cvos-dry-run-") as scratch:
        for sample in samples:
            start = time.perf_counter()
            prepare_sequence(sample, Path(scratch) / sample.name, settings, dataset, arrays)
            seconds += time.perf_counter() - start
            measured_bytes += folder_bytes(Path(scratch) / sample.name)
    sample_frames = sum(len(s.frame_names) for s in samples)
    return Projection(
        sample_frames=sample_frames,
        sample_sequences=len(samples),
        bytes_per_frame=measured_bytes / max(sample_frames, 1),
        seconds_per_frame=seconds / max(sample_frames, 1),
        frames=frames,
        workers=workers,
    )
