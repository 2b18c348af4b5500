"""Bring any video into the form the reader and a network expect: a codec and fixed GOP."""

from __future__ import annotations

import os
from pathlib import Path

from cvos.codec.reader import CompressedVideo
from cvos.codec.writer import EncodeSettings, encode_video
from cvos.errors import CodecError


def is_canonical(path: str | os.PathLike, settings: EncodeSettings) -> bool:
    """True when the file has `settings.codec` and an I-frame every `gop_size` frames exactly
    (the quality a stream was encoded at cannot be read back, so it is not checked)."""
    try:
        with CompressedVideo(path) as video:
            expected = list(range(0, video.num_frames, settings.gop_size))
            return video.codec == settings.codec and video.gop_starts == expected
    except CodecError:
        return False


def canonical_video(
    path: str | os.PathLike, settings: EncodeSettings, reencoded: str | os.PathLike
) -> Path:
    """`path` itself if already canonical, else its re-encoding written to `reencoded`
    (`path` may also be a folder of .jpg/.png frames)."""
    path = Path(path)
    if not path.exists():
        raise CodecError(f"{path}: no such video file or folder of frames")
    if path.is_file() and is_canonical(path, settings):
        return path
    return encode_video(path, reencoded, settings).path
