"""Which training samples an epoch draws, and in which order, as a function of its position alone.

A sample is a `SampleKey`: a candidate (target frame and object), its reference frame and the
seed of its augmentation. Keys are drawn in *blocks* that share a target GOP and a reference
GOP, sorted by target, so a loader worker decodes each GOP once for `samples_per_gop` samples
(`cvos.data.sources.VideoFrames`). Each worker has its own stream of blocks; a stream
interleaves `OPEN_BLOCKS` blocks at a time, so one batch mixes several GOPs. The DataLoader
hands batch i to worker i mod W, which is the stream the plan built batch i from.

Every draw depends on (seed, epoch, number of workers, number of processes) only; a checkpoint
records the position (epoch, batches done), and `EpochSampler.resume` restarts there.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import torch.distributed as dist
from torch.utils.data import DistributedSampler

from cvos.data.prepared import PreparedSequence

MIN_REFERENCE_BOX_AREA = 40  # px^2: smaller objects give too few features to match against
OPEN_BLOCKS = 4  # blocks a worker stream interleaves (each holds one target and one image GOP)


@dataclass(frozen=True)
class Candidate:
    """One (target frame, object) pair of a sequence and the frames its sample reads."""

    sequence: int  # index into the dataset's sequences
    target: int
    key: int  # the target's GOP's I-frame
    previous: int  # the annotated frame before the target (the target itself at the start)
    object_id: int
    # annotated frames where the object is large enough to be the reference, and the I-frame
    # of each one's GOP
    references: tuple[int, ...] = field(repr=False)
    reference_keys: tuple[int, ...] = field(repr=False)


def find_candidates(prepared: PreparedSequence, sequence_index: int) -> list[Candidate]:
    """Every annotated target whose I-frame is annotated too, for each object seen just before it.

    Where not every frame is annotated (YouTube-VOS), "previous" is the last annotated frame
    and GOPs whose I-frame has no mask give no samples.
    """
    meta = prepared.meta
    annotated = sorted(meta.objects)
    references: dict[int, list[int]] = {}
    for frame in annotated:
        for obj in meta.objects[frame]:
            if obj.box_area > MIN_REFERENCE_BOX_AREA:
                references.setdefault(obj.object_id, []).append(frame)
    reference_keys = {o: tuple(meta.key_index(f) for f in r) for o, r in references.items()}
    candidates = []
    for position, target in enumerate(annotated):
        key = meta.key_index(target)
        if key not in meta.objects:
            continue
        previous = annotated[position - 1] if position > 0 else target
        for obj in meta.objects[previous]:
            if obj.area > 0 and obj.object_id in references:
                refs = tuple(references[obj.object_id])
                keys = reference_keys[obj.object_id]
                candidates.append(
                    Candidate(sequence_index, target, key, previous, obj.object_id, refs, keys)
                )
    return candidates


class SampleKey(NamedTuple):
    """Everything that decides one sample: what `TrainDataset[key]` returns depends on it alone."""

    candidate: int  # index into the dataset's candidates
    reference: int  # frame index of the reference
    seed: int  # of the sample's augmentation


Block = list[SampleKey]


class BlockDrawer:
    """Draws blocks of samples that share a target GOP and a reference GOP."""

    def __init__(self, candidates: list[Candidate]) -> None:
        self.candidates = candidates
        gops: dict[tuple[int, int], list[int]] = {}
        for index, candidate in enumerate(candidates):
            gops.setdefault((candidate.sequence, candidate.key), []).append(index)
        self.members = [np.asarray(m) for m in gops.values()]  # candidate indices of each GOP
        self.gop_of = np.empty(len(candidates), np.intp)
        for number, members in enumerate(self.members):
            self.gop_of[members] = number

    def block(self, rng: np.random.Generator, chosen: np.ndarray) -> Block:
        """Keys for the candidates `chosen` (one GOP), references from one random GOP, sorted
        by target."""
        anchor = self.candidates[int(chosen[0])]
        reference_key = anchor.reference_keys[int(rng.integers(len(anchor.references)))]
        keys = []
        for index in chosen.tolist():
            candidate = self.candidates[index]
            pairs = zip(candidate.references, candidate.reference_keys, strict=True)
            in_gop = [r for r, k in pairs if k == reference_key] or candidate.references
            reference = in_gop[int(rng.integers(len(in_gop)))]
            keys.append(SampleKey(index, reference, int(rng.integers(2**62))))
        return sorted(keys, key=lambda k: self.candidates[k.candidate].target)

    def random_block(self, rng: np.random.Generator, size: int) -> Block:
        """`size` samples of the GOP of a uniformly drawn candidate, drawn with replacement:
        every sample's target is uniform over the candidates."""
        members = self.members[self.gop_of[int(rng.integers(len(self.candidates)))]]
        return self.block(rng, members[rng.integers(0, len(members), size)])

    def every_candidate(self, rng: np.random.Generator, size: int) -> list[Block]:
        """Every candidate once, in blocks of at most `size` of one GOP, in random order."""
        blocks = []
        for members in self.members:
            shuffled = rng.permutation(members)
            for start in range(0, len(shuffled), size):
                blocks.append(self.block(rng, shuffled[start : start + size]))
        return [blocks[i] for i in rng.permutation(len(blocks))]


