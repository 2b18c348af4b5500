"""Extending cvos as the README says: a new encoder is one file plus one YAML; a trained
network leaves the training stack behind (`cvos.export`, `cvos.models.load_net`)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from jobs import REPO, TINY_DATA, compose_job
from torch import Tensor, nn

from cvos.export import export
from cvos.models import ENCODERS, Encoder, load_net, register_encoder
from cvos.train import train

TOY_CHANNELS = 24


class ToyEncoder(Encoder):
    """One strided conv: the smallest thing that satisfies the encoder contract."""

    def __init__(self) -> None:
        super().__init__(out_channels=TOY_CHANNELS, stride=8)
        self.conv = nn.Conv2d(3, TOY_CHANNELS, 8, stride=8)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


@pytest.fixture(scope="module")
def toy() -> Iterator[str]:
    """Register the toy encoder, as a new file in cvos/models/encoders/ would; forget it after."""
    register_encoder("toy", channels=TOY_CHANNELS, stride=8)(ToyEncoder)
    yield "toy"
    del ENCODERS["toy"]


@pytest.fixture(scope="module")
def trained(toy: str, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One training step of rsm_sam with the toy encoder, through the normal train config."""
    run_dir = tmp_path_factory.mktemp("toy-run")
    overrides = [
        f"data.cache_dir={tmp_path_factory.mktemp('cache')}", *TINY_DATA,
        f"encoder.name={toy}", "++trainer.max_steps=1", "callbacks.progress_bar=null",
    ]  # fmt: skip
    return train(compose_job("train", overrides, run_dir), run_dir)


def test_a_registered_encoder_trains_one_step_through_the_normal_config(trained: dict) -> None:
    checkpoint = torch.load(trained["checkpoint"], map_location="cpu", weights_only=True)
    assert checkpoint["global_step"] == 1
    net, config = load_net(trained["checkpoint"])
    assert config.encoder["name"] == "toy" and isinstance(net.encoder, ToyEncoder)
    assert net.project.out_channels == TOY_CHANNELS  # the heads follow the registered width


def test_export_holds_the_network_alone_and_loads_back_identically(
    trained: dict, tmp_path: Path
) -> None:
    out = tmp_path / "model.pt"
    export(compose_job("export", [f"ckpt={trained['checkpoint']}", f"out={out}"], tmp_path))
    payload = torch.load(out, map_location="cpu", weights_only=True)
    assert set(payload) == {"format", "version", "config", "state_dict"}
    assert not any(key.startswith("net.") for key in payload["state_dict"])
    exported, config = load_net(out)
    original, original_config = load_net(trained["checkpoint"])
    assert config == original_config and config.variant == "rsm_sam"
    image = torch.rand(1, 3, 48, 80)
    torch.testing.assert_close(exported.encode(image), original.encode(image), rtol=0, atol=0)


def test_inference_runs_without_the_training_stack() -> None:
    """The import check of the issue, in a fresh interpreter (this one has Lightning loaded)."""
    check = (
        "import sys, cvos.inference, cvos.models, cvos.codec, cvos.metrics, cvos.evaluation; "
        "bad = [m for m in sys.modules "
        "if m.split('.')[0] in ('pytorch_lightning', 'lightning', 'hydra', 'wandb')]; "
        "assert not bad, bad"
    )
    result = subprocess.run(
        [sys.executable, "-c", check], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
