"""`python -m cvos.prepare data=<name> data.root=<path> [workers=N]`: encode and cache a dataset.

Resumable: a rerun skips the sequences already prepared (after checking them) and redoes the
ones an interruption left partial. Each codec, GOP size and quality gets its own cache folder.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from cvos.cli import friendly_errors, instantiate


def prepare(cfg: DictConfig) -> None:
    """Prepare every split of `cfg.splits`, saying how many sequences each has and ran."""
    data = instantiate(cfg.data, prepare_workers=cfg.workers)
    for split in dict.fromkeys(cfg.splits):
        ran = data.prepare(split)
        count = len(data.sequences(split))
        print(f"{split}: {count} sequences prepared ({ran} encoded now) in {data.prepared_dir}")


@hydra.main(config_path="../conf", config_name="prepare", version_base="1.3")
@friendly_errors
def main(cfg: DictConfig) -> None:
    prepare(cfg)


if __name__ == "__main__":
    main()
