"""Writer, reader, coviar-compatible functions and cache of cvos.codec."""

from __future__ import annotations

import itertools
import shutil
import threading
import wave
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

import cvos.codec.cache
from cvos.codec import (
    CompressedFrame,
    CompressedVideo,
    EncodedVideo,
    EncodeSettings,
    EncodeSettingsError,
    Picture,
    PictureType,
    RepresentationCache,
    encode_video,
    get_num_frames,
    load,
)
from cvos.codec.readahead import read_ahead
from cvos.codec.reader import BGRConverter
from cvos.codec.synthetic import SyntheticVideo, moving_square_video
from cvos.errors import CodecError, CodecIndexError, ConfigError

SQUARE_MOTION = np.array([5, 3])
BACKGROUND_MOTION = np.array([-1, 2])


@pytest.fixture(scope="module")
def square() -> SyntheticVideo:
    return moving_square_video(14, 96, 128)


@pytest.fixture(scope="module")
def square_m4v(square: SyntheticVideo, tmp_path_factory: pytest.TempPathFactory) -> EncodedVideo:
    return encode_video(square.frames, tmp_path_factory.mktemp("m4v") / "square.m4v")


@pytest.fixture(scope="module")
def square_frames(square_m4v: EncodedVideo) -> list[CompressedFrame]:
    with CompressedVideo(square_m4v.path) as video:
        return list(video)


def interior(mask: np.ndarray, margin: int = 8) -> np.ndarray:
    """The mask shrunk by `margin` pixels: blocks there lie wholly on the square."""
    ys, xs = np.nonzero(mask)
    inner = np.zeros_like(mask)
    inner[ys.min() + margin : ys.max() + 1 - margin, xs.min() + margin : xs.max() + 1 - margin] = 1
    return inner


def luma(rgb: np.ndarray) -> np.ndarray:
    """BT.601 luma: what lossy 4:2:0 coding keeps well (its chroma is coarse)."""
    return rgb @ np.array([0.299, 0.587, 0.114])


def fraction_equal(vectors: np.ndarray, where: np.ndarray, expected: np.ndarray) -> float:
    return float(np.all(vectors[where] == expected, axis=-1).mean())


def reference_residual(
    frame: CompressedFrame, reference: np.ndarray, vectors: np.ndarray
) -> np.ndarray:
    y, x = np.mgrid[0 : vectors.shape[0], 0 : vectors.shape[1]]
    source = reference[y - vectors[..., 1], x - vectors[..., 0]]
    return frame.bgr.astype(np.int32) - source


def assert_coviar_formulas(frames: list[CompressedFrame]) -> None:
    """Both residual formulas bit-exact on every frame; zeros at I-frames."""
    for previous, frame in zip([None, *frames[:-1]], frames, strict=True):
        if frame.picture_type is PictureType.I:
            iframe = frame.bgr
            for array in (frame.mv, frame.mv_acc, frame.residual, frame.residual_acc):
                assert not array.any()
        else:
            np.testing.assert_array_equal(
                frame.residual, reference_residual(frame, previous.bgr, frame.mv)
            )
            np.testing.assert_array_equal(
                frame.residual_acc, reference_residual(frame, iframe, frame.mv_acc)
            )
        for array, channels in ((frame.mv, 2), (frame.mv_acc, 2), (frame.residual, 3)):
            assert array.dtype == np.int32 and array.shape == (*frame.bgr.shape[:2], channels)


# Writer ---------------------------------------------------------------------------------


def test_every_gop_has_the_requested_length_despite_scene_cuts(tmp_path: Path) -> None:
    first, second = (moving_square_video(5, 48, 64, square_size=16, seed=seed) for seed in (1, 2))
    frames = np.concatenate([first.frames[:5], second.frames])  # a hard cut after frame 4
    encoded = encode_video(frames, tmp_path / "cut.m4v", EncodeSettings(gop_size=4))
    with CompressedVideo(encoded.path) as video:
        types = "".join(frame.picture_type.value for frame in video)
    assert types == "IPPPIPPPIP"
    assert encoded.num_frames == video.num_frames == 10
    assert video.num_gops == 3