def interleave(blocks: list[Block], width: int) -> list[SampleKey]:
    """One stream: `width` blocks at a time, their samples taken in turn."""
    keys = []
    for start in range(0, len(blocks), width):
        group = blocks[start : start + width]
        for position in range(max(len(b) for b in group)):
            keys.extend(b[position] for b in group if position < len(b))
    return keys


@dataclass(frozen=True)
class PlanShape:
    """How an epoch is cut: samples, batches, loader workers, processes."""

    num_samples: int | None  # None: every candidate once
    batch_size: int
    samples_per_gop: int
    workers: int  # DataLoader workers (0 counts as 1: the main process is the one stream)
    replicas: int = 1  # DDP processes
    rank: int = 0


def epoch_batches(
    drawer: BlockDrawer, shape: PlanShape, seed: int, epoch: int
) -> list[list[SampleKey]]:
    """This process's batches of one epoch, in the order the loader delivers them."""
    rng = np.random.default_rng([seed, epoch])
    streams_per_rank = max(shape.workers, 1)
    total = len(drawer.candidates) if shape.num_samples is None else shape.num_samples
    batches = total // shape.replicas // shape.batch_size  # per process
    per_stream = -(-batches // streams_per_rank) * shape.batch_size  # samples
    stream_count = streams_per_rank * shape.replicas
    if shape.num_samples is None:
        assigned = _balanced(drawer.every_candidate(rng, shape.samples_per_gop), stream_count)
    else:
        per_block = shape.samples_per_gop
        count = -(-per_stream // per_block)
        assigned = [
            [drawer.random_block(rng, per_block) for _ in range(count)] for _ in range(stream_count)
        ]
    width = min(shape.batch_size, OPEN_BLOCKS)
    first = shape.rank * streams_per_rank
    streams = [
        _repeat_to(interleave(b, width), per_stream) for b in assigned[first:][:streams_per_rank]
    ]
    cut = [
        [s[i : i + shape.batch_size] for i in range(0, per_stream, shape.batch_size)]
        for s in streams
    ]
    ordered = [cut[w][i] for i in range(len(cut[0])) for w in range(streams_per_rank)]
    return ordered[:batches]


def _balanced(blocks: list[Block], count: int) -> list[list[Block]]:
    """`blocks` dealt to `count` streams, each to the one with the fewest samples so far."""
    streams: list[list[Block]] = [[] for _ in range(count)]
    sizes = [0] * count
    for block in blocks:
        emptiest = sizes.index(min(sizes))
        streams[emptiest].append(block)
        sizes[emptiest] += len(block)
    return streams


def _repeat_to(keys: list[SampleKey], count: int) -> list[SampleKey]:
    """`keys` cut or cycled to `count`: in an every-candidate epoch, streams differ by up to a
    block, so a few samples are left out or repeated (as a DistributedSampler pads)."""
    if not keys:
        return []
    return (keys * -(-count // len(keys)))[:count]


class EpochSampler(DistributedSampler):
    """Yields an epoch's `SampleKey`s batch by batch; under DDP, this process's share.

    A `DistributedSampler`, so that Lightning leaves it as it is: it splits the epoch across
    processes itself, keeping each worker's GOPs together. `resume(epoch, batches)` makes the
    next iteration start at that position (what a checkpoint recorded).
    """

    def __init__(self, drawer: BlockDrawer, shape: PlanShape, seed: int) -> None:
        distributed = dist.is_available() and dist.is_initialized()
        replicas = dist.get_world_size() if distributed else 1
        rank = dist.get_rank() if distributed else 0
        super().__init__(range(len(drawer.candidates)), replicas, rank, shuffle=False, seed=seed)
        self.drawer = drawer
        self.shape = PlanShape(**{**vars(shape), "replicas": replicas, "rank": rank})
        self.seed = seed
        self.epoch = 0
        self._skip = 0  # batches of `epoch` to leave out of the next iteration

    def batches(self) -> int:
        """Batches a process gets per epoch."""
        shape = self.shape
        total = len(self.drawer.candidates) if shape.num_samples is None else shape.num_samples
        return total // shape.replicas // shape.batch_size

    def __len__(self) -> int:
        return self.batches() * self.shape.batch_size

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def resume(self, epoch: int, batches_done: int) -> None:
        """Start the next iteration at batch `batches_done` of `epoch` (the next epoch's start
        when that epoch was finished)."""
        if batches_done >= self.batches():
            epoch, batches_done = epoch + 1, 0
        self.epoch, self._skip = epoch, batches_done

    def __iter__(self) -> Iterator[SampleKey]:
        skip, self._skip = self._skip, 0
        for batch in epoch_batches(self.drawer, self.shape, self.seed, self.epoch)[skip:]:
            yield from batch
