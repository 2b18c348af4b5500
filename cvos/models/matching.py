"""Matching against the reference frame: per-object banks, top-k cosine scores, soft aggregation."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from cvos.errors import DataError
from cvos.models import loops

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


def capped(member: Tensor, cap: int | None) -> Tensor:
    """... x N bool: at most `cap` of each row's members, evenly spaced (all when None).

    A bank of a few hundred reference cells scores as well as all of them (a large object's
    neighbouring cells are near copies) and matching costs in proportion to its size.
    """
    if cap is None:
        return member
    count = member.sum(dim=-1, keepdim=True)  # ... x 1
    rank = member.cumsum(dim=-1) - 1  # 0-based rank of each member along the row
    step = (count - 1).clamp(min=1) / max(cap - 1, 1)  # members between two kept ones
    slot = torch.round(rank / step)  # the kept index a member is nearest to
    chosen = torch.round(slot * step) == rank
    return member & ((count <= cap) | chosen)


def grid_cells(masks: Tensor, grid: tuple[int, int]) -> Tensor:
    """B x O x (h w) bool: the feature cells each mask (B x O x H x W, {0, 1}) touches, a max-pool
    to the h x w grid, so one object pixel makes its cell foreground (as the original)."""
    h, w = grid
    height, width = masks.shape[-2:]
    if height % h or width % w or height // h != width // w:
        raise DataError(
            f"reference mask of size {height}x{width} is not a whole multiple of "
            f"the {h}x{w} feature grid"
        )
    return (F.max_pool2d(masks.float(), height // h) > 0.5).flatten(2)


def build_reference(feats: Tensor, masks: Tensor, cap: int | None = None) -> Reference:
    """Banks from reference features (B x D x h x w) and masks (B x O x H x W, {0, 1}).

    Masks are max-pooled to the feature grid (as the original): a cell touched by the
    object counts as foreground, every other cell as its background; each bank keeps at
    most `cap` cells, evenly spaced (`capped`).
    """
    inside = grid_cells(masks, feats.shape[-2:])  # B x O x N
    keys = F.normalize(feats.flatten(2), dim=1)  # B x D x N
    return Reference(
        fg=_gather_bank(keys, capped(inside, cap)), bg=_gather_bank(keys, capped(~inside, cap))
    )


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


@dataclass
class SharedBanks:
    """Every object's banks from one reference frame, for inference on one frame at a time.

    The frame's kept keys are stored once, their columns ordered by group: the set of banks
    (object o's foreground, object o's background) a position lies in. An object's banks are
    unions of groups, so features shared by all objects are matched with one product, and each
    object's top-k reads its groups' ranges of it. Per-object features (SAM's) need a product
    per object anyway: `object_keys` holds each object's foreground keys then its background
    keys (zero-padded to the widest), so its two banks are two column ranges.
    """

    keys: Tensor  # D x N L2-normalised reference features, columns ordered by group
    bounds: list[tuple[int, int]]  # G column ranges [start, stop)
    fg_member: list[list[bool]]  # G x O: group g lies in object o's foreground bank
    bg_member: list[list[bool]]  # G x O: ... in its background bank
    object_keys: Tensor  # O x D x W: each object's foreground keys, then its background keys
    fg_counts: list[int]  # O
    bg_counts: list[int]  # O

    @property
    def num_objects(self) -> int:
        return len(self.fg_counts)


def shared_banks(feats: Tensor, masks: Tensor, cap: int | None = None) -> SharedBanks:
    """Banks of O objects from one reference frame: feats 1 x D x h x w, masks 1 x O x H x W.

    Masks are max-pooled to the feature grid and banks capped as in `build_reference`.
    """
    if masks.shape[0] != 1:
        raise DataError(f"reference masks of shape {tuple(masks.shape)}: expected one frame")
    inside = grid_cells(masks, feats.shape[-2:])[0]  # O x N
    fg, bg = capped(inside, cap), capped(~inside, cap)  # O x N each
    keys = F.normalize(feats[0].flatten(1), dim=0)  # D x N
    used = (fg | bg).any(dim=0)  # N: positions in some bank
    signatures, group = torch.unique(torch.cat((fg, bg)).T[used], dim=0, return_inverse=True)
    sizes = torch.bincount(group, minlength=signatures.shape[0]).tolist()
    stops = torch.tensor(sizes).cumsum(0).tolist()
    objects = inside.shape[0]
    return SharedBanks(
        keys=keys[:, used][:, group.argsort(stable=True)],
        bounds=[(stop - size, stop) for size, stop in zip(sizes, stops, strict=True)],
        fg_member=signatures[:, :objects].cpu().tolist(),
        bg_member=signatures[:, objects:].cpu().tolist(),
        object_keys=_object_keys(keys, fg, bg),
        fg_counts=fg.sum(dim=1).tolist(),
        bg_counts=bg.sum(dim=1).tolist(),
    )


def _object_keys(keys: Tensor, fg: Tensor, bg: Tensor) -> Tensor:
    """O x D x W: each object's foreground keys, then its background keys, zero-padded."""
    columns = [
        torch.cat((f.nonzero()[:, 0], b.nonzero()[:, 0])) for f, b in zip(fg, bg, strict=True)
    ]
    width = max(len(c) for c in columns)
    out = keys.new_zeros(len(columns), keys.shape[0], width)
    for o, index in enumerate(columns):
        out[o, :, : len(index)] = keys[:, index]
    return out


def match_shared(feats: Tensor, banks: SharedBanks, k: int) -> Tensor:
    """`match` against `SharedBanks`, with the same scores up to float rounding.

    feats 1 x D x h x w (one map for every object) -> 1 x O x 2 x h x w, or O x D x h x w (a
    map per object, SAM's) -> O x 1 x 2 x h x w, each map matched with its own object's banks.
    """
    count, _, h, w = feats.shape
    objects = banks.num_objects
    if count not in (1, objects):
        raise DataError(f"{count} feature maps for {objects} objects: expected 1 or {objects}")
    queries = F.normalize(feats.flatten(2), dim=1)  # Q x D x M
    scores = []
    if count == 1:
        sim = banks.keys.T @ queries[0]  # N x M, shared by every object
        for o in range(objects):
            pair = [
                [bounds for bounds, m in zip(banks.bounds, member, strict=True) if m[o]]
                for member in (banks.bg_member, banks.fg_member)
            ]
            scores.append(torch.stack([topk_means(sim, ranges, k) for ranges in pair]))
    else:
        for o in range(objects):  # one W x M matrix at a time
            fg_count, bg_count = banks.fg_counts[o], banks.bg_counts[o]
            sim = banks.object_keys[o, :, : fg_count + bg_count].T @ queries[o]  # W x M
            bg = topk_means(sim, [(fg_count, fg_count + bg_count)], k)
            scores.append(torch.stack((bg, topk_means(sim, [(0, fg_count)], k))))
    out = torch.stack(scores).view(objects, 2, h, w)
    return out[None] if count == 1 else out[:, None]


def topk_means(sim: Tensor, ranges: list[tuple[int, int]], k: int) -> Tensor:
    """M: per column of sim (N x M, a bank's similarities to M cells), the mean of the k
    largest over the rows in `ranges` ([start, stop) pairs; all of them when fewer),
    EMPTY_BANK_SCORE where they hold none. Compiled on the CPU, torch's topk elsewhere."""
    if sim.device.type == "cpu":
        return loops.topk_means(sim, ranges, k, EMPTY_BANK_SCORE)
    return _torch_topk_means(sim, ranges, k)


def _torch_topk_means(sim: Tensor, ranges: list[tuple[int, int]], k: int) -> Tensor:
    parts = [sim[start:stop] for start, stop in ranges if stop > start]
    if not parts:
        return sim.new_full(sim.shape[1:], EMPTY_BANK_SCORE)
    values = (parts[0] if len(parts) == 1 else torch.cat(parts)).T  # M x n
    if values.shape[-1] > k:  # an unsorted top-k costs half a sorted one; a mean needs no order
        values = values.topk(k, dim=-1, sorted=False).values
    return values.mean(dim=-1)


def soft_aggregate(fg_prob: Tensor) -> Tensor:
    """Merge per-object foreground probabilities into one distribution (STM's soft aggregation).

    fg_prob: B x O x H x W -> B x (O + 1) x H x W, channel 0 the background with
    probability prod(1 - p); the logits of the clamped probabilities are soft-maxed,
    so every pixel sums to one.
    """
    bg = torch.prod(1 - fg_prob, dim=1, keepdim=True)  # B x 1 x H x W
    probs = torch.cat((bg, fg_prob), dim=1).clamp(PROB_EPS, 1 - PROB_EPS)
    return torch.softmax(torch.logit(probs), dim=1)
