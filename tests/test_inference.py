"""Streaming propagation over real compressed videos of known motion."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import threading
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cvos.codec import CompressedVideo, EncodeSettings, PictureType, encode_video
from cvos.codec.motion import warp_labels
from cvos.codec.synthetic import SyntheticVideo, moving_square_video
from cvos.errors import DataError
from cvos.evaluation.writer import MaskWriter
from cvos.inference import Propagator, merge_objects
from cvos.metrics import region_similarity
from cvos.models import CVOSNet, NetConfig, build_net, mask_warp_config, soft_aggregate, warp_mask
from cvos.models.geometry import dilate

FRAMES, HEIGHT, WIDTH = 24, 128, 224
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def square(tmp_path_factory: pytest.TempPathFactory) -> tuple[SyntheticVideo, Path]:
    """A 64 px square moving (+3, +2) px a frame over a panning background, encoded at GOP 12."""
    video = moving_square_video(
        FRAMES, HEIGHT, WIDTH, square_size=64, square_motion=(3, 2), background_motion=(-1, 1)
    )
    path = tmp_path_factory.mktemp("square") / "square.m4v"
    encode_video(video.frames, path, EncodeSettings(gop_size=12, quality=3))
    return video, path


def run(propagator: Propagator, path: Path, starts: dict[int, np.ndarray]) -> list[np.ndarray]:
    with CompressedVideo(path) as video:
        return [propagator.step(frame, starts.get(frame.index)).labels for frame in video]


def tiny(propagation: str = "feature", **flags: bool) -> tuple[CVOSNet, NetConfig]:
    """An untrained tiny network and its config."""
    torch.manual_seed(0)
    config = NetConfig(variant="test", propagation=propagation, embed_dim=32, **flags)
    return build_net(config).eval(), config


def test_mask_warp_without_network_tracks_the_square(square: tuple[SyntheticVideo, Path]) -> None:
    video, path = square
    first = video.masks[0].astype(np.uint8)
    labels = run(Propagator(None, mask_warp_config()), path, {0: first})
    tracked = [region_similarity(labels[t] == 1, video.masks[t]) for t in range(1, FRAMES)]
    copied = [region_similarity(first == 1, video.masks[t]) for t in range(1, FRAMES)]
    # Blocks that straddle the square's edge carry the background's motion, so the warped
    # mask erodes frame after frame (measured: J 0.94 at frame 1, 0.46 at 11, 0.32 at 23);
    # the copied mask loses the square entirely.
    assert tracked[0] > 0.9
    assert np.mean(tracked) > 0.45
    assert copied[-1] == 0.0
    assert all(t > c + 0.1 for t, c in zip(tracked[4:], copied[4:], strict=True))


def test_feature_propagation_segments_every_object_with_flat_state(
    square: tuple[SyntheticVideo, Path],
) -> None:
    video, path = square
    first = np.zeros((HEIGHT, WIDTH), np.uint8)
    first[video.masks[0]] = 3
    first[90:120, 170:210] = 7
    propagator = Propagator(*tiny(use_rsm=True, use_sam=True))
    shapes = []
    with CompressedVideo(path) as stream:
        for frame in stream:
            output = propagator.step(frame, first if frame.index == 0 else None)
            assert output.labels.shape == (HEIGHT, WIDTH)
            assert set(np.unique(output.labels)) <= {0, 3, 7}
            assert output.object_ids == [3, 7]
            state = propagator.state
            banks = tuple(bank.keys.shape for bank in state.banks)
            shapes.append((state.key_feats.shape, state.labels.shape, banks))
    assert len(set(shapes)) == 1  # nothing accumulates frame after frame


def test_objects_start_on_the_frame_of_their_first_mask(
    square: tuple[SyntheticVideo, Path],
) -> None:
    video, path = square
    late = np.zeros((HEIGHT, WIDTH), np.uint8)
    late[video.masks[5]] = 2
    early = np.zeros((HEIGHT, WIDTH), np.uint8)
    early[100:120, 180:210] = 1
    labels = run(
        Propagator(*tiny(use_rsm=False, use_sam=True)),
        path,
        {0: early, 5: late},
    )
    assert all(2 not in frame for frame in labels[:5])
    assert np.array_equal(labels[5] == 2, video.masks[5])
    assert propagator_ids(labels) == {0, 1, 2}


@pytest.mark.parametrize("propagation", ["feature", "mask"])
def test_inputs_sampled_ahead_segment_as_inputs_sampled_in_the_step(
    square: tuple[SyntheticVideo, Path], propagation: str
) -> None:
    """`stream` samples each frame's inputs in a thread (`sample_inputs`): the same masks,
    starting on an I-frame or on the P-frame before one (whose residual the I-frame's decoder
    would read). The decoders' last convs are randomised: untrained, they output the prior."""
    video, path = square
    with CompressedVideo(path) as stream:
        frames = list(stream)
    for start in (0, 11):
        net, config = tiny(propagation, use_rsm=True, use_sam=True)
        for decoder in (net.idec, net.pdec):
            torch.nn.init.normal_(decoder.out.weight, std=0.5)
        inline, ahead = Propagator(net, config), Propagator(net, config)
        first = video.masks[start].astype(np.uint8)
        for frame in frames[start:]:
            masks = first if frame.index == start else None
            expected = inline.step(frame, masks).labels
            got = ahead.step(frame, masks, ahead.sample_inputs(frame)).labels
            assert np.array_equal(got, expected), f"frame {frame.index}"
            if inline.state.probs is not None:  # None after mask propagation's P-frames
                assert torch.equal(ahead.state.probs, inline.state.probs), f"frame {frame.index}"


