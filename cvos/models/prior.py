"""The Gaussian location prior that the Spatial Attention Module reads next to the motion vectors.

The previous frame's mask is summarised by a robust centre (median of its points) and spread
(1.4826 x median absolute deviation, a consistent estimate of a standard deviation), so a few
stray pixels of a predicted mask do not drag the prior away from the object.
"""

from __future__ import annotations

import numpy as np

MAD_TO_SIGMA = 1.4826


def _weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    """Median of `values` (sorted ascending) where each value occurs `weights` times."""
    cumulative = np.cumsum(weights)
    total = cumulative[-1]
    low = values[np.searchsorted(cumulative, (total - 1) // 2 + 1)]
    high = values[np.searchsorted(cumulative, total // 2 + 1)]
    return 0.5 * (float(low) + float(high))


def _centre_and_spread(counts: np.ndarray, min_sigma: float) -> tuple[float, float]:
    """Median and robust spread along one axis, from the number of mask points per coordinate."""
    coords = np.arange(counts.size, dtype=np.float64)
    centre = _weighted_median(coords, counts)
    deviations = np.abs(coords - centre)
    order = np.argsort(deviations, kind="stable")
    mad = _weighted_median(deviations[order], counts[order])
    return centre, max(MAD_TO_SIGMA * mad, min_sigma)


def gaussian_prior(
    mask: np.ndarray,
    *,
    jitter: float = 0.0,
    scale_range: tuple[float, float] = (1.0, 1.0),
    rng: np.random.Generator | None = None,
    min_sigma: float = 5.0,
) -> np.ndarray:
    """H x W float32 in [0, 1] (peak 1): an axis-aligned Gaussian where `mask` (H x W) is nonzero.

    Training augments it as the original does: the centre moves by up to `jitter` spreads per
    axis and the spread is scaled by a factor drawn log-uniformly from `scale_range`.
    An empty mask gives all ones: no location information, so attention is not restricted.
    """
    height, width = mask.shape
    present = mask > 0
    rows = present.sum(axis=1)  # H: mask points per row
    if rows.sum() == 0:
        return np.ones((height, width), np.float32)
    cols = present.sum(axis=0)  # W
    cy, sy = _centre_and_spread(rows, min_sigma)
    cx, sx = _centre_and_spread(cols, min_sigma)
    if jitter > 0.0 or scale_range != (1.0, 1.0):
        rng = rng if rng is not None else np.random.default_rng()
        cy += rng.uniform(-jitter, jitter) * sy
        cx += rng.uniform(-jitter, jitter) * sx
        log_low, log_high = np.log(scale_range[0]), np.log(scale_range[1])
        sy *= float(np.exp(rng.uniform(log_low, log_high)))
        sx *= float(np.exp(rng.uniform(log_low, log_high)))
    gy = np.exp(-0.5 * ((np.arange(height) - cy) / sy) ** 2)  # H
    gx = np.exp(-0.5 * ((np.arange(width) - cx) / sx) ** 2)  # W
    return np.outer(gy, gx).astype(np.float32)
