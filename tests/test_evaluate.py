"""`cvos.evaluate` and `cvos.segment`: masks, reports, speed, run.json and their errors."""

from __future__ import annotations

import csv
import importlib
import json
import time
from pathlib import Path

import av
import numpy as np
import pytest
from jobs import TINY_DATA, compose_job, run_module
from PIL import Image

from cvos.codec import EncodeSettings, PictureType, encode_video
from cvos.codec.synthetic import moving_square_video
from cvos.data import EvalSequence
from cvos.errors import CheckpointError, ConfigError, DataError
from cvos.evaluate import evaluate
from cvos.inference import Propagator
from cvos.models import NetConfig, build_net, save_net
from cvos.segment import segment


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


def evaluate_with(run_dir: Path, cache: Path, *overrides: str) -> dict:
    cfg = compose_job("evaluate", [f"data.cache_dir={cache}", *TINY_DATA, *overrides], run_dir)
    return evaluate(cfg, run_dir)


def test_mask_warp_evaluation_writes_masks_reports_and_run_record(
    tmp_path: Path, cache: Path, capsys: pytest.CaptureFixture
) -> None:
    metrics = evaluate_with(tmp_path, cache, "model=mask_warp")
    assert 0.2 < metrics["J&F"] <= 1.0 and metrics == json.loads(
        (tmp_path / "metrics.json").read_text()
    )
    with open(tmp_path / "sequences.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2 and {"J&F-Mean", "J-Mean", "F-Mean", "fps"} <= set(rows[0])
    assert sum(int(row["frames"]) for row in rows) == metrics["frames"] == 24
    for row in rows:
        masks = sorted((tmp_path / "masks" / row["sequence"]).glob("*.png"))
        assert len(masks) == int(row["frames"])
        mask = Image.open(masks[-1])
        assert mask.mode == "P" and mask.size == (80, 48)  # the frames' size, not the padded one
    assert len(list((tmp_path / "overlays").glob("*.png"))) == 6  # first, middle, last of each
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["variant"] == "mask_warp" and run["checkpoint"] is None
    assert (run["codec"], run["gop_size"], run["quality"]) == ("mpeg4", 12, 5)
    assert run["frames"] == 24 and run["fps"] == metrics["fps"] and run["overridden"] == {}
    assert f"J&F {metrics['J&F']:.3f}" in capsys.readouterr().out


class FakeClock:
    """A perf_counter that moves only when told: decoding a frame takes 1 ms, segmenting an
    I-frame 7 ms and a P-frame 3 ms."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_speed_figures_are_the_measured_times_per_frame_kind(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock()
    monkeypatch.setattr(time, "perf_counter", clock)
    stream_module = importlib.import_module("cvos.inference.stream")  # not the function
    monkeypatch.setattr(stream_module, "read_ahead", iter)  # the fake clock in one thread
    frames, step = EvalSequence.frames, Propagator.step

    def timed_frames(sequence: EvalSequence):
        for frame in frames(sequence):
            clock.now += 0.001
            yield frame

    def timed_step(propagator: Propagator, frame, masks=None, inputs=None):
        clock.now += 0.007 if frame.picture_type == PictureType.I else 0.003
        return step(propagator, frame, masks, inputs)

    monkeypatch.setattr(EvalSequence, "frames", timed_frames)
    monkeypatch.setattr(Propagator, "step", timed_step)
    metrics = evaluate_with(tmp_path, cache, "model=mask_warp")
    assert metrics["frames"] == 24  # two sequences of 12 frames: 2 I-frames and 22 P-frames
    assert metrics["decode_ms_per_frame"] == pytest.approx(1.0)
    assert metrics["ms_per_start_frame"] == pytest.approx(7.0)  # the I-frames start each video
    assert metrics["ms_per_iframe"] is None  # no other I-frame
    assert metrics["ms_per_pframe"] == pytest.approx(3.0)
    assert metrics["fps"] == pytest.approx(24 / (0.024 + 2 * 0.007 + 22 * 0.003))


def untrained(path: Path, variant: str = "warp", **settings) -> Path:
    config = NetConfig(variant=variant, use_rsm=False, use_sam=False, embed_dim=16, **settings)
    return save_net(build_net(config), config, path)


SPEED_KEYS = (
    "decode_ms_per_frame", "inputs_ms_per_frame", "network_ms_per_iframe",
    "network_ms_per_pframe", "post_ms_per_frame", "cpu_ms_per_frame", "write_ms_per_frame",
    "score_ms_per_frame",
)  # fmt: skip


def test_evaluate_reports_where_each_frames_time_goes(
    tmp_path: Path, cache: Path, capsys: pytest.CaptureFixture
) -> None:
    checkpoint = untrained(tmp_path / "warp.pt")
    longer = ("data.synthetic.min_frames=14", "data.synthetic.max_frames=14")  # a second I-frame
    metrics = evaluate_with(
        tmp_path / "run", cache, f"ckpt={checkpoint}", "precision=bf16", "channels_last=true",
        *longer,
    )  # fmt: skip
    assert all(metrics[key] >= 0 for key in SPEED_KEYS) and metrics["frames"] == 28
    assert metrics["network_ms_per_iframe"] > 0 and metrics["network_ms_per_pframe"] > 0
    assert metrics["inputs_ms_per_frame"] > 0 and metrics["cpu_ms_per_frame"] > 0
    out = capsys.readouterr().out
    assert "per frame: decode" in out and "off the hot path: writing masks" in out
    plain = evaluate_with(tmp_path / "mask_warp", cache, "model=mask_warp")
    assert plain["network_ms_per_pframe"] == plain["inputs_ms_per_frame"] == 0.0  # no network


def test_a_checkpoint_of_another_variant_or_not_a_checkpoint_is_refused(
    tmp_path: Path, cache: Path
) -> None:
    checkpoint = untrained(tmp_path / "warp.pt")
    with pytest.raises(CheckpointError, match="variant 'warp', not 'rsm_sam'"):
        evaluate_with(tmp_path, cache, "model=rsm_sam", f"ckpt={checkpoint}")
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable cvos checkpoint"):
        evaluate_with(tmp_path, cache, f"ckpt={garbage}")


def test_a_bad_checkpoint_is_one_line_naming_it(tmp_path: Path) -> None:
    checkpoint = tmp_path / "model.ckpt"
    checkpoint.write_bytes(b"not a checkpoint")
    result = run_module("cvos.evaluate", f"ckpt={checkpoint}", f"hydra.run.dir={tmp_path}")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0 and str(checkpoint) in result.stderr


def test_the_networks_codec_settings_are_used_and_overrides_recorded(
    tmp_path: Path, cache: Path, caplog: pytest.LogCaptureFixture
) -> None:
    checkpoint = untrained(tmp_path / "warp.pt", gop_size=6, input_size=(48, 80))
    evaluate_with(tmp_path / "own", cache, f"ckpt={checkpoint}")
    run = json.loads((tmp_path / "own" / "run.json").read_text())
    assert (run["variant"], run["gop_size"], run["input_size"]) == ("warp", 6, [48, 80])
    assert run["overridden"] == {} and not caplog.records
    evaluate_with(tmp_path / "other", cache, f"ckpt={checkpoint}", "data.gop_size=4")
    run = json.loads((tmp_path / "other" / "run.json").read_text())
    assert run["gop_size"] == 4 and run["overridden"] == {"gop_size": 4}
    assert "gop_size=4 overrides the network's gop_size (it was trained with 6)" in caplog.text


def test_evaluate_without_data_root_says_what_to_set(tmp_path: Path, cache: Path) -> None:
    overrides = [f"data.cache_dir={cache}", "data=davis16", "data.root=/no/such/davis"]
    with pytest.raises(ConfigError, match="data.root=/no/such/davis: no such folder"):
        evaluate(compose_job("evaluate", overrides, tmp_path), tmp_path)
    with pytest.raises(ConfigError, match="needs a trained network: set ckpt="):
        evaluate_with(tmp_path, cache, "model=rsm_sam")


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


def segment_with(run_dir: Path, *overrides: str) -> dict:
    return segment(compose_job("segment", list(overrides), run_dir), run_dir)


def test_segment_any_video_from_a_first_mask(clip: tuple[Path, Path], tmp_path: Path) -> None:
    video, mask = clip
    run = segment_with(tmp_path, f"video={video}", f"mask={mask}")
    masks = sorted((tmp_path / "masks").glob("*.png"))
    assert len(masks) == 20 == run["frames"]
    assert (np.asarray(Image.open(masks[0])) > 0).sum() == 40 * 40
    assert (tmp_path / "canonical.m4v").is_file()  # H.264 input was re-encoded first
    with av.open(str(tmp_path / "overlay.mp4")) as container:
        assert sum(1 for _ in container.decode(video=0)) == 20
    assert (run["variant"], run["gop_size"]) == ("mask_warp", 12)
    assert run == json.loads((tmp_path / "run.json").read_text())


def test_segment_encodes_at_the_gop_the_network_was_trained_with(
    clip: tuple[Path, Path], tmp_path: Path
) -> None:
    video, mask = clip
    checkpoint = untrained(tmp_path / "gop6.pt", gop_size=6)
    run = segment_with(tmp_path / "run", f"video={video}", f"mask={mask}", f"ckpt={checkpoint}")
    assert run["gop_size"] == 6 and run["overridden"] == {}
    with av.open(str(tmp_path / "run" / "canonical.m4v")) as container:
        keyframes = [packet.is_keyframe for packet in container.demux(video=0) if packet.size]
    assert [i for i, key in enumerate(keyframes) if key] == [0, 6, 12, 18]


def test_segment_rejects_an_empty_first_mask(clip: tuple[Path, Path], tmp_path: Path) -> None:
    video, _ = clip
    empty = tmp_path / "empty.png"
    Image.fromarray(np.zeros((96, 136), np.uint8)).save(empty)
    with pytest.raises(DataError, match=f"{empty}: the first-frame mask has no object"):
        segment_with(tmp_path / "run", f"video={video}", f"mask={empty}")
