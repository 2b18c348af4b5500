"""Dataset layouts as they ship, and the errors bad input gets."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from data_fixtures import (
    tiny_videos,
    write_davis2016,
    write_davis2017,
    write_ytvos,
)
from PIL import Image

from cvos.data.layouts import list_sequences, read_frames, read_label_maps
from cvos.errors import DataError
from cvos.masks import write_label_png


@pytest.fixture(scope="module")
def videos() -> dict:
    return tiny_videos(3, frames=6)


def test_davis2016_reads_split_lines_with_trailing_spaces(tmp_path: Path, videos: dict) -> None:
    root = write_davis2016(tmp_path, videos, {"train": ["seq-0", "seq-1"], "val": ["seq-2"]})
    train = list_sequences("davis2016", root, "train")
    assert [s.name for s in train] == ["seq-0", "seq-1"]
    assert train[0].frame_names == ["00000", "00001", "00002", "00003", "00004", "00005"]
    assert train[0].annotated == train[0].frame_names
    labels = read_label_maps(train[0], 40, 72)
    assert set(np.unique(labels)) == {0, 1}  # 0/255 masks become one object
    np.testing.assert_array_equal(labels > 0, videos["seq-0"][1] > 0)


def test_davis2017_reads_object_ids_from_palette_masks(tmp_path: Path, videos: dict) -> None:
    root = write_davis2017(tmp_path, videos, {"train": ["seq-1", "seq-0"], "val": ["seq-2"]})
    train = list_sequences("davis2017", root, "train")
    assert [s.name for s in train] == ["seq-1", "seq-0"]  # split-file order
    frames = read_frames(train[0])
    assert len(frames) == 6 and frames[0].shape == (40, 72, 3) and frames[0].dtype == np.uint8
    np.testing.assert_array_equal(read_label_maps(train[0], 40, 72), videos["seq-1"][1])


def test_ytvos_non_contiguous_names_sparse_masks_and_late_objects(tmp_path: Path) -> None:
    videos = {name: v for name, v in tiny_videos(4, frames=12).items() if v[1].max() > 1}
    root = write_ytvos(tmp_path, "train", videos, name_step=5, mask_every=3)
    write_ytvos(tmp_path, "valid", videos, name_step=5)
    train = list_sequences("ytvos", root, "train")
    assert [s.name for s in train] == sorted(videos)
    first = train[0]
    assert first.frame_names[:3] == ["00000", "00005", "00010"]
    assert first.annotated == ["00000", "00015", "00030", "00045"]
    assert first.annotated_indices() == [0, 3, 6, 9]
    valid = list_sequences("ytvos", root, "valid")[0]
    late = int(videos[valid.name][1].max())
    labels = read_label_maps(valid, 40, 72)
    starts = [i for i in valid.annotated_indices() if (labels[i] == late).any()]
    assert starts and starts[0] >= 6  # the late object's first mask is on a later frame
    assert len(valid.annotated) == 2


def test_split_naming_a_missing_sequence(tmp_path: Path, videos: dict) -> None:
    root = write_davis2017(tmp_path, videos, {"train": ["seq-0", "ghost"]})
    with pytest.raises(DataError, match=r"names sequence 'ghost'.*does not exist"):
        list_sequences("davis2017", root, "train")
    root16 = write_davis2016(tmp_path / "d16", videos, {"val": ["seq-0"]})
    text = (root16 / "ImageSets" / "480p" / "val.txt").read_text()
    (root16 / "ImageSets" / "480p" / "val.txt").write_text(text.replace("seq-0", "ghost"))
    with pytest.raises(DataError, match=r"names sequence 'ghost'"):
        list_sequences("davis2016", root16, "val")


def test_missing_split_file_and_malformed_line(tmp_path: Path, videos: dict) -> None:
    root = write_davis2016(tmp_path, videos, {"train": ["seq-0"]})
    with pytest.raises(DataError, match=r"split file .*val.txt does not exist"):
        list_sequences("davis2016", root, "val")
    (root / "ImageSets" / "480p" / "train.txt").write_text("/JPEGImages/480p/seq-0/00000.jpg\n")
    with pytest.raises(DataError, match=r"train.txt:1: expected"):
        list_sequences("davis2016", root, "train")


def test_missing_frame_in_the_middle(tmp_path: Path, videos: dict) -> None:
    root = write_davis2017(tmp_path, videos, {"train": ["seq-0"]})
    (root / "JPEGImages" / "480p" / "seq-0" / "00002.jpg").unlink()
    with pytest.raises(DataError, match=r"mask .*00002.png has no frame"):
        list_sequences("davis2017", root, "train")
    (root / "Annotations" / "480p" / "seq-0" / "00002.png").unlink()
    with pytest.raises(DataError, match=r"frame .*seq-0/00002.jpg is missing"):
        list_sequences("davis2017", root, "train")


def test_missing_masks(tmp_path: Path, videos: dict) -> None:
    root = write_davis2016(tmp_path, videos, {"train": ["seq-0"]})
    (root / "Annotations" / "480p" / "seq-0" / "00003.png").unlink()
    with pytest.raises(DataError, match=r"mask .*seq-0/00003.png is missing"):
        list_sequences("davis2016", root, "train")
    root17 = write_davis2017(tmp_path / "d17", videos, {"train": ["seq-1"]})
    (root17 / "Annotations" / "480p" / "seq-1" / "00000.png").unlink()
    with pytest.raises(DataError, match=r"mask .*seq-1/00000.png is missing"):
        list_sequences("davis2017", root17, "train")
    shutil.rmtree(root17 / "Annotations" / "480p" / "seq-1")
    with pytest.raises(DataError, match=r"mask folder .*seq-1 does not exist"):
        list_sequences("davis2017", root17, "train")


def test_ytvos_object_without_its_first_mask(tmp_path: Path) -> None:
    videos = tiny_videos(1, frames=6)
    root = write_ytvos(tmp_path, "valid", videos, late_object=False)
    (root / "valid" / "Annotations" / "seq-0" / "00000.png").unlink()
    with pytest.raises(DataError, match=r"mask .*seq-0/00000.png is missing"):
        list_sequences("ytvos", root, "valid")


def test_mask_size_differs_from_its_frame(tmp_path: Path, videos: dict) -> None:
    root = write_davis2017(tmp_path, videos, {"train": ["seq-0"]})
    path = root / "Annotations" / "480p" / "seq-0" / "00004.png"
    write_label_png(path, np.zeros((20, 36), np.uint8))
    sequence = list_sequences("davis2017", root, "train")[0]
    with pytest.raises(DataError, match=r"mask .*00004.png is 36x20, but its frame is 72x40"):
        read_label_maps(sequence, 40, 72)


def test_frame_size_differs_within_a_sequence(tmp_path: Path, videos: dict) -> None:
    root = write_davis2017(tmp_path, videos, {"train": ["seq-0"]})
    Image.new("RGB", (70, 40)).save(root / "JPEGImages" / "480p" / "seq-0" / "00003.jpg")
    sequence = list_sequences("davis2017", root, "train")[0]
    with pytest.raises(
        DataError, match=r"frame .*00003.jpg is 70x40, but the sequence's first frame is 72x40"
    ):
        read_frames(sequence)


def test_empty_first_frame_mask(tmp_path: Path, videos: dict) -> None:
    root = write_davis2017(tmp_path, videos, {"train": ["seq-0"]})
    write_label_png(
        root / "Annotations" / "480p" / "seq-0" / "00000.png", np.zeros((40, 72), np.uint8)
    )
    sequence = list_sequences("davis2017", root, "train")[0]
    with pytest.raises(DataError, match=r"first mask .*seq-0/00000.png is empty"):
        read_label_maps(sequence, 40, 72)


def test_unknown_layout_and_missing_root(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="unknown dataset layout 'davis2099'"):
        list_sequences("davis2099", tmp_path, "train")
    with pytest.raises(DataError, match="dataset folder .*nowhere does not exist"):
        list_sequences("davis2017", tmp_path / "nowhere", "train")


def test_real_davis2016_splits(davis2016_root: Path) -> None:
    """Every listed sequence parses and is fully annotated (0/255 masks); splits do not overlap."""
    splits = {
        split: list_sequences("davis2016", davis2016_root, split) for split in ("train", "val")
    }
    for split, sequences in splits.items():
        lines = (davis2016_root / "ImageSets" / "480p" / f"{split}.txt").read_text().split()
        assert sum(len(s.frame_names) for s in sequences) == len(lines) // 2
        for sequence in sequences:
            assert sequence.annotated == sequence.frame_names and sequence.binary_masks
    assert not {s.name for s in splits["train"]} & {s.name for s in splits["val"]}
    first = splits["val"][0]
    labels = read_label_maps(first, 480, 854)
    assert labels.shape == (len(first.frame_names), 480, 854) and set(np.unique(labels)) == {0, 1}
