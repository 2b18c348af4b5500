"""What inference writes: indexed PNG masks in the DAVIS palette and colour overlays."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

OVERLAY_ALPHA = 0.5


def davis_palette() -> np.ndarray:
    """The 256-colour palette of DAVIS/PASCAL VOC masks (object id -> RGB): 256 x 3 uint8."""
    palette = np.zeros((256, 3), np.uint8)
    for index in range(256):
        value, red, green, blue = index, 0, 0, 0
        for bit in range(8):
            red |= ((value >> 0) & 1) << (7 - bit)
            green |= ((value >> 1) & 1) << (7 - bit)
            blue |= ((value >> 2) & 1) << (7 - bit)
            value >>= 3
        palette[index] = (red, green, blue)
    return palette


PALETTE = davis_palette()


def write_label_png(path: str | os.PathLike, labels: np.ndarray) -> None:
    """Write an H x W uint8 label map as an indexed PNG (as DAVIS 2017 ships its masks)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(labels.astype(np.uint8), mode="P")
    image.putpalette(PALETTE.ravel().tolist())
    image.save(path)


def overlay(rgb: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Blend each object's palette colour over an H x W x 3 RGB frame where the label is non-zero."""
    colours = PALETTE[labels].astype(np.float32)  # H x W x 3
    blended = rgb.astype(np.float32)
    inside = labels > 0
    blended[inside] = (1 - OVERLAY_ALPHA) * blended[inside] + OVERLAY_ALPHA * colours[inside]
    return blended.round().astype(np.uint8)
