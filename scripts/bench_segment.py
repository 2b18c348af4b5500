"""Streaming memory of `python -m cvos.segment`: peak RSS for a 20 s and a 2 min 480p video.

Both videos are generated here (moving textured objects, 25 fps, MPEG-4 GOP 12: the canonical
form, so nothing is re-encoded) and segmented by the real command in fresh processes, masks and
overlay video included. Prints each run's peak RSS, the peaks of its first and second half
(sampled every 0.2 s), frames per second and CPU time per frame. Memory that does not grow
with the video's length shows as a second half that peaks no higher than the first: the
allocator and the encoders fill their pools in the first seconds, then RSS stays flat.

    python scripts/bench_segment.py [--seconds 20 120] [--variant mask_warp|rsm_sam]
"""

from __future__ import annotations

import argparse
import json
import runpy
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench_model import synthetic_clip
from PIL import Image

from cvos.codec import EncodeSettings, encode_video
from cvos.models import NetConfig, build_net, save_net

REPO = Path(__file__).resolve().parents[1]
FPS = 25
HEIGHT, WIDTH = 480, 854
MAX_GROWTH = 0.05  # the second half of a run may peak at most this much above its first half


def make_video(folder: Path, seconds: int) -> tuple[Path, Path]:
    """A generated 480p clip (canonical MPEG-4, GOP 12) and its first frame's mask PNG."""
    frames = seconds * FPS
    mask = folder / f"first-{seconds}s.png"

    def rgb_frames():
        for index, (rgb, labels) in enumerate(synthetic_clip(frames, HEIGHT, WIDTH, objects=3)):
            if index == 0:
                Image.fromarray(labels, mode="P").save(mask)
            yield rgb

    video = encode_video(rgb_frames(), folder / f"clip-{seconds}s.m4v", EncodeSettings(gop_size=12))
    return video.path, mask


def segment(video: Path, mask: Path, run_dir: Path, ckpt: Path | None) -> dict:
    """Run `cvos.segment` in a fresh process; its run.json plus its RSS figures (MB)."""
    overrides = [f"video={video}", f"mask={mask}", f"hydra.run.dir={run_dir}"]
    if ckpt is not None:
        overrides.append(f"ckpt={ckpt}")
    command = [sys.executable, __file__, "--child", *overrides]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"cvos.segment failed:\n{done.stderr[-3000:]}")
    memory = json.loads(done.stdout.strip().splitlines()[-1])
    return {**json.loads((run_dir / "run.json").read_text()), **memory}


def resident_mb() -> float:
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmRSS"))
    return int(line.split()[1]) / 1024


def child(overrides: list[str]) -> None:
    """`python -m cvos.segment <overrides>`, sampling RSS; prints the peaks as JSON."""
    samples: list[tuple[float, float]] = []
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.2):
            samples.append((time.perf_counter(), resident_mb()))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    sys.argv = ["cvos.segment", *overrides]
    runpy.run_module("cvos.segment", run_name="__main__", alter_sys=True)
    done.set()
    sampler.join()
    middle = (samples[0][0] + samples[-1][0]) / 2
    halves = [max(mb for t, mb in samples if (t > middle) == late) for late in (False, True)]
    print(
        json.dumps(
            {"peak_rss_mb": max(halves), "first_half_mb": halves[0], "second_half_mb": halves[1]}
        )
    )


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", nargs="+", type=int, default=[20, 120])
    parser.add_argument("--variant", default="mask_warp", choices=["mask_warp", "rsm_sam"])
    parser.add_argument("--input-size", nargs=2, type=int, default=[256, 512])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        ckpt = None
        if args.variant == "rsm_sam":  # speed and memory do not depend on training
            ckpt = work / "rsm_sam.pt"
            config = NetConfig(input_size=tuple(args.input_size))
            save_net(build_net(config), config, ckpt)
        runs = {}
        for seconds in args.seconds:
            video, mask = make_video(work, seconds)
            runs[seconds] = segment(video, mask, work / f"run-{seconds}s", ckpt)
            video.unlink()
    print(f"cvos.segment {args.variant}, {HEIGHT}x{WIDTH} at {FPS} fps, masks + overlay video")
    print("| video | frames | peak RSS MB | 1st half | 2nd half | fps | CPU ms/frame |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for seconds, run in runs.items():
        print(
            f"| {seconds} s | {run['frames']} | {run['peak_rss_mb']:.0f} | "
            f"{run['first_half_mb']:.0f} | {run['second_half_mb']:.0f} | {run['fps']:.1f} | "
            f"{run['cpu_ms_per_frame']:.2f} |"
        )
    longest = runs[max(runs)]
    growth = longest["second_half_mb"] / longest["first_half_mb"] - 1
    verdict = "met" if growth <= MAX_GROWTH else "NOT met"
    print(
        f"peak RSS {runs[min(runs)]['peak_rss_mb']:.0f} MB for {min(runs)} s, "
        f"{longest['peak_rss_mb']:.0f} MB for {max(runs)} s; second half of the {max(runs)} s run "
        f"vs its first: {100 * growth:+.1f}% (target <= {100 * MAX_GROWTH:.0f}%): {verdict}"
    )
    print("fps: the hot path (decode wait + segmentation); writing runs in its own thread")


if __name__ == "__main__":
    main()
