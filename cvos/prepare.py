"""`python -m cvos.prepare data=<name> data.root=<path> [workers=N] [shard=k/n] [dry_run=true]`.

Encodes and stores a dataset in its prepared form. Resumable and idempotent: a rerun skips the
sequences already prepared (after checking them) and redoes the ones an interruption left
partial. `shard=k/n` prepares a deterministic n-th of each split, so `-m shard=0/n,...` on a
Hydra launcher (joblib, SLURM) prepares a dataset in parallel jobs. `dry_run=true` lists what
it finds and projects the size and time from a short measured sample, writing nothing.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from cvos.cli import friendly_errors, instantiate
from cvos.data.estimate import Projection, SplitListing
from cvos.data.shards import Shard

LISTED = 30  # sequences listed one a line per split in a dry run; more are summarised


def prepare(cfg: DictConfig) -> None:
    """Prepare (or, with `dry_run`, cost) every split of `cfg.splits`, one shard if asked."""
    data = instantiate(cfg.data, prepare_workers=cfg.workers)
    shard = Shard.parse(cfg.shard)
    splits = list(dict.fromkeys(cfg.splits))
    where = "" if shard.count == 1 else f" (shard {shard})"
    if cfg.dry_run:
        listings = [data.listing(split, shard) for split in splits]
        for listing in listings:
            print(listing_text(listing, where))
        print(projection_text(data.projection(listings), data.prepared_dir))
        return
    for split in splits:
        print(f"{split}{where}: {data.prepare(split, shard=shard).summary()}")


def listing_text(listing: SplitListing, where: str) -> str:
    """The split's sequences with their frame counts and whether each is prepared."""
    lines = [
        f"{listing.split}{where}: {len(listing.sequences)} sequences, {listing.frames:,} frames; "
        f"{len(listing.todo)} to prepare ({listing.todo_frames:,} frames)"
    ]
    todo = {s.name for s in listing.todo}
    for sequence in listing.sequences[:LISTED]:
        state = "to prepare" if sequence.name in todo else "prepared"
        lines.append(f"  {sequence.name:<28} {len(sequence.frame_names):6,} frames  {state}")
    if len(listing.sequences) > LISTED:
        lines.append(f"  ... and {len(listing.sequences) - LISTED} more")
    return "\n".join(lines)


def projection_text(projection: Projection, folder: object) -> str:
    """What the measured sample cost and what preparing the rest will take."""
    measured = (
        f"measured on {projection.sample_frames} frames of {projection.sample_sequences} "
        f"sequences: {projection.bytes_per_frame / 1e3:.1f} KB and "
        f"{projection.seconds_per_frame * 1e3:.0f} ms a frame"
    )
    projected = (
        f"projected: {projection.bytes / 1e9:.3f} GB for {projection.frames:,} frames in "
        f"{projection.seconds:.0f} s on {projection.workers} worker(s) "
        f"({projection.seconds_per_frame * 1000 / max(projection.workers, 1):.1f} s per 1,000 "
        f"frames), into {folder}"
    )
    return f"{measured}\n{projected}\ndry run: nothing written"


@hydra.main(config_path="../conf", config_name="prepare", version_base="1.3")
@friendly_errors
def main(cfg: DictConfig) -> None:
    prepare(cfg)


if __name__ == "__main__":
    main()
