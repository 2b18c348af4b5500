"""The prepared form of a dataset: each sequence encoded once; the compressed video is the data.

Layout: `<cache_dir>/prepared/<dataset>/<codec>-gop<G>-q<Q>/<sequence>/` holding
- the encoded video (`video.m4v`; `video.mp4` for H.264): training and evaluation decode every
  representation from it, GOP by GOP (`cvos.data.sources.VideoFrames`), ~24 KB a 480p frame;
- `labels.npz`: the label map of each annotated frame, run-length coded (`LabelRuns`): a map
  decodes in 0.05 ms at 480p where inflating it took 1 ms;
- `meta.json`: settings, frame names, size, picture types and object statistics;
- with `arrays=True` only, `representations/`: the codec's `RepresentationCache` of the video,
  every decoded array memory-mapped (~10 MB a 480p frame; the format-1 cache).
A sequence folder is written under a temporary name and renamed when complete
(`cvos.files.atomic_path`), so a folder that exists is whole; its meta.json is checked against
the requested settings and the dataset on every load, and its format against `CACHE_VERSION`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import zipfile
from collections import OrderedDict
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from cvos.codec import (
    CachedRepresentations,
    CompressedVideo,
    EncodeSettings,
    RepresentationCache,
    encode_video,
)
from cvos.data.layouts import Sequence, read_frames, read_label_maps
from cvos.errors import CodecError, DataError
from cvos.files import atomic_path, write_text

log = logging.getLogger(__name__)

CACHE_VERSION = 3
FORMATS = {
    1: "every decoded representation as arrays, ~10 MB a 480p frame",
    2: "the encoded video and compressed labels, ~30 KB a 480p frame",
    3: "the encoded video and run-length labels, ~26 KB a 480p frame",
}
META_FILE = "meta.json"
LABELS_FILE = "labels.npz"
REPRESENTATIONS_DIR = "representations"
LABEL_CACHE = 16  # label maps a process keeps decoded (a sample reads 4, often the same)


class _LabelMaps:
    """The label maps this process keeps decoded, of all sequences together (the last
    LABEL_CACHE read). Kept per sequence, a loader worker would hold LABEL_CACHE maps of every
    training sequence it has met: 300 MB for DAVIS's 24 at 480p, each page of it a fault."""

    def __init__(self) -> None:
        self._process = os.getpid()
        self._maps: OrderedDict[tuple[Path, int], np.ndarray] = OrderedDict()

    def get(self, key: tuple[Path, int]) -> np.ndarray | None:
        if self._process != os.getpid():  # a forked worker: nothing of the parent's is ours
            self._process, self._maps = os.getpid(), OrderedDict()
        labels = self._maps.get(key)
        if labels is not None:
            self._maps.move_to_end(key)
        return labels

    def put(self, key: tuple[Path, int], labels: np.ndarray) -> None:
        self._maps[key] = labels
        while len(self._maps) > LABEL_CACHE:
            self._maps.popitem(last=False)


_LABEL_MAPS = _LabelMaps()


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
    def from_dict(cls, data: dict[str, Any]) -> PreparedMeta:
        objects = {int(k): [ObjectStats(**o) for o in v] for k, v in data["objects"].items()}
        return cls(**{**data, "objects": objects})


def settings_key(settings: EncodeSettings) -> str:
    """The cache folder of one codec configuration, so ablations never mix data."""
    return f"{settings.codec}-gop{settings.gop_size}-q{settings.quality}"


def video_name(codec: str) -> str:
    """Raw MPEG-4 Part 2 as coviar reads it; H.264 in an MP4 container."""
    return "video.m4v" if codec == "mpeg4" else "video.mp4"


def folder_bytes(folder: Path) -> int:
    """Bytes of every file under `folder`."""
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


