"""Colour overlays of predicted masks in the DAVIS palette, and an overlay video writer."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import av
import numpy as np

from cvos.files import atomic_path
from cvos.masks import PALETTE

OVERLAY_ALPHA = 0.5


def overlay(rgb: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Blend each object's palette colour over an H x W x 3 RGB frame where its label is."""
    colours = PALETTE[labels].astype(np.float32)  # H x W x 3
    blended = rgb.astype(np.float32)
    inside = labels > 0
    blended[inside] = (1 - OVERLAY_ALPHA) * blended[inside] + OVERLAY_ALPHA * colours[inside]
    return blended.round().astype(np.uint8)


@contextmanager
def overlay_video(
    path: str | os.PathLike, height: int, width: int, fps: float
) -> Iterator[Callable[[np.ndarray], None]]:
    """Stream H x W x 3 uint8 RGB frames into an H.264 MP4: yields the function that appends one.

    Memory does not grow with the video's length; the file appears, complete, when the block
    ends without an error.
    """
    pad = ((0, height % 2), (0, width % 2), (0, 0))  # yuv420p needs even sizes
    with atomic_path(path) as temporary, av.open(str(temporary), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=round(fps))
        stream.height, stream.width = height + height % 2, width + width % 2
        stream.pix_fmt = "yuv420p"

        def write(rgb: np.ndarray) -> None:
            frame = av.VideoFrame.from_ndarray(np.pad(rgb, pad, mode="edge"), format="rgb24")
            container.mux(stream.encode(frame))

        yield write
        container.mux(stream.encode())
