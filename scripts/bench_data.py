"""Training samples per second from the DataModule: the prepared cache vs decoding on the fly.

    python scripts/bench_data.py [--workers 2] [--batches 40] [--davis PATH | --no-davis]

Both paths run in this process on the same prepared data, at each dataset's default crop
(conf/data/*.yaml), so the ratio is measured, not assumed. The cached path must keep a GPU
fed: at least 100 samples/s on two workers. DAVIS 2016 is measured too when it is found
(--davis, else CVOS_DAVIS2016, else ../shared/data/davis2016); preparing its train split
once writes about 6 GB under the cache folder.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from cvos.data import VOSData

REPO = Path(__file__).resolve().parents[1]
TARGET = 100.0  # samples/s the cached path must reach


def build(dataset: str, overrides: list[str]) -> VOSData:
    """The DataModule of conf/data/<dataset>.yaml with command-line style overrides."""
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        cfg = compose("prepare", overrides=[f"data={dataset}", *overrides])
    return instantiate(cfg.data, _convert_="all")


def samples_per_second(module: VOSData, batches: int) -> float:
    """Throughput of `batches` training batches after one warm-up batch (worker start-up)."""
    loader = iter(module.train_loader())
    next(loader)
    start = time.perf_counter()
    count = sum(next(loader).key_image.shape[0] for _ in range(batches))
    return count / (time.perf_counter() - start)


def cpu_ms_per_sample(module: VOSData, samples: int) -> float:
    """CPU time of one sample in this process on one thread, as in a loader worker.

    Other programs on the machine pull the samples/s figures down; this one they barely move.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    dataset = module.training_set()
    dataset[0, 0]
    start = time.process_time()
    for index in range(samples):
        dataset[index * 7 % len(dataset), index]
    torch.set_num_threads(threads)
    return (time.process_time() - start) / samples * 1000


def bench(dataset: str, overrides: list[str], workers: int, batches: int) -> float:
    """Print cached vs on-the-fly figures for one dataset; returns the cached samples/s."""
    common = [*overrides, f"data.num_workers={workers}", "data.persistent_workers=false"]
    common.append("data.samples_per_epoch=100000")
    cached = build(dataset, common)
    cached.prepare_all()
    decoding = build(dataset, [*common, "data.decode_on_the_fly=true"])
    crop = "x".join(map(str, cached.crop_size))
    print(f"{dataset}: crop {crop}, batch {cached.batch_size}, {workers} workers")
    print(f"  cache {cached.prepared_dir}")
    fast = samples_per_second(cached, batches)
    slow = samples_per_second(decoding, max(batches // 4, 2))
    fast_cpu = cpu_ms_per_sample(cached, 4 * cached.batch_size)
    slow_cpu = cpu_ms_per_sample(decoding, cached.batch_size)
    verdict = "ok" if fast >= TARGET else f"BELOW the {TARGET:.0f} samples/s target"
    print("                     samples/s  CPU ms/sample  samples/s per free core")
    print(
        f"  cached             {fast:9.1f}  {fast_cpu:13.1f}  {1000 / fast_cpu:23.0f}  ({verdict})"
    )
    print(f"  decode on the fly  {slow:9.1f}  {slow_cpu:13.1f}  {1000 / slow_cpu:23.0f}")
    print(f"  cache speed-up     {fast / slow:8.1f}x  {slow_cpu / fast_cpu:12.1f}x")
    return fast


def davis_root(argument: str | None) -> Path | None:
    if argument is not None:
        return Path(argument)
    root = Path(os.environ.get("CVOS_DAVIS2016", REPO.parent / "shared" / "data" / "davis2016"))
    return root if (root / "JPEGImages").is_dir() else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2, help="DataLoader worker processes")
    parser.add_argument("--batches", type=int, default=40, help="batches timed on the cached path")
    parser.add_argument(
        "--davis", default=None, help="DAVIS 2016 folder (default: found automatically)"
    )
    parser.add_argument("--no-davis", action="store_true", help="skip DAVIS even when it is found")
    args = parser.parse_args()
    bench("synthetic", [], args.workers, args.batches)
    root = None if args.no_davis else davis_root(args.davis)
    if root is None:
        print("davis16: skipped (no DAVIS 2016 folder found; pass --davis PATH)")
    else:
        bench("davis16", [f"data.root={root}"], args.workers, args.batches)


if __name__ == "__main__":
    main()