class PreparedSequence:
    """One prepared sequence: its video, its labels frame by frame, and optionally its arrays.

    File handles and decompressed labels belong to one process: a forked loader worker opens
    its own (a shared zip handle would interleave the workers' reads).
    """

    def __init__(self, path: Path, meta: PreparedMeta, settings: EncodeSettings) -> None:
        self.path = path
        self.meta = meta
        self.video_path = path / video_name(settings.codec)
        self._representations: CachedRepresentations | None = None
        self._process = os.getpid()
        self._runs: LabelRuns | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_representations": None, "_runs": None, "_process": None}

    def representations(self) -> CachedRepresentations:
        """The codec's arrays of every frame (coded size), memory-mapped; extracted from the
        video on the first call (`prepare` does it for datasets with `frames="arrays"`)."""
        if self._representations is None:
            cache = RepresentationCache(self.path / REPRESENTATIONS_DIR)
            self._representations = cache.get_or_extract(self.video_path)
        return self._representations

    def has_arrays(self) -> bool:
        """Whether the decoded arrays are stored (the dataset was prepared with them)."""
        folder = self.path / REPRESENTATIONS_DIR
        return folder.is_dir() and any(p.is_dir() for p in folder.iterdir())

    def array(self, name: str) -> np.ndarray:
        """One representation (bgr, mv, mv_acc, residual, residual_acc) of every frame:
        T x H x W x C read-only memory map, cropped back to the frame size."""
        return getattr(self.representations(), name)[:, : self.meta.height, : self.meta.width]

    def label(self, index: int) -> np.ndarray:
        """H x W uint8 label map of frame `index` (zeros on a frame without a mask), read-only."""
        if self._process != os.getpid():  # a forked worker: nothing of the parent's is ours
            self._process, self._runs = os.getpid(), None
        labels = _LABEL_MAPS.get((self.path, index))
        if labels is None:
            labels = self._read_label(index)
            labels.flags.writeable = False
            _LABEL_MAPS.put((self.path, index), labels)
        return labels

    def labels(self) -> np.ndarray:
        """T x H x W uint8 label maps of every frame (zeros on frames without a mask)."""
        return np.stack([self.label(index) for index in range(self.meta.num_frames)])

    def _read_label(self, index: int) -> np.ndarray:
        shape = (self.meta.height, self.meta.width)
        if index not in self.meta.objects:
            return np.zeros(shape, np.uint8)
        if self._runs is None:
            self._runs = LabelRuns.load(self.path / LABELS_FILE)
        return self._runs.decode(index, shape, self.path / LABELS_FILE)


