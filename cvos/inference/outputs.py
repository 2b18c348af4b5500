"""Colour overlays of predicted masks, in the DAVIS palette."""

from __future__ import annotations

import numpy as np

from cvos.masks import PALETTE

OVERLAY_ALPHA = 0.5


def overlay(rgb: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Blend each object's palette colour over an H x W x 3 RGB frame where its label is."""
    colours = PALETTE[labels].astype(np.float32)  # H x W x 3
    blended = rgb.astype(np.float32)
    inside = labels > 0
    blended[inside] = (1 - OVERLAY_ALPHA) * blended[inside] + OVERLAY_ALPHA * colours[inside]
    return blended.round().astype(np.uint8)
