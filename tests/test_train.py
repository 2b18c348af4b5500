"""`cvos.train` on the synthetic data: one short run in-process, resume and DDP in subprocesses,
bad overrides that fail before any work.

Every model variant's fast_dev_run and the W&B offline runs are in test_sweep.py (one sweep).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from jobs import TINY_DATA, compose_job, run_module

from cvos.errors import ConfigError
from cvos.models import load_net
from cvos.train import train

TINY = [*TINY_DATA, "model.net.embed_dim=16", "trainer.max_epochs=1", "callbacks.progress_bar=null"]


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One synthetic dataset and prepared cache for every run of this session."""
    return tmp_path_factory.mktemp("cvos-cache")


def train_in_process(run_dir: Path, cache: Path, *overrides: str) -> dict:
    cfg = compose_job("train", [f"data.cache_dir={cache}", *TINY, *overrides], run_dir)
    return train(cfg, run_dir)


def test_a_short_run_writes_metrics_and_a_checkpoint_of_its_network(
    tmp_path: Path, cache_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    metrics = train_in_process(tmp_path, cache_dir, "model=sam", "data.gop_size=6")
    assert metrics == json.loads((tmp_path / "metrics.json").read_text())
    assert 0.0 <= metrics["J&F"] <= 1.0 and metrics["mask_warp_J&F"] > 0.3
    frame_ms = metrics["ms_per_iframe"], metrics["ms_per_pframe"]
    assert min(frame_ms) > 0 and metrics["fps"] > 0
    net, config = load_net(metrics["checkpoint"])
    assert (config.variant, config.gop_size, config.use_sam, config.use_rsm) == (
        "sam",
        6,
        True,
        False,
    )
    assert config.encoder == {"name": "tiny", "weights": None, "frozen_bn": False}
    assert sum(p.numel() for p in net.parameters()) == metrics["params"]
    printed = capsys.readouterr().out
    assert f"validation J&F {metrics['J&F']:.3f}" in printed and "against mask_warp" in printed
    assert (tmp_path / "csv").is_dir()  # the default logger


def test_clips_within_one_gop_record_no_iframe_time_rather_than_nan(
    tmp_path: Path, cache_dir: Path
) -> None:
    metrics = train_in_process(tmp_path, cache_dir, "data.gop_size=1000")
    assert metrics["ms_per_iframe"] is None and metrics["ms_per_pframe"] > 0
    assert json.loads((tmp_path / "metrics.json").read_text())["ms_per_iframe"] is None


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("data.gop_size=0", "data.gop_size must be a whole number >= 1"),
        ("data=davis16", "data=davis16 needs its dataset folder: set data.root"),
        ("ckpt_path=/no/such.ckpt", "ckpt_path=/no/such.ckpt: no such checkpoint file"),
        ("model.net.propagation=sideways", "propagation must be one of"),
    ],
)
def test_bad_overrides_fail_before_any_work(
    override: str, expected: str, tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CVOS_DAVIS2016", raising=False)  # data.root's default comes from it
    overrides = [f"data.cache_dir={cache_dir}", override]
    with pytest.raises(ConfigError, match=expected):
        train(compose_job("train", overrides, tmp_path), tmp_path)
    assert not (tmp_path / "checkpoints").exists()


def test_a_bad_override_is_one_line_and_exit_status_1(tmp_path: Path) -> None:
    result = run_module("cvos.train", "data.gop_size=0", f"hydra.run.dir={tmp_path}")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: data.gop_size must be")
    unknown = run_module("cvos.train", "model=nope", f"hydra.run.dir={tmp_path}")
    assert unknown.returncode == 1 and "model" in unknown.stderr


def final_weights(run_dir: Path) -> tuple[dict[str, torch.Tensor], int]:
    checkpoint = torch.load(
        run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True
    )
    return checkpoint["state_dict"], checkpoint["global_step"]


@pytest.mark.slow
def test_resume_continues_exactly(tmp_path: Path, cache_dir: Path) -> None:
    """A 3-epoch run on 2 loader workers, resumed from the end of epoch 1 and from the middle of
    epoch 1, ends with the uninterrupted run's weights, bit for bit.

    It did not: Lightning builds a resumed run's first loader iterator (whose workers draw
    their first batches at once) before it sets the sampler's epoch, so the resumed epoch
    replayed epoch 0's samples. The checkpoint now records the loader's position.
    """
    common = [
        *TINY, f"data.cache_dir={cache_dir}", "trainer.check_val_every_n_epoch=100",
        "model=rsm_sam", "trainer.max_epochs=3", "data.num_workers=2", "data.samples_per_epoch=8",
    ]  # fmt: skip
    straight = tmp_path / "straight"
    every_2_steps = [
        "+callbacks.steps._target_=pytorch_lightning.callbacks.ModelCheckpoint",
        f"+callbacks.steps.dirpath={straight / 'steps'}",
        "+callbacks.steps.every_n_train_steps=2",
        "+callbacks.steps.save_top_k=-1",
        "+callbacks.steps.filename='step{step:06d}'",
        "+callbacks.steps.auto_insert_metric_name=false",
    ]
    result = run_module(
        "cvos.train", *common, *every_2_steps, "callbacks.model_checkpoint.save_top_k=-1",
        f"hydra.run.dir={straight}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    expected, expected_step = final_weights(straight)
    assert expected_step == 12  # 4 batches of 2 an epoch
    starts = {
        "epoch_end": straight / "checkpoints" / "epoch001-step000008.ckpt",
        "mid_epoch": straight / "steps" / "step000006.ckpt",
    }
    for name, checkpoint in starts.items():
        resumed = tmp_path / name
        result = run_module(
            "cvos.train", *common, f"ckpt_path={checkpoint}", f"hydra.run.dir={resumed}"
        )
        assert result.returncode == 0, result.stderr[-3000:]
        weights, step = final_weights(resumed)
        assert step == expected_step
        for key, tensor in expected.items():
            assert torch.equal(weights[key], tensor), f"{key} after resuming at {name}"


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_scores_like_one_process(tmp_path: Path, cache_dir: Path) -> None:
    """Two gloo processes each validate half the videos; the synced J&F equals one process's."""
    ddp, single = tmp_path / "ddp", tmp_path / "single"
    result = run_module(
        "cvos.train", *TINY, f"data.cache_dir={cache_dir}", "model=warp", "trainer=ddp",
        "trainer.accelerator=cpu", "trainer.devices=2", "trainer.precision=32-true",
        f"hydra.run.dir={ddp}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    evaluated = run_module(
        "cvos.evaluate", *TINY_DATA, f"data.cache_dir={cache_dir}",
        f"ckpt={ddp / 'checkpoints' / 'last.ckpt'}", f"hydra.run.dir={single}",
    )  # fmt: skip
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    expected = json.loads((single / "metrics.json").read_text())
    assert len((single / "sequences.csv").read_text().splitlines()) == 1 + 2
    # Each DDP process runs on fewer threads, so a few boundary pixels may round the other way.
    got = json.loads((ddp / "metrics.json").read_text())
    for key in ("J&F", "J", "F"):
        assert got[key] == pytest.approx(expected[key], abs=1e-4)
