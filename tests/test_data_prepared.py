"""The prepared form: round trip against the codec, resumability, separate caches, bad input."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from data_fixtures import tiny_videos, write_davis2017

from cvos.codec import CompressedVideo, EncodeSettings
from cvos.data import prepared as prepared_module
from cvos.data.layouts import list_sequences, read_label_maps
from cvos.data.prepared import (
    LABELS_FILE,
    META_FILE,
    REPRESENTATIONS_DIR,
    open_prepared,
    prepare_sequences,
)
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
    report = prepare_sequences(sequences, cache, settings, "tiny", workers=workers, progress=False)
    return report.prepared


def test_round_trip_matches_the_codec_and_the_masks(dataset: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    assert _prepare(dataset, cache, workers=2) == 2
    sequence = list_sequences("davis2017", dataset, "train")[0]
    prepared = open_prepared(cache / sequence.name, sequence, SETTINGS)
    assert prepared.meta.picture_types == "IPPPIPPPIP"
    assert prepared.meta.height == 40 and prepared.meta.width == 72
    assert sorted(p.name for p in prepared.path.iterdir()) == [LABELS_FILE, META_FILE, "video.m4v"]
    assert not prepared.has_arrays()
    with CompressedVideo(prepared.video_path) as video:
        assert (video.height, video.width) == (48, 80)  # padded to multiples of 16
        for frame in video:
            for name in ("bgr", "mv", "mv_acc", "residual", "residual_acc"):
                np.testing.assert_array_equal(
                    prepared.array(name)[frame.index], getattr(frame, name)[:40, :72]
                )
    assert prepared.has_arrays()  # extracted on first use
    labels = prepared.labels()
    assert labels.shape == (10, 40, 72) and labels.dtype == np.uint8
    np.testing.assert_array_equal(labels, read_label_maps(sequence, 40, 72))
    np.testing.assert_array_equal(labels[3], prepared.label(3))
    first = prepared.meta.objects[0]
    assert [o.object_id for o in first] == sorted(set(np.unique(labels[0])) - {0})
    assert all(o.area == int((labels[0] == o.object_id).sum()) for o in first)


def test_a_process_keeps_the_last_label_maps_of_all_sequences_together(
    dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Repeated reads come from memory, but only the last LABEL_CACHE maps stay, whichever
    sequences they are of (a worker meeting every training sequence must not keep that many
    of each)."""
    monkeypatch.setattr(prepared_module, "LABEL_CACHE", 3)
    monkeypatch.setattr(prepared_module, "_LABEL_MAPS", prepared_module._LabelMaps())
    _prepare(dataset, tmp_path / "cache")
    seq0, seq1 = [
        open_prepared(tmp_path / "cache" / s.name, s, SETTINGS)
        for s in list_sequences("davis2017", dataset, "train")
    ]
    reads = []
    for sequence in (seq0, seq1):
        read = sequence._read_label
        monkeypatch.setattr(sequence, "_read_label", lambda i, r=read: reads.append(i) or r(i))
    first = seq0.label(3)
    assert seq0.label(3) is first and reads == [3]
    seq1.label(3), seq1.label(4), seq1.label(3)
    assert reads == [3, 3, 4]  # three maps: all kept
    seq1.label(5)  # a fourth pushes out the least recently read: frame 3 of seq-0
    assert seq0.label(3) is not first and reads == [3, 3, 4, 5, 3]
    np.testing.assert_array_equal(seq0.label(3), first)


def test_prepared_form_is_the_video_and_compressed_labels(dataset: Path, tmp_path: Path) -> None:
    """Without arrays a frame costs the encoded video and its labels; with them, every decoded
    representation (what the format-1 cache held)."""
    sequences = list_sequences("davis2017", dataset, "train")
    light = prepare_sequences(sequences, tmp_path / "light", SETTINGS, "tiny", progress=False)
    full = prepare_sequences(
        sequences, tmp_path / "full", SETTINGS, "tiny", arrays=True, progress=False
    )
    assert (light.prepared, light.prepared_frames, light.frames) == (2, 20, 20)
    assert full.bytes_written > 8 * light.bytes_written
    assert (tmp_path / "full" / "seq-0" / REPRESENTATIONS_DIR).is_dir()
    assert "2 sequences (20 frames) prepared" in light.summary() and "GB written" in light.summary()


