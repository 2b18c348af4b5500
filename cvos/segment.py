"""`python -m cvos.segment video=<file> mask=<first-frame PNG> [ckpt=<path>]`: segment any video.

Writes `masks/<frame>.png`, `overlay.mp4` and `run.json` into the run folder. The video is
re-encoded to the codec, GOP and quality the network was trained with (unless it is already in
that form or they are overridden); without a checkpoint it runs `mask_warp`, which needs no
training.
"""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

from cvos.cli import job_context, run_job
from cvos.evaluation import load_network, run_record, segment_video, with_overrides
from cvos.evaluation.settings import OVERRIDABLE
from cvos.inference import prepare_network


def segment(cfg: DictConfig, run_dir: Path) -> dict:
    """Segment the video from its first-frame mask; returns what run.json holds."""
    net, config = load_network(cfg.ckpt, variant=None)
    config, overridden = with_overrides(config, **{name: cfg[name] for name in OVERRIDABLE})
    if net is not None:
        net = prepare_network(
            net, device=cfg.device, channels_last=cfg.channels_last, compile=cfg.compile
        )
    return segment_video(
        Path(cfg.video), Path(cfg.mask), run_dir, net, config,
        run_record(config, cfg.ckpt, overridden), device=cfg.device, precision=cfg.precision,
        channels_last=cfg.channels_last, fps=cfg.fps,
    )  # fmt: skip


@hydra.main(config_path="../conf", config_name="segment", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run_dir, in_sweep = job_context()
    run_job(lambda: segment(cfg, run_dir), run_dir, in_sweep=in_sweep)


if __name__ == "__main__":
    main()