def test_padding_replicates_the_last_row_and_column(tmp_path: Path) -> None:
    frames = moving_square_video(3, 70, 90, square_size=16).frames
    encoded = encode_video(frames, tmp_path / "pad.m4v", EncodeSettings(quality=2))
    assert (encoded.height, encoded.width) == (70, 90)
    assert (encoded.coded_height, encoded.coded_width) == (80, 96)
    with CompressedVideo(encoded.path) as video:
        assert (video.height, video.width) == (80, 96)
        decoded = luma(next(iter(video)).rgb)
    assert np.abs(decoded[:70, :90] - luma(frames[0])).mean() < 4  # the picture stays in place
    assert np.abs(decoded[:70, :90] - luma(frames[1])).mean() > 10  # (a moved one differs)
    assert np.abs(decoded[:70, 90:] - decoded[:70, 89:90]).mean() < 4  # padding repeats x = 89
    assert np.abs(decoded[70:, :90] - decoded[69:70, :90]).mean() < 4
    assert np.abs(decoded[:70, 90:] - decoded[:70, 80:86]).mean() > 10  # unlike other columns


def test_sources_folder_list_and_video_file(tmp_path: Path, square: SyntheticVideo) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    for index, frame in enumerate(square.frames[:5]):
        Image.fromarray(frame).save(folder / f"{index:05d}.png")
    from_folder = encode_video(folder, tmp_path / "folder.mp4")
    from_list = encode_video(list(square.frames[:5]), tmp_path / "list.avi")
    from_video = encode_video(from_folder.path, tmp_path / "video.mkv")
    for encoded in (from_folder, from_list, from_video):
        assert get_num_frames(encoded.path) == encoded.num_frames == 5
    first = load(from_video.path, 0, 0, 0, False)[..., ::-1]  # encoded twice
    assert np.abs(luma(first) - luma(square.frames[0])).mean() < 6


def test_frames_of_different_sizes_are_refused_and_nothing_is_written(tmp_path: Path) -> None:
    frames = [np.zeros((32, 32, 3), np.uint8)] * 3 + [np.zeros((32, 48, 3), np.uint8)]
    with pytest.raises(CodecError, match="frame 3 is 48x32, but frame 0 is 32x32"):
        encode_video(frames, tmp_path / "bad.m4v")
    assert list(tmp_path.iterdir()) == []  # no output, no temporary file


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (dict(gop_size=0), "gop_size must be >= 1"),
        (dict(quality=32), "quality for mpeg4 must be in 1..31"),
        (dict(codec="h264", quality=52), "quality for h264 must be in 0..51"),
        (dict(codec="vp9"), "codec must be"),
        (dict(pad_multiple=0), "pad_multiple must be >= 1"),
    ],
)
def test_bad_settings_are_refused(settings: dict, message: str) -> None:
    with pytest.raises(EncodeSettingsError, match=message) as caught:
        EncodeSettings(**settings)
    assert isinstance(caught.value, CodecError) and isinstance(caught.value, ConfigError)


@pytest.mark.parametrize(
    ("name", "codec", "message"),
    [("out.h264", "mpeg4", "holds h264, not mpeg4"), ("out.xyz", "mpeg4", "unknown video suffix")],
)
def test_bad_output_names_are_refused(tmp_path: Path, name: str, codec: str, message: str) -> None:
    with pytest.raises(CodecError, match=message):
        encode_video(np.zeros((2, 16, 16, 3), np.uint8), tmp_path / name, EncodeSettings(codec))


# Reader: motion and residuals -----------------------------------------------------------


def test_motion_vectors_recover_the_square_and_background_motion(
    square: SyntheticVideo, square_frames: list[CompressedFrame]
) -> None:
    for frame in square_frames:
        if frame.picture_type is PictureType.P:
            mask = square.masks[frame.index]
            assert fraction_equal(frame.mv, interior(mask), SQUARE_MOTION) > 0.9
            assert fraction_equal(frame.mv, ~mask, BACKGROUND_MOTION) > 0.8


def test_accumulated_vectors_are_k_times_the_motion(
    square: SyntheticVideo, square_frames: list[CompressedFrame]
) -> None:
    for frame in square_frames[1:12]:
        inside = interior(square.masks[frame.index])
        assert fraction_equal(frame.mv_acc, inside, frame.gop_position * SQUARE_MOTION) > 0.85
    assert not square_frames[12].mv_acc.any()  # next GOP starts again from zero
    np.testing.assert_array_equal(square_frames[13].mv_acc, square_frames[13].mv)


