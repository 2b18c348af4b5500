"""End-to-end speed of `python -m cvos.evaluate` for rsm_sam, mask_warp and framewise, in one run.

Every variant segments the same sequences (DAVIS 2016 val when present, else the synthetic val
split) through the real command line, decode included. Speed does not depend on training, so
rsm_sam and framewise use checkpoints of untrained networks written here; mask_warp runs
without one. Prints frames per second and where each frame's time went (as `cvos.evaluate`
reports it: decode wait, inputs, network per I-/P-frame, warping and post-processing, CPU time
of all threads; writing and scoring, off the hot path), and the ratios to framewise.

    python scripts/bench_evaluate.py [--encoder tiny] [--input-size 256 512] [--cache-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from cvos.models import NetConfig, build_net, save_net

REPO = Path(__file__).resolve().parents[1]
DAVIS = Path(os.environ.get("CVOS_DAVIS2016", REPO.parent / "shared" / "data" / "davis2016"))
VARIANTS = {  # variant -> (propagation, use_rsm, use_sam)
    "rsm_sam": ("feature", True, True),
    "mask_warp": ("mask", False, False),
    "framewise": ("framewise", False, False),
}


def write_checkpoint(path: Path, variant: str, encoder: str) -> None:
    """An untrained network in the exported form (tensors and its NetConfig)."""
    propagation, use_rsm, use_sam = VARIANTS[variant]
    config = NetConfig(
        variant=variant,
        propagation=propagation,
        encoder={"name": encoder},
        use_rsm=use_rsm,
        use_sam=use_sam,
    )
    save_net(build_net(config), config, path)


def evaluate(variant: str, checkpoint: Path | None, data: list[str], run_dir: Path) -> dict:
    """One `python -m cvos.evaluate` run; its metrics.json."""
    command = [sys.executable, "-m", "cvos.evaluate", f"model={variant}", *data]
    command += [f"hydra.run.dir={run_dir}", "overlay_sequences=0"]
    if checkpoint is not None:
        command.append(f"ckpt={checkpoint}")
    subprocess.run(command, cwd=REPO, check=True, capture_output=True, text=True)
    return json.loads((run_dir / "metrics.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", default="tiny")
    parser.add_argument("--input-size", type=int, nargs=2, default=[256, 512], metavar=("H", "W"))
    parser.add_argument("--cache-dir", help="where the prepared sequences are (data.cache_dir)")
    args = parser.parse_args()
    size = f"input_size=[{args.input_size[0]},{args.input_size[1]}]"
    if (DAVIS / "JPEGImages" / "480p").is_dir():
        data = ["data=davis16", f"data.root={DAVIS}", size]
        source = f"DAVIS 2016 val ({DAVIS})"
    else:
        data, source = [size], "synthetic val (DAVIS 2016 not found)"
    if args.cache_dir:
        data.append(f"data.cache_dir={args.cache_dir}")
    print(f"sequences: {source}; encoder {args.encoder}; network input {size.split('=')[1]}")
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        for variant in VARIANTS:
            checkpoint = None
            if variant != "mask_warp":
                checkpoint = work / f"{variant}.ckpt"
                write_checkpoint(checkpoint, variant, args.encoder)
            results[variant] = evaluate(variant, checkpoint, data, work / variant)
    print_table(results)
    base = results["framewise"]["fps"]
    for variant in ("rsm_sam", "mask_warp"):
        print(f"{variant} / framewise speed: {results[variant]['fps'] / base:.2f}x")


COLUMNS = {  # header -> metrics.json key (milliseconds per frame unless said)
    "fps": "fps",
    "ms/I": "ms_per_iframe",
    "ms/P": "ms_per_pframe",
    "decode": "decode_ms_per_frame",
    "inputs": "inputs_ms_per_frame",
    "net I": "network_ms_per_iframe",
    "net P": "network_ms_per_pframe",
    "post": "post_ms_per_frame",
    "CPU": "cpu_ms_per_frame",
    "write*": "write_ms_per_frame",
    "score*": "score_ms_per_frame",
}


def print_table(results: dict[str, dict]) -> None:
    """One row per variant; * marks work off the hot path (not in the fps)."""
    print("| variant | " + " | ".join(COLUMNS) + " | J&F |")
    print("|---|" + "---:|" * (len(COLUMNS) + 1))
    for variant, m in results.items():
        cells = " | ".join(
            f"{m[key]:.1f}" if key == "fps" else f"{m[key]:.2f}" for key in COLUMNS.values()
        )
        print(f"| {variant} | {cells} | {m.get('J&F', float('nan')):.3f} |")
    print("ms per frame, ms/I and ms/P whole steps; net I / net P the network per I-/P-frame; "
          "CPU all threads; * off the hot path (writer thread, after each sequence)")  # fmt: skip


if __name__ == "__main__":
    main()
