"""The encoder registry: every backbone's name, output channels and stride, and its builder.

A backbone registers itself where it is defined, with `@register_encoder(name, channels=...,
stride=...)` on a function that builds it; the heads of the network are then sized from this
metadata, never from numbers repeated in configs. Every module in `cvos/models/encoders/` is
imported with the package, so a new encoder is one file there plus one `conf/encoder/` YAML.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch

from cvos.errors import CheckpointError, ConfigError
from cvos.models.encoder import Encoder

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
    factory: Callable[..., Encoder]

    def build(
        self, *, weights: str | Path | None = None, frozen_bn: bool = False, **options: Any
    ) -> Encoder:
        """A new encoder (factory `options` passed on), with weights from a state_dict file."""
        try:
            encoder = self.factory(**options)
        except TypeError as err:  # an option the factory does not take
            raise ConfigError(f"encoder {self.name!r}: {err}") from err
        if not options and (encoder.out_channels, encoder.stride) != (self.channels, self.stride):
            raise ConfigError(
                f"encoder {self.name!r} is registered with {self.channels} channels at stride "
                f"{self.stride}, but builds {encoder.out_channels} at stride {encoder.stride}"
            )
        if weights is not None:
            load_weights(encoder, Path(weights))
        if frozen_bn:
            encoder.freeze_bn()
        return encoder


ENCODERS: dict[str, EncoderSpec] = {}
"""Every registered encoder by name (filled by `register_encoder`)."""

EncoderFactory = TypeVar("EncoderFactory", bound=Callable[..., Encoder])


def register_encoder(
    name: str, *, channels: int, stride: int
) -> Callable[[EncoderFactory], EncoderFactory]:
    """Decorator: register a function (or class) that builds an encoder under `name`."""

    def register(factory: EncoderFactory) -> EncoderFactory:
        known = ENCODERS.get(name)
        if known is not None and known.factory is not factory:
            raise ConfigError(f"encoder {name!r} is registered twice")
        ENCODERS[name] = EncoderSpec(name, channels, stride, factory)
        return factory

    return register


def build_encoder(
    name: str, *, weights: str | Path | None = None, frozen_bn: bool = False, **options: Any
) -> Encoder:
    """Build a registered encoder; unknown names raise ConfigError listing the known ones."""
    if name not in ENCODERS:
        known = ", ".join(sorted(ENCODERS))
        raise ConfigError(f"unknown encoder {name!r}; known encoders: {known}")
    return ENCODERS[name].build(weights=weights, frozen_bn=frozen_bn, **options)


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
