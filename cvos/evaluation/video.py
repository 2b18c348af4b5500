"""Segment one video from a first-frame mask: masks, an overlay video and run.json.

The video is first brought into the compressed form the network was trained on (its codec,
GOP and quality), unless it is in that form already.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from cvos.codec import CompressedVideo, EncodeSettings, canonical_video
from cvos.codec.writer import PAD_MULTIPLE
from cvos.errors import DataError
from cvos.evaluation.split import speed, summary_line
from cvos.evaluation.writer import MaskWriter
from cvos.files import write_json
from cvos.inference import Propagator, StreamTiming, stream
from cvos.inference.outputs import overlay, overlay_video
from cvos.masks import read_label_png
from cvos.models import NetConfig


def read_first_mask(path: Path) -> np.ndarray:
    """H x W uint8 labels from a 0/255 or an indexed palette PNG; it must hold an object."""
    labels = read_label_png(path)
    if not labels.any():
        raise DataError(f"{path}: the first-frame mask has no object (every pixel is background)")
    return labels


def check_mask_size(mask: Path, size: tuple[int, int], coded: tuple[int, int]) -> None:
    """The mask must be the frame size: the coded size, or less by the encoder's padding."""
    if any(not 0 <= c - s < PAD_MULTIPLE for s, c in zip(size, coded, strict=True)):
        raise DataError(
            f"{mask}: mask is {size[1]}x{size[0]} but the video's frames are "
            f"{coded[1]}x{coded[0]} (coded size)"
        )


def segment_video(
    video: Path,
    mask: Path,
    run_dir: Path,
    net: nn.Module | None,
    config: NetConfig,
    record: dict[str, Any],
    *,
    device: torch.device | str = "cpu",
    precision: str = "float32",
    channels_last: bool = False,
    fps: float = 25.0,
) -> dict[str, Any]:
    """Write `masks/<frame>.png`, `overlay.mp4` and `run.json` (`record` + frames and speed).

    Three threads overlap: the reader decodes ahead, this one segments, and a writer thread
    compresses the masks and renders and encodes the overlay. Nothing is kept per frame, so
    memory does not grow with the video's length.
    """
    first = read_first_mask(mask)
    settings = EncodeSettings(codec=config.codec, gop_size=config.gop_size, quality=config.quality)
    suffix = ".m4v" if config.codec == "mpeg4" else ".mp4"
    path = canonical_video(video, settings, run_dir / f"canonical{suffix}")
    height, width = first.shape
    propagator = Propagator(
        net, config, device=device, precision=precision, channels_last=channels_last
    )
    timing = StreamTiming()
    with CompressedVideo(path) as compressed:
        check_mask_size(mask, (height, width), (compressed.height, compressed.width))
        frames = (frame.cropped(height, width) for frame in compressed)
        overlays = overlay_video(run_dir / "overlay.mp4", height, width, fps)
        with overlays as write_overlay, MaskWriter() as writer:
            outputs = stream(propagator, frames, {0: first}, timing)
            for frame, output in tqdm(outputs, total=len(compressed), desc="segment", unit="frame"):
                writer.write(run_dir / "masks" / f"{frame.index:05d}.png", output.labels)
                writer.submit(_write_overlay, write_overlay, frame.bgr, output.labels)
    run = {**record, "video": str(video), "encoded": str(path), "frames": timing.frames}
    run.update(speed(timing, writer.seconds))
    write_json(run_dir / "run.json", run)
    print(f"{timing.frames} masks in {run_dir / 'masks'}, overlay video {run_dir / 'overlay.mp4'}")
    print(summary_line(run, run_dir))
    return run


def _write_overlay(
    write: Callable[[np.ndarray], None], bgr: np.ndarray, labels: np.ndarray
) -> None:
    write(overlay(bgr[..., ::-1], labels))
