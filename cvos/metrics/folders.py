"""Read DAVIS-style mask folders (`<sequence>/<frame>.png`) and score predictions against them.

Masks are either indexed palette PNGs with one id per object (DAVIS 2017, predictions) or
grayscale 0/255 PNGs with a single object (DAVIS 2016); anything non-zero in a grayscale mask
is object 1 (see `cvos.masks.read_label_png`). Every problem raises a DataError that names the
offending file or folder.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cvos.errors import DataError
from cvos.masks import read_label_png
from cvos.metrics.davis import DavisReport, evaluate_sequence, report


def read_label_dir(directory: Path) -> tuple[list[str], np.ndarray]:
    """Frame names (sorted file stems) and T x H x W labels of every PNG in one sequence folder."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(f"{directory}: sequence folder not found")
    paths = sorted(directory.glob("*.png"))
    if not paths:
        raise DataError(f"{directory}: no PNG masks in this folder")
    first = read_label_png(paths[0])
    source = f"the first mask {paths[0].name}"
    frames = [first] + [_read_sized(p, first.shape, source) for p in paths[1:]]
    return [p.stem for p in paths], np.stack(frames)


def read_prediction_dir(directory: Path, frames: list[str], size: tuple[int, int]) -> np.ndarray:
    """T x H x W predicted labels for the annotated `frames`, checked against the H x W `size`.

    The first and last frames are not scored, so they may be absent (read as empty).
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(f"{directory}: prediction folder for this sequence not found")
    labels = np.zeros((len(frames), *size), dtype=np.uint8)
    for t, frame in enumerate(frames):
        path = directory / f"{frame}.png"
        if not path.is_file():
            if t in (0, len(frames) - 1):
                continue
            raise DataError(f"{path}: predicted mask missing (the annotation has frame {frame})")
        labels[t] = _read_sized(path, size, "the annotation")
    return labels


def list_sequences(gt_root: Path) -> list[str]:
    """Names of the sequence folders under an annotations folder, sorted."""
    gt_root = Path(gt_root)
    if not gt_root.is_dir():
        raise DataError(f"{gt_root}: annotations folder not found")
    names = sorted(p.name for p in gt_root.iterdir() if p.is_dir())
    if not names:
        raise DataError(f"{gt_root}: no sequence folders in the annotations folder")
    return names


def evaluate_folders(
    gt_root: Path, pred_root: Path, sequences: list[str] | None = None
) -> DavisReport:
    """DAVIS table of the predictions in `pred_root` against the annotations in `gt_root`.

    All sequences of `gt_root` are scored unless `sequences` names a subset; each must have a
    prediction folder with every scored frame.
    """
    gt_root, pred_root = Path(gt_root), Path(pred_root)
    available = list_sequences(gt_root)
    names = available if sequences is None else list(sequences)
    unknown = [n for n in names if n not in available]
    if unknown:
        raise DataError(f"{gt_root}: no annotations for sequence(s) {', '.join(unknown)}")
    if not pred_root.is_dir():
        raise DataError(f"{pred_root}: predictions folder not found")
    scores = []
    for name in names:
        frames, gt = read_label_dir(gt_root / name)  # T x H x W
        pred = read_prediction_dir(pred_root / name, frames, gt.shape[1:])
        scores.append(evaluate_sequence(name, gt, pred))
    return report(scores)


def _read_sized(path: Path, size: tuple[int, ...], source: str) -> np.ndarray:
    """Read a label PNG that must have the H x W `size` of `source` (named in the error)."""
    labels = read_label_png(path)
    if labels.shape != tuple(size):
        raise DataError(
            f"{path}: mask is {labels.shape[1]}x{labels.shape[0]} (width x height) but "
            f"{source} is {size[1]}x{size[0]}"
        )
    return labels
