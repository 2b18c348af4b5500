"""The CVOS network as plain nn.Modules: encoders, warping, RSM, SAM and the matching decoder."""

from cvos.models.cvosnet import CVOSNet, Propagated
from cvos.models.encoder import Encoder
from cvos.models.matching import EMPTY_BANK_SCORE, Bank, Reference, soft_aggregate, topk_mean
from cvos.models.registry import ENCODERS, EncoderSpec, build_encoder
from cvos.models.warp import downsample_flow, warp, warp_mask

__all__ = [
    "EMPTY_BANK_SCORE",
    "Bank",
    "ENCODERS",
    "CVOSNet",
    "Encoder",
    "EncoderSpec",
    "Propagated",
    "Reference",
    "build_encoder",
    "downsample_flow",
    "soft_aggregate",
    "topk_mean",
    "warp",
    "warp_mask",
]
