"""The CVOS network: I-frame encoding, P-frame propagation, reference matching, mask decoding.

The network is a set of stages that the training module and the streaming inference call
in their own order:
    key    = encode(I-frame)                                  B x D x H/8 x W/8
    p      = propagate(key, mv_acc, residual_acc, mv, gauss)  P-frame features (+ SAM logits)
    ref    = reference(encode(reference frame), masks)        per-object fg/bg banks
    scores = scores(features, ref)                            B x O x 2 x H/8 x W/8
    logits = decode(features, scores[:, o], image, residual, prior, key=...)   B x 1 x H x W
Two decoders share the design (`cvos.models.decoder`): a heavier one where the encoder ran
(I-frames, and every frame for framewise), a light one on P-frames, where everything must cost
a small fraction of the I-frame path. Streaming inference keeps the `shared_banks` of each
frame where objects start and matches one frame for every object with `shared_scores`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from cvos.errors import ConfigError, DataError
from cvos.models.decoder import DecoderWidths, MaskDecoder
from cvos.models.encoder import Encoder
from cvos.models.light import ImageNorm
from cvos.models.matching import (
    Reference,
    SharedBanks,
    build_reference,
    match,
    match_shared,
    shared_banks,
)
from cvos.models.propagation import ResidualSupplement, SpatialAttention
from cvos.models.warp import downsample_flow, warp

MAX_EMBED_DIM = 256  # the paper's embedding; smaller encoders embed in their own width
IFRAME_DECODER = DecoderWidths(64, 16, 32, 32, 16)  # where the encoder ran
PFRAME_DECODER = DecoderWidths(24, 8, 16, 16, 8)  # light: it runs on every P-frame


@dataclass
class Propagated:
    """A P-frame's features and, with SAM, its attention logits for the auxiliary loss.

    feats: B x D x h x w; attention_coarse: B x 2 x h x w ([background, foreground]) or None
    without SAM.
    """

    feats: Tensor
    attention_coarse: Tensor | None


class CVOSNet(nn.Module):
    """Encoder + 1x1 projection on I-frames; warp (+ RSM) (+ SAM) on P-frames; mask decoders.

    With `use_rsm` / `use_sam` off, `rsm` / `sam` are None and own no parameters, so the
    variants warp, rsm, sam and rsm_sam are one class. `embed_dim=None` takes the encoder's
    width capped at 256, so heads follow the encoder instead of a number repeated in configs.
    """

    def __init__(
        self,
        encoder: Encoder,
        *,
        embed_dim: int | None = None,
        use_rsm: bool = True,
        use_sam: bool = True,
        use_prior: bool = True,
        topk: int = 20,
        temperature: float = 10.0,
        pframe_widths: tuple[int, ...] = (8, 16, 32),
        iframe_decoder: DecoderWidths = IFRAME_DECODER,
        pframe_decoder: DecoderWidths = PFRAME_DECODER,
        pframe_band: int = 0,
        bank_cap: int | None = None,
    ) -> None:
        super().__init__()
        if topk < 1 or temperature <= 0:
            raise ConfigError(f"topk must be >= 1 and temperature > 0, got {topk}, {temperature}")
        self.encoder = encoder
        self.stride = encoder.stride
        embed_dim = embed_dim or min(MAX_EMBED_DIM, encoder.out_channels)
        self.embed_dim = embed_dim
        self.topk = topk
        self.temperature = temperature
        self.bank_cap = bank_cap
        self.use_rsm = use_rsm
        self.use_sam = use_sam
        self.project = nn.Conv2d(encoder.out_channels, embed_dim, 1)
        self.rsm = ResidualSupplement(embed_dim, pframe_widths, self.stride) if use_rsm else None
        self.sam = SpatialAttention(embed_dim, pframe_widths, self.stride) if use_sam else None
        self.idec = MaskDecoder(embed_dim, iframe_decoder, use_prior=use_prior)
        self.pdec = MaskDecoder(embed_dim, pframe_decoder, use_prior=use_prior, band=pframe_band)
        self.normalise = ImageNorm()  # the encoder's input statistics

    def encode(self, image: Tensor) -> Tensor:
        """I-frame path: B x 3 x H x W RGB in [0, 1] -> key features B x D x H/8 x W/8."""
        self._check_size(image)
        return self.project(self.encoder(self.normalise(image)))

    def propagate(
        self,
        key_feats: Tensor,
        mv_acc: Tensor,
        residual_acc: Tensor | None,
        mv: Tensor | None,
        gauss: Tensor | None,
    ) -> Propagated:
        """P-frame path: warp the I-frame's key features, then supplement and re-weight them.

        key_feats B x D x h x w; mv_acc, mv B x 2 x H x W pixels (target minus source);
        residual_acc B x 3 x H x W in [-1, 1]; gauss B x 1 x H x W in [0, 1], the Gaussian
        location prior of the previous mask (None where the module that reads them is off).
        H and W must be divisible by the stride and equal to (h, w) x stride. At inference a
        batch of O Gaussians may come with a batch of 1 of everything else: one frame's objects
        share the warp, RSM and SAM's motion part.
        """
        feats = self.carry(key_feats, mv_acc, residual_acc)  # B x D x h x w
        if self.sam is None:
            return Propagated(feats=feats, attention_coarse=None)
        feats, logits = self.sam(feats, mv, gauss)  # logits B x 2 x h x w
        return Propagated(feats=feats, attention_coarse=logits)

    def carry(self, key_feats: Tensor, mv_acc: Tensor, residual_acc: Tensor | None) -> Tensor:
        """What every object of a P-frame shares: the warped key features (+ RSM), B x D x h x w."""
        self._check_size(mv_acc)
        feats = warp(key_feats, downsample_flow(mv_acc, self.stride))  # B x D x h x w
        return feats if self.rsm is None else self.rsm(feats, residual_acc)

    def reference(self, feats: Tensor, masks: Tensor) -> Reference:
        """Foreground/background banks per object from the reference frame, each of at most
        `bank_cap` cells.

        feats B x D x h x w (from `encode`), masks B x O x H x W in {0, 1} at image size.
        """
        return build_reference(feats, masks, self.bank_cap)

    def scores(self, feats: Tensor, ref: Reference) -> Tensor:
        """Temperature-scaled top-k cosine scores, B x O x 2 x h x w ([background, foreground])."""
        return self.temperature * match(feats, ref, self.topk)

    def decode(
        self,
        feats: Tensor,
        scores: Tensor,
        image: Tensor,
        residual: Tensor,
        prior: Tensor,
        *,
        key: bool,
        correction_scale: float = 1.0,
    ) -> Tensor:
        """Foreground logits N x 1 x H x W of one object per row (see `MaskDecoder.forward`):
        with the I-frame decoder where the encoder ran (`key`), else the P-frame decoder.
        image is RGB in [0, 1]; image and residual may have a batch of 1 for N objects."""
        decoder = self.idec if key else self.pdec
        return decoder(feats, scores, image, residual, prior, correction_scale)

    def shared_banks(self, feats: Tensor, masks: Tensor, cap: int | None) -> SharedBanks:
        """Inference: the banks of the O objects that start on one frame, stored once for all
        (feats 1 x D x h x w from `encode` or `carry`, masks 1 x O x H x W), each of at most
        `cap` cells (the inference setting, which may differ from training's)."""
        return shared_banks(feats, masks, cap)

    def shared_scores(self, feats: Tensor, banks: list[SharedBanks]) -> Tensor:
        """Inference: `scores` of one frame for every object, O x 2 x h x w.

        feats: 1 x D x h x w shared by all objects, or O x D x h x w per object (SAM's);
        `banks` cover the objects in order (one entry per frame where objects start).
        """
        scores, first = [], 0
        for bank in banks:
            own = feats if feats.shape[0] == 1 else feats[first : first + bank.num_objects]
            out = match_shared(own, bank, self.topk)  # 1 x O_b x 2 or O_b x 1 x 2 (x h x w)
            scores.append(out.reshape(-1, 2, *out.shape[-2:]))
            first += bank.num_objects
        return self.temperature * torch.cat(scores)

    def _check_size(self, image: Tensor) -> None:
        height, width = image.shape[-2:]
        if height % self.stride or width % self.stride:
            raise DataError(
                f"frame size {height}x{width} is not divisible by the encoder stride "
                f"{self.stride}; pad or resize the frames"
            )


def fold_batch_norms(net: nn.Module) -> nn.Module:
    """A copy of `net` in eval mode with every batch norm that follows a conv folded into it.

    Inference only (the statistics are frozen into the weights): it saves a pass over every
    activation map, a third of the light encoders' CPU time. Folds `Sequential(conv, bn, ...)`
    and the torchvision naming `convN` / `bnN`; masks change only by float rounding.
    """
    net = copy.deepcopy(net).eval()
    for module in net.modules():
        if isinstance(module, nn.Sequential):
            pairs = [(str(i), str(i + 1)) for i in range(len(module) - 1)]
        else:
            names = dict(module.named_children())
            pairs = [(n, "bn" + n[4:]) for n in names if n.startswith("conv") and n[4:].isdigit()]
        for conv_name, bn_name in pairs:
            conv, bn = getattr(module, conv_name, None), getattr(module, bn_name, None)
            if _foldable(conv, bn):
                setattr(module, conv_name, fuse_conv_bn_eval(conv, bn))
                setattr(module, bn_name, nn.Identity())
    return net


def _foldable(conv: nn.Module | None, bn: nn.Module | None) -> bool:
    return (
        isinstance(conv, nn.Conv2d)
        and isinstance(bn, nn.BatchNorm2d)
        and bn.track_running_stats
        and bn.num_features == conv.out_channels
    )
