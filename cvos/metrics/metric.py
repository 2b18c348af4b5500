"""DAVIS J&F as a torchmetrics Metric, so validation scores sync across DDP processes."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from cvos.metrics.davis import COLUMNS, STAT_COLUMNS, evaluate_sequence, summary_row
from cvos.metrics.measures import DEFAULT_BOUND_TH


class DavisJF(Metric):
    """Overall DAVIS row (COLUMNS) over every object of every sequence passed to `update`.

    The state is one row of per-object statistics (STAT_COLUMNS) per object; DDP sync
    concatenates the rows of all processes, so the overall row averages every object once,
    exactly like the official toolkit's global figures.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, bound_th: float = DEFAULT_BOUND_TH, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.bound_th = bound_th
        self.add_state("object_stats", default=[], dist_reduce_fx="cat")

    def update(
        self,
        pred: Tensor | np.ndarray,
        gt: Tensor | np.ndarray,
        object_ids: list[int] | None = None,
        name: str = "<sequence>",
    ) -> None:
        """Score one whole sequence: T x H x W label maps (first and last frame not scored)."""
        scores = evaluate_sequence(name, _to_numpy(gt), _to_numpy(pred), object_ids, self.bound_th)
        stats = torch.from_numpy(scores.object_statistics())  # O x 6
        self.object_stats.append(stats.to(self.device))

    def compute(self) -> dict[str, Tensor]:
        """The overall row; NaN everywhere when no sequence was scored."""
        if isinstance(self.object_stats, list) and not self.object_stats:
            return {column: torch.tensor(float("nan"), dtype=torch.float64) for column in COLUMNS}
        stats = dim_zero_cat(self.object_stats).reshape(-1, len(STAT_COLUMNS))  # N x 6
        row = summary_row(stats.double().cpu().numpy())
        return {column: torch.tensor(value, dtype=torch.float64) for column, value in row.items()}


def _to_numpy(labels: Tensor | np.ndarray) -> np.ndarray:
    if isinstance(labels, Tensor):
        return labels.detach().cpu().numpy()
    return np.asarray(labels)
