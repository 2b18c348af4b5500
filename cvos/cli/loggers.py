"""One logger factory for training and evaluation: the `logger` config group (W&B, CSV,
TensorBoard), each logger instantiated from its `_target_`, W&B with tags and a group that
make runs filterable by the ablation axes."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from cvos.cli.jobs import instantiate


def wandb_offline(offline: bool | None) -> bool:
    """W&B runs offline when asked, and by default exactly when no API key is set."""
    return "WANDB_API_KEY" not in os.environ if offline is None else bool(offline)


def run_tags(cfg: DictConfig) -> list[str]:
    """W&B tags: the model variant, encoder, GOP and modules of the run, then `tags`."""
    net = cfg.model.net if cfg.get("model") else {}
    tags = [f"gop:{cfg.data.gop_size}"]
    if net:
        tags += [
            f"model:{net.variant}",
            f"encoder:{net.encoder.name}",
            f"rsm:{'on' if net.use_rsm else 'off'}",
            f"sam:{'on' if net.use_sam else 'off'}",
        ]
    return [*tags, *cfg.get("tags", [])]


def wandb_group(cfg: DictConfig, run_dir: Path, in_sweep: bool) -> str:
    """The configured group, else one group per sweep (named after its folder) or experiment."""
    if cfg.logger.wandb.group is not None:
        return cfg.logger.wandb.group
    return f"{cfg.experiment}-{run_dir.parent.name}" if in_sweep else cfg.experiment


def build_loggers(cfg: DictConfig, run_dir: Path, in_sweep: bool, job_type: str) -> list[Any]:
    """Instantiate the `logger` group; every logger gets the resolved config, W&B the tags."""
    loggers = []
    for name, logger_cfg in (cfg.logger or {}).items():
        extra: dict[str, Any] = {}
        if name == "wandb":
            variant = OmegaConf.select(cfg, "model.net.variant", default=job_type)
            extra = {
                "offline": wandb_offline(logger_cfg.offline),
                "group": wandb_group(cfg, run_dir, in_sweep),
                "tags": run_tags(cfg),
                "name": f"{variant}-{run_dir.name}",
                "job_type": job_type,
            }
        loggers.append(instantiate(logger_cfg, **extra))
    for logger in loggers:  # the whole resolved config, not only the model's arguments
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    return loggers


def log_images(loggers: Sequence[Any], key: str, paths: Sequence[Path]) -> None:
    """Send PNG files to the loggers that show images (W&B)."""
    if not loggers or not paths:
        return
    from pytorch_lightning.loggers import WandbLogger

    for logger in loggers:
        if isinstance(logger, WandbLogger):
            images, captions = [str(p) for p in paths], [p.stem for p in paths]
            logger.log_image(key=key, images=images, caption=captions)


def finish_loggers(loggers: Sequence[Any], status: str) -> None:
    """Close every logger; W&B needs it so that each job of a multirun is its own run."""
    if not loggers:
        return
    from pytorch_lightning.loggers import WandbLogger

    for logger in loggers:
        logger.finalize(status)
        if isinstance(logger, WandbLogger):
            logger.experiment.finish(exit_code=0 if status == "success" else 1)
