"""`python -m cvos.prepare data=<name> data.root=<path> [workers=N]`: encode and cache a dataset.

Resumable: a rerun skips the sequences already prepared (after checking them) and redoes the
ones an interruption left partial. Each codec, GOP size and quality gets its own cache folder.
"""

from __future__ import annotations

import hydra
from hydra.errors import InstantiationException
from omegaconf import DictConfig

from cvos.cli import friendly_errors
from cvos.data import VOSDataModule
from cvos.errors import CVOSError


def build_datamodule(cfg: DictConfig) -> VOSDataModule:
    """Instantiate `cfg.data`, unwrapping Hydra's wrapper around our own user errors."""
    try:
        return hydra.utils.instantiate(cfg.data, prepare_workers=cfg.workers, _convert_="all")
    except InstantiationException as err:
        if isinstance(err.__cause__, CVOSError):
            raise err.__cause__ from None
        raise


@hydra.main(config_path="../conf", config_name="prepare", version_base="1.3")
@friendly_errors
def main(cfg: DictConfig) -> None:
    datamodule = build_datamodule(cfg)
    for split in dict.fromkeys(cfg.splits):
        ran = datamodule.prepare(split)
        count = len(datamodule.sequences(split))
        print(
            f"{split}: {count} sequences prepared ({ran} encoded now) in {datamodule.prepared_dir}"
        )


if __name__ == "__main__":
    main()
