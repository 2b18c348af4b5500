"""Matching against the reference frame: per-object banks, top-k cosine scores, soft aggregation."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from cvos.errors import DataError

# Score of a class whose bank is empty (object absent from the reference, or covering the
# whole frame): the lowest cosine similarity, so the other class wins wherever it matches.
EMPTY_BANK_SCORE = -1.0
# Probabilities are clamped this far from 0 and 1 before taking logits.
PROB_EPS = 1e-7


@dataclass
class Bank:
    """One class's reference features per object, padded to the largest bank in the batch.

    keys:  B x O x D x K  L2-normalised features, zeros past each bank's count
    count: B x O          number of real entries (0 = empty bank)
    Gathering each bank once per reference keeps per-frame matching to one matrix product
    per object and class, over the bank's own positions only.
    """

    keys: Tensor
    count: Tensor


@dataclass
class Reference:
    """The reference frame's foreground and background banks, per object."""

    fg: Bank
    bg: Bank

    @property
    def num_objects(self) -> int:
        return self.fg.count.shape[1]


def build_reference(feats: Tensor, masks: Tensor) -> Reference:
    """Banks from reference features (B x D x h x w) and masks (B x O x H x W, {0, 1}).

    Masks are max-pooled to the feature grid (as the original): a cell touched by the
    object counts as foreground, every other cell as its background.
    """
    h, w = feats.shape[-2:]
    height, width = masks.shape[-2:]
    if height % h or width % w or height // h != width // w:
        raise DataError(
            f"reference mask of size {height}x{width} is not a whole multiple of "
            f"the {h}x{w} feature grid"
        )
    inside = (F.max_pool2d(masks.float(), height // h) > 0.5).flatten(2)  # B x O x N
    keys = F.normalize(feats.flatten(2), dim=1)  # B x D x N
    return Reference(fg=_gather_bank(keys, inside), bg=_gather_bank(keys, ~inside))


def _gather_bank(keys: Tensor, member: Tensor) -> Bank:
    """keys B x D x N, member B x O x N bool -> members' keys first, zero-padded to K."""
    b, d, _ = keys.shape
    o = member.shape[1]
    count = member.sum(dim=-1)  # B x O
    size = max(int(count.max()), 1)
    order = member.to(torch.int8).argsort(dim=-1, descending=True, stable=True)[..., :size]
    index = order[:, :, None].expand(b, o, d, size)  # B x O x D x K
    gathered = keys[:, None].expand(b, o, d, keys.shape[-1]).gather(-1, index)
    padding = torch.arange(size, device=keys.device) >= count[..., None, None]  # B x O x 1 x K
    return Bank(keys=gathered.masked_fill(padding, 0.0), count=count)


def topk_mean(sim: Tensor, count: Tensor, k: int) -> Tensor:
    """Mean of each row's k largest similarities to a bank.

    sim: B x M x K similarities of M targets to a bank padded to K entries, of which the
    first count[b] are real. Returns B x M. k shrinks to the bank's size per sample; an
    empty bank scores EMPTY_BANK_SCORE.
    """
    size = sim.shape[-1]
    k = min(k, size)
    padding = torch.arange(size, device=sim.device) >= count[:, None, None]  # B x 1 x K
    if padding.any():
        sim = sim.masked_fill(padding, float("-inf"))
    top = sim.topk(k, dim=-1).values  # B x M x k
    used = count.clamp(max=k)  # B
    valid = torch.arange(k, device=sim.device) < used[:, None, None]  # B x 1 x k
    mean = top.where(valid, 0.0).sum(dim=-1) / used.clamp(min=1)[:, None]  # B x M
    return mean.where(used[:, None] > 0, EMPTY_BANK_SCORE)


def match(feats: Tensor, ref: Reference, k: int) -> Tensor:
    """[background, foreground] top-k cosine scores in [-1, 1] per object.

    feats: B x D x h x w target features -> B x O x 2 x h x w.
    """
    b, _, h, w = feats.shape
    query = F.normalize(feats.flatten(2), dim=1).transpose(1, 2)  # B x M x D
    scores = []
    for o in range(ref.num_objects):
        bg = topk_mean(query @ ref.bg.keys[:, o], ref.bg.count[:, o], k)  # B x M
        fg = topk_mean(query @ ref.fg.keys[:, o], ref.fg.count[:, o], k)  # B x M
        scores.append(torch.stack((bg, fg), dim=1))  # B x 2 x M
    return torch.stack(scores, dim=1).view(b, ref.num_objects, 2, h, w)


def soft_aggregate(fg_prob: Tensor) -> Tensor:
    """Merge per-object foreground probabilities into one distribution (STM's soft aggregation).

    fg_prob: B x O x H x W -> B x (O + 1) x H x W, channel 0 the background with
    probability prod(1 - p); the logits of the clamped probabilities are soft-maxed,
    so every pixel sums to one.
    """
    bg = torch.prod(1 - fg_prob, dim=1, keepdim=True)  # B x 1 x H x W
    probs = torch.cat((bg, fg_prob), dim=1).clamp(PROB_EPS, 1 - PROB_EPS)
    return torch.softmax(torch.logit(probs), dim=1)
