"""`python -m cvos.train [overrides]`: train a CVOS variant, then score it on the validation split.

The run directory (Hydra's, under outputs/) receives checkpoints, logs and `metrics.json`
with the final validation J&F, J, F, the copy-the-first-mask baseline, speed and size.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import Logger, WandbLogger

from cvos.cli import check_data_config, instantiate, job_context, run_job, wandb_offline
from cvos.errors import ConfigError
from cvos.lit import CVOSLitModule

FINAL_KEYS = ("J&F", "J", "F", "copy_baseline_J&F", "fps", "params")


def check_config(cfg: DictConfig) -> None:
    """Fail before any work on values that cannot run, saying what to set."""
    check_data_config(cfg.data)
    if cfg.ckpt_path is not None and not Path(cfg.ckpt_path).is_file():
        raise ConfigError(f"ckpt_path={cfg.ckpt_path}: no such checkpoint file")


def run_tags(cfg: DictConfig) -> list[str]:
    """W&B tags that make runs filterable by the ablation axes."""
    model = cfg.model
    return [
        f"model:{model.variant}",
        f"encoder:{cfg.encoder.name}",
        f"gop:{cfg.data.gop_size}",
        f"rsm:{'on' if model.use_rsm else 'off'}",
        f"sam:{'on' if model.use_sam else 'off'}",
        *cfg.tags,
    ]


def wandb_group(cfg: DictConfig, run_dir: Path, in_sweep: bool) -> str:
    """The configured group, else one group per sweep (named after its folder) or experiment."""
    if cfg.logger.wandb.group is not None:
        return cfg.logger.wandb.group
    return f"{cfg.experiment}-{run_dir.parent.name}" if in_sweep else cfg.experiment


def build_loggers(cfg: DictConfig, run_dir: Path, in_sweep: bool) -> list[Logger]:
    """Instantiate the `logger` group; every logger gets the resolved config, W&B the tags."""
    loggers = []
    for name, logger_cfg in (cfg.logger or {}).items():
        extra: dict[str, Any] = {}
        if name == "wandb":
            extra = {
                "offline": wandb_offline(logger_cfg.offline),
                "group": wandb_group(cfg, run_dir, in_sweep),
                "tags": run_tags(cfg),
                "name": f"{cfg.model.variant}-{cfg.encoder.name}-{run_dir.name}",
                "job_type": "train",
            }
        loggers.append(instantiate(logger_cfg, **extra))
    for logger in loggers:  # the whole resolved config, not only the model's arguments
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    return loggers


def build_module(cfg: DictConfig) -> CVOSLitModule:
    """The LightningModule from the model and encoder groups, with the GOP from the data config."""
    encoder = OmegaConf.to_container(cfg.encoder, resolve=True)
    return instantiate(cfg.model, encoder=encoder, gop_size=cfg.data.gop_size)


def finish_loggers(loggers: list[Logger], status: str) -> None:
    """Close every logger; W&B needs it so that each job of a multirun is its own run."""
    for logger in loggers:
        logger.finalize(status)
        if isinstance(logger, WandbLogger):
            logger.experiment.finish(exit_code=0 if status == "success" else 1)


def train(cfg: DictConfig, run_dir: Path, in_sweep: bool = False) -> dict[str, Any]:
    """Fit, validate and write `metrics.json`; returns the metrics."""
    check_config(cfg)
    pl.seed_everything(cfg.seed, workers=True)
    datamodule = instantiate(cfg.data)
    module = build_module(cfg)
    loggers = build_loggers(cfg, run_dir, in_sweep)
    checkpoints = ModelCheckpoint(dirpath=run_dir / "checkpoints", **cfg.checkpoint)
    trainer_args = OmegaConf.to_container(cfg.trainer, resolve=True)
    trainer = pl.Trainer(
        **trainer_args, logger=loggers or False, callbacks=[checkpoints], default_root_dir=run_dir
    )
    status = "failed"
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.ckpt_path, weights_only=True)
        scores = trainer.validate(module, datamodule=datamodule, verbose=False)[0]
        metrics = {
            "status": "ok",
            "J&F": scores["val/J&F"],
            "J": scores["val/J"],
            "F": scores["val/F"],
            "copy_baseline_J&F": scores["val/copy_baseline_J&F"],
            "fps": scores["val/fps"],
            "params": sum(p.numel() for p in module.net.parameters()),
            "checkpoint": str(checkpoints.last_model_path or ""),
        }
        for logger in loggers:
            logger.log_metrics(
                {f"final/{k}": float(v) for k, v in metrics.items() if k in FINAL_KEYS}
            )
        status = "success"
    finally:
        finish_loggers(loggers, status)
    if trainer.is_global_zero:  # under DDP every process gets the synced metrics; one writes them
        (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
        print(
            f"validation J&F {metrics['J&F']:.3f} (J {metrics['J']:.3f}, F {metrics['F']:.3f}); "
            f"copy-the-first-mask baseline J&F {metrics['copy_baseline_J&F']:.3f}; "
            f"{metrics['fps']:.1f} frames/s; metrics in {run_dir / 'metrics.json'}"
        )
    return metrics


@hydra.main(config_path="../conf", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    run_dir, in_sweep = job_context()
    metrics = run_job(lambda: train(cfg, run_dir, in_sweep), run_dir, in_sweep=in_sweep)
    return None if metrics is None else metrics["J&F"]


if __name__ == "__main__":
    main()
