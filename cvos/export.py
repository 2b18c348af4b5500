"""`python -m cvos.export ckpt=<Lightning checkpoint> out=<file.pt>`: the network alone.

The exported file holds the network's weights and its NetConfig (variant, encoder, the codec
settings and input size it was trained with) and nothing else: `torch.load(...,
weights_only=True)` reads it and `cvos.models.load_net` rebuilds the network, without Lightning.
"""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

from cvos.cli import friendly_errors
from cvos.models import load_net, save_net


def export(cfg: DictConfig) -> Path:
    """Write the exported form of `cfg.ckpt` to `cfg.out`; returns its path."""
    net, config = load_net(cfg.ckpt)
    path = save_net(net, config, cfg.out)
    size = path.stat().st_size / 2**20
    print(
        f"{config.variant} network ({config.encoder['name']} encoder, GOP {config.gop_size}) "
        f"written to {path} ({size:.1f} MiB)"
    )
    return path


@hydra.main(config_path="../conf", config_name="export", version_base="1.3")
@friendly_errors
def main(cfg: DictConfig) -> Path:
    return export(cfg)


if __name__ == "__main__":
    main()
