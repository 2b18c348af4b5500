"""The trained DAVIS-2016 model that ships in `models/`: a plain file that loads and still helps."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from jobs import compose_job
from omegaconf import OmegaConf

from cvos.evaluate import evaluate
from cvos.models import NetConfig, build_net, load_net

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "models" / "davis16_cpu.pt"
MAX_BYTES = 20 * 2**20


def test_the_shipped_model_is_a_small_plain_file_of_the_recipe() -> None:
    assert MODEL.stat().st_size <= MAX_BYTES
    torch.load(MODEL, weights_only=True)  # tensors and plain config only
    net, config = load_net(MODEL)
    assert (config.variant, config.gop_size, config.codec, config.input_size) == (
        "rsm_sam",
        12,
        "mpeg4",
        (240, 432),
    )
    assert config.encoder["name"] == "compact" and config.bank_cap == 128
    assert config.iframe_correction == 0.75  # chosen on held-out train sequences
    assert sum(p.numel() for p in net.parameters()) == 1_453_956


@pytest.mark.slow
def test_the_shipped_model_beats_mask_warp_on_davis_val(
    davis2016_root: Path, tmp_path: Path
) -> None:
    """On the DAVIS-2016 val sequences at hand (never trained on) the recipe's model scores at
    least mask_warp + 0.05 J&F, with F gaining at least as much as J."""
    scores = {}
    for name, model in (("net", f"ckpt={MODEL}"), ("warp", "model=mask_warp")):
        run_dir = tmp_path / name
        overrides = [
            model, "data=davis16", f"data.root={davis2016_root}",
            f"data.cache_dir={tmp_path / 'cache'}", "overlay_sequences=0",
        ]  # fmt: skip
        scores[name] = evaluate(compose_job("evaluate", overrides, run_dir), run_dir)
    net, warp = scores["net"], scores["warp"]
    assert net["J&F"] >= warp["J&F"] + 0.05
    assert net["F"] - warp["F"] >= net["J"] - warp["J"]


@pytest.mark.parametrize(
    ("experiment", "pframe_decoder", "pframe_widths"),
    [("davis16_cpu", (24, 8, 16, 16, 8), (8, 16, 32)),
     ("davis16_cpu_light_p", (24, 0, 16, 16, 0), (16, 32))],
)  # fmt: skip
def test_the_recipes_p_frame_paths(
    tmp_path: Path, experiment: str, pframe_decoder: tuple, pframe_widths: tuple
) -> None:
    """The recipe keeps the shipped model's P-frame path; the light variant (measured faster and
    less accurate, see the README) only changes that path."""
    cfg = compose_job("train", [f"experiment={experiment}", "data.root=/data/DAVIS"], tmp_path)
    config = NetConfig(**OmegaConf.to_container(cfg.model.net, resolve=True))
    shipped = load_net(MODEL)[1]
    assert (config.pframe_decoder, config.pframe_widths) == (pframe_decoder, pframe_widths)
    same = ("iframe_decoder", "embed_dim", "bank_cap", "input_size", "pframe_band")
    assert all(getattr(config, name) == getattr(shipped, name) for name in same)
    if experiment == "davis16_cpu":
        assert config == shipped
    build_net(config)  # both build
