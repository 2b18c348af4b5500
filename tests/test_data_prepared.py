"""The prepared cache: round trip against the codec, resumability, separate caches, bad caches."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from data_fixtures import tiny_videos, write_davis2017

from cvos.codec import CompressedVideo, EncodeSettings
from cvos.data.layouts import list_sequences
from cvos.data.prepared import META_FILE, open_prepared, prepare_sequences
from cvos.errors import DataError

SETTINGS = EncodeSettings(gop_size=4)


@pytest.fixture()
def dataset(tmp_path: Path) -> Path:
    videos = tiny_videos(3, frames=10)
    return write_davis2017(
        tmp_path / "data", videos, {"train": ["seq-0", "seq-1"], "val": ["seq-2"]}
    )


def _prepare(root: Path, cache: Path, settings: EncodeSettings = SETTINGS, workers: int = 1) -> int:
    sequences = list_sequences("davis2017", root, "train")
    return prepare_sequences(sequences, cache, settings, "tiny", workers=workers, progress=False)


def test_round_trip_matches_the_codec_and_the_masks(dataset: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    assert _prepare(dataset, cache, workers=2) == 2
    sequence = list_sequences("davis2017", dataset, "train")[0]
    prepared = open_prepared(cache / sequence.name, sequence, SETTINGS)
    assert prepared.meta.picture_types == "IPPPIPPPIP"
    assert prepared.meta.height == 40 and prepared.meta.width == 72
    with CompressedVideo(prepared.video_path) as video:
        assert (video.height, video.width) == (48, 80)  # padded to multiples of 16
        for frame in video:
            for name in ("bgr", "mv", "mv_acc", "residual", "residual_acc"):
                np.testing.assert_array_equal(
                    prepared.array(name)[frame.index], getattr(frame, name)[:40, :72]
                )
    labels = prepared.labels
    assert labels.shape == (10, 40, 72) and labels.dtype == np.uint8
    first = prepared.meta.objects[0]
    assert [o.object_id for o in first] == sorted(set(np.unique(labels[0])) - {0})
    assert all(o.area == int((labels[0] == o.object_id).sum()) for o in first)


def test_rerun_skips_finished_and_redoes_partial_sequences(dataset: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    _prepare(dataset, cache)
    done = (cache / "seq-0" / META_FILE).stat().st_mtime_ns
    assert _prepare(dataset, cache) == 0
    (cache / "seq-1" / META_FILE).unlink()  # as if interrupted before the meta was written
    (cache / ".seq-0.partial-dead").mkdir()  # a temp folder left by a killed worker
    assert _prepare(dataset, cache) == 1
    assert (cache / "seq-0" / META_FILE).stat().st_mtime_ns == done
    assert (cache / "seq-1" / META_FILE).is_file()
    assert sorted(os.listdir(cache)) == ["seq-0", "seq-1"]


def test_cache_written_with_other_codec_settings(dataset: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    _prepare(dataset, cache)
    sequence = list_sequences("davis2017", dataset, "train")[0]
    with pytest.raises(
        DataError,
        match=r"seq-0/meta.json: cache written with other codec settings \(gop_size 4 != 6\)",
    ):
        open_prepared(cache / "seq-0", sequence, EncodeSettings(gop_size=6))
    with pytest.raises(DataError, match="other codec settings"):
        _prepare(dataset, cache, EncodeSettings(gop_size=6))


def test_frame_count_differs_from_the_prepared_video(dataset: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    _prepare(dataset, cache)
    (dataset / "JPEGImages" / "480p" / "seq-1" / "00009.jpg").unlink()
    (dataset / "Annotations" / "480p" / "seq-1" / "00009.png").unlink()
    sequence = list_sequences("davis2017", dataset, "train")[1]
    with pytest.raises(
        DataError, match=r"seq-1 has 9 frames, but the prepared video in .*seq-1 has 10"
    ):
        open_prepared(cache / "seq-1", sequence, SETTINGS)


def test_unprepared_and_corrupt_meta(dataset: Path, tmp_path: Path) -> None:
    sequence = list_sequences("davis2017", dataset, "train")[0]
    with pytest.raises(
        DataError, match=r"'seq-0' is not prepared in .*run `python -m cvos.prepare`"
    ):
        open_prepared(tmp_path / "cache" / "seq-0", sequence, SETTINGS)
    _prepare(dataset, tmp_path / "cache")
    (tmp_path / "cache" / "seq-0" / META_FILE).write_text("{not json")
    with pytest.raises(DataError, match="meta.json: not a cvos prepared-sequence meta file"):
        open_prepared(tmp_path / "cache" / "seq-0", sequence, SETTINGS)


def test_real_davis2016_sequence_round_trip(davis2016_root: Path, tmp_path: Path) -> None:
    """Prepare the shortest val sequence at its real size (854 wide, coded 864)."""
    sequence = min(
        list_sequences("davis2016", davis2016_root, "val"), key=lambda s: len(s.frame_names)
    )
    settings = EncodeSettings()
    prepare_sequences([sequence], tmp_path, settings, "davis16", progress=False)
    prepared = open_prepared(tmp_path / sequence.name, sequence, settings)
    meta = prepared.meta
    assert (meta.height, meta.width) == (480, 854) and meta.num_frames == len(sequence.frame_names)
    assert meta.picture_types[::12] == "I" * len(
        meta.picture_types[::12]
    ) and meta.picture_types.count("I") == -(-meta.num_frames // 12)
    assert prepared.array("mv_acc").shape == (meta.num_frames, 480, 854, 2)
    assert (
        prepared.array("mv_acc").dtype == np.int16
        and np.abs(prepared.array("mv_acc")[1:12]).max() > 0
    )
    assert set(np.unique(prepared.labels[0])) == {0, 1}
    meta_json = json.loads((tmp_path / sequence.name / META_FILE).read_text())
    assert meta_json["settings"]["gop_size"] == 12 and meta_json["dataset"] == "davis16"
    shutil.rmtree(tmp_path / sequence.name)
