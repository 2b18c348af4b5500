"""`python -m cvos.evaluate` and `python -m cvos.segment` end to end, and their error messages."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from cvos.codec import EncodeSettings, encode_video
from cvos.codec.synthetic import moving_square_video
from cvos.lit import CVOSLitModule, save_checkpoint

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def run(module: str, *overrides: str, cache: Path) -> subprocess.CompletedProcess:
    environment = {**os.environ, "CVOS_CACHE": str(cache)}
    command = [sys.executable, "-m", module, *overrides]
    return subprocess.run(
        command, cwd=REPO, env=environment, capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


def save_untrained(path: Path, variant: str, propagation: str) -> None:
    """A checkpoint as `cvos.train` writes it: tensors and plain config only."""
    module = CVOSLitModule(
        variant=variant, propagation=propagation, encoder={"name": "tiny"}, embed_dim=32
    )
    save_checkpoint(module, path)


def test_mask_warp_evaluation_writes_masks_reports_and_speed(tmp_path: Path, cache: Path) -> None:
    result = run(
        "cvos.evaluate",
        "model=mask_warp",
        "data.max_val_sequences=2",
        f"hydra.run.dir={tmp_path}",
        cache=cache,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert 0.0 < metrics["J&F"] <= 1.0
    assert metrics["fps"] > 0 and metrics["ms_per_iframe"] > 0 and metrics["ms_per_pframe"] > 0
    assert metrics["decode_ms_per_frame"] > 0
    with open(tmp_path / "sequences.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2 and {"J&F-Mean", "J-Mean", "F-Mean", "fps"} <= set(rows[0])
    assert sum(int(row["frames"]) for row in rows) == metrics["frames"]
    for row in rows:
        masks = sorted((tmp_path / "masks" / row["sequence"]).glob("*.png"))
        assert len(masks) == int(row["frames"])
        mask = Image.open(masks[-1])
        assert mask.mode == "P" and mask.size == (200, 120)  # the frames' size, not the padded one
    assert len(list((tmp_path / "overlays").glob("*.png"))) == 6  # first, middle, last of each
    assert f"J&F {metrics['J&F']:.3f}" in result.stdout


@pytest.mark.parametrize(
    ("make_checkpoint", "message"),
    [
        (lambda path: save_untrained(path, "warp", "feature"), "variant 'warp', not 'rsm_sam'"),
        (lambda path: path.write_bytes(b"not a checkpoint"), "not a readable cvos checkpoint"),
    ],
)
def test_a_wrong_checkpoint_is_one_line_naming_it(
    make_checkpoint, message: str, tmp_path: Path, cache: Path
) -> None:
    checkpoint = tmp_path / "model.ckpt"
    make_checkpoint(checkpoint)
    result = run(
        "cvos.evaluate",
        "model=rsm_sam",
        f"ckpt={checkpoint}",
        f"hydra.run.dir={tmp_path}",
        cache=cache,
    )
    assert result.returncode == 1
    assert str(checkpoint) in result.stderr and message in result.stderr
    assert "Traceback" not in result.stderr


def test_evaluate_without_data_root_says_what_to_set(tmp_path: Path, cache: Path) -> None:
    result = run(
        "cvos.evaluate",
        "data=davis16",
        "data.root=/no/such/davis",
        f"hydra.run.dir={tmp_path}",
        cache=cache,
    )
    assert (
        result.returncode == 1
        and "/no/such/davis" in result.stderr
        and "Traceback" not in result.stderr
    )


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """An H.264 MP4 (not the canonical form) of a moving square, and its first-frame mask."""
    folder = tmp_path_factory.mktemp("clip")
    video = moving_square_video(
        20, 96, 136, square_size=40, square_motion=(2, 1), background_motion=(-1, 1)
    )
    encode_video(video.frames, folder / "clip.mp4", EncodeSettings(codec="h264", gop_size=20))
    Image.fromarray((video.masks[0] * 255).astype(np.uint8)).save(folder / "first.png")
    return folder / "clip.mp4", folder / "first.png"


def test_segment_any_video_from_a_first_mask(
    clip: tuple[Path, Path], tmp_path: Path, cache: Path
) -> None:
    video, mask = clip
    result = run(
        "cvos.segment", f"video={video}", f"mask={mask}", f"hydra.run.dir={tmp_path}", cache=cache
    )
    assert result.returncode == 0, result.stderr[-3000:]
    masks = sorted((tmp_path / "masks").glob("*.png"))
    assert len(masks) == 20
    assert (np.asarray(Image.open(masks[0])) > 0).sum() == 40 * 40
    assert (tmp_path / "canonical.m4v").is_file()  # H.264 input was re-encoded first
    with av.open(str(tmp_path / "overlay.mp4")) as container:
        assert sum(1 for _ in container.decode(video=0)) == 20


def test_segment_rejects_an_empty_first_mask(
    clip: tuple[Path, Path], tmp_path: Path, cache: Path
) -> None:
    video, _ = clip
    empty = tmp_path / "empty.png"
    Image.fromarray(np.zeros((96, 136), np.uint8)).save(empty)
    result = run(
        "cvos.segment", f"video={video}", f"mask={empty}", f"hydra.run.dir={tmp_path}", cache=cache
    )
    assert result.returncode == 1
    assert (
        str(empty) in result.stderr
        and "no object" in result.stderr
        and "Traceback" not in result.stderr
    )
