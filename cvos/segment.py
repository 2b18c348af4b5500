"""`python -m cvos.segment video=<file> mask=<first-frame PNG> [ckpt=<path>]`: segment any video.

Writes `masks/<frame>.png` and `overlay.mp4` into the run directory. A video that is not
already MPEG-4 Part 2 with the configured GOP is first re-encoded to that canonical form.
Without a checkpoint it runs `mask_warp` propagation, which needs no training.
"""

from __future__ import annotations

from pathlib import Path

import av
import hydra
import numpy as np
from omegaconf import DictConfig
from tqdm import tqdm

from cvos.cli import job_context, run_job
from cvos.codec import CompressedVideo, EncodeSettings, encode_video
from cvos.errors import CodecError, DataError
from cvos.inference import Propagator
from cvos.inference.outputs import overlay
from cvos.lit import load_checkpoint
from cvos.masks import read_label_png, write_label_png


def read_first_mask(path: Path) -> np.ndarray:
    """H x W uint8 labels from a 0/255 or an indexed palette PNG; it must hold an object."""
    labels = read_label_png(path)
    if not labels.any():
        raise DataError(f"{path}: the first-frame mask has no object (every pixel is background)")
    return labels


def is_canonical(path: Path, gop_size: int) -> bool:
    """True when the file is MPEG-4 Part 2 with an I-frame every `gop_size` frames exactly."""
    try:
        with CompressedVideo(path) as video:
            expected = list(range(0, video.num_frames, gop_size))
            return video.codec == "mpeg4" and video.gop_starts == expected
    except CodecError:
        return False


def canonical_video(path: Path, run_dir: Path, settings: EncodeSettings) -> Path:
    """The video itself if already canonical, else its re-encoding in the run directory."""
    if not path.is_file():
        raise DataError(f"{path}: video file not found")
    if is_canonical(path, settings.gop_size):
        return path
    return encode_video(path, run_dir / "canonical.m4v", settings).path


class OverlayWriter:
    """Streams RGB overlays into an H.264 MP4, so memory does not grow with the video's length."""

    def __init__(self, path: Path, height: int, width: int, fps: float) -> None:
        self.container = av.open(str(path), "w")
        self.stream = self.container.add_stream("libx264", rate=round(fps))
        self.pad = ((0, height % 2), (0, width % 2), (0, 0))  # yuv420p needs even sizes
        self.stream.height, self.stream.width = height + height % 2, width + width % 2
        self.stream.pix_fmt = "yuv420p"

    def write(self, rgb: np.ndarray) -> None:
        frame = av.VideoFrame.from_ndarray(np.pad(rgb, self.pad, mode="edge"), format="rgb24")
        self.container.mux(self.stream.encode(frame))

    def __enter__(self) -> OverlayWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.container.mux(self.stream.encode())
        self.container.close()


def segment(cfg: DictConfig, run_dir: Path) -> Path:
    """Segment the video from its first-frame mask; returns the run directory."""
    first = read_first_mask(Path(cfg.mask))
    settings = EncodeSettings(codec="mpeg4", gop_size=cfg.gop_size, quality=cfg.quality)
    video_path = canonical_video(Path(cfg.video), run_dir, settings)
    module = load_checkpoint(cfg.ckpt) if cfg.ckpt is not None else None
    net = module.net.eval() if module is not None else None
    propagation = module.hparams.propagation if module is not None else "mask"
    propagator = Propagator(
        net, propagation=propagation, input_size=cfg.input_size, device=cfg.device
    )
    height, width = first.shape
    count = 0
    with (
        CompressedVideo(video_path) as video,
        OverlayWriter(run_dir / "overlay.mp4", height, width, cfg.fps) as out,
    ):
        if (video.height, video.width) < (height, width):
            raise DataError(
                f"{cfg.mask}: mask is {width}x{height} "
                f"but the video is {video.width}x{video.height}"
            )
        for frame in tqdm(video, total=len(video), desc="segment", unit="frame"):
            frame = frame.cropped(height, width)
            output = propagator.step(frame, first if frame.index == 0 else None)
            write_label_png(run_dir / "masks" / f"{frame.index:05d}.png", output.labels)
            out.write(overlay(frame.rgb, output.labels))
            count += 1
    print(f"{count} masks in {run_dir / 'masks'}, overlay video {run_dir / 'overlay.mp4'}")
    return run_dir


@hydra.main(config_path="../conf", config_name="segment", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run_dir, in_sweep = job_context()
    run_job(lambda: segment(cfg, run_dir), run_dir, in_sweep=in_sweep)


if __name__ == "__main__":
    main()
