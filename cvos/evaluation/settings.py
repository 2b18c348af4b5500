"""Which network runs, and with which codec settings: the checkpoint's, unless the user says.

A network is trained on videos of one codec, GOP and quality, at one input size; running it on
another silently changes what its P-frames see. So evaluation and segmentation take those from
the network's `NetConfig`, and every setting the user overrides is reported with a warning.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from torch import nn

from cvos.errors import CheckpointError, ConfigError
from cvos.models import NetConfig, load_net, mask_warp_config

log = logging.getLogger("cvos")

OVERRIDABLE = (  # what may differ from training: the codec settings, and inference knobs
    "codec",
    "gop_size",
    "quality",
    "input_size",
    "iframe_window",
    "iframe_correction",
    "bank_cap",
)


def load_network(
    ckpt: str | None, variant: str | None, propagation: str | None = None
) -> tuple[nn.Module | None, NetConfig]:
    """The network of `ckpt` and its config, run as `variant` (None: the checkpoint's own).

    `mask_warp` runs any checkpoint's I-frame path and warps masks on P-frames; without a
    checkpoint it is the only variant that runs (training-free).
    """
    if ckpt is None:
        if variant not in (None, "mask_warp") and propagation != "mask":
            raise ConfigError(
                f"model={variant} needs a trained network: set ckpt=<checkpoint or exported "
                "file> (or use model=mask_warp, which runs without one)"
            )
        return None, mask_warp_config()
    net, config = load_net(ckpt)
    if variant is None or variant == config.variant:
        return net, config
    if variant == "mask_warp":
        return net, dataclasses.replace(config, variant="mask_warp", propagation="mask")
    raise CheckpointError(
        f"{ckpt}: checkpoint is of model variant {config.variant!r}, not {variant!r}; "
        f"set model={config.variant} (or leave model unset)"
    )


def with_overrides(config: NetConfig, **requested: Any) -> tuple[NetConfig, dict[str, Any]]:
    """`config` with the non-None `requested` settings (OVERRIDABLE) applied.

    Returns the config to run and the settings that differ from the network's, each of
    which is logged as a warning.
    """
    unknown = set(requested) - set(OVERRIDABLE)
    if unknown:
        raise ValueError(f"cannot override {sorted(unknown)}; only {OVERRIDABLE}")
    changes = {}
    for name, value in requested.items():
        if value is None:
            continue
        value = tuple(value) if name == "input_size" else value
        if value != getattr(config, name):
            changes[name] = value
            log.warning(
                "%s=%s overrides the network's %s (it was trained with %s)",
                name, value, name, getattr(config, name),
            )  # fmt: skip
    return dataclasses.replace(config, **changes), changes


def run_record(config: NetConfig, ckpt: str | None, overrides: dict[str, Any]) -> dict[str, Any]:
    """What run.json says about a run: the network, its settings and what was overridden."""
    return {
        "checkpoint": ckpt,
        "variant": config.variant,
        "propagation": config.propagation,
        "encoder": config.encoder.get("name"),
        "gop_size": config.gop_size,
        "codec": config.codec,
        "quality": config.quality,
        "input_size": None if config.input_size is None else list(config.input_size),
        "overridden": {k: list(v) if isinstance(v, tuple) else v for k, v in overrides.items()},
    }
