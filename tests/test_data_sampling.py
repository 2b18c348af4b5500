"""The epoch plan: a function of its position alone, GOPs kept together per loader worker."""

from __future__ import annotations

from collections import Counter

from cvos.data.sampling import BlockDrawer, Candidate, EpochSampler, PlanShape, epoch_batches

GOP = 12


def candidates(sequences: int = 5, frames: int = 60) -> list[Candidate]:
    """One object per sequence, every frame a target and a reference (DAVIS 2016-like)."""
    references = tuple(range(frames))
    keys = tuple(f - f % GOP for f in references)
    return [
        Candidate(s, t, t - t % GOP, max(t - 1, 0), 1, references, keys)
        for s in range(sequences)
        for t in range(frames)
    ]


def shape(**changes: object) -> PlanShape:
    values = {"num_samples": 96, "batch_size": 4, "samples_per_gop": 8, "workers": 2}
    return PlanShape(**{**values, **changes})


def test_an_epoch_depends_on_seed_and_epoch_only() -> None:
    drawer = BlockDrawer(candidates())
    first = epoch_batches(drawer, shape(), seed=3, epoch=0)
    assert len(first) == 24 and all(len(batch) == 4 for batch in first)
    assert epoch_batches(BlockDrawer(candidates()), shape(), seed=3, epoch=0) == first
    assert epoch_batches(drawer, shape(), seed=3, epoch=1) != first
    assert epoch_batches(drawer, shape(), seed=4, epoch=0) != first


def test_each_worker_decodes_few_gops_and_targets_move_forward() -> None:
    """Batch i goes to worker i mod 2: each worker's samples come from blocks of 8 that share a
    target GOP and a reference GOP, interleaved 4 at a time, targets ascending in each block."""
    pool = candidates()
    batches = epoch_batches(BlockDrawer(pool), shape(), seed=0, epoch=0)
    for worker in range(2):
        keys = [key for batch in batches[worker::2] for key in batch]
        gops = Counter((pool[k.candidate].sequence, pool[k.candidate].key) for k in keys)
        assert len(gops) <= len(keys) // 8 + 1  # ~one target GOP per 8 samples
        references = {(pool[k.candidate].sequence, k.reference - k.reference % GOP) for k in keys}
        assert len(references) <= len(keys) // 8 + 1
        for block in range(4):  # the first 4 blocks, interleaved: every 4th sample
            targets = [pool[k.candidate].target for k in keys[block:32:4]]
            assert targets == sorted(targets)
    assert len({batch[0].seed for batch in batches}) == len(batches)  # no repeated seeds


def test_every_candidate_once_but_for_evening_out_the_workers() -> None:
    pool = candidates(sequences=3, frames=30)
    batches = epoch_batches(BlockDrawer(pool), shape(num_samples=None), seed=0, epoch=0)
    drawn = [key.candidate for batch in batches for key in batch]
    assert len(drawn) == len(pool) // 4 * 4 == 88
    assert len(set(drawn)) >= len(pool) - 8  # streams differ by at most a block


def test_processes_share_an_epoch_without_overlap() -> None:
    pool = candidates()
    single = epoch_batches(BlockDrawer(pool), shape(), seed=0, epoch=2)
    ranks = [
        epoch_batches(BlockDrawer(pool), shape(replicas=2, rank=r), seed=0, epoch=2)
        for r in range(2)
    ]
    assert [len(r) for r in ranks] == [12, 12]
    seeds = [{key.seed for batch in r for key in batch} for r in ranks]
    assert not seeds[0] & seeds[1]
    assert len(single) == 24


def test_the_sampler_resumes_where_a_checkpoint_stopped() -> None:
    drawer = BlockDrawer(candidates())
    sampler = EpochSampler(drawer, shape(), seed=0)
    assert len(sampler) == 96
    sampler.set_epoch(1)
    epoch_1 = list(sampler)
    resumed = EpochSampler(drawer, shape(), seed=0)
    resumed.resume(1, 5)  # 5 batches of epoch 1 were trained on
    assert list(resumed) == epoch_1[5 * 4 :]
    assert list(resumed) == epoch_1  # the skip applies to one iteration only
    resumed.resume(1, 24)  # epoch 1 was finished: the next starts at epoch 2's beginning
    assert resumed.epoch == 2 and list(resumed) == _epoch(drawer, 2)


def _epoch(drawer: BlockDrawer, epoch: int) -> list:
    return [key for batch in epoch_batches(drawer, shape(), 0, epoch) for key in batch]
