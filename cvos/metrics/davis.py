"""DAVIS semi-supervised protocol: per-object scores of whole sequences, and the report table.

Protocol (as in the official toolkit): the first frame is given and the last is not scored,
so both are dropped; an object missing from a prediction is an empty mask; the overall row
averages over all objects of all sequences (each object one entry), and a sequence's row over
its own objects.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from cvos.errors import DataError
from cvos.metrics.measures import (
    DEFAULT_BOUND_TH,
    boundary_f_measure,
    region_similarity,
    summarize,
)

COLUMNS = ["J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay"]
# Columns of the per-object statistics arrays: all of COLUMNS but the combined J&F-Mean.
STAT_COLUMNS = COLUMNS[1:]
# DAVIS 2017 annotations mark ambiguous pixels 255; the toolkit scores them as background.
VOID_LABEL = 255


@dataclass
class SequenceScores:
    """Per-frame J and F of each object of one sequence, first and last frame already dropped."""

    name: str
    object_ids: list[int]
    j: np.ndarray  # O x T' (T' = T - 2)
    f: np.ndarray  # O x T'

    def object_statistics(self) -> np.ndarray:
        """O x 6 array: J mean, recall, decay, then F mean, recall, decay of each object."""
        return np.array([summarize(j) + summarize(f) for j, f in zip(self.j, self.f, strict=True)])


@dataclass
class DavisReport:
    """The DAVIS table: the overall row and one row per sequence, keyed by COLUMNS names."""

    global_: dict[str, float]
    per_sequence: dict[str, dict[str, float]]

    def to_dict(self) -> dict[str, dict]:
        """`{"global": {column: value}, "per_sequence": {sequence: {column: value}}}`."""
        return {"global": self.global_, "per_sequence": self.per_sequence}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def format_table(self) -> str:
        """Fixed-width text table, 3 decimals: the overall row first, then each sequence."""
        rows = [("Global", self.global_), *self.per_sequence.items()]
        name_width = max(len(name) for name, _ in [*rows, ("Sequence", None)])
        widths = [max(len(column), 8) for column in COLUMNS]
        header = "Sequence".ljust(name_width) + "".join(
            f"  {c:>{w}}" for c, w in zip(COLUMNS, widths, strict=True)
        )
        lines = [header]
        for name, row in rows:
            values = "".join(f"  {row[c]:>{w}.3f}" for c, w in zip(COLUMNS, widths, strict=True))
            lines.append(name.ljust(name_width) + values)
        return "\n".join(lines)


def default_object_ids(name: str, first_gt: np.ndarray) -> list[int]:
    """Objects 1..N where N is the largest id in the first annotation (void excluded).

    The toolkit counts objects this way, so an id skipped in the first frame is still scored
    (as an object that should stay empty).
    """
    ids = first_gt[first_gt != VOID_LABEL]
    largest = int(ids.max()) if ids.size else 0
    if largest <= 0:
        raise DataError(f"sequence {name!r}: the first annotation frame contains no object")
    return list(range(1, largest + 1))


def evaluate_sequence(
    name: str,
    gt: np.ndarray,
    pred: np.ndarray,
    object_ids: list[int] | None = None,
    bound_th: float = DEFAULT_BOUND_TH,
) -> SequenceScores:
    """Score a predicted sequence against its annotation; both are T x H x W label maps.

    Objects default to those of the first annotation frame; predicted ids outside them are
    ignored.
    """
    gt, pred = np.asarray(gt), np.asarray(pred)
    _check_sequence_shapes(name, gt, pred)
    ids = default_object_ids(name, gt[0]) if object_ids is None else list(object_ids)
    if not ids:
        raise DataError(f"sequence {name!r}: no object ids to score")
    scored_gt, scored_pred = gt[1:-1], pred[1:-1]  # T' x H x W
    j = np.zeros((len(ids), len(scored_gt)))  # O x T'
    f = np.zeros((len(ids), len(scored_gt)))
    # Frame by frame: whole-sequence boolean stacks are ~5x slower (they spill the CPU cache).
    for t, (gt_frame, pred_frame) in enumerate(zip(scored_gt, scored_pred, strict=True)):
        for k, object_id in enumerate(ids):
            gt_mask, pred_mask = gt_frame == object_id, pred_frame == object_id  # H x W
            j[k, t] = region_similarity(pred_mask, gt_mask)
            f[k, t] = boundary_f_measure(pred_mask, gt_mask, bound_th)
    return SequenceScores(name=name, object_ids=ids, j=j, f=f)


def summary_row(object_stats: np.ndarray) -> dict[str, float]:
    """One table row from N x 6 per-object statistics (STAT_COLUMNS): the mean over objects."""
    means = object_stats.mean(axis=0)
    row = dict(zip(STAT_COLUMNS, means.tolist(), strict=True))
    return {"J&F-Mean": (row["J-Mean"] + row["F-Mean"]) / 2, **row}


def report(scores: list[SequenceScores]) -> DavisReport:
    """The DAVIS table of scored sequences: overall over all objects, then per sequence."""
    if not scores:
        raise DataError("no sequences to report")
    names = [s.name for s in scores]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise DataError(f"sequences scored more than once: {', '.join(duplicates)}")
    stats = [s.object_statistics() for s in scores]  # each O_s x 6
    return DavisReport(
        global_=summary_row(np.concatenate(stats)),
        per_sequence={s.name: summary_row(st) for s, st in zip(scores, stats, strict=True)},
    )


def _check_sequence_shapes(name: str, gt: np.ndarray, pred: np.ndarray) -> None:
    if gt.ndim != 3:
        raise DataError(f"sequence {name!r}: expected T x H x W label maps, got shape {gt.shape}")
    if pred.shape != gt.shape:
        raise DataError(
            f"sequence {name!r}: prediction shape {pred.shape} differs from the annotation "
            f"shape {gt.shape}"
        )
    if gt.shape[0] < 3:
        raise DataError(
            f"sequence {name!r} has {gt.shape[0]} frames; at least 3 are needed because the "
            "first and last frames are not scored"
        )
