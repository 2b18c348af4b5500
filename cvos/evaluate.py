"""`python -m cvos.evaluate [ckpt=<path>] [model=<variant>] data=<name> [data.root=<path>]`.

Segments every video of a split with a trained network (or the training-free `mask_warp`),
at the codec settings and input size the network was trained with unless overridden, and
writes masks, `sequences.csv`, `metrics.json`, `run.json` and overlays into the run folder.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from cvos.cli import build_loggers, finish_loggers, instantiate, job_context, run_job
from cvos.cli.loggers import log_images
from cvos.evaluation import (
    evaluate_split,
    load_network,
    run_record,
    summary_line,
    with_overrides,
    write_reports,
)
from cvos.inference import prepare_network

SETTINGS = ("codec", "gop_size", "quality")
INFERENCE = ("input_size", "iframe_window", "iframe_correction", "bank_cap")


def evaluate(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Segment and score the split; returns the metrics."""
    variant = OmegaConf.select(cfg, "model.net.variant")
    propagation = OmegaConf.select(cfg, "model.net.propagation")
    net, config = load_network(cfg.ckpt, variant, propagation)
    requested = {name: cfg.data[name] for name in SETTINGS}
    knobs = {name: cfg[name] for name in INFERENCE}
    config, overridden = with_overrides(config, **requested, **knobs)
    data = instantiate(cfg.data, **{name: getattr(config, name) for name in SETTINGS})
    sequences = [replace(s, decode=cfg.decode) for s in data.eval_sequences(cfg.split)]
    if net is not None:
        net = prepare_network(
            net, device=cfg.device, channels_last=cfg.channels_last, compile=cfg.compile
        )
    loggers = build_loggers(cfg, run_dir, in_sweep=False, job_type="evaluate")
    status = "failed"
    try:
        result = evaluate_split(
            net, config, sequences, run_dir,
            device=cfg.device, precision=cfg.precision, channels_last=cfg.channels_last,
            overlay_sequences=cfg.overlay_sequences,
        )  # fmt: skip
        record = {**run_record(config, cfg.ckpt, overridden), "data": data.name, "split": cfg.split}
        metrics = write_reports(result, run_dir, record)
        for logger in loggers:
            logger.log_metrics({k: v for k, v in metrics.items() if isinstance(v, float)})
        log_images(loggers, "overlays", result.overlays)
        status = "success"
    finally:
        finish_loggers(loggers, status)
    print(summary_line(metrics, run_dir))
    return metrics


@hydra.main(config_path="../conf", config_name="evaluate", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    run_dir, in_sweep = job_context()
    metrics = run_job(lambda: evaluate(cfg, run_dir), run_dir, in_sweep=in_sweep)
    return None if metrics is None else metrics.get("J&F")


if __name__ == "__main__":
    main()
