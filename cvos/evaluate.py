"""`python -m cvos.evaluate [ckpt=<path>] data=<name> [data.root=<path>]`: segment, score.

Writes into the run directory: `masks/<sequence>/<frame>.png` (indexed, at the frames' size),
`sequences.csv` (one row per sequence), `metrics.json` (overall J&F and speed), `overlays/`.
For YouTube-VOS, whose validation ground truth is hidden, it writes `submission.zip` instead
of scoring.
"""

from __future__ import annotations

import csv
import json
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
from omegaconf import DictConfig
from PIL import Image
from tqdm import tqdm

from cvos.cli import check_data_config, instantiate, job_context, run_job, wandb_offline
from cvos.data import EvalSequence
from cvos.errors import ConfigError
from cvos.inference import Propagator, SequenceResult, SequenceTiming, segment_sequence
from cvos.inference.outputs import overlay
from cvos.lit import load_checkpoint
from cvos.masks import write_label_png
from cvos.metrics import COLUMNS, SequenceScores, evaluate_sequence, report
from cvos.models import CVOSNet

OVERLAY_FRAMES = 3  # frames per sequence saved as overlays


@dataclass
class EvaluationRun:
    """What accumulates over the sequences of one evaluation."""

    scores: list[SequenceScores] = field(default_factory=list)
    timing: SequenceTiming = field(default_factory=SequenceTiming)
    rows: list[dict[str, Any]] = field(default_factory=list)


def load_network(cfg: DictConfig) -> CVOSNet | None:
    """The trained network from `ckpt`, or None for `mask_warp` without one."""
    if cfg.ckpt is not None:
        return load_checkpoint(cfg.ckpt, variant=cfg.model.variant).net
    if cfg.model.propagation != "mask":
        raise ConfigError(
            f"model={cfg.model.variant} needs a trained network: set ckpt=<path to a .ckpt> "
            "(or use model=mask_warp, which runs without one)"
        )
    return None


def save_masks(run_dir: Path, sequence: EvalSequence, result: SequenceResult) -> None:
    for name, labels in zip(sequence.frame_names, result.labels, strict=True):
        write_label_png(run_dir / "masks" / sequence.name / f"{name}.png", labels)


