"""Read a compressed video once: decoded images, motion vectors and residuals per frame.

The file is demuxed once when opened (no decoding) to index its packets: byte
offset, size and whether it starts a GOP. Decoding then reads packets straight
from those offsets into a fresh decoder, so iterating decodes every frame exactly
once and `gop(k)` starts at GOP k's I-frame without touching the frames before it,
for raw elementary streams (which have no index) as well as for containers.

Work is split over two threads: a background thread decodes the next frame and
builds its image and motion vectors (plain and accumulated) while the caller works
on the current one. The residuals, which many callers do not need, are computed on
first access, on the caller's thread. The per-pixel loops are compiled
(`cvos.codec.motion`) and release the GIL, so the two threads run in parallel.
`gop_steps` decodes without a thread and converts a frame's image only when the caller
materialises that frame: a training stream passes over most frames of a GOP (their motion still
feeds the accumulation) and never needs their images.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import Enum
from functools import cached_property
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from cvos.codec.h264 import max_reference_frames
from cvos.codec.motion import (
    RECORD_FIELDS,
    accumulate_records,
    paint_motion,
    reuse_freed_memory,
    subtract_warped,
    subtract_warped_at,
)
from cvos.codec.readahead import read_ahead
from cvos.errors import CodecError, CodecIndexError

SUPPORTED_CODECS = ("mpeg4", "h264")
_REENCODE_HINT = "re-encode it with cvos.codec.encode_video (one reference frame, no B-frames)"


class PictureType(str, Enum):
    I = "I"  # noqa: E741 - the codec's name for intra pictures
    P = "P"


class Picture:
    """A decoded picture whose BGR image is converted on first use (~0.2 ms at 480p), then kept.

    Holding the decoded frame keeps its buffer from the decoder's pool, which hands out another.
    """

    def __init__(self, decoded: av.VideoFrame | None, convert: BGRConverter | None) -> None:
        self._decoded, self._convert = decoded, convert
        self._bgr: np.ndarray | None = None

    @classmethod
    def of(cls, bgr: np.ndarray) -> Picture:
        """A picture whose image is at hand already."""
        picture = cls(None, None)
        picture._bgr = bgr
        return picture

    @property
    def bgr(self) -> np.ndarray:
        """H x W x 3 uint8 BGR at the coded size."""
        if self._bgr is None:
            self._bgr = self._convert(self._decoded)
            self._decoded = self._convert = None  # the decoder's buffer goes back to its pool
        return self._bgr


@dataclass(eq=False)
class CompressedFrame:
    """One decoded frame with its compressed-domain representations (coviar conventions).

    `residual` and `residual_acc` are computed on first access: many users need only one.
    """

    index: int  # decode-order frame index in the file (0-based)
    gop_index: int
    gop_position: int  # 0 at the I-frame
    picture_type: PictureType
    bgr: np.ndarray  # H x W x 3 uint8, FFmpeg's bgr24 conversion, coded (padded) size
    mv: np.ndarray  # H x W x 2 int32, (dx, dy) = dst - src relative to the previous frame
    mv_acc: np.ndarray  # H x W x 2 int32, total displacement back to the GOP's I-frame
    reference: Picture = field(repr=False)  # the previous frame, the reference of `mv`
    iframe_bgr: np.ndarray = field(repr=False)  # H x W x 3 uint8, the reference of `mv_acc`
    _sampled_residual: bool = field(default=False, init=False, repr=False)  # residual_acc_at

    @classmethod
    def from_arrays(
        cls,
        index: int,
        gop_index: int,
        gop_position: int,
        picture_type: PictureType,
        bgr: np.ndarray,
        mv: np.ndarray,
        mv_acc: np.ndarray,
        residual: np.ndarray,
        residual_acc: np.ndarray,
    ) -> CompressedFrame:
        """A frame from representations computed earlier (a cache entry, a crop of a frame)."""
        own = Picture.of(bgr)
        frame = cls(index, gop_index, gop_position, picture_type, bgr, mv, mv_acc, own, bgr)
        # Fill the cached properties: the reference images are then never read.
        frame.__dict__.update(residual=residual, residual_acc=residual_acc)
        return frame

    def cropped(self, height: int, width: int) -> CompressedFrame:
        """The top-left `height x width` of every representation: undoes the writer's padding.

        Residuals stay lazy: each is computed at the coded size on first access (vectors may
        point into the padding), then cropped; callers often need only one of them.
        """
        if (height, width) == self.bgr.shape[:2]:
            return self
        crop = (slice(0, height), slice(0, width))
        position = (self.index, self.gop_index, self.gop_position, self.picture_type)
        arrays = (self.bgr[crop], self.mv[crop], self.mv_acc[crop])
        return _CroppedFrame(*position, *arrays, self.reference, self.iframe_bgr, self, crop)

    @property
    def rgb(self) -> np.ndarray:
        """H x W x 3 uint8 RGB view of `bgr`."""
        return self.bgr[..., ::-1]

    @cached_property
    def residual(self) -> np.ndarray:
        """H x W x 3 int32 BGR: `cur[y, x] - prev[y - dy, x - dx]`."""
        return subtract_warped(self.bgr, self.reference.bgr, self.mv)

    @cached_property
    def residual_acc(self) -> np.ndarray:
        """H x W x 3 int32 BGR: `cur[y, x] - iframe[y - acc_dy, x - acc_dx]`."""
        return subtract_warped(self.bgr, self.iframe_bgr, self.mv_acc)

    def residual_acc_at(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray | None:
        """h x w x 3 int32 BGR `residual_acc[rows][:, cols]` (int32 pixel indices inside the
        frame), computed at those pixels alone: a sampler that reads a third of a frame's
        pixels pays about two thirds of the full residual (scattered reads). None when
        `residual_acc` is at hand (given, or computed already): reading it costs less. A frame
        asked a second time computes its full residual (and returns None): a frame that several
        samplers read (the one before an I-frame, in every training sample of its GOP) pays
        for the full residual once."""
        if "residual_acc" not in self.__dict__ and not self._sampled_residual:
            self._sampled_residual = True
            return subtract_warped_at(self.bgr, self.iframe_bgr, self.mv_acc, rows, cols)
        self.residual_acc  # noqa: B018 - computed now, if it was not
        return None


@dataclass(eq=False)
class _CroppedFrame(CompressedFrame):
    """A frame cropped to its original size whose residuals are cropped from the coded frame's."""

    uncropped: CompressedFrame = field(repr=False)
    crop: tuple[slice, slice] = field(repr=False)

    @cached_property
    def residual(self) -> np.ndarray:
        return self.uncropped.residual[self.crop]

    @cached_property
    def residual_acc(self) -> np.ndarray:
        return self.uncropped.residual_acc[self.crop]

    def residual_acc_at(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray | None:
        for name, indices, size in (
            ("rows", rows, self.bgr.shape[0]),
            ("cols", cols, self.bgr.shape[1]),
        ):
            if indices.size and indices.max() >= size:  # in the coded frame's padding
                raise ValueError(f"{name}: expected int32 pixel indices in 0..{size - 1}")
        if "residual_acc" in self.__dict__:
            return None
        return self.uncropped.residual_acc_at(rows, cols)  # the crop keeps pixel indices


@dataclass(eq=False)
class DecodedStep:
    """One decoded frame of a GOP with its accumulated motion, its image not converted and its
    plain vectors not painted yet: `frame` materialises it as a `CompressedFrame`."""

    index: int
    gop_index: int
    gop_position: int
    picture_type: PictureType
    picture: Picture
    records: np.ndarray = field(repr=False)  # FFmpeg's motion records (none at the I-frame)
    mv_acc: np.ndarray  # H x W x 2 int32
    reference: Picture = field(repr=False)  # the previous frame's (its own at the I-frame)
    iframe: Picture = field(repr=False)

    @cached_property
    def mv(self) -> np.ndarray:
        """H x W x 2 int32 plain vectors, painted from the records."""
        return paint_motion(self.records, *self.mv_acc.shape[:2])

    @cached_property
    def frame(self) -> CompressedFrame:
        position = (self.index, self.gop_index, self.gop_position, self.picture_type)
        bgr, iframe_bgr = self.picture.bgr, self.iframe.bgr
        return CompressedFrame(*position, bgr, self.mv, self.mv_acc, self.reference, iframe_bgr)


class BGRConverter:
    """FFmpeg's bgr24 conversion of decoded frames, reusing one conversion context.

    `frame.to_ndarray(format="bgr24")` gives the same pixels but builds a swscale
    context (and a thread pool) for every frame, which costs more than converting.
    """

    def __init__(self) -> None:
        self._reformatter = VideoReformatter()

    def __call__(self, frame: av.VideoFrame) -> np.ndarray:
        """H x W x 3 uint8 BGR, C-contiguous."""
        converted = self._reformatter.reformat(frame, format="bgr24", threads=1)
        return np.ascontiguousarray(converted.to_ndarray())


@dataclass(frozen=True)
class _PacketIndex:
    """Where each packet of the video stream lies in the file, in decode order."""

    offsets: np.ndarray  # T int64 byte offsets
    sizes: np.ndarray  # T int64
    gop_starts: np.ndarray  # G intp: packet number of each GOP's I-frame

    def gop_of(self, index: int) -> int:
        return int(np.searchsorted(self.gop_starts, index, side="right")) - 1

    def gop_span(self, gop_index: int) -> tuple[int, int]:
        """[first, stop) packet numbers of one GOP."""
        stop = self.gop_starts[gop_index + 1] if gop_index + 1 < self.gop_starts.size else None
        return int(self.gop_starts[gop_index]), int(self.offsets.size if stop is None else stop)


class CompressedVideo:
    """An MPEG-4 Part 2 or H.264 video (one reference frame, no B-frames), read frame by frame.

    Iterating yields every frame in decode order, each decoded once; `gop(k)` decodes
    only GOP k. `decoded_frame_count` counts the frames decoded so far.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        reuse_freed_memory()  # each frame's arrays then reuse the last one's memory
        self.path = Path(path)
        if not self.path.is_file():
            raise CodecError(f"{self.path}: no such video file")
        with _open_container(self.path) as container:
            stream = _video_stream(container, self.path)
            self.codec: str = stream.codec_context.name
            self.height: int = stream.codec_context.height
            self.width: int = stream.codec_context.width
            self._extradata: bytes | None = stream.codec_context.extradata
            self._packets = _index_packets(container, stream, self.path)
        self._closed = False
        self._check_references()
        self.num_frames: int = int(self._packets.offsets.size)
        self.num_gops: int = int(self._packets.gop_starts.size)
        self.decoded_frame_count = 0

    @property
    def gop_starts(self) -> list[int]:
        """Decode-order index of every GOP's I-frame (from the packet index: nothing is decoded)."""
        return [int(start) for start in self._packets.gop_starts]

    def __len__(self) -> int:
        return self.num_frames

    def __iter__(self) -> Iterator[CompressedFrame]:
        """Every frame of the video in decode order."""
        return self._frames(0, self.num_frames)

    def gop(self, gop_index: int) -> list[CompressedFrame]:
        """The frames of one GOP, decoded from its I-frame only."""
        self._check_gop(gop_index)
        return list(self._frames(*self._packets.gop_span(gop_index)))

    def gop_steps(self, gop_index: int) -> Iterator[DecodedStep]:
        """The frames of one GOP as decoding steps, each decoded when the caller asks for it (no
        read-ahead); a step's image is converted only if its `frame` is read.

        For callers that stop early, pass over frames or keep several GOPs open at once
        (training samples): nothing past the last step asked for is decoded.
        """
        self._check_gop(gop_index)
        return self._steps(*self._packets.gop_span(gop_index))

    def gop_pictures(self, gop_index: int) -> Iterator[Picture]:
        """The picture of each frame of one GOP, decoded when asked for, without motion vectors
        or residuals: `frame.bgr` of the same frames once converted, at the cost of a decode."""
        self._check_gop(gop_index)
        first, stop = self._packets.gop_span(gop_index)
        to_bgr = BGRConverter()
        for index, decoded in zip(range(first, stop), self._decode(first, stop), strict=True):
            self._picture_type(index, decoded)
            yield Picture(decoded, to_bgr)

    def frame(self, gop_index: int, gop_position: int) -> CompressedFrame:
        """One frame, decoding its GOP from the I-frame up to it (what coviar does per call)."""
        self._check_gop(gop_index)
        first, stop = self._packets.gop_span(gop_index)
        if not 0 <= gop_position < stop - first:
            raise CodecIndexError(
                f"{self.path}: frame {gop_position} is out of range for GOP {gop_index}, "
                f"which has {stop - first} frames"
            )
        *_, target = self._frames(first, first + gop_position + 1)
        return target

    def close(self) -> None:
        """Refuse further decoding (each decoding run opens and closes the file itself)."""
        self._closed = True

    def __enter__(self) -> CompressedVideo:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _check_gop(self, gop_index: int) -> None:
        if not 0 <= gop_index < self.num_gops:
            raise CodecIndexError(
                f"{self.path}: GOP {gop_index} is out of range; the video has {self.num_gops} "
                f"GOPs (0..{self.num_gops - 1})"
            )

    def _check_references(self) -> None:
        """Reject H.264 streams that may predict from more than the previous frame."""
        if self.codec != "h264":
            return
        with self.path.open("rb") as file:
            first_packet = self._read_packet(file, 0)
        try:
            references = max_reference_frames(self._extradata or bytes(first_packet))
        except IndexError as err:
            raise CodecError(f"{self.path}: corrupt H.264 sequence parameter set") from err
        if references is not None and references > 1:
            raise CodecError(
                f"{self.path}: the H.264 stream may use {references} reference frames, "
                f"but motion vectors can only be traced back with 1; {_REENCODE_HINT}"
            )

    def _frames(self, first: int, stop: int) -> Iterator[CompressedFrame]:
        """Frames of packets [first, stop) (first is an I-frame), built one step ahead."""
        return read_ahead(self._build_frames(first, stop))

    def _build_frames(self, first: int, stop: int) -> Iterator[CompressedFrame]:
        """The background thread's work: decode, convert, paint and accumulate each frame."""
        for step in self._steps(first, stop):
            yield step.frame

    def _steps(self, first: int, stop: int) -> Iterator[DecodedStep]:
        """Decode each frame and trace its motion; images are converted when asked for."""
        to_bgr, previous = BGRConverter(), None
        for index, decoded in zip(range(first, stop), self._decode(first, stop), strict=True):
            picture_type = self._picture_type(index, decoded)
            gop_index = self._packets.gop_of(index)
            position = (index, gop_index, index - int(self._packets.gop_starts[gop_index]))
            picture = Picture(decoded, to_bgr)
            if picture_type is PictureType.I:
                records = np.empty(0, _RECORD_DTYPE)
                mv_acc = np.zeros((decoded.height, decoded.width, 2), np.int32)
                reference = iframe = picture
            else:
                records = _motion_records(decoded)
                mv_acc = accumulate_records(records, previous.mv_acc)
                reference, iframe = previous.picture, previous.iframe
            step = DecodedStep(*position, picture_type, picture, records, mv_acc, reference, iframe)
            yield step
            previous = step

    def _picture_type(self, index: int, decoded: av.VideoFrame) -> PictureType:
        """Check the decoded picture against the packet index and what we support."""
        if decoded.is_corrupt:
            raise CodecError(f"{self.path}: corrupt or truncated bitstream at frame {index}")
        name = av.video.frame.PictureType(decoded.pict_type).name
        if name == "B":
            raise CodecError(f"{self.path}: frame {index} is a B-frame; {_REENCODE_HINT}")
        if name not in ("I", "P"):
            raise CodecError(f"{self.path}: frame {index} has unsupported picture type {name}")
        starts_gop = index in self._packets.gop_starts
        if (name == "I") != starts_gop:
            raise CodecError(
                f"{self.path}: frame {index} is an {name}-frame but its packet is "
                f"{'' if starts_gop else 'not '}marked as a keyframe; {_REENCODE_HINT}"
            )
        return PictureType(name)

    def _decode(self, first: int, stop: int) -> Iterator[av.VideoFrame]:
        """Decoded frames of packets [first, stop), read from their byte offsets."""
        if self._closed:
            raise CodecError(f"{self.path}: the video was closed")
        decoder = av.CodecContext.create(self.codec, "r")
        decoder.extradata = self._extradata
        decoder.options = {"flags2": "+export_mvs", "err_detect": "+explode"}
        produced = 0
        with self.path.open("rb") as file:
            for number in [*range(first, stop), None]:
                packet = None if number is None else self._read_packet(file, number)
                try:
                    frames = decoder.decode(packet)
                except av.error.FFmpegError as err:
                    where = "at its end" if number is None else f"at frame {number}"
                    raise CodecError(
                        f"{self.path}: corrupt or truncated bitstream {where}: {err}"
                    ) from err
                for frame in frames:
                    produced += 1
                    self.decoded_frame_count += 1
                    yield frame
        if produced != stop - first:
            raise CodecError(
                f"{self.path}: truncated or corrupt bitstream: packets {first}..{stop - 1} "
                f"decoded to {produced} frames"
            )

    def _read_packet(self, file: BinaryIO, number: int) -> av.Packet:
        """Read one packet from its byte offset.

        The bytes go into a packet that PyAV allocates (`av.Packet(size)`), because
        FFmpeg decoders read past the end of the data and need its zeroed padding;
        `av.Packet(some_bytes)` has none and decodes garbage now and then.
        """
        size = int(self._packets.sizes[number])
        packet = av.Packet(size)
        file.seek(int(self._packets.offsets[number]))
        if file.readinto(memoryview(packet)) != size:
            raise CodecError(f"{self.path}: truncated file, packet {number} is incomplete")
        return packet


def _open_container(path: Path) -> av.container.InputContainer:
    try:
        return av.open(str(path), "r")
    except (av.error.FFmpegError, UnicodeDecodeError) as err:
        raise CodecError(f"{path}: not a video file FFmpeg can read ({err})") from err


def _video_stream(container: av.container.InputContainer, path: Path) -> av.VideoStream:
    if not container.streams.video:
        kinds = ", ".join(stream.type for stream in container.streams) or "no streams"
        raise CodecError(f"{path}: has no video stream ({kinds})")
    stream = container.streams.video[0]
    name = stream.codec_context.name
    if name not in SUPPORTED_CODECS:
        raise CodecError(
            f"{path}: video codec {name!r} is not supported (only {', '.join(SUPPORTED_CODECS)}); "
            f"{_REENCODE_HINT}"
        )
    if stream.codec_context.width <= 0 or stream.codec_context.height <= 0:
        raise CodecError(f"{path}: not a decodable video (no frame size in the stream)")
    if stream.codec_context.has_b_frames:
        raise CodecError(f"{path}: the stream has B-frames; {_REENCODE_HINT}")
    return stream


def _index_packets(
    container: av.container.InputContainer, stream: av.VideoStream, path: Path
) -> _PacketIndex:
    """Demux every packet once (no decoding) and find where its bytes lie in the file."""
    offsets, sizes, gop_starts = [], [], []
    try:
        with path.open("rb") as file:
            for packet in container.demux(stream):
                if packet.size == 0:  # the demuxer's end-of-stream marker
                    continue
                if packet.is_keyframe:
                    gop_starts.append(len(offsets))
                offsets.append(_payload_offset(file, packet, container.format.name, path))
                sizes.append(packet.size)
    except av.error.FFmpegError as err:
        raise CodecError(f"{path}: corrupt container, cannot read its packets ({err})") from err
    if not offsets:
        raise CodecError(f"{path}: the video stream has no frames")
    if not gop_starts or gop_starts[0] != 0:
        raise CodecError(f"{path}: the video does not start with an I-frame; {_REENCODE_HINT}")
    return _PacketIndex(
        np.asarray(offsets, np.int64), np.asarray(sizes, np.int64), np.asarray(gop_starts, np.intp)
    )


_HEADER_SLACK = 64
"""Containers report a packet's position at its block or chunk header (Matroska, AVI):
its bytes start at most this far after it."""


def _payload_offset(file: BinaryIO, packet: av.Packet, format_name: str, path: Path) -> int:
    """Byte offset where the packet's data lies verbatim in the file."""
    data = bytes(packet)
    if packet.pos >= 0:
        file.seek(packet.pos)
        found = file.read(packet.size + _HEADER_SLACK).find(data)
        if found >= 0:
            return packet.pos + found
    raise CodecError(
        f"{path}: the {format_name} format does not store packets verbatim at known offsets; "
        f"{_REENCODE_HINT}"
    )


_RECORD_DTYPE = np.dtype(  # the fields of FFmpeg's records that the painting reads
    [(name, "u1") for name in RECORD_FIELDS[:2]] + [(name, "<i2") for name in RECORD_FIELDS[2:]]
)


def _motion_records(decoded: av.VideoFrame) -> np.ndarray:
    """FFmpeg's motion-vector records of a frame (structured array; empty if none exported)."""
    vectors = decoded.side_data.get("MOTION_VECTORS")
    if vectors is None:
        return np.empty(0, _RECORD_DTYPE)
    return vectors.to_ndarray()
