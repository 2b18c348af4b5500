"""Encode frames into the canonical compressed form that the reader understands.

Every GOP has exactly `gop_size` frames (scene-cut detection off), P-frames only
predict from the previous frame (no B-frames, one reference), and frames are padded
on the right and bottom by edge replication to a multiple of `pad_multiple`, so that
pixel (y, x) of the video is pixel (y, x) of the input (and of its mask).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

from cvos.errors import CodecError, ConfigError
from cvos.files import atomic_path

FRAME_SUFFIXES = (".jpg", ".jpeg", ".png")
_FORMAT_OF_SUFFIX = {
    ".m4v": "m4v",
    ".cmp": "m4v",
    ".263": "m4v",
    ".h264": "h264",
    ".264": "h264",
    ".mp4": "mp4",
    ".avi": "avi",
    ".mkv": "matroska",
}
_RAW_CODEC_OF_FORMAT = {"m4v": "mpeg4", "h264": "h264"}
_QUALITY_RANGE = {"mpeg4": (1, 31), "h264": (0, 51)}

PAD_MULTIPLE = 16  # the default: MPEG-4 and H.264 code whole 16 x 16 macroblocks

FrameSource = np.ndarray | Sequence[np.ndarray] | str | os.PathLike


class EncodeSettingsError(CodecError, ConfigError):
    """An encoding setting is out of range (both a codec and a configuration error)."""


@dataclass(frozen=True)
class EncodeSettings:
    """How to encode. `quality`: MPEG-4 fixed quantiser 1 (best) .. 31; H.264 CRF 0 (best) .. 51."""

    codec: str = "mpeg4"  # "mpeg4" (MPEG-4 Part 2, coviar's format) or "h264"
    gop_size: int = 12
    quality: int = 5
    pad_multiple: int = PAD_MULTIPLE  # pad right/bottom by edge replication to this; 1 = none
    fps: float = 25.0

    def __post_init__(self) -> None:
        if self.codec not in _QUALITY_RANGE:
            raise EncodeSettingsError(f"codec must be 'mpeg4' or 'h264', got {self.codec!r}")
        if self.gop_size < 1:
            raise EncodeSettingsError(f"gop_size must be >= 1, got {self.gop_size}")
        low, high = _QUALITY_RANGE[self.codec]
        if not low <= self.quality <= high:
            raise EncodeSettingsError(
                f"quality for {self.codec} must be in {low}..{high}, got {self.quality}"
            )
        if self.pad_multiple < 1:
            raise EncodeSettingsError(f"pad_multiple must be >= 1, got {self.pad_multiple}")
        if self.fps <= 0:
            raise EncodeSettingsError(f"fps must be > 0, got {self.fps}")


@dataclass(frozen=True)
class EncodedVideo:
    """What `encode_video` wrote: crop `[:height, :width]` to undo the padding."""

    path: Path
    num_frames: int
    height: int  # size of the input frames
    width: int
    coded_height: int  # padded size stored in the stream
    coded_width: int


def encode_video(
    source: FrameSource, output: str | os.PathLike, settings: EncodeSettings = EncodeSettings()
) -> EncodedVideo:
    """Encode RGB frames (T x H x W x 3 uint8 array, list of arrays, folder of .jpg/.png
    frames sorted by name, or any video FFmpeg reads) into `output`.

    The container follows the suffix: .m4v/.cmp/.263 raw MPEG-4 Part 2, .h264/.264 raw
    H.264, .mp4/.avi/.mkv a container. The file appears atomically when complete.
    """
    output = Path(output)
    container_format = _container_format(output, settings.codec)
    frames = _checked(_rgb_frames(source), source)
    first = next(frames, None)
    if first is None:
        raise CodecError(f"{_describe(source)}: no frames to encode")
    height, width = first.shape[:2]
    coded_height, coded_width = (_round_up(size, settings.pad_multiple) for size in (height, width))
    with atomic_path(output) as temporary:
        count = _write(
            temporary, container_format, settings, (coded_height, coded_width),
            (_pad(frame, coded_height, coded_width) for frame in itertools.chain([first], frames)),
        )  # fmt: skip
    return EncodedVideo(output, count, height, width, coded_height, coded_width)


def _container_format(output: Path, codec: str) -> str:
    container_format = _FORMAT_OF_SUFFIX.get(output.suffix.lower())
    if container_format is None:
        raise CodecError(
            f"{output}: unknown video suffix; use one of {', '.join(_FORMAT_OF_SUFFIX)}"
        )
    raw_codec = _RAW_CODEC_OF_FORMAT.get(container_format)
    if raw_codec is not None and raw_codec != codec:
        raise CodecError(f"{output}: a {output.suffix} file holds {raw_codec}, not {codec}")
    if not output.parent.is_dir():
        raise CodecError(f"{output}: the folder {output.parent} does not exist")
    return container_format


def _write(
    path: Path,
    container_format: str,
    settings: EncodeSettings,
    size: tuple[int, int],
    frames: Iterator[np.ndarray],
) -> int:
    """Encode padded RGB frames into `path`; return how many were written."""
    count = 0
    try:
        with av.open(str(path), "w", format=container_format) as container:
            stream = _add_stream(container, settings, size)
            for frame in frames:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
                count += 1
            container.mux(stream.encode(None))
    except av.error.FFmpegError as err:
        raise CodecError(f"{path}: encoding with {settings.codec} failed: {err}") from err
    return count


def _add_stream(
    container: av.container.OutputContainer, settings: EncodeSettings, size: tuple[int, int]
) -> av.VideoStream:
    """A video stream with a fixed GOP, no B-frames, one reference and no scene cuts."""
    rate = Fraction(settings.fps).limit_denominator(100_000)
    if settings.codec == "mpeg4":
        stream = container.add_stream("mpeg4", rate=rate)
        stream.codec_context.qmin = stream.codec_context.qmax = settings.quality  # fixed q
        stream.codec_context.options = {"sc_threshold": "1000000000"}
    else:
        stream = container.add_stream("libx264", rate=rate)
        gop = settings.gop_size
        stream.codec_context.options = {
            "crf": str(settings.quality),
            "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes=0:ref=1",
        }
    stream.codec_context.gop_size = settings.gop_size
    stream.codec_context.max_b_frames = 0
    stream.height, stream.width = size
    stream.pix_fmt = "yuv420p"
    return stream


def _rgb_frames(source: FrameSource) -> Iterator[np.ndarray]:
    """H x W x 3 uint8 RGB frames of any supported source, lazily."""
    if isinstance(source, np.ndarray):
        if source.ndim != 4:
            raise CodecError(f"frame array: expected T x H x W x 3, got shape {source.shape}")
        return iter(source)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.is_dir():
            return _folder_frames(path)
        if path.is_file():
            return _video_frames(path)
        raise CodecError(f"{path}: no such file or folder")
    return iter(source)


def _folder_frames(folder: Path) -> Iterator[np.ndarray]:
    files = sorted(path for path in folder.iterdir() if path.suffix.lower() in FRAME_SUFFIXES)
    if not files:
        raise CodecError(f"{folder}: no {'/'.join(FRAME_SUFFIXES)} frames in the folder")
    for file in files:
        try:
            with Image.open(file) as image:
                yield np.asarray(image.convert("RGB"))
        except OSError as err:
            raise CodecError(f"{file}: cannot read the image ({err})") from err


def _video_frames(path: Path) -> Iterator[np.ndarray]:
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise CodecError(f"{path}: has no video stream")
            for frame in container.decode(container.streams.video[0]):
                yield frame.to_ndarray(format="rgb24")
    except (av.error.FFmpegError, UnicodeDecodeError) as err:
        raise CodecError(f"{path}: cannot decode the video ({err})") from err


def _checked(frames: Iterator[np.ndarray], source: FrameSource) -> Iterator[np.ndarray]:
    """Yield every frame as contiguous uint8 RGB after checking it matches the first one."""
    first_shape = None
    for index, frame in enumerate(frames):
        frame = np.ascontiguousarray(frame)
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise CodecError(
                f"{_describe(source)}: frame {index} must be H x W x 3 uint8 RGB, "
                f"got {frame.dtype} {frame.shape}"
            )
        first_shape = first_shape or frame.shape
        if frame.shape != first_shape:
            raise CodecError(
                f"{_describe(source)}: frame {index} is {frame.shape[1]}x{frame.shape[0]}, "
                f"but frame 0 is {first_shape[1]}x{first_shape[0]}"
            )
        yield frame


def _pad(frame: np.ndarray, height: int, width: int) -> np.ndarray:
    """Replicate the last row and column: H x W x 3 -> height x width x 3."""
    pad = ((0, height - frame.shape[0]), (0, width - frame.shape[1]), (0, 0))
    return np.pad(frame, pad, mode="edge") if any(p for _, p in pad) else frame


def _round_up(size: int, multiple: int) -> int:
    return -(-size // multiple) * multiple


def _describe(source: FrameSource) -> str:
    return str(source) if isinstance(source, (str, os.PathLike)) else "frames"
