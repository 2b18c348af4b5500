"""A real sweep: `cvos.train -m experiment=ablation_modules`, then `cvos.compare` on it."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from PIL import Image
from wandb_records import read_offline_run

REPO = Path(__file__).resolve().parents[1]
VARIANTS = {"warp", "rsm", "sam", "rsm_sam", "framewise", "mask_warp"}

TINY = [
    "++trainer.fast_dev_run=true",
    "data.samples_per_epoch=8",
    "data.batch_size=4",
    "data.num_workers=0",
    "data.max_val_sequences=1",
    "model.net.embed_dim=32",
]


def run(command: list[str], cache: Path) -> subprocess.CompletedProcess:
    environment = {**os.environ, "CVOS_CACHE": str(cache), "WANDB_MODE": "offline"}
    environment.pop("WANDB_API_KEY", None)
    return subprocess.run(
        command, cwd=REPO, env=environment, capture_output=True, text=True, timeout=900
    )


def sweep_and_compare(sweep: Path, out: Path, cache: Path, *overrides: str) -> None:
    """A tiny multirun of `cvos.train` into `sweep`, then `cvos.compare` on it into `out`."""
    command = [sys.executable, "-m", "cvos.train", "-m", *overrides, f"hydra.sweep.dir={sweep}"]
    result = run([*command, *TINY], cache)
    assert result.returncode == 0, result.stderr[-3000:]
    compared = run([sys.executable, "-m", "cvos.compare", str(sweep), "--out", str(out)], cache)
    assert compared.returncode == 0, compared.stderr[-3000:]


def check_wandb_run(job: Path) -> None:
    """One offline W&B run in the job, with the resolved config, the tags and the final J&F."""
    (run_dir,) = (job / "wandb").glob("offline-run-*")
    recorded = read_offline_run(run_dir)
    variant = recorded.config["model"]["net"]["variant"]
    assert recorded.config["data"]["gop_size"] == 12
    assert {f"model:{variant}", "encoder:tiny", "gop:12"} <= set(recorded.tags)
    metrics = json.loads((job / "metrics.json").read_text())
    assert recorded.summary["final/J&F"] == pytest.approx(metrics["J&F"])


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One synthetic dataset for both sweeps."""
    return tmp_path_factory.mktemp("cache")


@pytest.mark.slow
def test_module_ablation_sweep_and_comparison(tmp_path: Path, cache: Path) -> None:
    sweep, out = tmp_path / "sweep", tmp_path / "comparison"
    sweep_and_compare(sweep, out, cache, "experiment=ablation_modules", "logger=wandb")
    jobs = sorted(path for path in sweep.iterdir() if (path / ".hydra").is_dir())
    assert len(jobs) == len(VARIANTS)
    for job in jobs:  # every model variant ran its fast_dev_run and its own offline W&B run
        check_wandb_run(job)
    with open(out / "comparison.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {row["model"] for row in rows} == VARIANTS
    assert all(row["status"] == "ok" and 0.0 <= float(row["J&F"]) <= 1.0 for row in rows)
    table = [
        line for line in (out / "comparison.md").read_text().splitlines() if line.startswith("|")
    ]
    assert "model" in table[0] and len(table) == 2 + len(VARIANTS)  # header, rule, one row per run
    plot = np.asarray(Image.open(out / "comparison.png").convert("L"))
    assert plot.shape[0] > 100 and plot.std() > 5  # a real figure, not a blank canvas


@pytest.mark.slow
def test_a_failing_job_is_reported_and_the_sweep_goes_on(tmp_path: Path, cache: Path) -> None:
    out = tmp_path / "comparison"
    sweep_and_compare(tmp_path / "sweep", out, cache, "model=warp", "model.net.topk=0,5")
    with open(out / "comparison.csv", newline="") as handle:
        rows = {row["model.net.topk"]: row for row in csv.DictReader(handle)}
    assert rows["5"]["status"] == "ok"
    assert rows["0"]["status"] == "failed" and "topk" in rows["0"]["error"]


@pytest.mark.parametrize(
    ("overrides", "node", "target"),
    [
        (["experiment=search"], "sweeper", "hydra_plugins.hydra_optuna_sweeper"),
        (["hydra/launcher=local_parallel"], "launcher", "hydra_plugins.hydra_joblib_launcher"),
        (
            ["hydra/launcher=slurm", "trainer=ddp"],
            "launcher",
            "hydra_plugins.hydra_submitit_launcher",
        ),
    ],
)
def test_sweeper_and_launcher_configs_compose(overrides: list[str], node: str, target: str) -> None:
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    assert cfg.hydra[node]._target_.startswith(target)
    if overrides[0] == "experiment=search":
        expected = {"model.lr", "model.net.topk", "model.sam_loss_weight"}
        assert set(cfg.hydra.sweeper.params) == expected
        assert cfg.hydra.sweeper.direction == "maximize"
    if "trainer=ddp" in overrides:
        assert cfg.hydra.launcher.gpus_per_node == cfg.trainer.devices == 2