def test_picture_types_gops_and_counts(
    square_m4v: EncodedVideo, square_frames: list[CompressedFrame]
) -> None:
    assert [frame.picture_type.value for frame in square_frames] == list("IPPPPPPPPPPPIP")
    assert [frame.gop_index for frame in square_frames] == [0] * 12 + [1] * 2
    assert [frame.gop_position for frame in square_frames] == [*range(12), 0, 1]
    with CompressedVideo(square_m4v.path) as video:
        assert get_num_frames(square_m4v.path) == len(video) == video.num_frames == 14


@pytest.mark.parametrize(
    ("suffix", "codec", "height", "width", "pad"),
    [
        ("m4v", "mpeg4", 96, 128, 16),
        ("m4v", "mpeg4", 70, 90, 1),  # neither a multiple of 8 nor of 16
        ("mp4", "mpeg4", 70, 90, 16),
        ("h264", "h264", 96, 128, 16),
        ("mp4", "h264", 96, 128, 16),
    ],
)
def test_residual_formulas_hold_bit_exactly(
    tmp_path: Path, suffix: str, codec: str, height: int, width: int, pad: int
) -> None:
    video = moving_square_video(14, height, width, square_size=min(48, width - 74))
    settings = EncodeSettings(codec, quality=5 if codec == "mpeg4" else 23, pad_multiple=pad)
    encoded = encode_video(video.frames, tmp_path / f"square.{suffix}", settings)
    with CompressedVideo(encoded.path) as reader:
        frames = list(reader)
    assert frames[0].bgr.shape == (encoded.coded_height, encoded.coded_width, 3)
    assert "".join(frame.picture_type.value for frame in frames) == "IPPPPPPPPPPPIP"
    assert_coviar_formulas(frames)


def test_h264_motion_vectors_recover_the_motion(tmp_path: Path, square: SyntheticVideo) -> None:
    settings = EncodeSettings("h264", quality=18)
    encoded = encode_video(square.frames, tmp_path / "square.h264", settings)
    with CompressedVideo(encoded.path) as video:
        assert video.codec == "h264"
        frames = list(video)
    for frame in frames[1:12]:
        assert fraction_equal(frame.mv, interior(square.masks[frame.index]), SQUARE_MOTION) > 0.8


def test_images_match_ffmpeg_bgr24_conversion(
    square_m4v: EncodedVideo, square_frames: list[CompressedFrame]
) -> None:
    with av.open(str(square_m4v.path)) as container:
        expected = [frame.to_ndarray(format="bgr24") for frame in container.decode(video=0)]
    assert len(expected) == len(square_frames)
    for frame, image in zip(square_frames, expected, strict=True):
        np.testing.assert_array_equal(frame.bgr, image)
        np.testing.assert_array_equal(frame.rgb, image[..., ::-1])


def test_gop_access_decodes_only_that_gop(
    square_m4v: EncodedVideo, square_frames: list[CompressedFrame]
) -> None:
    with CompressedVideo(square_m4v.path) as video:
        assert video.decoded_frame_count == 0
        frames = video.gop(1)
        assert video.decoded_frame_count == len(frames) == 2
    for frame, expected in zip(frames, square_frames[12:], strict=True):
        assert (frame.index, frame.gop_index, frame.gop_position) == (
            expected.index, expected.gop_index, expected.gop_position,
        )  # fmt: skip
        for name in ("bgr", "mv", "mv_acc", "residual", "residual_acc"):
            np.testing.assert_array_equal(getattr(frame, name), getattr(expected, name))


def test_frames_can_be_rebuilt_from_stored_arrays(square_frames: list[CompressedFrame]) -> None:
    frame = square_frames[5]
    names = ("bgr", "mv", "mv_acc", "residual", "residual_acc")
    crops = [getattr(frame, name)[:40, :60] for name in names]
    rebuilt = CompressedFrame.from_arrays(5, 0, 5, PictureType.P, *crops)
    for name, crop in zip(names, crops, strict=True):
        assert getattr(rebuilt, name) is crop
    assert (rebuilt.index, rebuilt.gop_position, rebuilt.picture_type) == (5, 5, PictureType.P)


