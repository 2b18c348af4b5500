"""Dataset layouts read as they ship: DAVIS 2016, DAVIS 2017 (and the synthetic set), YouTube-VOS.

Listing a split checks only what is cheap (folders, file names, split files); the pixels of
frames and masks are checked when a sequence is prepared (`read_frames`, `read_label_maps`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from cvos.errors import DataError
from cvos.masks import read_label_png

FRAME_SUFFIX = ".jpg"
MASK_SUFFIX = ".png"


@dataclass
class Sequence:
    """One video as a layout describes it: where its frames and masks are, in temporal order."""

    name: str
    frames_dir: Path
    frame_names: list[str]  # names without extension, in temporal order
    masks_dir: Path
    annotated: list[str]  # frame names that have a mask file, in temporal order
    binary_masks: bool = False  # DAVIS 2016: 0/255 masks of one object; otherwise object ids

    def frame_path(self, frame_name: str) -> Path:
        return self.frames_dir / f"{frame_name}{FRAME_SUFFIX}"

    def mask_path(self, frame_name: str) -> Path:
        return self.masks_dir / f"{frame_name}{MASK_SUFFIX}"

    def annotated_indices(self) -> list[int]:
        """Indices (into frame_names) of the frames that have a mask."""
        have = set(self.annotated)
        return [i for i, frame_name in enumerate(self.frame_names) if frame_name in have]


def _stems(folder: Path, suffix: str) -> list[str]:
    """Sorted names (without `suffix`) of the files in `folder` that end with it."""
    return sorted(p.name[: -len(suffix)] for p in folder.iterdir() if p.name.endswith(suffix))


def _listed_folder(listing: Path, name: str, folder: Path) -> Path:
    """The frame folder of a sequence that `listing` (a split or meta file) names; it must exist."""
    if not folder.is_dir():
        raise DataError(f"{listing} names sequence {name!r}, but {folder} does not exist")
    return folder


def _scan(name: str, frames_dir: Path, masks_dir: Path, *, binary_masks: bool = False) -> Sequence:
    """A sequence from its two folders; every mask must belong to a frame."""
    frames = _stems(frames_dir, FRAME_SUFFIX)
    if not frames:
        raise DataError(f"sequence {name!r}: no {FRAME_SUFFIX} frames in {frames_dir}")
    if not masks_dir.is_dir():
        raise DataError(f"sequence {name!r}: mask folder {masks_dir} does not exist")
    masks = _stems(masks_dir, MASK_SUFFIX)
    orphans = sorted(set(masks) - set(frames))
    if orphans:
        raise DataError(
            f"sequence {name!r}: mask {masks_dir / (orphans[0] + MASK_SUFFIX)} "
            f"has no frame in {frames_dir}"
        )
    return Sequence(name, frames_dir, frames, masks_dir, masks, binary_masks)


def _check_contiguous(sequence: Sequence) -> None:
    """DAVIS numbers its frames 0..N-1; a gap means a frame file is missing."""
    for index, frame_name in enumerate(sequence.frame_names):
        if not frame_name.isdigit() or int(frame_name) != index:
            missing = sequence.frames_dir / f"{index:05d}{FRAME_SUFFIX}"
            raise DataError(
                f"sequence {sequence.name!r}: frame {missing} is missing "
                f"(found {frame_name}{FRAME_SUFFIX})"
            )


def _require_masks(sequence: Sequence, frame_names: list[str]) -> None:
    """Raise if any of `frame_names` has no mask file."""
    have = set(sequence.annotated)
    for frame_name in frame_names:
        if frame_name not in have:
            raise DataError(
                f"sequence {sequence.name!r}: mask {sequence.mask_path(frame_name)} is missing"
            )


def _read_split_lines(path: Path) -> list[str]:
    """Non-empty, stripped lines of a split file."""
    if not path.is_file():
        raise DataError(f"split file {path} does not exist")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def list_davis2016(root: Path, split: str, resolution: str = "480p") -> list[Sequence]:
    """Sequences of `ImageSets/<res>/<split>.txt` (lines `/JPEGImages/... /Annotations/...`)."""
    split_file = root / "ImageSets" / resolution / f"{split}.txt"
    listed: dict[str, list[str]] = {}  # sequence -> frame names, in file order
    for number, line in enumerate(_read_split_lines(split_file), start=1):
        parts = line.split()
        if len(parts) != 2:
            raise DataError(
                f"{split_file}:{number}: expected '<frame path> <mask path>', got {line!r}"
            )
        frame = Path(parts[0])
        listed.setdefault(frame.parent.name, []).append(frame.stem)
    sequences = []
    for name, frames in listed.items():
        frames_dir = _listed_folder(split_file, name, root / "JPEGImages" / resolution / name)
        sequence = _scan(
            name, frames_dir, root / "Annotations" / resolution / name, binary_masks=True
        )
        _check_contiguous(sequence)
        missing = sorted(set(frames) - set(sequence.frame_names))
        if missing:
            raise DataError(
                f"split file {split_file} lists frame {sequence.frame_path(missing[0])}, "
                "which is missing"
            )
        _require_masks(sequence, sequence.frame_names)
        sequences.append(sequence)
    return sequences


def list_davis2017(root: Path, split: str, resolution: str = "480p") -> list[Sequence]:
    """Sequences of `ImageSets/2017/<split>.txt` (one name a line); first frames need a mask."""
    split_file = root / "ImageSets" / "2017" / f"{split}.txt"
    sequences = []
    for name in _read_split_lines(split_file):
        frames_dir = _listed_folder(split_file, name, root / "JPEGImages" / resolution / name)
        sequence = _scan(name, frames_dir, root / "Annotations" / resolution / name)
        _check_contiguous(sequence)
        _require_masks(sequence, sequence.frame_names[:1])
        sequences.append(sequence)
    return sequences


def list_ytvos(root: Path, split: str) -> list[Sequence]:
    """Videos of `<split>/meta.json`; each object's first listed frame must have a mask."""
    meta_file = root / split / "meta.json"
    if not meta_file.is_file():
        raise DataError(f"YouTube-VOS meta file {meta_file} does not exist")
    try:
        videos = json.loads(meta_file.read_text())["videos"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise DataError(
            f"{meta_file}: not a YouTube-VOS meta.json with a 'videos' entry ({err})"
        ) from err
    sequences = []
    for name in sorted(videos):
        frames_dir = _listed_folder(meta_file, name, root / split / "JPEGImages" / name)
        sequence = _scan(name, frames_dir, root / split / "Annotations" / name)
        objects = videos[name].get("objects", {}).values()
        _require_masks(sequence, sorted({obj["frames"][0] for obj in objects if obj.get("frames")}))
        sequences.append(sequence)
    return sequences


LAYOUTS: dict[str, Callable[[Path, str], list[Sequence]]] = {
    "davis2016": list_davis2016,
    "davis2017": list_davis2017,
    "ytvos": list_ytvos,
}


def list_sequences(layout: str, root: Path, split: str) -> list[Sequence]:
    """The sequences of one split of a dataset in `layout` (a key of `LAYOUTS`)."""
    if layout not in LAYOUTS:
        raise DataError(f"unknown dataset layout {layout!r}; expected one of {sorted(LAYOUTS)}")
    if not root.is_dir():
        raise DataError(f"dataset folder {root} does not exist")
    return LAYOUTS[layout](root, split)


def read_frames(sequence: Sequence) -> list[np.ndarray]:
    """Every frame as H x W x 3 uint8 RGB; all frames must share one size."""
    frames = []
    for frame_name in sequence.frame_names:
        path = sequence.frame_path(frame_name)
        try:
            with Image.open(path) as image:
                frame = np.asarray(image.convert("RGB"))
        except OSError as err:
            raise DataError(
                f"sequence {sequence.name!r}: cannot read frame {path} ({err})"
            ) from err
        if frames and frame.shape != frames[0].shape:
            raise DataError(
                f"frame {path} is {_size(frame)}, "
                f"but the sequence's first frame is {_size(frames[0])}"
            )
        frames.append(frame)
    return frames


def read_label_maps(sequence: Sequence, height: int, width: int) -> np.ndarray:
    """T x H x W uint8 label maps (0 on frames without a mask); checks size and the first mask."""
    if not sequence.annotated:
        raise DataError(
            f"sequence {sequence.name!r}: no {MASK_SUFFIX} masks in {sequence.masks_dir}"
        )
    labels = np.zeros((len(sequence.frame_names), height, width), np.uint8)
    index = {frame_name: i for i, frame_name in enumerate(sequence.frame_names)}
    for frame_name in sequence.annotated:
        path = sequence.mask_path(frame_name)
        mask = read_label_png(path)
        if sequence.binary_masks:
            mask = (mask > 0).astype(np.uint8)
        if mask.shape != (height, width):
            raise DataError(f"mask {path} is {_size(mask)}, but its frame is {width}x{height}")
        labels[index[frame_name]] = mask
    first = sequence.annotated[0]
    if not labels[index[first]].any():
        raise DataError(
            f"sequence {sequence.name!r}: first mask {sequence.mask_path(first)} "
            "is empty (no object)"
        )
    return labels


def _size(array: np.ndarray) -> str:
    return f"{array.shape[1]}x{array.shape[0]}"