def overlay_picks(sequence: EvalSequence) -> set[int]:
    """The frames shown as overlays: first, middle and last."""
    count = len(sequence.frame_names)
    return {0, count // 2, count - 1}


def save_overlays(run_dir: Path, sequence: EvalSequence, result: SequenceResult) -> list[Path]:
    """Overlay the masks on the kept frames; returns the PNG paths."""
    paths = []
    for index, rgb in sorted(result.kept.items()):
        path = run_dir / "overlays" / f"{sequence.name}_{sequence.frame_names[index]}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(overlay(rgb, result.labels[index])).save(path)
        paths.append(path)
    return paths


def sequence_row(
    sequence: EvalSequence, result: SequenceResult, scores: SequenceScores | None
) -> dict:
    """One CSV row: the sequence's J/F columns (when scored) and its speed."""
    row: dict[str, Any] = {"sequence": sequence.name, "frames": result.timing.frames}
    if scores is not None:
        row.update(report([scores]).per_sequence[sequence.name])
    row["fps"] = result.timing.frames / max(result.timing.total_s, 1e-9)
    return row


def speed(timing: SequenceTiming) -> dict[str, float]:
    """fps with decode included, and milliseconds per I-frame, per P-frame and per decode."""

    def mean_ms(values: list[float]) -> float:
        return 1000.0 * float(np.mean(values)) if values else float("nan")

    return {
        "fps": timing.frames / max(timing.total_s, 1e-9),
        "ms_per_iframe": mean_ms(timing.iframe_s),
        "ms_per_pframe": mean_ms(timing.pframe_s),
        "decode_ms_per_frame": 1000.0 * timing.decode_s / max(timing.frames, 1),
        "frames": timing.frames,
    }


def merge_timing(total: SequenceTiming, part: SequenceTiming) -> None:
    total.decode_s += part.decode_s
    total.iframe_s.extend(part.iframe_s)
    total.pframe_s.extend(part.pframe_s)


def evaluate(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Segment every sequence of the split, write masks and reports, return the metrics."""
    check_data_config(cfg.data)
    net = load_network(cfg)
    device = torch.device(cfg.device)
    if net is not None:
        net = net.to(device).eval()
    datamodule = instantiate(cfg.data)
    sequences = [replace(s, decode=cfg.decode) for s in datamodule.eval_sequences(cfg.split)]
    run = EvaluationRun()
    overlays: list[Path] = []
    for sequence in tqdm(sequences, desc=f"evaluate {cfg.data.name}/{cfg.split}", unit="seq"):
        propagator = Propagator(
            net, propagation=cfg.model.propagation, input_size=cfg.model.input_size, device=device
        )
        wants_overlays = len(overlays) < cfg.overlay_sequences * OVERLAY_FRAMES
        keep = overlay_picks(sequence) if wants_overlays else set()
        result = segment_sequence(propagator, sequence, keep_frames=keep)
        merge_timing(run.timing, result.timing)
        save_masks(run_dir, sequence, result)
        scores = None
        if sequence.gt_masks is not None:
            scores = evaluate_sequence(
                sequence.name, sequence.gt_masks, result.labels, sequence.object_ids
            )
            run.scores.append(scores)
        run.rows.append(sequence_row(sequence, result, scores))
        if wants_overlays:
            overlays.extend(save_overlays(run_dir, sequence, result))
    return write_reports(cfg, run_dir, run, overlays)


def write_reports(cfg: DictConfig, run_dir: Path, run: EvaluationRun, overlays: list[Path]) -> dict:
    """sequences.csv, metrics.json (and submission.zip when nothing could be scored)."""
    metrics: dict[str, Any] = {"status": "ok", "data": cfg.data.name, "split": cfg.split}
    metrics["model"] = cfg.model.variant
    if run.scores:
        overall = report(run.scores).global_
        metrics.update({"J&F": overall["J&F-Mean"], "J": overall["J-Mean"], "F": overall["F-Mean"]})
        metrics["global"] = overall
    else:
        metrics["submission"] = str(write_submission(run_dir))
    metrics.update(speed(run.timing))
    with open(run_dir / "sequences.csv", "w", newline="") as handle:
        fields = ["sequence", "frames", *(COLUMNS if run.scores else []), "fps"]
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(run.rows)
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    log_overlays(cfg, overlays)
    summary = (
        f"J&F {metrics['J&F']:.3f} (J {metrics['J']:.3f}, F {metrics['F']:.3f}), "
        if run.scores
        else ""
    )
    print(
        f"{summary}{metrics['fps']:.1f} frames/s over {metrics['frames']} frames "
        f"({metrics['ms_per_iframe']:.1f} ms per I-frame, "
        f"{metrics['ms_per_pframe']:.1f} ms per P-frame, "
        f"decode {metrics['decode_ms_per_frame']:.1f} ms per frame); results in {run_dir}"
    )
    return metrics


def write_submission(run_dir: Path) -> Path:
    """Zip the masks in the YouTube-VOS submission layout (`Annotations/<video>/<frame>.png`)."""
    archive = run_dir / "submission.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as handle:
        for png in sorted((run_dir / "masks").rglob("*.png")):
            handle.write(png, Path("Annotations") / png.relative_to(run_dir / "masks"))
    return archive


def log_overlays(cfg: DictConfig, overlays: list[Path]) -> None:
    """Send the overlay PNGs to W&B when the wandb logger is selected."""
    if not overlays or "wandb" not in (cfg.logger or {}):
        return
    import wandb

    wandb_cfg = cfg.logger.wandb
    run = wandb.init(
        project=wandb_cfg.project,
        entity=wandb_cfg.entity,
        group=wandb_cfg.group,
        dir=str(overlays[0].parents[1]),
        job_type="evaluate",
        mode="offline" if wandb_offline(wandb_cfg.offline) else "online",
    )
    run.log({"overlays": [wandb.Image(str(path), caption=path.stem) for path in overlays]})
    run.finish()


@hydra.main(config_path="../conf", config_name="evaluate", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    run_dir, in_sweep = job_context()
    metrics = run_job(lambda: evaluate(cfg, run_dir), run_dir, in_sweep=in_sweep)
    return None if metrics is None else metrics.get("J&F")


if __name__ == "__main__":
    main()