def test_the_accumulated_residual_at_some_pixels_is_the_full_residual_there(
    square_m4v: EncodedVideo,
) -> None:
    """Computed at a grid of pixels alone, on coded and cropped frames, bit for bit; None once
    the full residual is at hand (computed, or given to `from_arrays`)."""
    rng = np.random.default_rng(3)
    with CompressedVideo(square_m4v.path) as video:
        frames = list(video) + [frame.cropped(90, 120) for frame in video]  # decoded twice
    checked = 0
    for frame in frames:
        height, width = frame.bgr.shape[:2]
        rows = rng.integers(0, height, 40).astype(np.int32)
        cols = rng.integers(0, width, 70).astype(np.int32)
        at = frame.residual_acc_at(rows, cols)
        assert at.shape == (40, 70, 3) and at.dtype == np.int32
        coded = getattr(frame, "uncropped", frame)
        assert "residual_acc" not in vars(coded)  # not computed in full
        assert frame.residual_acc_at(rows, cols) is None  # asked again: computed in full
        assert "residual_acc" in vars(coded)
        np.testing.assert_array_equal(at, frame.residual_acc[np.ix_(rows, cols)])
        checked += bool(at.any())
    assert len(frames) == 28 and checked == 24  # the I-frames' residuals are zero
    names = ("bgr", "mv", "mv_acc", "residual", "residual_acc")
    stored = CompressedFrame.from_arrays(
        5, 0, 5, PictureType.P, *(getattr(frames[5], n) for n in names)
    )
    assert stored.residual_acc_at(rows, cols) is None  # samplers read the given array
    with pytest.raises(ValueError, match=r"cols: expected int32 pixel indices in 0\.\.119"):
        frames[-1].residual_acc_at(rows, np.array([120], np.int32))  # the crop's padding


def test_the_residual_at_pixels_refuses_sources_and_pixels_outside_the_frame() -> None:
    image = np.zeros((8, 8, 3), np.uint8)
    mv_acc = np.zeros((8, 8, 2), np.int32)
    mv_acc[2, 0] = (1, 0)  # source x = -1

    def frame() -> CompressedFrame:  # a fresh one: a frame asked twice computes in full
        own = Picture.of(image)
        return CompressedFrame(3, 0, 3, PictureType.P, image, mv_acc, mv_acc, own, image)

    axis = np.arange(8, dtype=np.int32)
    assert not frame().residual_acc_at(axis[3:], axis).any()  # row 2 not read: nothing refused
    with pytest.raises(ValueError, match="outside the frame"):
        frame().residual_acc_at(axis[2:], axis)
    with pytest.raises(ValueError, match=r"cols: expected int32 pixel indices in 0\.\.7"):
        frame().residual_acc_at(axis, axis + 1)
    with pytest.raises(ValueError, match="rows: expected int32"):
        frame().residual_acc_at(axis.astype(np.int64), axis)


def test_a_closed_video_refuses_to_decode(square_m4v: EncodedVideo) -> None:
    with CompressedVideo(square_m4v.path) as video:
        assert video.gop(0)[0].picture_type is PictureType.I
    with pytest.raises(CodecError, match="closed"):
        video.gop(0)


def test_davis_sequence_has_an_iframe_every_12_frames(davis2016_root: Path, tmp_path: Path) -> None:
    sequence = sorted(path for path in (davis2016_root / "JPEGImages" / "480p").iterdir())[0]
    frames = [
        np.asarray(Image.open(path).convert("RGB")) for path in sorted(sequence.glob("*.jpg"))[:26]
    ]
    encoded = encode_video(frames, tmp_path / "davis.m4v")
    assert (encoded.coded_height, encoded.coded_width) == (480, 864)
    with CompressedVideo(encoded.path) as video:
        types = [frame.picture_type for frame in video]
    assert len(types) == len(frames)
    for index, picture_type in enumerate(types):
        assert picture_type is (PictureType.I if index % 12 == 0 else PictureType.P)


# coviar-compatible functions ------------------------------------------------------------


def test_load_returns_what_the_reader_returns(
    square_m4v: EncodedVideo, square_frames: list[CompressedFrame]
) -> None:
    for gop_index, position in [(0, 0), (0, 5), (0, 11), (1, 1)]:
        frame = square_frames[12 * gop_index + position]
        expected = {
            (0, False): frame.bgr,
            (0, True): frame.bgr,
            (1, False): frame.mv,
            (1, True): frame.mv_acc,
            (2, False): frame.residual,
            (2, True): frame.residual_acc,
        }
        for (representation, accumulate), array in expected.items():
            loaded = load(square_m4v.path, gop_index, position, representation, accumulate)
            np.testing.assert_array_equal(loaded, array)
    assert load(square_m4v.path, 1, 1, 1, False).any()  # the last frame is decoded (not coviar)


