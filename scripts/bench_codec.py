"""Benchmark the compressed-domain reader against a plain decode and coviar's access pattern.

Encodes an 854x480 video (a DAVIS 2016 sequence of 60+ frames when the data is
present, else synthetic textured motion) as MPEG-4 Part 2, GOP 12, then measures in
one run:
  floor        PyAV decode to BGR, nothing else (no reader can beat the decoder),
               converting with one reused swscale context as the reader does; PyAV's
               `to_ndarray(format="bgr24")`, which builds a context per frame, is
               printed too but is not the floor;
  single pass  CompressedVideo: image, mv, mv_acc, residual, residual_acc per frame;
  coviar calls three `load` calls per frame (accumulated mv, plain mv, accumulated
               residual), each opening the file and decoding from the GOP's I-frame.
Targets: single pass <= 3x the floor's time per frame; coviar calls >= 10x the single
pass's. Each figure is the best of --repeats runs, taken in turns. CPU time (all threads) is printed
as well: the reader decodes in a second thread, so its wall time is below its CPU
time, and on a shared machine wall time also counts other processes. Everything runs
after `reuse_freed_memory()`, the allocator setting the reader makes on first use, so
the floor and the reader are measured under the same allocator.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import av
import numpy as np
from PIL import Image

from cvos.codec import CompressedVideo, EncodedVideo, encode_video, load
from cvos.codec.motion import reuse_freed_memory
from cvos.codec.reader import BGRConverter
from cvos.codec.synthetic import moving_square_video

REPO_ROOT = Path(__file__).resolve().parents[1]
HEIGHT, WIDTH = 480, 854


@dataclass(frozen=True)
class Timing:
    wall_per_frame: float  # seconds
    cpu_per_frame: float

    @property
    def fps(self) -> float:
        return 1.0 / self.wall_per_frame


def davis_frames(min_frames: int) -> tuple[str, list[np.ndarray]] | None:
    """The first DAVIS 2016 sequence with at least `min_frames` 854x480 frames, if any."""
    root = Path(os.environ.get("CVOS_DAVIS2016", REPO_ROOT.parent / "shared/data/davis2016"))
    images = root / "JPEGImages" / "480p"
    if not images.is_dir():
        return None
    for sequence in sorted(images.iterdir()):
        files = sorted(sequence.glob("*.jpg"))
        if len(files) >= min_frames:
            frames = [np.asarray(Image.open(file).convert("RGB")) for file in files]
            if frames[0].shape == (HEIGHT, WIDTH, 3):
                return f"DAVIS 2016 '{sequence.name}'", frames
    return None


def make_video(folder: Path, min_frames: int, synthetic: bool) -> tuple[str, EncodedVideo]:
    found = None if synthetic else davis_frames(min_frames)
    if found is None:
        frames = moving_square_video(
            min_frames, HEIGHT, WIDTH, square_size=160, square_start=(40, 40)
        ).frames
        found = "synthetic textured motion", list(frames)
    name, frames = found
    return name, encode_video(frames, folder / "bench.m4v")


def plain_decode(path: Path) -> int:
    to_bgr, frames = BGRConverter(), 0
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            to_bgr(frame)
            frames += 1
    return frames


def pyav_to_ndarray(path: Path) -> int:
    frames = 0
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            frame.to_ndarray(format="bgr24")
            frames += 1
    return frames


def single_pass(path: Path) -> int:
    frames = 0
    with CompressedVideo(path) as video:
        for frame in video:
            _ = frame.bgr, frame.mv, frame.mv_acc, frame.residual, frame.residual_acc
            frames += 1
    return frames


def coviar_calls(path: Path, positions: list[tuple[int, int]]) -> int:
    for gop, position in positions:
        load(path, gop, position, 1, True)
        load(path, gop, position, 1, False)
        load(path, gop, position, 2, True)
    return len(positions)


def measure(runs: dict[str, tuple[Callable[[], int], int]]) -> dict[str, Timing]:
    """Best per-frame time of each run over its number of repeats.

    Runs take turns, round after round, so that a slow spell of a shared machine
    slows all of them rather than one, and the ratios stay meaningful.
    """
    best = {name: Timing(float("inf"), float("inf")) for name in runs}
    for round_number in range(max(repeats for _, repeats in runs.values())):
        for name, (run, repeats) in runs.items():
            if round_number >= repeats:
                continue
            wall, cpu = time.perf_counter(), time.process_time()
            frames = run()
            best[name] = Timing(
                min(best[name].wall_per_frame, (time.perf_counter() - wall) / frames),
                min(best[name].cpu_per_frame, (time.process_time() - cpu) / frames),
            )
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=60, help="minimum number of frames")
    parser.add_argument("--repeats", type=int, default=5, help="runs per measurement (best)")
    parser.add_argument("--synthetic", action="store_true", help="skip DAVIS, use synthetic")
    args = parser.parse_args()
    reuse_freed_memory()
    with tempfile.TemporaryDirectory() as folder:
        name, encoded = make_video(Path(folder), args.frames, args.synthetic)
        print(
            f"video: {name}, {encoded.num_frames} frames {encoded.width}x{encoded.height} "
            f"(coded {encoded.coded_width}x{encoded.coded_height}), MPEG-4 Part 2, GOP 12"
        )
        with CompressedVideo(encoded.path) as video:
            positions = [(frame.gop_index, frame.gop_position) for frame in video]
        timings = measure(
            {
                "floor (decode to BGR)": (partial(plain_decode, encoded.path), args.repeats),
                "PyAV to_ndarray (context per frame)": (
                    partial(pyav_to_ndarray, encoded.path), args.repeats,
                ),
                "single pass, all representations": (
                    partial(single_pass, encoded.path), args.repeats,
                ),
                "coviar pattern (3 load calls/frame)": (
                    partial(coviar_calls, encoded.path, positions), max(1, args.repeats // 3),
                ),
            }
        )  # fmt: skip
    for label, timing in timings.items():
        print(
            f"{label:<38} {timing.fps:8.1f} frames/s   "
            f"{1e3 * timing.wall_per_frame:7.2f} ms/frame   "
            f"{1e3 * timing.cpu_per_frame:7.2f} ms CPU/frame"
        )
    floor, _, single, coviar = timings.values()
    print(
        f"single pass / floor:   {single.wall_per_frame / floor.wall_per_frame:5.2f}x wall, "
        f"{single.cpu_per_frame / floor.cpu_per_frame:5.2f}x CPU   (target <= 3)"
    )
    print(
        f"coviar / single pass:  {coviar.wall_per_frame / single.wall_per_frame:5.1f}x wall, "
        f"{coviar.cpu_per_frame / single.cpu_per_frame:5.1f}x CPU   (target >= 10)"
    )


if __name__ == "__main__":
    main()