def propagator_ids(labels: list[np.ndarray]) -> set[int]:
    return {int(v) for frame in labels for v in np.unique(frame)}


def test_framewise_runs_the_encoder_on_every_frame(square: tuple[SyntheticVideo, Path]) -> None:
    video, path = square
    net, config = tiny("framewise", use_rsm=False, use_sam=False)
    calls = []
    net.encoder.register_forward_hook(lambda *_: calls.append(1))
    run(Propagator(net, config), path, {0: video.masks[0].astype(np.uint8)})
    assert len(calls) == FRAMES
    calls.clear()
    feature = NetConfig(**{**config.to_dict(), "propagation": "feature"})
    run(Propagator(net, feature), path, {0: video.masks[0].astype(np.uint8)})
    assert len(calls) == FRAMES // 12  # I-frames only


# ---------------------------------------------------------------- the fast paths


def blockwise_vectors(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """H x W x 2 int32, one random whole-pixel vector per 16 x 16 block, pointing anywhere
    (also outside the frame: sources there take the border)."""
    blocks = rng.integers(-20, 21, (height // 16 + 1, width // 16 + 1, 2), dtype=np.int32)
    return np.repeat(np.repeat(blocks, 16, axis=0), 16, axis=1)[:height, :width]


def test_integer_label_warp_equals_the_grid_sample_warp_of_one_hot_masks() -> None:
    rng = np.random.default_rng(0)
    coded = blockwise_vectors(rng, 48, 96)
    vectors = coded[:, :85]  # a crop, as DAVIS frames are of their coded size: rows not adjacent
    labels = rng.integers(0, 4, (48, 85)).astype(np.uint8)
    one_hot = torch.from_numpy(np.eye(4, dtype=np.float32)[labels]).permute(2, 0, 1)[None]
    flow = torch.from_numpy(np.ascontiguousarray(vectors)).permute(2, 0, 1)[None].float()
    reference = warp_mask(one_hot, flow).argmax(dim=1)[0].numpy()
    np.testing.assert_array_equal(warp_labels(labels, vectors), reference)


def test_chaining_the_vectors_equals_warping_the_key_frame_with_the_accumulated_ones(
    square: tuple[SyntheticVideo, Path],
) -> None:
    video, path = square
    key = video.masks[0].astype(np.uint8)
    chained = key
    with CompressedVideo(path) as frames:
        for frame in frames:
            if frame.picture_type == PictureType.I:
                key = chained
            chained = warp_labels(chained, frame.mv)
            np.testing.assert_array_equal(chained, warp_labels(key, frame.mv_acc))


def test_merging_objects_is_the_argmax_of_soft_aggregation() -> None:
    torch.manual_seed(0)
    for objects in (1, 3):
        logits = torch.randn(objects, 40, 50) * 4  # foreground minus background
        window = (torch.rand(objects, 40, 50) > 0.3).float()
        for win in (None, window):
            probs = logits.sigmoid() * (1 if win is None else win)
            expected = soft_aggregate(probs[None])[0].argmax(dim=0).numpy()
            for ids in ([5, 9, 2][:objects], [1, 2, 3][:objects]):
                labels = merge_objects(logits, ids, win)
                np.testing.assert_array_equal(labels, np.array([0, *ids], np.uint8)[expected])


def test_one_objects_label_is_the_sign_of_its_logit_as_soft_aggregation_gives() -> None:
    """One object: the sign of the upsampled logit is the argmax of the soft aggregation of
    the full-size probabilities."""
    logits = torch.randn(1, 16, 24) * 4
    up = F.interpolate(logits[None], size=(64, 96), mode="bilinear", align_corners=False)[0]
    old = soft_aggregate(up.sigmoid()[None])[0].argmax(dim=0).numpy()
    np.testing.assert_array_equal(merge_objects(up, [1]), old.astype(np.uint8))


def test_the_mask_writer_holds_back_a_producer_that_outruns_it(tmp_path: Path) -> None:
    release = threading.Event()
    with MaskWriter(max_pending=2) as writer:
        writer.submit(release.wait)
        writer.write(tmp_path / "0.png", np.ones((4, 4), np.uint8))
        blocked = threading.Thread(
            target=writer.write, args=(tmp_path / "1.png", np.ones((4, 4), np.uint8))
        )
        blocked.start()
        blocked.join(timeout=0.2)
        assert blocked.is_alive()  # two writes pending: the third waits for a free slot
        release.set()
        blocked.join()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["0.png", "1.png"]
    assert writer.count == 3


def test_a_failed_write_is_raised_when_the_writer_closes(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="boom"), MaskWriter() as writer:
        writer.submit(_fail)
        writer.write(tmp_path / "ok.png", np.ones((4, 4), np.uint8))


def _fail() -> None:
    raise DataError("boom")


def test_bench_model_checks_every_mode_against_float32_on_the_cpu(
    capsys: pytest.CaptureFixture,
) -> None:
    """The benchmark's CPU path, small: bf16 and channels_last labels agree with float32's."""
    bench_model = load_script("bench_model")
    status = bench_model.main(
        ["--encoders", "tiny", "--variants", "framewise", "rsm_sam", "--modes", "float32",
         "bf16", "channels_last", "--video-size", "64", "112", "--size", "64", "112",
         "--frames", "14", "--repeats", "1", "--skip-objects"]
    )  # fmt: skip
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| tiny |")]
    assert status == 0 and len(rows) == 6 and "NOT met |" not in out.replace("P/I", "")
    assert all(float(row.split("|")[-2]) >= 0.98 for row in rows)


def load_script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_the_gpu_script_runs_the_whole_table_on_the_cpu() -> None:
    """bench_gpu.sh end to end with DEVICE=cpu: setup checks, both tables, exit status."""
    small = {"DEVICE": "cpu", "ENCODERS": "tiny", "SIZES": "64x112", "FRAMES": "14"}
    small.update({"MODES": "float32 channels_last", "VIDEO_SIZE": "64x112"})
    done = subprocess.run(
        ["bash", "scripts/bench_gpu.sh"], cwd=REPO, env={**os.environ, **small},
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [line for line in done.stdout.splitlines() if line.startswith("| tiny |")]
    assert len(rows) == 4 * 2 + 3  # 4 variants x 2 modes, then 3 variants x object counts
    assert "| none | mask_warp |" in done.stdout


def test_dilation_by_a_summed_area_table_equals_a_max_pool() -> None:
    masks = (torch.rand(3, 40, 70) > 0.995).float()
    masks[2] = 0
    for radius in (0, 1, 10):
        pooled = F.max_pool2d(masks[None], 2 * radius + 1, stride=1, padding=radius)[0]
        torch.testing.assert_close(dilate(masks, radius), pooled, rtol=0, atol=0)