@pytest.mark.parametrize(
    ("gop_index", "frame_index", "message"),
    [(2, 0, "GOP 2 is out of range"), (-1, 0, "GOP -1"), (1, 2, "frame 2 is out of range")],
)
def test_load_index_errors_name_the_file(
    square_m4v: EncodedVideo, gop_index: int, frame_index: int, message: str
) -> None:
    with pytest.raises(CodecIndexError, match=message) as caught:
        load(square_m4v.path, gop_index, frame_index, 1, True)
    assert str(square_m4v.path) in str(caught.value)
    assert isinstance(caught.value, IndexError)
    with pytest.raises(CodecError, match="representation must be"):
        load(square_m4v.path, 0, 0, 3, True)


# Streams the reader refuses -------------------------------------------------------------


def encode_with_pyav(path: Path, codec: str, options: dict[str, str], b_frames: int) -> None:
    """Encode outside encode_video, to make streams it would never write."""
    frames = moving_square_video(14, 48, 64, square_size=16, square_motion=(2, 1)).frames
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=Fraction(25))
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.codec_context.max_b_frames = b_frames
        stream.codec_context.options = options
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode(None))


def test_h264_with_several_references_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "refs.h264"
    encode_with_pyav(path, "libx264", {"x264-params": "ref=3:bframes=0"}, 0)
    with pytest.raises(CodecError, match="3 reference frames.*encode_video"):
        CompressedVideo(path)


@pytest.mark.parametrize(("name", "codec"), [("b.m4v", "mpeg4"), ("b.mp4", "libx264")])
def test_b_frames_are_refused(tmp_path: Path, name: str, codec: str) -> None:
    path = tmp_path / name
    encode_with_pyav(path, codec, {"x264-params": "bframes=2:ref=1"} if "264" in codec else {}, 2)
    with pytest.raises(CodecError, match=r"B-frames.*encode_video"):
        list(CompressedVideo(path))


# Bad input ------------------------------------------------------------------------------


def missing(path: Path, source: Path) -> None:
    pass


def garbage(path: Path, source: Path) -> None:
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, np.uint8).tobytes())


def text(path: Path, source: Path) -> None:
    path.write_text("not a video\n" * 100)


def audio_only(path: Path, source: Path) -> None:
    with wave.open(str(path), "wb") as audio:
        audio.setnchannels(1), audio.setsampwidth(2), audio.setframerate(8000)
        audio.writeframes(np.zeros(8000, np.int16).tobytes())


