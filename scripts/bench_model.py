"""Speed of the CVOS network on a CPU at 480p: is the compressed-domain shortcut worth it?

Times, in one run with the same weights and inputs: the I-frame path (encode) and the
P-frame path (propagate with RSM + SAM) of a ResNet-50 network, the decoder, and the
throughput over a GOP of 12 of the variants rsm_sam, warp, mask_warp and framewise
(each including the decoder wherever the variant runs it). Targets: P-frame path at most
1/5 of the I-frame path; rsm_sam at least 3.5x faster than framewise.

    python scripts/bench_model.py [--encoder resnet50] [--repeats 5] [--gop-repeats 1]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from cvos.models import CVOSNet, Reference, build_encoder, soft_aggregate, warp_mask

HEIGHT, WIDTH = 480, 864  # DAVIS 480p, width padded to a multiple of 16
GOP = 12
MAX_P_TO_I = 1 / 5
MIN_SPEEDUP = 3.5
MAX_MOTION = 16  # pixels; random whole-pixel vectors like the codec's


@dataclass
class Frame:
    """One frame's network inputs (batch of 1), shared by every frame of the benchmark."""

    image: Tensor  # 1 x 3 x H x W in [0, 1]
    mv_acc: Tensor  # 1 x 2 x H x W
    residual_acc: Tensor  # 1 x 3 x H x W in [-1, 1]
    mv: Tensor  # 1 x 2 x H x W
    prior: Tensor  # 1 x 1 x H x W
    mask: Tensor  # 1 x 1 x H x W in {0, 1}


def make_frame() -> Frame:
    def motion() -> Tensor:
        return torch.randint(-MAX_MOTION, MAX_MOTION + 1, (1, 2, HEIGHT, WIDTH)).float()

    mask = torch.zeros(1, 1, HEIGHT, WIDTH)
    mask[..., HEIGHT // 4 : 3 * HEIGHT // 4, WIDTH // 3 : 2 * WIDTH // 3] = 1.0
    return Frame(
        image=torch.rand(1, 3, HEIGHT, WIDTH),
        mv_acc=motion(),
        residual_acc=torch.rand(1, 3, HEIGHT, WIDTH) * 2 - 1,
        mv=motion(),
        prior=torch.rand(1, 1, HEIGHT, WIDTH),
        mask=mask,
    )


def median_seconds(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def feature_gop(net: CVOSNet, frame: Frame, ref: Reference) -> None:
    """rsm_sam / warp: encode the I-frame, propagate to P-frames, decode every frame."""
    key = net.encode(frame.image)
    net.decode(key, ref, (HEIGHT, WIDTH))
    for _ in range(GOP - 1):
        p = net.propagate(key, frame.mv_acc, frame.residual_acc, frame.mv, frame.prior)
        net.decode(p.feats, ref, (HEIGHT, WIDTH))


def mask_warp_gop(net: CVOSNet, frame: Frame, ref: Reference) -> None:
    """mask_warp: segment the I-frame, then only warp its probabilities."""
    logits = net.decode(net.encode(frame.image), ref, (HEIGHT, WIDTH))  # 1 x O x 2 x H x W
    probs = soft_aggregate(logits.softmax(dim=2)[:, :, 1])  # 1 x (O + 1) x H x W
    for _ in range(GOP - 1):
        warp_mask(probs, frame.mv_acc)


def framewise_gop(net: CVOSNet, frame: Frame, ref: Reference) -> None:
    """framewise: the encoder and decoder on every frame."""
    for _ in range(GOP):
        net.decode(net.encode(frame.image), ref, (HEIGHT, WIDTH))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", default="resnet50")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per path")
    parser.add_argument("--gop-repeats", type=int, default=1, help="timed GOPs per variant")
    args = parser.parse_args()

    torch.manual_seed(0)
    encoder = build_encoder(args.encoder)
    full = CVOSNet(encoder, use_rsm=True, use_sam=True).eval()
    plain = CVOSNet(encoder, use_rsm=False, use_sam=False).eval()
    frame = make_frame()
    print(f"{args.encoder} at {HEIGHT}x{WIDTH}, CPU threads: {torch.get_num_threads()}")

    with torch.inference_mode():
        key = full.encode(frame.image)
        ref = full.reference(key, frame.mask)
        i_path = median_seconds(lambda: full.encode(frame.image), args.repeats)
        p_path = median_seconds(
            lambda: full.propagate(key, frame.mv_acc, frame.residual_acc, frame.mv, frame.prior),
            args.repeats,
        )
        decoder = median_seconds(lambda: full.decode(key, ref, (HEIGHT, WIDTH)), args.repeats)
        print(f"I-frame path (encode):          {1e3 * i_path:8.1f} ms")
        print(f"P-frame path (propagate, full): {1e3 * p_path:8.1f} ms")
        print(f"decoder (1 object):             {1e3 * decoder:8.1f} ms")

        variants = {
            "rsm_sam": lambda: feature_gop(full, frame, ref),
            "warp": lambda: feature_gop(plain, frame, ref),
            "mask_warp": lambda: mask_warp_gop(full, frame, ref),
            "framewise": lambda: framewise_gop(full, frame, ref),
        }
        fps = {
            name: GOP / median_seconds(run, args.gop_repeats, warmup=0)
            for name, run in variants.items()
        }
    for name, rate in fps.items():
        speedup = rate / fps["framewise"]
        print(f"GOP {GOP} throughput {name:10s} {rate:6.2f} frames/s  ({speedup:4.2f}x framewise)")

    p_to_i = p_path / i_path
    speedup = fps["rsm_sam"] / fps["framewise"]
    print(f"P/I cost ratio {p_to_i:.3f} (target <= {MAX_P_TO_I:.2f}): {met(p_to_i <= MAX_P_TO_I)}")
    print(
        f"rsm_sam speedup {speedup:.2f}x (target >= {MIN_SPEEDUP}x): {met(speedup >= MIN_SPEEDUP)}"
    )


def met(ok: bool) -> str:
    return "met" if ok else "NOT met"


if __name__ == "__main__":
    main()
