"""The encoder registry: every backbone's name, output channels and stride, and its builder."""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from cvos.errors import CheckpointError, ConfigError
from cvos.models import resnet
from cvos.models.encoder import Encoder
from cvos.models.tiny import TinyEncoder

# Keys of a torchvision ImageNet checkpoint that the encoder has no use for.
CLASSIFIER_KEYS = ("fc.weight", "fc.bias")
# How many offending keys an error message lists before it says "...".
MAX_KEYS_SHOWN = 5


@dataclass(frozen=True)
class EncoderSpec:
    """What callers may rely on before building: the output channels and stride."""

    name: str
    channels: int
    stride: int
    factory: Callable[[], Encoder]

    def build(self, *, weights: str | Path | None = None, frozen_bn: bool = False) -> Encoder:
        """A new encoder, with weights loaded from a state_dict file when given."""
        encoder = self.factory()
        if weights is not None:
            load_weights(encoder, Path(weights))
        if frozen_bn:
            encoder.freeze_bn()
        return encoder


ENCODERS: dict[str, EncoderSpec] = {
    spec.name: spec
    for spec in (
        EncoderSpec("tiny", 128, 8, TinyEncoder),
        EncoderSpec("resnet18", 512, 8, resnet.resnet18),
        EncoderSpec("resnet34", 512, 8, resnet.resnet34),
        EncoderSpec("resnet50", 2048, 8, resnet.resnet50),
        EncoderSpec("resnet101", 2048, 8, resnet.resnet101),
    )
}


def build_encoder(
    name: str, *, weights: str | Path | None = None, frozen_bn: bool = False
) -> Encoder:
    """Build a registered encoder; unknown names raise ConfigError listing the known ones."""
    if name not in ENCODERS:
        known = ", ".join(ENCODERS)
        raise ConfigError(f"unknown encoder {name!r}; known encoders: {known}")
    return ENCODERS[name].build(weights=weights, frozen_bn=frozen_bn)


def load_weights(encoder: Encoder, path: Path) -> None:
    """Load a (torchvision-style) state_dict file strictly, ignoring a classifier head."""
    state = _read_state_dict(path)
    state = {k: v for k, v in state.items() if k not in CLASSIFIER_KEYS}
    expected = encoder.state_dict()
    _check_keys(path, expected.keys(), state.keys())
    wrong_shapes = [
        f"{k} {tuple(v.shape)} (expected {tuple(expected[k].shape)})"
        for k, v in state.items()
        if v.shape != expected[k].shape
    ]
    if wrong_shapes:
        raise CheckpointError(
            f"encoder weights {path}: wrong shapes for {_listing(wrong_shapes)}; "
            "is it a checkpoint of another architecture?"
        )
    encoder.load_state_dict(state)


def _read_state_dict(path: Path) -> Mapping[str, torch.Tensor]:
    if not path.is_file():
        raise CheckpointError(f"encoder weights file {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as err:
        raise CheckpointError(f"encoder weights {path} is not a PyTorch file: {err}") from err
    if not isinstance(state, Mapping) or not all(
        isinstance(v, torch.Tensor) for v in state.values()
    ):
        raise CheckpointError(
            f"encoder weights {path} is not a state_dict (a mapping of names to tensors)"
        )
    return state


def _check_keys(path: Path, expected: Iterable[str], found: Iterable[str]) -> None:
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"encoder weights {path} do not match the encoder: "
            f"missing keys {_listing(missing)}, unexpected keys {_listing(unexpected)}"
        )


def _listing(items: list[str]) -> str:
    shown = ", ".join(items[:MAX_KEYS_SHOWN]) or "none"
    more = len(items) - MAX_KEYS_SHOWN
    return f"[{shown}{f', ... {more} more' if more > 0 else ''}]"
