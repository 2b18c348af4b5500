"""Networks on disk: tensors and a plain NetConfig, loadable with `weights_only=True`.

Two forms are read: a Lightning checkpoint of `cvos.train` (the network's weights under
`net.` in its state_dict, the NetConfig under `hyper_parameters["net"]`) and the exported
file `save_net` writes (`python -m cvos.export`), which holds only the network and its config.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from cvos.errors import CheckpointError, CVOSError
from cvos.files import atomic_path
from cvos.models.config import NetConfig, build_net
from cvos.models.cvosnet import CVOSNet

EXPORT_FORMAT = "cvos.net"
EXPORT_VERSION = 1
LIGHTNING_PREFIX = "net."  # the LightningModule holds the network as `self.net`


def save_net(net: CVOSNet, config: NetConfig, path: str | os.PathLike) -> Path:
    """Write the exported form: {format, version, config, state_dict}, atomically."""
    payload = {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "config": config.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()},
    }
    with atomic_path(path) as temporary:
        torch.save(payload, temporary)
    return Path(path)


def read_checkpoint(path: str | os.PathLike) -> tuple[NetConfig, dict[str, torch.Tensor]]:
    """The NetConfig and the network's state_dict from either form, without building anything."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for corrupt files; one message for all
        reason = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise CheckpointError(
            f"{path}: not a readable cvos checkpoint ({type(err).__name__}: {reason})"
        ) from err
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path}: not a cvos checkpoint (a {type(payload).__name__})")
    if payload.get("format") == EXPORT_FORMAT:
        return _exported(payload, path)
    return _lightning(payload, path)


def load_net(path: str | os.PathLike) -> tuple[CVOSNet, NetConfig]:
    """The network (in eval mode, on the CPU) and its config, from either form; strict."""
    config, state = read_checkpoint(path)
    try:
        net = build_net(config)
    except CVOSError as err:
        raise CheckpointError(f"{path}: its network config cannot be built: {err}") from err
    try:
        net.load_state_dict(state)
    except RuntimeError as err:
        raise CheckpointError(
            f"{path}: weights do not fit the saved network config ({err})"
        ) from err
    return net.eval(), config


def _exported(payload: dict[str, Any], path: Path) -> tuple[NetConfig, dict[str, torch.Tensor]]:
    if payload.get("version") != EXPORT_VERSION:
        raise CheckpointError(
            f"{path}: exported network format version {payload.get('version')!r}, "
            f"this cvos reads version {EXPORT_VERSION}"
        )
    return _config(payload.get("config"), path), payload.get("state_dict", {})


def _lightning(payload: dict[str, Any], path: Path) -> tuple[NetConfig, dict[str, torch.Tensor]]:
    hparams = payload.get("hyper_parameters")
    if not isinstance(hparams, dict) or "state_dict" not in payload:
        raise CheckpointError(f"{path}: not a cvos checkpoint (no state_dict and hyper_parameters)")
    if "net" not in hparams:
        raise CheckpointError(
            f"{path}: a checkpoint of an older cvos (before the network contract, 0.2); "
            "retrain it with this version"
        )
    state = {
        key[len(LIGHTNING_PREFIX) :]: value
        for key, value in payload["state_dict"].items()
        if key.startswith(LIGHTNING_PREFIX)
    }
    return _config(hparams["net"], path), state


def _config(data: Any, path: Path) -> NetConfig:
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: the network config is missing")
    try:
        encoder = {**data.get("encoder", {}), "weights": None}  # the weights are here
        return NetConfig.from_dict({**data, "encoder": encoder})
    except (CVOSError, TypeError) as err:
        raise CheckpointError(f"{path}: invalid network config ({err})") from err