def truncated_p_frame(path: Path, source: Path) -> None:
    data = source.read_bytes()
    path.write_bytes(data[: (data.index(b"\x00\x00\x01\xb6", 200) + len(data)) // 2])


def truncated_last_frame(path: Path, source: Path) -> None:
    path.write_bytes(source.read_bytes()[:-40])


def corrupted(path: Path, source: Path) -> None:
    data = bytearray(source.read_bytes())
    data[len(data) // 3 : len(data) // 3 + 60 : 3] = bytes(20)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("make", "suffix", "reason"),
    [
        (missing, ".m4v", "no such video file"),
        (garbage, ".m4v", "not a decodable video"),
        (garbage, ".mp4", "not a video file FFmpeg can read"),
        (text, ".txt", "codec 'ansi' is not supported"),
        (audio_only, ".wav", "has no video stream"),
        (truncated_p_frame, ".m4v", r"corrupt or truncated bitstream at frame \d+"),
        (truncated_last_frame, ".m4v", "corrupt or truncated bitstream at frame 13"),
        (corrupted, ".m4v", r"corrupt or truncated bitstream at frame \d+"),
    ],
)
def test_bad_files_raise_codec_errors_naming_the_file_and_reason(
    tmp_path: Path,
    square_m4v: EncodedVideo,
    make: Callable[[Path, Path], None],
    suffix: str,
    reason: str,
) -> None:
    path = tmp_path / f"{make.__name__}{suffix}"
    make(path, square_m4v.path)
    with pytest.raises(CodecError, match=reason) as caught, CompressedVideo(path) as video:
        for frame in video:
            assert frame.residual_acc.shape == frame.bgr.shape
    assert str(caught.value).startswith(f"{path}: ")


# Cache ----------------------------------------------------------------------------------


def test_cache_stores_every_representation_compactly(
    tmp_path: Path, square_m4v: EncodedVideo, square_frames: list[CompressedFrame]
) -> None:
    cached = RepresentationCache(tmp_path / "cache").get_or_extract(square_m4v.path)
    assert len(cached) == len(square_frames)
    assert cached.mv.dtype == cached.residual_acc.dtype == np.int16
    assert isinstance(cached.residual, np.memmap) and not cached.residual.flags.writeable
    for frame in square_frames:
        for name in ("bgr", "mv", "mv_acc", "residual", "residual_acc"):
            np.testing.assert_array_equal(getattr(cached, name)[frame.index], getattr(frame, name))
        assert cached.picture_types[frame.index] == frame.picture_type.value
        assert (cached.gop_index[frame.index], cached.gop_position[frame.index]) == (
            frame.gop_index, frame.gop_position,
        )  # fmt: skip


def test_cache_hit_does_not_decode_again(
    tmp_path: Path, square_m4v: EncodedVideo, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = RepresentationCache(tmp_path)
    first = cache.get_or_extract(square_m4v.path)
    copy = tmp_path / "copy.m4v"
    shutil.copy(square_m4v.path, copy)
    monkeypatch.setattr(cvos.codec.cache, "CompressedVideo", None)  # decoding would fail
    second = cache.get_or_extract(copy)  # same bytes, same entry
    assert second.folder == first.folder
    np.testing.assert_array_equal(second.mv_acc, first.mv_acc)


def test_cache_key_follows_the_content(tmp_path: Path, square_m4v: EncodedVideo) -> None:
    other = encode_video(moving_square_video(3, 32, 32, square_size=8).frames, tmp_path / "o.m4v")
    cache = RepresentationCache(tmp_path / "cache")
    assert cache.key(square_m4v.path) != cache.key(other.path)
    assert len(cache.get_or_extract(other.path)) == 3


def test_a_crash_during_extraction_leaves_no_entry(
    tmp_path: Path, square_m4v: EncodedVideo, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "cache"
    store = cvos.codec.cache._store

    def crash_at_frame_5(arrays: dict, frame: CompressedFrame) -> None:
        if frame.index == 5:
            raise KeyboardInterrupt
        store(arrays, frame)

    monkeypatch.setattr(cvos.codec.cache, "_store", crash_at_frame_5)
    with pytest.raises(KeyboardInterrupt):
        RepresentationCache(root).get_or_extract(square_m4v.path)
    assert list(root.iterdir()) == []
    monkeypatch.setattr(cvos.codec.cache, "_store", store)
    assert len(RepresentationCache(root).get_or_extract(square_m4v.path)) == 14


# Read-ahead thread ----------------------------------------------------------------------


def test_read_ahead_yields_everything_in_order_and_reraises_errors() -> None:
    assert list(read_ahead(iter(range(50)), depth=2)) == list(range(50))

    def failing() -> Iterator[int]:
        yield 1
        raise CodecError("broken at 2")

    items = read_ahead(failing())
    assert next(items) == 1
    with pytest.raises(CodecError, match="broken at 2"):
        next(items)


def test_closing_read_ahead_early_stops_its_thread() -> None:
    produced = []

    def endless() -> Iterator[int]:
        for value in itertools.count():
            produced.append(value)
            yield value

    items = read_ahead(endless(), depth=2)
    assert [next(items) for _ in range(3)] == [0, 1, 2]
    items.close()
    assert not any(thread.name == "cvos-read-ahead" for thread in threading.enumerate())
    assert len(produced) <= 3 + 2 + 2  # consumed + buffered + one in flight, then it stopped


def test_gop_steps_convert_only_the_images_of_the_frames_read(
    square_m4v: EncodedVideo, square_frames: list[CompressedFrame], monkeypatch: pytest.MonkeyPatch
) -> None:
    converted = []
    convert = BGRConverter.__call__

    def counting(self: BGRConverter, decoded: av.VideoFrame) -> np.ndarray:
        converted.append(decoded)
        return convert(self, decoded)

    monkeypatch.setattr(BGRConverter, "__call__", counting)
    with CompressedVideo(square_m4v.path) as video:
        steps = list(video.gop_steps(0))
    assert len(steps) == 12 and not converted  # every frame decoded, its motion traced
    frame, expected = steps[5].frame, square_frames[5]
    assert steps[5].frame is frame and len(converted) == 2  # the frame and its I-frame
    for name in ("bgr", "mv", "mv_acc", "residual_acc"):
        np.testing.assert_array_equal(getattr(frame, name), getattr(expected, name))
    assert len(converted) == 2
    np.testing.assert_array_equal(frame.residual, expected.residual)  # reads the frame before
    assert len(converted) == 3
