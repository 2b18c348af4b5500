"""Decoding the prepared video gives the model exactly what the stored arrays gave, bit for bit."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from cvos.codec import EncodeSettings
from cvos.data import VOSData
from cvos.data.layouts import list_sequences
from cvos.data.prepared import PreparedSequence, open_prepared, prepare_sequences
from cvos.data.sources import ArrayFrames, VideoFrames

FIELDS = ("bgr", "mv", "mv_acc", "residual", "residual_acc")
TINY = {"num_train": 3, "num_val": 2, "min_frames": 20, "max_frames": 26, "height": 56, "width": 88}


def synthetic(cache_dir: Path, frames: str) -> VOSData:
    return VOSData(
        name="synthetic", cache_dir=cache_dir, gop_size=6, crop_size=(48, 80), batch_size=4,
        num_workers=0, samples_per_epoch=48, prepare_workers=1, synthetic=TINY, frames=frames,
    )  # fmt: skip


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> tuple[VOSData, VOSData]:
    """The synthetic set prepared once, read from its video and from its arrays."""
    cache = tmp_path_factory.mktemp("cache")
    video, arrays = synthetic(cache, "video"), synthetic(cache, "arrays")
    video.prepare_all()
    arrays.prepare_all()  # the same folders, with the arrays extracted
    return video, arrays


def assert_same_frames(sequences: list[PreparedSequence], seed: int) -> None:
    """Every representation of every frame, and every image, from the video (in a random order,
    which restarts GOPs) and from the arrays."""
    decoded, stored = VideoFrames(sequences, open_gops=3), ArrayFrames(sequences)
    order = [(s, t) for s, p in enumerate(sequences) for t in range(p.meta.num_frames)]
    for position in np.random.default_rng(seed).permutation(len(order)):
        sequence, index = order[position]
        got, expected = decoded.frame(sequence, index), stored.frame(sequence, index)
        assert (got.index, got.gop_index, got.gop_position, got.picture_type) == (
            expected.index, expected.gop_index, expected.gop_position, expected.picture_type,
        )  # fmt: skip
        for name in FIELDS:
            np.testing.assert_array_equal(
                getattr(got, name), getattr(expected, name), err_msg=f"{name} of frame {index}"
            )
    for position in np.random.default_rng(seed + 1).permutation(len(order)):
        sequence, index = order[position]
        np.testing.assert_array_equal(decoded.image(sequence, index), stored.image(sequence, index))


def test_every_representation_of_every_synthetic_frame(stores: tuple[VOSData, VOSData]) -> None:
    video, _ = stores
    assert_same_frames(video.open_split("train") + video.open_split("val"), seed=0)


@pytest.mark.slow  # ~3 s: the synthetic test above covers padding and GOP restarts in the fast lane
def test_every_representation_of_every_frame_of_a_real_davis_sequence(
    davis2016_root: Path, tmp_path: Path
) -> None:
    """The shortest DAVIS 2016 train sequence at 480p (coded 864 wide, cropped to 854)."""
    sequence = min(
        list_sequences("davis2016", davis2016_root, "train"), key=lambda s: len(s.frame_names)
    )
    settings = EncodeSettings()
    prepare_sequences([sequence], tmp_path, settings, "davis16", arrays=True, progress=False)
    prepared = open_prepared(tmp_path / sequence.name, sequence, settings)
    assert prepared.array("mv_acc").shape[1:3] == (480, 854)
    assert_same_frames([prepared], seed=1)


def test_training_samples_are_identical_from_video_and_arrays(
    stores: tuple[VOSData, VOSData],
) -> None:
    video, arrays = stores
    keys = list(video.sampler())
    assert keys == list(arrays.sampler()) and len(keys) == 48
    from_video, from_arrays = video.training_set(), arrays.training_set()
    assert isinstance(from_video.frames, VideoFrames)
    assert isinstance(from_arrays.frames, ArrayFrames)
    for key in keys:
        got, expected = from_video[key], from_arrays[key]
        for name, value in expected.tensors().items():
            assert torch.equal(getattr(got, name), value), name


def test_evaluation_frames_are_identical_from_video_and_arrays(
    stores: tuple[VOSData, VOSData],
) -> None:
    video, arrays = stores
    for decoded, stored in zip(
        video.eval_sequences("val"), arrays.eval_sequences("val"), strict=True
    ):
        assert decoded.decode and not stored.decode
        np.testing.assert_array_equal(decoded.gt_masks, stored.gt_masks)
        for got, expected in zip(decoded.frames(), stored.frames(), strict=True):
            for name in FIELDS:
                np.testing.assert_array_equal(getattr(got, name), getattr(expected, name))


def test_the_frame_before_and_interleaved_runs_of_a_gop_restart_no_decode(
    stores: tuple[VOSData, VOSData],
) -> None:
    """A pseudo I-frame reads its target, then the frame before it; two blocks of one GOP
    (or one block's GOP and the GOP before another's I-frame) read it in two ascending runs.
    Each run keeps its own stream: 9 frames decoded for this order (21 when every step back
    restarted the GOP), and every frame is the stored one."""
    video, arrays = stores
    sequences = video.open_split("train")
    decoded, stored = VideoFrames(sequences, open_gops=4), ArrayFrames(sequences)
    for index in (3, 2, 4, 1, 5, 2, 5):  # GOP 0 holds frames 0..5
        got, expected = decoded.frame(0, index), stored.frame(0, index)
        assert got.gop_position == index
        np.testing.assert_array_equal(got.residual_acc, expected.residual_acc)
    assert decoded._videos[0].decoded_frame_count == 9


def test_a_forked_worker_opens_its_own_decoders(stores: tuple[VOSData, VOSData]) -> None:
    """A stream opened in the parent is never read by a child (they would share file offsets)."""
    sequences = stores[0].open_split("train")
    frames = VideoFrames(sequences, open_gops=2)
    frames.frame(0, 3)
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through the pipe
        ok = frames.frame(0, 4).gop_position == 4 and len(frames._streams) == 1
        os.write(write, b"1" if ok else b"0")
        os._exit(0)
    os.waitpid(child, 0)
    assert os.read(read, 1) == b"1"
    assert frames.frame(0, 4).gop_position == 4
