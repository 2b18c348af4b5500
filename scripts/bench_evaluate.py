"""End-to-end speed of `python -m cvos.evaluate` for rsm_sam, mask_warp and framewise, in one run.

Every variant segments the same sequences (DAVIS 2016 val when present, else the synthetic val
split) through the real command line, decode included. Speed does not depend on training, so
rsm_sam and framewise use checkpoints of untrained networks written here; mask_warp runs
without one. Prints frames per second, ms per I-/P-frame and decode, and the ratios.

    python scripts/bench_evaluate.py [--encoder resnet50] [--input-size 256 512]
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
    command = [sys.executable, "-m", "cvos.evaluate", f"model={variant}", *data]
    command += [f"hydra.run.dir={run_dir}", "overlay_sequences=0"]
    if checkpoint is not None:
        command.append(f"ckpt={checkpoint}")
    subprocess.run(command, cwd=REPO, check=True, capture_output=True, text=True)
    return json.loads((run_dir / "metrics.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", default="resnet50")
    parser.add_argument("--input-size", type=int, nargs=2, default=[256, 512], metavar=("H", "W"))
    args = parser.parse_args()
    size = f"input_size=[{args.input_size[0]},{args.input_size[1]}]"
    if (DAVIS / "JPEGImages" / "480p").is_dir():
        data = ["data=davis16", f"data.root={DAVIS}", size]
        source = f"DAVIS 2016 val ({DAVIS})"
    else:
        data, source = [], "synthetic val (DAVIS 2016 not found)"
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
    print(f"{'variant':<10} {'fps':>8} {'ms/I':>8} {'ms/P':>8} {'decode ms':>10} {'frames':>7}")
    for variant, m in results.items():
        print(
            f"{variant:<10} {m['fps']:8.2f} {m['ms_per_iframe']:8.1f} {m['ms_per_pframe']:8.1f} "
            f"{m['decode_ms_per_frame']:10.2f} {m['frames']:7d}"
        )
    base = results["framewise"]["fps"]
    for variant in ("rsm_sam", "mask_warp"):
        print(f"{variant} / framewise speed: {results[variant]['fps'] / base:.2f}x")


if __name__ == "__main__":
    main()
