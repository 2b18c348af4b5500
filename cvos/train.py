"""`python -m cvos.train [overrides]`: train a CVOS variant, then score it on the validation split.

Everything is built from the config (`conf/train.yaml`): data, model, trainer, callbacks and
loggers. The run folder receives checkpoints, logs and `metrics.json` with the final validation
J&F, J and F next to the training-free `mask_warp` and copy-the-first-mask baselines.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
from omegaconf import DictConfig
from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint

from cvos.cli import build_loggers, finish_loggers, instantiate, job_context, run_job
from cvos.errors import ConfigError
from cvos.files import write_json

SCORES = {  # metrics.json key -> what validation logs
    "J&F": "val/J&F",
    "J": "val/J",
    "F": "val/F",
    "mask_warp_J&F": "val/mask_warp_J&F",
    "copy_baseline_J&F": "val/copy_baseline_J&F",
    "fps": "val/fps",
    "ms_per_iframe": "val/ms_per_iframe",
    "ms_per_pframe": "val/ms_per_pframe",
}


def _score(scores: dict[str, float], name: str) -> float | None:
    """A logged score; None for a frame timing a split cannot measure (no I-frame past the
    first, no P-frame), which validation then does not log."""
    if name not in scores and name in (SCORES["ms_per_iframe"], SCORES["ms_per_pframe"]):
        return None
    return float(scores[name])


def build_callbacks(cfg: DictConfig, has_logger: bool) -> list[pl.Callback]:
    """The `callbacks` group (`callbacks.<name>=null` drops one); the learning-rate monitor
    needs a logger, so it goes without one."""
    nodes = (cfg.callbacks or {}).values()
    callbacks = [instantiate(node) for node in nodes if node is not None]
    return [c for c in callbacks if has_logger or not isinstance(c, LearningRateMonitor)]


def train(cfg: DictConfig, run_dir: Path, in_sweep: bool = False) -> dict[str, Any]:
    """Fit, validate and write `metrics.json`; returns the metrics."""
    if cfg.ckpt_path is not None and not Path(cfg.ckpt_path).is_file():
        raise ConfigError(f"ckpt_path={cfg.ckpt_path}: no such checkpoint file")
    pl.seed_everything(cfg.seed, workers=True)
    datamodule = instantiate(cfg.datamodule)
    module = instantiate(cfg.model)
    loggers = build_loggers(cfg, run_dir, in_sweep, job_type="train")
    callbacks = build_callbacks(cfg, has_logger=bool(loggers))
    trainer = instantiate(cfg.trainer, logger=loggers or False, callbacks=callbacks)
    status = "failed"
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.ckpt_path, weights_only=True)
        scores = trainer.validate(module, datamodule=datamodule, verbose=False)[0]
        metrics = {"status": "ok", **{key: _score(scores, name) for key, name in SCORES.items()}}
        metrics["params"] = sum(p.numel() for p in module.net.parameters())
        metrics["checkpoint"] = last_checkpoint(trainer)
        for logger in loggers:
            logger.log_metrics(
                {f"final/{k}": v for k, v in metrics.items() if k in SCORES and v is not None}
            )
        status = "success"
    finally:
        finish_loggers(loggers, status)
    if trainer.is_global_zero:  # under DDP every process gets the synced metrics; one writes them
        write_json(run_dir / "metrics.json", metrics)
        print(
            f"validation J&F {metrics['J&F']:.3f} (J {metrics['J']:.3f}, F {metrics['F']:.3f}) "
            f"against mask_warp {metrics['mask_warp_J&F']:.3f} and copying the first mask "
            f"{metrics['copy_baseline_J&F']:.3f}; {metrics['fps']:.1f} frames/s; "
            f"metrics in {run_dir / 'metrics.json'}"
        )
    return metrics


def last_checkpoint(trainer: pl.Trainer) -> str:
    """The newest checkpoint file, or "" when checkpointing is off."""
    checkpoints = [c for c in trainer.callbacks if isinstance(c, ModelCheckpoint)]
    return str(checkpoints[0].last_model_path or "") if checkpoints else ""


@hydra.main(config_path="../conf", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    run_dir, in_sweep = job_context()
    metrics = run_job(lambda: train(cfg, run_dir, in_sweep), run_dir, in_sweep=in_sweep)
    return None if metrics is None else metrics["J&F"]


if __name__ == "__main__":
    main()