def test_rerun_skips_finished_and_redoes_partial_sequences(dataset: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    _prepare(dataset, cache)
    done = (cache / "seq-0" / META_FILE).stat().st_mtime_ns
    assert _prepare(dataset, cache) == 0
    (cache / "seq-1" / META_FILE).unlink()  # as if interrupted before the meta was written
    (cache / ".seq-0.0123456789ab.tmp").mkdir()  # a temp folder left by a killed worker
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


def test_a_cache_of_another_format_is_refused_naming_the_folder(
    dataset: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    _prepare(dataset, cache)
    meta = cache / "seq-0" / META_FILE
    meta.write_text(meta.read_text().replace('"version": 3', '"version": 2'))
    sequence = list_sequences("davis2017", dataset, "train")[0]
    expected = rf"{cache / 'seq-0'}: prepared in cache format 2 \(the encoded video and"
    with pytest.raises(DataError, match=expected) as caught:
        open_prepared(cache / "seq-0", sequence, SETTINGS)
    assert f"Delete {cache} and run `python -m cvos.prepare` again" in str(caught.value)
    with pytest.raises(DataError, match="cache format 2"):
        _prepare(dataset, cache)  # never silently redone or reused


def test_unreadable_labels_name_the_file(dataset: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    _prepare(dataset, cache)
    sequence = list_sequences("davis2017", dataset, "train")[0]
    prepared = open_prepared(cache / "seq-0", sequence, SETTINGS)
    (cache / "seq-0" / LABELS_FILE).write_bytes(b"not a zip")
    with pytest.raises(DataError, match=rf"{cache / 'seq-0' / LABELS_FILE}: not readable"):
        prepared.label(7)


def test_bad_input_names_the_file(dataset: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    frame = dataset / "JPEGImages" / "480p" / "seq-0" / "00004.jpg"
    frame.write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match=f"cannot read frame {frame}"):
        _prepare(dataset, cache)
    assert not (cache / "seq-0").exists() and not list(cache.glob(".seq-0.*"))
    mask = dataset / "Annotations" / "480p" / "seq-1" / "00000.png"
    mask.unlink()
    with pytest.raises(DataError, match=f"mask {mask} is missing"):
        list_sequences("davis2016", _as_davis2016(dataset), "train")


def _as_davis2016(root: Path) -> Path:
    """The same folders listed the DAVIS 2016 way (every frame needs its mask)."""
    lines = [
        f"/JPEGImages/480p/{name}/{t:05d}.jpg /Annotations/480p/{name}/{t:05d}.png"
        for name in ("seq-0", "seq-1")
        for t in range(10)
    ]
    (root / "ImageSets" / "480p").mkdir(parents=True, exist_ok=True)
    (root / "ImageSets" / "480p" / "train.txt").write_text("\n".join(lines))
    return root


def test_a_corrupt_prepared_video_is_an_error_naming_it(dataset: Path, tmp_path: Path) -> None:
    from cvos.data.sources import VideoFrames
    from cvos.errors import CodecError

    cache = tmp_path / "cache"
    _prepare(dataset, cache)
    sequence = list_sequences("davis2017", dataset, "train")[0]
    prepared = open_prepared(cache / "seq-0", sequence, SETTINGS)
    data = prepared.video_path.read_bytes()
    prepared.video_path.write_bytes(data[: len(data) * 2 // 3])  # truncated
    with pytest.raises(CodecError, match=str(prepared.video_path)):
        for index in range(prepared.meta.num_frames):
            assert VideoFrames([prepared], open_gops=2).frame(0, index).residual_acc.size


def test_real_davis2016_sequence_round_trip(davis2016_root: Path, tmp_path: Path) -> None:
    """Prepare the shortest val sequence at its real size (854 wide, coded 864)."""
    sequence = min(
        list_sequences("davis2016", davis2016_root, "val"), key=lambda s: len(s.frame_names)
    )
    settings = EncodeSettings()
    report = prepare_sequences([sequence], tmp_path, settings, "davis16", progress=False)
    prepared = open_prepared(tmp_path / sequence.name, sequence, settings)
    meta = prepared.meta
    assert (meta.height, meta.width) == (480, 854) and meta.num_frames == len(sequence.frame_names)
    assert meta.picture_types[::12] == "I" * len(meta.picture_types[::12])
    assert meta.picture_types.count("I") == -(-meta.num_frames // 12)
    assert report.bytes_written / meta.num_frames < 100_000  # the arrays took ~10 MB a frame
    assert set(np.unique(prepared.label(0))) == {0, 1}
    meta_json = json.loads((tmp_path / sequence.name / META_FILE).read_text())
    assert meta_json["settings"]["gop_size"] == 12 and meta_json["dataset"] == "davis16"
    shutil.rmtree(tmp_path / sequence.name)
