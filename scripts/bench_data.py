"""Training samples per second and bytes per frame: decoding the prepared video vs stored arrays.

    python scripts/bench_data.py [--workers 2] [--batches N] [--rounds 2] [--davis PATH]

Both forms run in this process on the same prepared sequences, taking turns round after round,
so a slow spell on a shared machine hits both: `frames=video` (the default: each sample's GOP
is decoded from the prepared video) and `frames=arrays` (every decoded representation stored
and memory-mapped, as the format-1 cache did). A round is one training epoch of the dataset's
`samples_per_epoch` (2,000 samples for DAVIS: a worker's first ~150 samples still fault in its
memory and fill its caches, ~1.5 ms a sample of system time, so short runs overstate the cost).
For each form: samples/s through the DataLoader on `--workers` workers and the CPU time the
loader workers spent per sample (process time, which other programs on the machine barely move),
both after the first batch, as an epoch with persistent workers runs (the main process copies
each batch out once, as moving it to an accelerator does, and hands its shared memory back to
its worker, as training does: `TrainBatch.release`); the CPU a sample with the
workers' start counted in (fork, first GOPs opened); and the prepared bytes per frame. DAVIS 2016
is measured on its train split at 256 x 512 network input (each 480p frame stretched to it, the
whole input a sample) when found (--davis, else CVOS_DAVIS2016, else ../shared/data/davis2016);
its arrays take about 10 MB a frame (16 GB for the 24-sequence train split of the sample set).
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from dataclasses import dataclass
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from torch import Tensor

from cvos.data import TrainBatch, VOSData
from cvos.data.prepared import REPRESENTATIONS_DIR, folder_bytes

REPO = Path(__file__).resolve().parents[1]
TARGET = 100.0  # samples/s the default (video) form must reach at DAVIS 480p on two workers
FORMS = ("arrays", "video")


@dataclass
class Figures:
    samples_per_s: float  # after the first batch
    cpu_ms: float  # loader workers' CPU time per sample, over the same batches
    start_ms: float  # CPU time of a worker up to the first batch (fork, first GOPs, caches)
    total_ms: float  # the workers' CPU time over every sample, the start included


def build(dataset: str, overrides: list[str]) -> VOSData:
    """The dataset of conf/data/<dataset>.yaml with command-line style overrides."""
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        cfg = compose("prepare", overrides=[f"data={dataset}", *overrides])
    return instantiate(cfg.data, _convert_="all")


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) of a live process, from /proc (Linux)."""
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")


def consume(batch: TrainBatch) -> int:
    """What training does with a batch on the host: copy it out once (to an accelerator, or
    unpacked), then hand its memory back to the worker. Its number of samples."""
    samples = len(batch.gop_position)
    batch.apply(Tensor.clone)
    batch.release()
    return samples


def measure(data: VOSData) -> Figures:
    """One epoch of `samples_per_epoch` samples. Samples/s and CPU a sample after the first
    batch, so both are the steady state a training epoch sees (persistent workers start once);
    a worker's start (fork, first GOPs opened, caches filled) is reported apart. The workers'
    CPU is read from /proc while they live, and counted again over every sample when they exit."""
    loader = iter(data.train_loader())
    before = children_cpu()
    consume(next(loader))
    workers = [worker.pid for worker in loader._workers]  # noqa: SLF001 - the loader's processes
    started = sum(process_cpu(pid) for pid in workers)
    start, count, steady = time.perf_counter(), 0, 0.0
    for number, batch in enumerate(loader, start=2):
        count += consume(batch)
        if number == len(loader):  # every batch is made; the workers exit after this one
            steady = sum(process_cpu(pid) for pid in workers) - started
    seconds = time.perf_counter() - start
    del loader  # the workers exit: their CPU time is now the children's
    total = count + data.batch_size
    return Figures(
        samples_per_s=count / seconds,
        cpu_ms=steady / count * 1000,
        start_ms=started / len(workers) * 1000,
        total_ms=(children_cpu() - before) / total * 1000,
    )


