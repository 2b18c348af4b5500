"""Evaluate a network on a dataset split: segment every video, write masks and reports, score.

Writes into the run folder: `masks/<sequence>/<frame>.png` (indexed, at the frames' size),
`sequences.csv` (one row per sequence), `metrics.json` (overall J&F and speed), `run.json`
(the network and settings that ran), `overlays/`. For YouTube-VOS, whose validation ground
truth is hidden, `submission.zip` takes the place of the scores.
"""

from __future__ import annotations

import csv
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn
from tqdm import tqdm

from cvos.data import EvalSequence
from cvos.evaluation.writer import MaskWriter
from cvos.files import atomic_path, write_json
from cvos.inference import Propagator, StreamTiming, stream
from cvos.inference.outputs import overlay
from cvos.metrics import COLUMNS, SequenceScores, evaluate_sequence, report
from cvos.models import NetConfig

OVERLAY_FRAMES = 3  # frames per sequence saved as overlays: first, middle, last


@dataclass
class SplitResult:
    """What accumulates over the sequences of one evaluation."""

    scores: list[SequenceScores] = field(default_factory=list)
    timing: StreamTiming = field(default_factory=StreamTiming)
    rows: list[dict[str, Any]] = field(default_factory=list)
    overlays: list[Path] = field(default_factory=list)
    write_s: float = 0.0  # time the mask writer spent, in its own thread
    score_s: float = 0.0  # time scoring took, after each sequence (not in the fps)


