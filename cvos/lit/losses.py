"""Training losses of CVOS."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

MIN_CLASS_FRACTION = 0.05


def balanced_cross_entropy(logits: Tensor, target: Tensor) -> Tensor:
    """Class-balanced cross-entropy, as in the original: each class weighted by the other's share.

    The foreground share is clamped to [0.05, 0.95] so that a frame where the object is absent
    still teaches "background" instead of giving zero weight to every pixel.

    logits: B x 2 x H x W ([background, foreground]); target: B x 1 x H x W in {0, 1}.
    """
    labels = (target[:, 0] > 0.5).long()  # B x H x W
    fg_share = labels.float().mean(dim=(1, 2)).clamp(MIN_CLASS_FRACTION, 1 - MIN_CLASS_FRACTION)
    fg_share = fg_share[:, None, None]  # B x 1 x 1
    weights = torch.where(labels.bool(), 1 - fg_share, fg_share)  # B x H x W
    per_pixel = F.cross_entropy(logits.float(), labels, reduction="none")
    per_sample = (weights * per_pixel).sum(dim=(1, 2)) / weights.sum(dim=(1, 2))
    return per_sample.mean()


def mask_loss(logits: Tensor, target: Tensor, iou_weight: float = 0.5) -> Tensor:
    """Binary cross-entropy plus `iou_weight` x (1 - soft IoU), per image, averaged.

    The IoU term weighs an object by its area, not its pixel count, so a small object lost
    entirely costs as much as a large one (cross-entropy alone lets small objects vanish).
    logits, target: N x 1 x H x W (foreground logits; target in {0, 1}).
    """
    logits = logits.float()
    bce = F.binary_cross_entropy_with_logits(logits, target)
    prob = logits.sigmoid()
    inter = (prob * target).flatten(1).sum(1)
    union = (prob + target - prob * target).flatten(1).sum(1)
    iou = (inter + 1) / (union + 1)
    return bce + iou_weight * (1 - iou).mean()
