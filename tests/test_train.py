"""`python -m cvos.train` end to end on the synthetic data: resume, DDP, bad overrides.

Every model variant's fast_dev_run and the W&B offline runs are in test_sweep.py (one sweep).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
TINY = [
    "data.samples_per_epoch=8",
    "data.batch_size=4",
    "data.num_workers=0",
    "data.max_val_sequences=2",
    "model.embed_dim=32",
]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One synthetic dataset and prepared cache for every run of this session."""
    return tmp_path_factory.mktemp("cvos-cache")


def train(
    run_dir: Path, cache: Path, *overrides: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run the training entry point in a subprocess, its outputs in `run_dir`."""
    command = [sys.executable, "-m", "cvos.train", f"hydra.run.dir={run_dir}", *TINY, *overrides]
    environment = {**os.environ, "CVOS_CACHE": str(cache), "WANDB_MODE": "offline", **(env or {})}
    environment.pop("WANDB_API_KEY", None)
    return subprocess.run(
        command, cwd=REPO, env=environment, capture_output=True, text=True, timeout=600
    )


def metrics_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    checkpoint = torch.load(
        run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True
    )
    return checkpoint["state_dict"], checkpoint["global_step"]


def test_resume_continues_exactly(tmp_path: Path, cache_dir: Path) -> None:
    """Resuming from the epoch-1 checkpoint of a 2-epoch run ends with that run's weights."""
    common = ["trainer.check_val_every_n_epoch=100", "model=rsm_sam", "trainer.max_epochs=2"]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    result = train(straight, cache_dir, *common, "checkpoint.save_top_k=-1")
    assert result.returncode == 0, result.stderr[-3000:]
    middle = (
        straight / "checkpoints" / "epoch000-step000002.ckpt"
    )  # 8 samples / batch 4 = 2 steps an epoch
    result = train(resumed, cache_dir, *common, f"ckpt_path={middle}")
    assert result.returncode == 0, result.stderr[-3000:]
    expected, expected_step = final_weights(straight)
    weights, step = final_weights(resumed)
    assert step == expected_step == 4
    for name, tensor in expected.items():
        torch.testing.assert_close(weights[name], tensor, msg=name)


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("model=nope", "model"),
        ("data.gop_size=0", "data.gop_size"),
        ("data=davis16", "data.root"),
        ("ckpt_path=/no/such.ckpt", "/no/such.ckpt"),
    ],
)
def test_bad_override_fails_before_work_with_one_message(
    override: str, expected: str, tmp_path: Path, cache_dir: Path
) -> None:
    result = train(tmp_path, cache_dir, override)
    assert result.returncode != 0
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "checkpoints").exists()


def test_ddp_on_two_cpu_processes_scores_like_one_process(tmp_path: Path, cache_dir: Path) -> None:
    """Two gloo processes each validate half the videos; the synced J&F equals one process's."""
    ddp = tmp_path / "ddp"
    result = train(
        ddp, cache_dir, "model=warp", "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2",
        "trainer.precision=32-true", "trainer.max_epochs=1", "data.max_val_sequences=3",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    checkpoint = ddp / "checkpoints" / "last.ckpt"
    single = tmp_path / "single"
    command = [
        sys.executable, "-m", "cvos.evaluate", f"hydra.run.dir={single}", "model=warp",
        f"ckpt={checkpoint}", "data.max_val_sequences=3", "model.embed_dim=32",
    ]  # fmt: skip
    environment = {**os.environ, "CVOS_CACHE": str(cache_dir)}
    evaluated = subprocess.run(
        command, cwd=REPO, env=environment, capture_output=True, text=True, timeout=600
    )
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    expected = metrics_of(single)
    assert len((single / "sequences.csv").read_text().splitlines()) == 1 + 3
    # Each DDP process runs on fewer threads, so a few boundary pixels may round the other way.
    for key in ("J&F", "J", "F"):
        assert metrics_of(ddp)[key] == pytest.approx(expected[key], abs=1e-4)
