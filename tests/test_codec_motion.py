"""The compiled motion loops against a line-by-line transcription of coviar's C loops."""

from __future__ import annotations

import importlib.util
import platform
import resource
from pathlib import Path

import av
import numpy as np
import pytest

from cvos.codec import CompressedVideo, EncodeSettings, encode_video, motion
from cvos.codec.motion import (
    accumulate_records,
    paint_motion,
    reuse_freed_memory,
    subtract_warped,
)
from cvos.codec.synthetic import moving_square_video
from cvos.errors import CodecError

RECORD = np.dtype(
    [(name, "u1") for name in ("w", "h")]
    + [(name, "<i2") for name in ("src_x", "src_y", "dst_x", "dst_y")]
)


def coviar_step(
    records: np.ndarray, height: int, width: int, old_map: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """coviar's create_and_load_mv_residual: plain vectors and the new I-frame source map.

    `old_map` is H x W x 2 (x, y) source coordinates in the I-frame, before this frame.
    """
    vectors = np.zeros((height, width, 2), np.int32)
    new_map = old_map.copy()
    for record in records:
        val_x = int(record["dst_x"]) - int(record["src_x"])
        val_y = int(record["dst_y"]) - int(record["src_y"])
        if val_x == 0 and val_y == 0:
            continue
        w, h = int(record["w"]), int(record["h"])
        for x_start in range(-(w // 2), w // 2):
            for y_start in range(-(h // 2), h // 2):
                p_dst_x, p_dst_y = int(record["dst_x"]) + x_start, int(record["dst_y"]) + y_start
                p_src_x, p_src_y = int(record["src_x"]) + x_start, int(record["src_y"]) + y_start
                if (
                    0 <= p_dst_y < height
                    and 0 <= p_dst_x < width
                    and (0 <= p_src_y < height and 0 <= p_src_x < width)
                ):
                    vectors[p_dst_y, p_dst_x] = (val_x, val_y)
                    new_map[p_dst_y, p_dst_x] = old_map[p_src_y, p_src_x]
    return vectors, new_map


def identity_map(height: int, width: int) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x, y], axis=-1)


def macroblock_records(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Records like FFmpeg's: one partition of each (non-intra) 16 x 16 macroblock."""
    centres = []
    for mb_y in range(0, height, 16):
        for mb_x in range(0, width, 16):
            if rng.random() < 0.2:  # intra: no record
                continue
            w, h = [(16, 16), (8, 8), (16, 8), (8, 16)][rng.integers(4)]
            centres += [
                (mb_x + x + w // 2, mb_y + y + h // 2, w, h)
                for y in range(0, 16, h)
                for x in range(0, 16, w)
            ]
    records = np.zeros(len(centres), RECORD)
    records["dst_x"], records["dst_y"], records["w"], records["h"] = np.array(centres).T
    return with_motion(rng, records)


def with_motion(rng: np.random.Generator, records: np.ndarray) -> np.ndarray:
    motion = rng.integers(-12, 13, (records.size, 2))
    motion[rng.random(records.size) < 0.2] = 0  # some blocks do not move
    records["src_x"] = records["dst_x"] - motion[:, 0]
    records["src_y"] = records["dst_y"] - motion[:, 1]
    return records


def warp_reference(image: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    y, x = np.mgrid[0 : vectors.shape[0], 0 : vectors.shape[1]]
    return image[y - vectors[..., 1], x - vectors[..., 0]]


def assert_matches_coviar(records: np.ndarray, height: int, width: int, seed: int) -> np.ndarray:
    """Painted vectors, accumulation over three frames and both residuals against coviar."""
    rng = np.random.default_rng(seed)
    source_map, accumulated = identity_map(height, width), np.zeros((height, width, 2), np.int32)
    for step in range(3):
        step_records = records if step == 0 else with_motion(rng, records.copy())
        vectors = paint_motion(step_records, height, width)
        expected, source_map = coviar_step(step_records, height, width, source_map)
        np.testing.assert_array_equal(vectors, expected)
        accumulated = accumulate_records(step_records, accumulated)
        np.testing.assert_array_equal(accumulated, identity_map(height, width) - source_map)
        image, reference = rng.integers(0, 256, (2, height, width, 3), dtype=np.uint8)
        for field in (vectors, accumulated):
            residual = subtract_warped(image, reference, field)
            expected = image.astype(np.int32) - warp_reference(reference, field)
            np.testing.assert_array_equal(residual, expected)
    return paint_motion(records, height, width)


@pytest.mark.parametrize("seed", range(6))
def test_macroblock_partitions_match_coviar(seed: int) -> None:
    rng = np.random.default_rng(seed)
    vectors = assert_matches_coviar(macroblock_records(rng, 48, 64), 48, 64, seed)
    assert vectors.any()


@pytest.mark.parametrize("seed", range(6))
def test_unaligned_overlapping_blocks_match_coviar_record_order(seed: int) -> None:
    rng = np.random.default_rng(seed)
    records = np.zeros(40, RECORD)
    records["w"], records["h"] = rng.choice([4, 5, 8, 16], 40), rng.choice([3, 8, 16], 40)
    records["dst_x"], records["dst_y"] = rng.integers(-6, 70, 40), rng.integers(-6, 54, 40)
    assert_matches_coviar(with_motion(rng, records), 48, 64, seed)


def test_the_later_of_two_overlapping_records_wins() -> None:
    records = np.zeros(2, RECORD)
    records["w"] = records["h"] = 16
    records["dst_x"], records["dst_y"] = (24, 32), (24, 24)  # the second overlaps half the first
    records["src_x"], records["src_y"] = (20, 29), (22, 24)
    vectors = assert_matches_coviar(records, 48, 64, 0)
    assert tuple(vectors[20, 20]) == (4, 2)
    assert tuple(vectors[20, 30]) == (3, 0)


def test_pixels_whose_source_leaves_the_frame_keep_zero_motion() -> None:
    records = np.zeros(1, RECORD)
    records["w"] = records["h"] = 16
    records["dst_x"], records["dst_y"] = 8, 8  # the top-left macroblock
    records["src_x"], records["src_y"] = 11, 6  # moved by (-3, +2)
    vectors = paint_motion(records, 32, 48)
    painted = np.zeros((32, 48), bool)
    painted[2:16, 0:16] = True  # rows 0 and 1 would read rows -2 and -1
    np.testing.assert_array_equal(vectors[painted], np.tile([-3, 2], (14 * 16, 1)))
    assert not vectors[~painted].any()


def test_odd_frame_size_matches_coviar() -> None:
    rng = np.random.default_rng(7)
    records = macroblock_records(rng, 64, 96)
    assert_matches_coviar(records, 61, 90, 7)  # macroblocks stick out of a 90 x 61 frame


def test_no_moving_block_is_the_identity() -> None:
    records = np.zeros(3, RECORD)
    records["w"] = records["h"] = 16
    records["dst_x"] = records["src_x"] = (8, 24, 40)
    records["dst_y"] = records["src_y"] = 8
    vectors = paint_motion(records, 32, 48)
    assert not vectors.any()
    image = np.arange(32 * 48 * 3, dtype=np.uint8).reshape(32, 48, 3)
    np.testing.assert_array_equal(subtract_warped(image, image, vectors), 0)


def test_vectors_pointing_outside_are_refused_not_read() -> None:
    vectors = np.zeros((8, 8, 2), np.int32)
    vectors[0, 0] = (1, 0)  # source x = -1
    image = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match="outside the frame"):
        subtract_warped(image, image, vectors)
    with pytest.raises(ValueError, match=r"previous vectors: expected shape \(8, 9, 2\)"):
        accumulate_records(np.empty(0, RECORD), np.zeros((8, 9, 3), np.int32))
    with pytest.raises(ValueError, match="image: expected shape"):
        subtract_warped(np.zeros((8, 8, 4), np.uint8), image, vectors)


def test_a_missing_build_is_reported_with_how_to_build(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    motion._kernels.cache_clear()
    try:
        with pytest.raises(CodecError, match="not compiled.*C compiler"):
            paint_motion(np.zeros(0, RECORD), 8, 8)
    finally:
        motion._kernels.cache_clear()


@pytest.fixture(scope="module", params=[("mpeg4", 96, 128, 16), ("mpeg4", 70, 90, 1)])
def encoded(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    codec, height, width, pad = request.param
    video = moving_square_video(14, height, width, square_size=min(48, width - 74))
    path = tmp_path_factory.mktemp("motion") / "square.m4v"
    encode_video(video.frames, path, EncodeSettings(codec, pad_multiple=pad))
    return path


def ffmpeg_records(path: Path) -> list[np.ndarray]:
    """Each frame's motion-vector records as FFmpeg exports them (empty at I-frames)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.codec_context.options = {"flags2": "+export_mvs"}
        records = []
        for frame in container.decode(stream):
            side_data = frame.side_data.get("MOTION_VECTORS")
            records.append(np.empty(0, RECORD) if side_data is None else side_data.to_ndarray())
        return records


def test_reader_vectors_follow_coviar_on_a_real_stream(encoded: Path) -> None:
    """Plain and accumulated vectors equal coviar's loops over FFmpeg's own records."""
    frames = list(CompressedVideo(encoded))
    height, width = frames[0].bgr.shape[:2]
    source_map = identity_map(height, width)
    for frame, records in zip(frames, ffmpeg_records(encoded), strict=True):
        if frame.gop_position == 0:
            source_map = identity_map(height, width)
            assert records.size == 0
            continue
        vectors, source_map = coviar_step(records, height, width, source_map)
        np.testing.assert_array_equal(frame.mv, vectors)
        np.testing.assert_array_equal(frame.mv_acc, identity_map(height, width) - source_map)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the setting is glibc's mallopt")
def test_a_frames_arrays_reuse_freed_memory_without_page_faults() -> None:
    """Without the setting, 20 frames' worth of arrays cost ~17,000 page faults here."""
    reuse_freed_memory()

    def frames() -> None:
        for _ in range(20):
            arrays = [np.ones((480, 864, channels), np.int32) for channels in (2, 2, 3, 3)]
            del arrays

    frames()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    frames()
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    assert faults < 1280  # a single fresh 5 MB array costs 1,280
