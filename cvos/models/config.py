"""The network contract: everything needed to rebuild a network and run it as it was trained.

A `NetConfig` travels with the weights (in Lightning checkpoints and exported files), so
inference uses the GOP, codec, quality and input size the network was trained with instead of
whatever a config file says today.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from cvos.errors import ConfigError
from cvos.models.cvosnet import CVOSNet
from cvos.models.decoder import DecoderWidths
from cvos.models.registry import build_encoder

PROPAGATIONS = ("feature", "framewise", "mask")
"""feature: warp the I-frame's features (CVOS); framewise: the encoder on every frame;
mask: warp the I-frame's mask (`mask_warp`, no network on P-frames)."""


@dataclass
class NetConfig:
    """A network variant, its hyper-parameters, and the compressed form it was trained on."""

    variant: str = "rsm_sam"  # the name runs and reports use, e.g. rsm_sam, warp, mask_warp
    propagation: str = "feature"  # one of PROPAGATIONS
    encoder: dict[str, Any] = field(default_factory=lambda: {"name": "tiny"})  # build_encoder args
    use_rsm: bool = True
    use_sam: bool = True
    use_prior: bool = True  # the decoders read the codec-warped mask and start from it
    embed_dim: int | None = None  # None: the encoder's channels, at most 256
    topk: int = 20
    temperature: float = 10.0
    pframe_widths: tuple[int, ...] = (8, 16, 32)  # RSM's and SAM's light encoders
    iframe_decoder: tuple[int, ...] = (64, 16, 32, 32, 16)  # DecoderWidths where the encoder ran
    pframe_decoder: tuple[int, ...] = (24, 8, 16, 16, 8)  # DecoderWidths on P-frames
    pframe_band: int = 0  # P-frame corrections only this close to the prior's boundary (px)
    bank_cap: int | None = None  # reference cells kept per bank, evenly spaced; None: all
    iframe_window: int = 10  # I-frame output kept within the previous mask dilated by this (px)
    iframe_correction: float = 1.0  # inference: the I-frame decoder's departure from its prior
    input_size: tuple[int, int] | None = None  # [H, W] network input; None: frame size
    gop_size: int = 12  # the codec settings of the training data
    codec: str = "mpeg4"
    quality: int = 5

    def __post_init__(self) -> None:
        if self.propagation not in PROPAGATIONS:
            raise ConfigError(
                f"model propagation must be one of {', '.join(PROPAGATIONS)}, "
                f"got {self.propagation!r}"
            )
        if "name" not in self.encoder:
            raise ConfigError(f"model encoder config needs a name, got {self.encoder!r}")
        if self.input_size is not None:
            if len(self.input_size) != 2 or min(self.input_size) < 1:
                raise ConfigError(f"input_size must be [height, width], got {self.input_size}")
            self.input_size = (int(self.input_size[0]), int(self.input_size[1]))
        for name in ("pframe_widths", "iframe_decoder", "pframe_decoder"):
            setattr(self, name, tuple(int(w) for w in getattr(self, name)))
        for name in ("iframe_decoder", "pframe_decoder"):
            if len(getattr(self, name)) != len(fields(DecoderWidths)):
                raise ConfigError(
                    f"{name} must list {len(fields(DecoderWidths))} widths "
                    f"({', '.join(f.name for f in fields(DecoderWidths))}), "
                    f"got {list(getattr(self, name))}"
                )
        if not isinstance(self.gop_size, int) or self.gop_size < 1:
            raise ConfigError(f"gop_size must be a whole number >= 1, got {self.gop_size!r}")

    @property
    def needs_network(self) -> bool:
        """Only mask propagation can run without a trained network."""
        return self.propagation != "mask"

    def to_dict(self) -> dict[str, Any]:
        """Plain data (what checkpoints store): lists instead of tuples."""
        data = asdict(self)
        data["encoder"] = dict(self.encoder)
        for name, value in data.items():
            if isinstance(value, tuple):
                data[name] = list(value)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NetConfig:
        """The inverse of `to_dict`; unknown keys are an error naming them."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown network config keys {unknown}; known: {sorted(known)}")
        return cls(**data)


def mask_warp_config(**settings: Any) -> NetConfig:
    """The training-free baseline: no network, the first mask warped by the motion vectors."""
    return NetConfig(
        variant="mask_warp", propagation="mask", use_rsm=False, use_sam=False, **settings
    )


def build_net(config: NetConfig) -> CVOSNet:
    """A new network as `config` describes it (weights from `config.encoder['weights']` if set)."""
    return CVOSNet(
        build_encoder(**config.encoder),
        embed_dim=config.embed_dim,
        use_rsm=config.use_rsm,
        use_sam=config.use_sam,
        use_prior=config.use_prior,
        topk=config.topk,
        temperature=config.temperature,
        pframe_widths=config.pframe_widths,
        iframe_decoder=DecoderWidths(*config.iframe_decoder),
        pframe_decoder=DecoderWidths(*config.pframe_decoder),
        pframe_band=config.pframe_band,
        bank_cap=config.bank_cap,
    )