def overlay_picks(sequence: EvalSequence) -> set[int]:
    count = len(sequence.frame_names)
    return {0, count // 2, count - 1}


def segment_sequence(
    propagator: Propagator,
    sequence: EvalSequence,
    writer: MaskWriter,
    masks_dir: Path,
    keep: set[int],
) -> tuple[np.ndarray, StreamTiming, dict[int, np.ndarray]]:
    """Labels (T x H x W) of every frame, queued for writing as they come; the RGB of `keep`."""
    labels = np.zeros((len(sequence.frame_names), sequence.height, sequence.width), np.uint8)
    timing, kept = StreamTiming(), {}
    frames = stream(propagator, sequence.frames(), sequence.init_masks, timing)
    for index, (frame, output) in enumerate(frames):
        labels[index] = output.labels
        writer.write(masks_dir / f"{sequence.frame_names[index]}.png", output.labels)
        if index in keep:
            kept[index] = frame.bgr[..., ::-1].copy()
    return labels, timing, kept


def save_overlays(
    run_dir: Path, sequence: EvalSequence, labels: np.ndarray, kept: dict[int, np.ndarray]
) -> list[Path]:
    paths = []
    for index, rgb in sorted(kept.items()):
        path = run_dir / "overlays" / f"{sequence.name}_{sequence.frame_names[index]}.png"
        with atomic_path(path) as temporary:
            Image.fromarray(overlay(rgb, labels[index])).save(temporary, format="PNG")
        paths.append(path)
    return paths


def evaluate_split(
    net: nn.Module | None,
    config: NetConfig,
    sequences: list[EvalSequence],
    run_dir: Path,
    *,
    device: torch.device | str = "cpu",
    precision: str = "float32",
    channels_last: bool = False,
    overlay_sequences: int = 3,
) -> SplitResult:
    """Segment and score every sequence (those with full ground truth), writing their masks."""
    result = SplitResult()
    options = {"device": device, "precision": precision, "channels_last": channels_last}
    with MaskWriter() as writer:
        for number, sequence in enumerate(tqdm(sequences, desc="evaluate", unit="seq")):
            propagator = Propagator(net, config, **options)
            keep = overlay_picks(sequence) if number < overlay_sequences else set()
            masks_dir = run_dir / "masks" / sequence.name
            labels, timing, kept = segment_sequence(propagator, sequence, writer, masks_dir, keep)
            result.timing.merge(timing)
            start = time.perf_counter()
            scores = None
            if sequence.gt_masks is not None:
                scores = evaluate_sequence(
                    sequence.name, sequence.gt_masks, labels, sequence.object_ids
                )
                result.scores.append(scores)
            result.score_s += time.perf_counter() - start
            result.rows.append(sequence_row(sequence.name, timing, scores))
            result.overlays.extend(save_overlays(run_dir, sequence, labels, kept))
    result.write_s = writer.seconds
    return result


def sequence_row(name: str, timing: StreamTiming, scores: SequenceScores | None) -> dict:
    """One CSV row: the sequence's J/F columns (when scored) and its speed."""
    row: dict[str, Any] = {"sequence": name, "frames": timing.frames}
    if scores is not None:
        row.update(report([scores]).per_sequence[name])
    row["fps"] = timing.fps
    return row


def speed(timing: StreamTiming, write_s: float, score_s: float = 0.0) -> dict[str, float | None]:
    """fps with decode included, and where each frame's time went (milliseconds).

    Decode is the time spent waiting for the reader's threads; inputs (sampled ahead in a
    thread, or in the step where a frame was not), network and post (mask warping, upsampling,
    merging objects) split each frame's work; writing (its own thread) and
    scoring (after each sequence) are off the hot path and not in the fps. CPU time counts
    every thread of the process while frames were decoded and segmented.
    """
    frames = max(timing.frames, 1)

    def mean_ms(values: list[float]) -> float | None:
        return 1000.0 * float(np.mean(values)) if values else None  # None: no such frame

    def per_frame(seconds: float) -> float:
        return 1000.0 * seconds / frames

    def per_iframe(seconds: float) -> float:
        return 1000.0 * seconds / max(len(timing.iframe_s), 1)

    def per_pframe(seconds: float) -> float:
        return 1000.0 * seconds / max(len(timing.pframe_s), 1)

    s_stages, i_stages, p_stages = timing.start_stages, timing.iframe_stages, timing.pframe_stages
    return {
        "fps": timing.fps,
        "frames": timing.frames,
        "ms_per_start_frame": mean_ms(timing.start_s),
        "ms_per_iframe": mean_ms(timing.iframe_s),
        "ms_per_pframe": mean_ms(timing.pframe_s),
        "decode_ms_per_frame": per_frame(timing.decode_s),
        "inputs_ms_per_frame": per_frame(
            timing.inputs_ahead_s + s_stages.inputs + i_stages.inputs + p_stages.inputs
        ),
        "network_ms_per_iframe": per_iframe(i_stages.network),
        "network_ms_per_pframe": per_pframe(p_stages.network),
        "encoder_ms_per_iframe": per_iframe(i_stages.features),
        "propagation_ms_per_pframe": per_pframe(p_stages.features),
        "matching_ms_per_frame": per_frame(
            s_stages.matching + i_stages.matching + p_stages.matching
        ),
        "post_ms_per_frame": per_frame(s_stages.post + i_stages.post + p_stages.post),
        "cpu_ms_per_frame": per_frame(timing.cpu_s),
        "write_ms_per_frame": per_frame(write_s),
        "score_ms_per_frame": per_frame(score_s),
        "threads": torch.get_num_threads(),
    }


def write_reports(result: SplitResult, run_dir: Path, record: dict[str, Any]) -> dict[str, Any]:
    """sequences.csv, metrics.json and run.json (`record` plus frames and fps); a
    submission.zip when nothing could be scored. Returns the metrics."""
    metrics: dict[str, Any] = {"status": "ok", "model": record["variant"]}
    if result.scores:
        overall = report(result.scores).global_
        metrics.update({"J&F": overall["J&F-Mean"], "J": overall["J-Mean"], "F": overall["F-Mean"]})
        metrics["global"] = overall
    else:
        metrics["submission"] = str(write_submission(run_dir))
    metrics.update(speed(result.timing, result.write_s, result.score_s))
    with atomic_path(run_dir / "sequences.csv") as temporary, temporary.open("w", newline="") as f:
        columns = ["sequence", "frames", *(COLUMNS if result.scores else []), "fps"]
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(result.rows)
    write_json(run_dir / "metrics.json", metrics)
    write_json(run_dir / "run.json", {**record, "frames": metrics["frames"], "fps": metrics["fps"]})
    return metrics


def write_submission(run_dir: Path) -> Path:
    """Zip the masks in the YouTube-VOS submission layout (`Annotations/<video>/<frame>.png`)."""
    archive = run_dir / "submission.zip"
    masks = run_dir / "masks"
    with (
        atomic_path(archive) as temporary,
        zipfile.ZipFile(temporary, "w", zipfile.ZIP_DEFLATED) as z,
    ):
        for png in sorted(masks.rglob("*.png")):
            z.write(png, Path("Annotations") / png.relative_to(masks))
    return archive


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def summary_line(metrics: dict[str, Any], run_dir: Path) -> str:
    """Scores (when scored) and speed, then where each frame's time went."""
    m = metrics
    scores = f"J&F {m['J&F']:.3f} (J {m['J']:.3f}, F {m['F']:.3f}), " if "J&F" in m else ""
    return (
        f"{scores}{m['fps']:.1f} frames/s over {m['frames']} frames on {m['threads']} threads "
        f"({_ms(m['ms_per_iframe'])} ms per I-frame, {_ms(m['ms_per_pframe'])} ms per P-frame, "
        f"{_ms(m['ms_per_start_frame'])} ms per first frame); "
        f"results in {run_dir}\n"
        f"  per frame: decode {m['decode_ms_per_frame']:.2f} ms (waiting for the reader threads)"
        f" | inputs {m['inputs_ms_per_frame']:.2f} ms (sampled ahead) | network "
        f"{m['network_ms_per_iframe']:.1f} ms per I-frame (encoder "
        f"{m['encoder_ms_per_iframe']:.1f}), "
        f"{m['network_ms_per_pframe']:.1f} ms per P-frame (propagation "
        f"{m['propagation_ms_per_pframe']:.1f}), matching decoder {m['matching_ms_per_frame']:.1f}"
        f" ms | warping and post-processing {m['post_ms_per_frame']:.2f} ms | CPU "
        f"{m['cpu_ms_per_frame']:.2f} ms (all threads)\n"
        f"  off the hot path: writing masks {m['write_ms_per_frame']:.2f} ms per frame (writer "
        f"thread), scoring {m['score_ms_per_frame']:.2f} ms per frame"
    )