@dataclass(frozen=True, eq=False)
class LabelRuns:
    """The label maps of a sequence, run-length coded: each map's pixels in C order as runs of
    one label. A 480p DAVIS map is a few hundred runs; decoding one is a `np.repeat`."""

    frames: np.ndarray  # A int64: the annotated frame indices, ascending
    starts: np.ndarray  # A + 1 int64: frame i's runs are runs[starts[i]:starts[i + 1]]
    values: np.ndarray  # R uint8: the label of each run
    lengths: np.ndarray  # R int64: its pixels

    @classmethod
    def encode(cls, maps: dict[int, np.ndarray]) -> LabelRuns:
        """The runs of H x W uint8 label maps, by frame index."""
        frames = sorted(maps)
        runs = [_runs(maps[frame].ravel()) for frame in frames]
        counts = [values.size for values, _ in runs]
        return cls(
            frames=np.asarray(frames, np.int64),
            starts=np.concatenate(([0], np.cumsum(counts))).astype(np.int64),
            values=np.concatenate([v for v, _ in runs] or [np.empty(0, np.uint8)]),
            lengths=np.concatenate([n for _, n in runs] or [np.empty(0, np.int64)]),
        )

    def save(self, path: Path) -> None:
        np.savez_compressed(path, **{f.name: getattr(self, f.name) for f in fields(self)})

    @classmethod
    def load(cls, path: Path) -> LabelRuns:
        try:
            with np.load(path) as stored:
                return cls(**{f.name: stored[f.name] for f in fields(cls)})
        except (KeyError, OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
            raise DataError(
                f"{path}: not readable run-length label maps ({err}); delete {path.parent} "
                "and prepare it again"
            ) from err

    def decode(self, frame: int, shape: tuple[int, int], path: Path) -> np.ndarray:
        """H x W uint8 label map of an annotated frame; `path` names the file in errors."""
        number = int(np.searchsorted(self.frames, frame))
        if number == self.frames.size or self.frames[number] != frame:
            raise DataError(f"{path}: no label map for frame {frame}; delete {path.parent}")
        first, stop = self.starts[number], self.starts[number + 1]
        lengths = self.lengths[first:stop]
        if lengths.sum() != shape[0] * shape[1]:
            raise DataError(
                f"{path}: the label map of frame {frame} covers {lengths.sum()} pixels, not "
                f"{shape[0]} x {shape[1]}; delete {path.parent} and prepare it again"
            )
        return np.repeat(self.values[first:stop], lengths).reshape(shape)


def _runs(flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The runs of equal values of a 1-D array: (values, lengths)."""
    starts = np.flatnonzero(np.concatenate(([True], flat[1:] != flat[:-1])))
    return flat[starts], np.diff(np.append(starts, flat.size)).astype(np.int64)


def _read_meta(folder: Path) -> PreparedMeta | None:
    """meta.json of a prepared folder (None when there is none), refusing other formats."""
    meta_path = folder / META_FILE
    if not meta_path.is_file():
        return None
    try:
        data = json.loads(meta_path.read_text())
        version = data.get("version") if isinstance(data, dict) else None
        if version != CACHE_VERSION:
            raise DataError(
                f"{folder}: prepared in cache format {version} "
                f"({FORMATS.get(version, 'unknown')}); this cvos reads format {CACHE_VERSION} "
                f"({FORMATS[CACHE_VERSION]}). Delete {folder.parent} and run "
                "`python -m cvos.prepare` again"
            )
        return PreparedMeta.from_dict(data)
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as err:
        raise DataError(
            f"{meta_path}: not a cvos prepared-sequence meta file ({err}); delete {folder}"
        ) from err


def read_prepared(folder: Path) -> PreparedMeta | None:
    """The meta of a whole prepared folder, or None when the folder is missing or incomplete."""
    meta = _read_meta(folder)
    if meta is None:
        return None
    video = folder / video_name(str(meta.settings.get("codec")))
    return meta if video.is_file() and (folder / LABELS_FILE).is_file() else None


def check_meta(
    meta: PreparedMeta, meta_path: Path, sequence: Sequence, settings: EncodeSettings
) -> None:
    """Raise DataError when a prepared sequence does not match the settings or the dataset."""
    wanted = asdict(settings)
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


def open_prepared(folder: Path, sequence: Sequence, settings: EncodeSettings) -> PreparedSequence:
    """A verified prepared sequence; DataError if it is missing, partial or does not match."""
    meta = read_prepared(folder)
    if meta is None:
        raise DataError(
            f"sequence {sequence.name!r} is not prepared in {folder}; run `python -m cvos.prepare`"
        )
    check_meta(meta, folder / META_FILE, sequence, settings)
    return PreparedSequence(folder, meta, settings)


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


def _picture_types(video_path: Path, frames: int, sequence: Sequence) -> str:
    """ "I"/"P" per frame from the video's packet index, checking it holds every frame."""
    try:
        with CompressedVideo(video_path) as video:
            starts, count = set(video.gop_starts), len(video)
    except CodecError as err:
        raise DataError(f"sequence {sequence.name!r}: {err}") from err
    if count != frames:
        raise DataError(
            f"sequence {sequence.name!r}: {sequence.frames_dir} has {frames} frames, "
            f"but the prepared video {video_path} holds {count}"
        )
    return "".join("I" if index in starts else "P" for index in range(count))


def prepare_sequence(
    sequence: Sequence, folder: Path, settings: EncodeSettings, dataset: str, arrays: bool
) -> None:
    """Encode one sequence and store its labels (and arrays if asked) in `folder`, atomically."""
    frames = read_frames(sequence)
    height, width = frames[0].shape[:2]
    labels = read_label_maps(sequence, height, width)
    annotated = sequence.annotated_indices()
    try:
        with atomic_path(folder) as partial:
            partial.mkdir()
            encoded = encode_video(frames, partial / video_name(settings.codec), settings)
            picture_types = _picture_types(encoded.path, len(frames), sequence)
            if arrays:
                RepresentationCache(partial / REPRESENTATIONS_DIR).get_or_extract(encoded.path)
            LabelRuns.encode({i: labels[i] for i in annotated}).save(partial / LABELS_FILE)
            meta = PreparedMeta(
                version=CACHE_VERSION,
                dataset=dataset,
                sequence=sequence.name,
                settings=asdict(settings),
                frame_names=sequence.frame_names,
                height=height,
                width=width,
                picture_types=picture_types,
                objects={i: _object_stats(labels[i]) for i in annotated},
            )
            write_text(partial / META_FILE, meta.to_json())
    except OSError:
        if read_prepared(folder) is None:  # another process finishing it first is fine
            raise


def _remove_partials(folder: Path) -> None:
    """Delete the temporary folders an interrupted run left for this sequence."""
    for stale in folder.parent.glob(f".{folder.name}.*.tmp"):
        shutil.rmtree(stale, ignore_errors=True)


def unfinished(sequences: list[Sequence], folder: Path, settings: EncodeSettings) -> list[Sequence]:
    """The sequences not prepared yet (reads only); finished ones are verified (DataError on a
    mismatch or a folder of another cache format)."""
    todo = []
    for sequence in sequences:
        meta = read_prepared(folder / sequence.name)
        if meta is None:
            todo.append(sequence)
        else:
            check_meta(meta, folder / sequence.name / META_FILE, sequence, settings)
    return todo


@dataclass(frozen=True)
class PrepareReport:
    """What one `prepare_sequences` call found and did."""

    folder: Path
    sequences: int  # asked for
    frames: int  # of the sequences asked for
    prepared: int  # sequences prepared by this call (the others were already there)
    prepared_frames: int
    bytes_written: int
    seconds: float

    def summary(self) -> str:
        """One line: counts, the size written (GB and a frame) and the time (per 1,000 frames)."""
        line = (
            f"{self.sequences} sequences ({self.frames:,} frames) prepared in {self.folder}; "
            f"{self.prepared} now"
        )
        if not self.prepared_frames:
            return line
        per_frame = self.bytes_written / self.prepared_frames
        per_thousand = self.seconds / self.prepared_frames * 1000
        return (
            f"{line}: {self.bytes_written / 1e9:.3f} GB written ({per_frame / 1e3:.1f} KB a "
            f"frame) in {self.seconds:.1f} s ({per_thousand:.1f} s per 1,000 frames)"
        )


def _prepare_each(
    todo: list[Sequence],
    folder: Path,
    settings: EncodeSettings,
    dataset: str,
    arrays: bool,
    workers: int,
) -> Iterator[Sequence]:
    """Prepare the sequences, in `workers` processes when it helps; yields each one as it ends."""
    if workers <= 1 or len(todo) <= 1:
        for sequence in todo:
            prepare_sequence(sequence, folder / sequence.name, settings, dataset, arrays)
            yield sequence
        return
    with ProcessPoolExecutor(max_workers=min(workers, len(todo))) as pool:
        jobs = {
            pool.submit(prepare_sequence, s, folder / s.name, settings, dataset, arrays): s
            for s in todo
        }
        for job in as_completed(jobs):
            job.result()
            yield jobs[job]


def prepare_sequences(
    sequences: list[Sequence],
    folder: Path,
    settings: EncodeSettings,
    dataset: str,
    *,
    arrays: bool = False,
    workers: int = 1,
    progress: bool = True,
) -> PrepareReport:
    """Prepare every sequence into `folder/<name>/`, skipping verified ones.

    Resumable and idempotent: a rerun after an interruption redoes only the sequences that were
    not finished (their temporary folders are deleted first). With `arrays`, sequences prepared
    earlier without them get their arrays extracted now.
    """
    start = time.perf_counter()
    todo = unfinished(sequences, folder, settings)
    for sequence in sequences:
        _remove_partials(folder / sequence.name)
    for sequence in todo:
        if (folder / sequence.name).exists():  # a folder without its meta: not ours to trust
            log.info("redoing the incomplete %s", folder / sequence.name)
            shutil.rmtree(folder / sequence.name)
    bar = tqdm(
        total=len(sequences),
        initial=len(sequences) - len(todo),
        desc=f"prepare {dataset}",
        unit="seq",
        disable=not (progress and todo),
    )
    written = 0
    with bar:
        for sequence in _prepare_each(todo, folder, settings, dataset, arrays, workers):
            written += folder_bytes(folder / sequence.name)
            bar.update()
    if arrays:
        done = {s.name for s in todo}
        for sequence in sequences:
            if sequence.name not in done:
                open_prepared(folder / sequence.name, sequence, settings).representations()
    return PrepareReport(
        folder=folder,
        sequences=len(sequences),
        frames=sum(len(s.frame_names) for s in sequences),
        prepared=len(todo),
        prepared_frames=sum(len(s.frame_names) for s in todo),
        bytes_written=written,
        seconds=time.perf_counter() - start,
    )
