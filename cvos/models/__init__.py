"""The CVOS network as plain nn.Modules, its contract (`NetConfig`) and how frames become inputs.

Nothing here knows about Lightning, Hydra or datasets: `build_net(NetConfig(...))` or
`load_net(path)` gives a network that `cvos.inference` runs on decoded frames.
"""

from cvos.models import encoders  # noqa: F401 - registers the built-in encoders
from cvos.models.checkpoint import load_net, read_checkpoint, save_net
from cvos.models.config import PROPAGATIONS, NetConfig, build_net, mask_warp_config
from cvos.models.cvosnet import CVOSNet, Propagated
from cvos.models.encoder import Encoder
from cvos.models.geometry import Affine, dilate, resize_affine, sample_nearest
from cvos.models.inputs import FIELDS, NetInputs, frame_inputs
from cvos.models.matching import EMPTY_BANK_SCORE, Bank, Reference, soft_aggregate, topk_mean
from cvos.models.prior import gaussian_prior
from cvos.models.registry import ENCODERS, EncoderSpec, build_encoder, register_encoder
from cvos.models.warp import downsample_flow, warp, warp_mask

__all__ = [
    "EMPTY_BANK_SCORE",
    "ENCODERS",
    "FIELDS",
    "PROPAGATIONS",
    "Affine",
    "Bank",
    "CVOSNet",
    "Encoder",
    "EncoderSpec",
    "NetConfig",
    "NetInputs",
    "Propagated",
    "Reference",
    "build_encoder",
    "build_net",
    "dilate",
    "downsample_flow",
    "frame_inputs",
    "gaussian_prior",
    "load_net",
    "mask_warp_config",
    "read_checkpoint",
    "register_encoder",
    "resize_affine",
    "sample_nearest",
    "save_net",
    "soft_aggregate",
    "topk_mean",
    "warp",
    "warp_mask",
]
