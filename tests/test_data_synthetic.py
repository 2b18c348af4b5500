"""The synthetic dataset: deterministic moving textured objects that occlude, DAVIS 2017 layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from cvos.data import SyntheticSpec, ensure_synthetic, list_sequences
from cvos.data.layouts import read_label_maps
from cvos.data.synthetic import render_video

SMALL = SyntheticSpec(num_train=3, num_val=2, min_frames=8, max_frames=10, height=56, width=88)


def test_render_is_deterministic_from_the_seed() -> None:
    a = render_video(np.random.default_rng(3), SMALL)
    b = render_video(np.random.default_rng(3), SMALL)
    c = render_video(np.random.default_rng(4), SMALL)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert a[0].shape != c[0].shape or not np.array_equal(a[0], c[0])


def test_objects_move_occlude_and_all_start_visible() -> None:
    spec = SyntheticSpec(min_frames=24, max_frames=24)
    counts, occluded = [], 0
    for seed in range(12):
        frames, labels = render_video(np.random.default_rng(seed), spec)
        assert frames.shape == (24, 120, 200, 3) and frames.dtype == np.uint8
        ids = sorted(set(np.unique(labels)) - {0})
        counts.append(len(ids))
        assert ids == list(range(1, len(ids) + 1))
        areas = np.array([[np.sum(frame == i) for i in ids] for frame in labels])  # T x objects
        assert areas[0].min() >= 0.01 * 120 * 200  # every object shows on the first frame
        for i in ids:
            ys, xs = np.nonzero(labels[0] == i)
            ye, xe = np.nonzero(labels[-1] == i)
            if ys.size and ye.size:
                assert np.hypot(ys.mean() - ye.mean(), xs.mean() - xe.mean()) > 2.0  # it moves
        occluded += int(len(ids) > 1 and (areas.min(axis=0) < 0.7 * areas.max(axis=0)).any())
    assert set(counts) == {1, 2, 3}
    assert occluded >= 3


def test_written_in_davis2017_layout_with_splits(tmp_path: Path) -> None:
    root = ensure_synthetic(tmp_path, SMALL)
    train = list_sequences("davis2017", root, "train")
    val = list_sequences("davis2017", root, "val")
    assert len(train) == 3 and len(val) == 2
    assert {s.name for s in train}.isdisjoint(s.name for s in val)
    sequence = train[0]
    with Image.open(sequence.mask_path(sequence.annotated[0])) as mask:
        assert mask.mode == "P"
    assert sequence.annotated == sequence.frame_names
    labels = read_label_maps(sequence, 56, 88)
    expected = render_video(np.random.default_rng([SMALL.seed, 0]), SMALL)[1]
    np.testing.assert_array_equal(labels, expected)


def test_generated_once_per_spec(tmp_path: Path) -> None:
    root = ensure_synthetic(tmp_path, SMALL)
    stamp = (root / "ImageSets" / "2017" / "train.txt").stat().st_mtime_ns
    assert ensure_synthetic(tmp_path, SMALL) == root
    assert (root / "ImageSets" / "2017" / "train.txt").stat().st_mtime_ns == stamp
    other = ensure_synthetic(tmp_path, SyntheticSpec(**{**SMALL.__dict__, "seed": 1}))
    assert other != root and other.parent == root.parent
    assert not list(root.parent.glob(".*partial*"))
