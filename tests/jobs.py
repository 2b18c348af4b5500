"""Run entry points in-process: compose a config as Hydra would, then call the job function.

Only tests of the process boundary itself (exit status, a one-line error, a multirun) start a
subprocess; everything else composes here, which saves the interpreter and import start-up.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

REPO = Path(__file__).resolve().parents[1]

TINY_DATA = [  # a synthetic set that prepares in a second: 2 train and 2 val clips of 12 frames
    "data.synthetic.num_train=2",
    "data.synthetic.num_val=2",
    "data.synthetic.min_frames=12",
    "data.synthetic.max_frames=12",
    "data.synthetic.height=48",
    "data.synthetic.width=80",
    "data.crop_size=[40,64]",
    "data.samples_per_epoch=4",
    "data.batch_size=2",
    "data.num_workers=0",
    "data.prepare_workers=1",
]


def compose_job(config_name: str, overrides: list[str], run_dir: Path) -> DictConfig:
    """The config `python -m cvos.<config_name> <overrides>` would run with, its run folder
    `run_dir` (what `${hydra:runtime.output_dir}` resolves to)."""
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name, overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(run_dir)
        HydraConfig.instance().set_config(cfg)
        del cfg["hydra"]  # a job's config has no hydra node; HydraConfig holds it
    run_dir.mkdir(parents=True, exist_ok=True)
    return cfg


def run_module(module: str, *overrides: str, env: dict[str, str] | None = None):
    """`python -m <module> <overrides>` in a subprocess (W&B offline, without a key)."""
    environment = {**os.environ, "WANDB_MODE": "offline", **(env or {})}
    environment.pop("WANDB_API_KEY", None)
    environment.pop("CVOS_DAVIS2016", None)  # the defaults, not the caller's environment
    return subprocess.run(
        [sys.executable, "-m", module, *overrides],
        cwd=REPO, env=environment, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
