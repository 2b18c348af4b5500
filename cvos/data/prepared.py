"""The prepared cache: each sequence encoded once and its compressed representations stored.

Layout: `<cache_dir>/prepared/<dataset>/<codec>-gop<G>-q<Q>/<sequence>/` holding the encoded
video, the codec's `RepresentationCache` of it (memory-mappable `.npy` arrays, int16 vectors
and residuals, at the coded size), `labels.npy` (T x H x W uint8 masks) and `meta.json`.
A sequence folder is written under a temporary name and renamed when complete, so a folder
that exists is whole; its meta.json is checked against the requested settings on every load.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from cvos.codec import CachedRepresentations, EncodeSettings, RepresentationCache, encode_video
from cvos.data.layouts import Sequence, read_frames, read_label_maps
from cvos.errors import DataError

log = logging.getLogger(__name__)

CACHE_VERSION = 1
META_FILE = "meta.json"
LABELS_FILE = "labels.npy"
REPRESENTATIONS_DIR = "representations"


@dataclass(frozen=True)
class ObjectStats:
    """How much of one annotated frame an object covers."""

    object_id: int
    area: int  # pixels
    box_area: int  # pixels of its bounding box


@dataclass
class PreparedMeta:
    """meta.json: what was prepared, with which settings, and per-frame facts the samplers need."""

    version: int
    dataset: str
    sequence: str
    settings: dict[str, Any]  # asdict(EncodeSettings)
    frame_names: list[str]
    height: int
    width: int
    picture_types: str  # one letter a frame in decode order, e.g. "IPPPPPPPPPPPIPP"
    objects: dict[int, list[ObjectStats]]  # annotated frame index -> objects in its mask

    @property
    def num_frames(self) -> int:
        return len(self.frame_names)

    def key_index(self, frame: int) -> int:
        """Index of the I-frame that starts `frame`'s GOP."""
        return self.picture_types.rindex("I", 0, frame + 1)

    def gop_index(self, frame: int) -> int:
        return self.picture_types.count("I", 0, frame + 1) - 1

    def to_json(self) -> str:
        data = asdict(self)
        data["objects"] = {str(k): [asdict(o) for o in v] for k, v in self.objects.items()}
        return json.dumps(data, indent=1)

    @classmethod
    def from_json(cls, text: str) -> PreparedMeta:
        data = json.loads(text)
        data["objects"] = {
            int(k): [ObjectStats(**o) for o in v] for k, v in data["objects"].items()
        }
        return cls(**data)


def settings_key(settings: EncodeSettings) -> str:
    """The cache folder of one codec configuration, so ablations never mix data."""
    return f"{settings.codec}-gop{settings.gop_size}-q{settings.quality}"


def video_name(codec: str) -> str:
    """Raw MPEG-4 Part 2 as coviar reads it; H.264 in an MP4 container."""
    return "video.m4v" if codec == "mpeg4" else "video.mp4"


class PreparedSequence:
    """One prepared sequence; arrays are memory-mapped on first use (and again after pickling)."""

    def __init__(self, path: Path, meta: PreparedMeta, settings: EncodeSettings) -> None:
        self.path = path
        self.meta = meta
        self.video_path = path / video_name(settings.codec)
        self._representations: CachedRepresentations | None = None
        self._labels: np.ndarray | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_representations": None, "_labels": None}  # workers map the files

    def representations(self) -> CachedRepresentations:
        """The codec's arrays of every frame (coded size), memory-mapped; extracted again only if
        the codec's cache format changed since the sequence was prepared."""
        if self._representations is None:
            cache = RepresentationCache(self.path / REPRESENTATIONS_DIR)
            self._representations = cache.get_or_extract(self.video_path)
        return self._representations

    def array(self, name: str) -> np.ndarray:
        """One representation (bgr, mv, mv_acc, residual, residual_acc) of every frame:
        T x H x W x C read-only memory map, cropped back to the frame size."""
        return getattr(self.representations(), name)[:, : self.meta.height, : self.meta.width]

    @property
    def labels(self) -> np.ndarray:
        """T x H x W uint8 label maps, 0 on frames without a mask."""
        if self._labels is None:
            self._labels = np.load(self.path / LABELS_FILE, mmap_mode="r")
        return self._labels


def check_meta(
    meta: PreparedMeta, meta_path: Path, sequence: Sequence, settings: EncodeSettings
) -> None:
    """Raise DataError when a prepared sequence does not match the settings or the dataset."""
    wanted = asdict(settings)
    if meta.version != CACHE_VERSION:
        raise DataError(
            f"{meta_path}: cache format {meta.version}, expected {CACHE_VERSION}; "
            f"delete {meta_path.parent}"
        )
    if meta.settings != wanted:
        differ = ", ".join(
            f"{k} {meta.settings.get(k)!r} != {v!r}"
            for k, v in wanted.items()
            if meta.settings.get(k) != v
        )
        raise DataError(
            f"{meta_path}: cache written with other codec settings ({differ}); "
            f"delete {meta_path.parent}"
        )
    if meta.num_frames != len(sequence.frame_names):
        raise DataError(
            f"sequence {sequence.name!r}: {sequence.frames_dir} has "
            f"{len(sequence.frame_names)} frames, but the prepared video in {meta_path.parent} "
            f"has {meta.num_frames}; delete it to prepare again"
        )
    if meta.frame_names != sequence.frame_names:
        raise DataError(
            f"sequence {sequence.name!r}: frame names in {sequence.frames_dir} "
            f"differ from {meta_path}"
        )
    if sequence.annotated_indices() != sorted(meta.objects):
        raise DataError(
            f"sequence {sequence.name!r}: the masks in {sequence.masks_dir} "
            f"changed since {meta_path}"
        )