def bytes_per_frame(data: VOSData, split: str, arrays: bool) -> float:
    """Prepared bytes per frame of a split, with or without the stored arrays."""
    total, frames = 0, 0
    for sequence in data.open_split(split):
        size = folder_bytes(sequence.path)
        if not arrays:
            size -= folder_bytes(sequence.path / REPRESENTATIONS_DIR)
        total += size
        frames += sequence.meta.num_frames
    return total / frames


def bench(
    dataset: str, overrides: list[str], workers: int, batches: int | None, rounds: int
) -> None:
    """Print both forms' figures for one dataset, best of `rounds`, and their ratios. Each round
    is one epoch of the dataset's `samples_per_epoch` unless `batches` cuts it to that many."""
    forms = {}
    for form in FORMS:
        common = [*overrides, f"data.num_workers={workers}", "data.persistent_workers=false"]
        forms[form] = build(dataset, [*common, f"data.frames={form}"])
        if batches is not None:
            forms[form].samples_per_epoch = (batches + 1) * forms[form].batch_size
        forms[form].prepare(forms[form].train_split, progress=False)
    data = forms["video"]
    print(
        f"{dataset} ({data.train_split}, {len(data.sequences(data.train_split))} sequences): "
        f"input {data.input_size or 'frame size'}, crop {data.crop_size}, batch "
        f"{data.batch_size}, {workers} workers, {data.samples_per_gop} samples a GOP, "
        f"{data.samples_per_epoch} samples a round"
    )
    best: dict[str, Figures] = {}
    for number in range(rounds):
        for form in FORMS:
            figures = measure(forms[form])
            print(
                f"  round {number + 1} {form:<6} {figures.samples_per_s:8.1f} samples/s "
                f"{figures.cpu_ms:8.1f} CPU ms/sample ({figures.total_ms:.1f} with the "
                f"workers' start, {figures.start_ms:.0f} ms each)"
            )
            kept = best.get(form)
            if kept is None or figures.samples_per_s > kept.samples_per_s:
                best[form] = figures
    sizes = {form: bytes_per_frame(data, data.train_split, form == "arrays") for form in FORMS}
    print("           samples/s  CPU ms/sample  with start   bytes/frame")
    for form in FORMS:
        figures = best[form]
        print(
            f"  {form:<7} {figures.samples_per_s:10.1f}  {figures.cpu_ms:13.1f}  "
            f"{figures.total_ms:10.1f}  {sizes[form]:12,.0f}"
        )
    video, arrays = best["video"], best["arrays"]
    print(
        f"  video / arrays: {video.samples_per_s / arrays.samples_per_s:.2f}x samples/s, "
        f"{video.cpu_ms / arrays.cpu_ms:.2f}x CPU a sample, "
        f"1/{sizes['arrays'] / sizes['video']:.0f} of the bytes"
    )
    if dataset == "davis16":
        verdict = "ok" if video.samples_per_s >= TARGET else f"BELOW the {TARGET:.0f} target"
        print(f"  video form: {video.samples_per_s:.1f} samples/s ({verdict})")


def davis_root(argument: str | None) -> Path | None:
    if argument is not None:
        return Path(argument)
    root = Path(os.environ.get("CVOS_DAVIS2016", REPO.parent / "shared" / "data" / "davis2016"))
    return root if (root / "JPEGImages").is_dir() else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2, help="DataLoader worker processes")
    parser.add_argument(
        "--batches", type=int, default=None, help="batches a round (default: one epoch)"
    )
    parser.add_argument("--rounds", type=int, default=2, help="turns each form takes")
    parser.add_argument(
        "--davis", default=None, help="DAVIS 2016 folder (default: found automatically)"
    )
    parser.add_argument("--no-davis", action="store_true", help="skip DAVIS even when it is found")
    parser.add_argument("--no-synthetic", action="store_true", help="skip the synthetic set")
    args = parser.parse_args()
    if not args.no_synthetic:
        bench("synthetic", [], args.workers, args.batches, args.rounds)
    root = None if args.no_davis else davis_root(args.davis)
    if root is None:
        print("davis16: skipped (no DAVIS 2016 folder found; pass --davis PATH)")
        return
    davis = [f"data.root={root}", "data.input_size=[256,512]", "data.crop_size=[256,512]"]
    bench("davis16", davis, args.workers, args.batches, args.rounds)


if __name__ == "__main__":
    main()
