"""On-disk cache of every representation of a video, memory-mapped when read.

One folder per entry, named by a hash of the video's bytes and of the extraction
format, holding one .npy file per array. An entry is built in a temporary folder
and renamed into place when complete (`cvos.files.atomic_path`), so a crash never
leaves a partial entry that a later run would read.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cvos.codec.reader import CompressedFrame, CompressedVideo
from cvos.errors import CodecError
from cvos.files import atomic_path

EXTRACTION_FORMAT = {"version": 1, "image": "bgr24 uint8", "motion": "int16", "residual": "int16"}
"""Part of every key: change it whenever what is stored changes."""

_INT16_LIMIT = np.iinfo(np.int16).max


@dataclass(frozen=True)
class CachedRepresentations:
    """All frames of one video; arrays are read-only memory maps of the cache files."""

    folder: Path
    bgr: np.ndarray  # T x H x W x 3 uint8
    mv: np.ndarray  # T x H x W x 2 int16, (dx, dy) relative to the previous frame
    mv_acc: np.ndarray  # T x H x W x 2 int16, back to the GOP's I-frame
    residual: np.ndarray  # T x H x W x 3 int16 BGR
    residual_acc: np.ndarray  # T x H x W x 3 int16 BGR
    picture_types: np.ndarray  # T, "<U1": "I" or "P"
    gop_index: np.ndarray  # T int32
    gop_position: np.ndarray  # T int32

    def __len__(self) -> int:
        return len(self.picture_types)


_ARRAYS = [spec.name for spec in dataclasses.fields(CachedRepresentations)][1:]


class RepresentationCache:
    """Extract a video's representations once into `root`, then memory-map them."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)

    def key(self, video_path: str | os.PathLike) -> str:
        """Hash of the extraction format and of the video file's bytes."""
        digest = hashlib.sha256(json.dumps(EXTRACTION_FORMAT, sort_keys=True).encode())
        try:
            with Path(video_path).open("rb") as file:
                while chunk := file.read(1 << 20):
                    digest.update(chunk)
        except OSError as err:
            raise CodecError(f"{video_path}: cannot read the video ({err})") from err
        return digest.hexdigest()

    def get_or_extract(self, video_path: str | os.PathLike) -> CachedRepresentations:
        """The cached representations of `video_path`, extracting them on the first call."""
        folder = self.root / self.key(video_path)
        if not folder.is_dir():
            self._extract(Path(video_path), folder)
        return _open_entry(folder)

    def _extract(self, video_path: Path, folder: Path) -> None:
        """Write every array into a temporary folder, then rename it to `folder`."""
        try:
            with atomic_path(folder) as temporary:
                temporary.mkdir()
                with CompressedVideo(video_path) as video:
                    if max(video.height, video.width) > _INT16_LIMIT:
                        raise CodecError(f"{video_path}: frames too large for int16 motion vectors")
                    arrays = _create_arrays(temporary, len(video), video.height, video.width)
                    for frame in video:
                        _store(arrays, frame)
                    for array in arrays.values():
                        array.flush()
        except OSError:
            if not folder.is_dir():  # a concurrent run publishing the same entry first is fine
                raise


def _create_arrays(folder: Path, frames: int, height: int, width: int) -> dict[str, np.memmap]:
    """Writable .npy memory maps, one per field of CachedRepresentations."""
    layout = {
        "bgr": ((frames, height, width, 3), np.uint8),
        "mv": ((frames, height, width, 2), np.int16),
        "mv_acc": ((frames, height, width, 2), np.int16),
        "residual": ((frames, height, width, 3), np.int16),
        "residual_acc": ((frames, height, width, 3), np.int16),
        "picture_types": ((frames,), np.dtype("<U1")),
        "gop_index": ((frames,), np.int32),
        "gop_position": ((frames,), np.int32),
    }
    return {
        name: np.lib.format.open_memmap(folder / f"{name}.npy", "w+", dtype, shape)
        for name, (shape, dtype) in layout.items()
    }


def _store(arrays: dict[str, np.memmap], frame: CompressedFrame) -> None:
    index = frame.index
    arrays["bgr"][index] = frame.bgr
    arrays["mv"][index] = frame.mv
    arrays["mv_acc"][index] = frame.mv_acc
    arrays["residual"][index] = frame.residual
    arrays["residual_acc"][index] = frame.residual_acc
    arrays["picture_types"][index] = frame.picture_type.value
    arrays["gop_index"][index] = frame.gop_index
    arrays["gop_position"][index] = frame.gop_position


def _open_entry(folder: Path) -> CachedRepresentations:
    try:
        arrays = {name: np.load(folder / f"{name}.npy", mmap_mode="r") for name in _ARRAYS}
    except (OSError, ValueError) as err:
        raise CodecError(
            f"{folder}: unreadable cache entry ({err}); delete the folder to rebuild it"
        ) from err
    return CachedRepresentations(folder, **arrays)