def _is_complete(folder: Path, meta: PreparedMeta) -> bool:
    """The video and labels that meta.json promises are there (reads only the .npy header)."""
    try:
        labels = np.load(folder / LABELS_FILE, mmap_mode="r")
    except (OSError, ValueError):
        return False
    video = folder / video_name(str(meta.settings.get("codec")))
    return labels.shape == (meta.num_frames, meta.height, meta.width) and video.is_file()


def read_prepared(folder: Path) -> PreparedMeta | None:
    """The meta of a whole prepared folder, or None when the folder is missing or incomplete."""
    meta_path = folder / META_FILE
    if not meta_path.is_file():
        return None
    try:
        meta = PreparedMeta.from_json(meta_path.read_text())
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise DataError(
            f"{meta_path}: not a cvos prepared-sequence meta file ({err}); delete {folder}"
        ) from err
    return meta if _is_complete(folder, meta) else None


def open_prepared(folder: Path, sequence: Sequence, settings: EncodeSettings) -> PreparedSequence:
    """A verified prepared sequence; DataError if it is missing, partial or does not match."""
    meta = read_prepared(folder)
    if meta is None:
        raise DataError(
            f"sequence {sequence.name!r} is not prepared in {folder}; run `python -m cvos.prepare`"
        )
    check_meta(meta, folder / META_FILE, sequence, settings)
    prepared = PreparedSequence(folder, meta, settings)
    prepared.representations()  # mapped here, so forked loader workers share the mapping
    return prepared


def _object_stats(labels: np.ndarray) -> list[ObjectStats]:
    """Area and bounding-box area of every object in one H x W label map."""
    stats = []
    for object_id in np.unique(labels):
        if object_id == 0:
            continue
        ys, xs = np.nonzero(labels == object_id)
        box = (int(ys.max() - ys.min()) + 1) * (int(xs.max() - xs.min()) + 1)
        stats.append(ObjectStats(int(object_id), int(ys.size), box))
    return stats


def prepare_sequence(
    sequence: Sequence, folder: Path, settings: EncodeSettings, dataset: str
) -> None:
    """Encode one sequence and cache its representations in `folder`, atomically."""
    frames = read_frames(sequence)
    height, width = frames[0].shape[:2]
    labels = read_label_maps(sequence, height, width)
    partial = folder.parent / f".{folder.name}.partial-{uuid.uuid4().hex[:8]}"
    partial.mkdir(parents=True)
    try:
        encoded = encode_video(frames, partial / video_name(settings.codec), settings)
        representations = RepresentationCache(partial / REPRESENTATIONS_DIR).get_or_extract(
            encoded.path
        )
        if len(representations) != len(frames):
            raise DataError(
                f"sequence {sequence.name!r}: {sequence.frames_dir} has {len(frames)} frames, "
                f"but the prepared video {encoded.path} decodes to {len(representations)}"
            )
        np.save(partial / LABELS_FILE, labels)
        meta = PreparedMeta(
            version=CACHE_VERSION,
            dataset=dataset,
            sequence=sequence.name,
            settings=asdict(settings),
            frame_names=sequence.frame_names,
            height=height,
            width=width,
            picture_types="".join(representations.picture_types.tolist()),
            objects={i: _object_stats(labels[i]) for i in sequence.annotated_indices()},
        )
        (partial / META_FILE).write_text(meta.to_json())
        os.replace(partial, folder)
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def _remove_partials(folder: Path) -> None:
    """Delete the temporary folders an interrupted run left for this sequence."""
    for stale in folder.parent.glob(f".{folder.name}.partial-*"):
        shutil.rmtree(stale, ignore_errors=True)


def _unfinished(
    sequences: list[Sequence], folder: Path, settings: EncodeSettings
) -> list[Sequence]:
    """The sequences still to prepare; finished ones are verified (DataError on a mismatch)."""
    todo = []
    for sequence in sequences:
        target = folder / sequence.name
        _remove_partials(target)
        meta = read_prepared(target)
        if meta is not None:
            check_meta(meta, target / META_FILE, sequence, settings)
            continue
        if target.exists():
            log.info("redoing partially prepared %s", target)
            shutil.rmtree(target)
        todo.append(sequence)
    return todo


def _prepare_each(
    todo: list[Sequence], folder: Path, settings: EncodeSettings, dataset: str, workers: int
) -> Iterator[None]:
    """Prepare the sequences, in `workers` processes when it helps; yields as each one ends."""
    if workers <= 1 or len(todo) <= 1:
        for sequence in todo:
            yield prepare_sequence(sequence, folder / sequence.name, settings, dataset)
        return
    with ProcessPoolExecutor(max_workers=min(workers, len(todo))) as pool:
        jobs = [pool.submit(prepare_sequence, s, folder / s.name, settings, dataset) for s in todo]
        for job in as_completed(jobs):
            yield job.result()


def prepare_sequences(
    sequences: list[Sequence],
    folder: Path,
    settings: EncodeSettings,
    dataset: str,
    *,
    workers: int = 1,
    progress: bool = True,
) -> int:
    """Prepare every sequence into `folder/<name>/`, skipping verified ones; returns how many ran.

    A rerun after an interruption redoes only the sequences that were not finished.
    """
    todo = _unfinished(sequences, folder, settings)
    bar = tqdm(
        total=len(sequences),
        initial=len(sequences) - len(todo),
        desc=f"prepare {dataset}",
        unit="seq",
        disable=not (progress and todo),
    )
    with bar:
        for _ in _prepare_each(todo, folder, settings, dataset, workers):
            bar.update()
    return len(todo)
