"""DAVIS evaluation: region similarity J, contour accuracy F, and the benchmark's table.

`DavisJF` (a torchmetrics Metric) is imported lazily: torchmetrics takes seconds to import,
and the command-line tool (`python -m cvos.metrics`) does not need it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cvos.masks import read_label_png
from cvos.metrics.davis import (
    COLUMNS,
    DavisReport,
    SequenceScores,
    default_object_ids,
    evaluate_sequence,
    report,
)
from cvos.metrics.folders import (
    evaluate_folders,
    list_sequences,
    read_label_dir,
    read_prediction_dir,
)
from cvos.metrics.measures import (
    boundary_f_measure,
    boundary_map,
    boundary_radius,
    region_similarity,
    summarize,
)

if TYPE_CHECKING:
    from cvos.metrics.metric import DavisJF

__all__ = [
    "COLUMNS",
    "DavisJF",
    "DavisReport",
    "SequenceScores",
    "boundary_f_measure",
    "boundary_map",
    "boundary_radius",
    "default_object_ids",
    "evaluate_folders",
    "evaluate_sequence",
    "list_sequences",
    "read_label_dir",
    "read_label_png",
    "read_prediction_dir",
    "region_similarity",
    "report",
    "summarize",
]


def __getattr__(name: str) -> Any:
    if name == "DavisJF":
        from cvos.metrics.metric import DavisJF

        return DavisJF
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
