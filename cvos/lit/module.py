"""The CVOS LightningModule: losses, optimiser and schedule, and J/F on whole validation videos."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import MeanMetric

from cvos.data import EvalSequence, TrainBatch
from cvos.inference import Propagator, StreamTiming, stream
from cvos.lit.losses import balanced_cross_entropy, mask_loss
from cvos.metrics import DavisJF
from cvos.models import NetConfig, build_net, mask_warp_config, warp_mask


@dataclass
class TrainOutputs:
    """The network's outputs on one training batch (foreground logits)."""

    key_logits: Tensor  # B x 1 x H x W, I-frame output
    target_logits: Tensor | None  # B x 1 x H x W, P-frame target output (None: mask variant)
    attention_logits: Tensor | None  # B x 2 x h x w, SAM's auxiliary output at 1/8


class CVOSLitModule(pl.LightningModule):
    """Trains one CVOS network: a NetConfig, the net it builds, and how to optimise it.

    The checkpoint's hyper-parameters are plain data: `net` (the NetConfig as a dict, which
    `cvos.models.load_net` reads back) and the optimiser's and losses' settings.

    From `rollout_after` of the training on, every other P-frame target reads the network's own
    I-frame output warped by its motion as the mask prior instead of the data's, as at
    inference (chosen by row and step, so a resumed run repeats it exactly).
    """

    def __init__(
        self,
        *,
        net: NetConfig | Mapping[str, Any],
        lr: float = 2e-3,
        weight_decay: float = 1e-4,
        warmup_steps: int = 100,
        iou_weight: float = 0.5,
        sam_loss_weight: float = 0.25,
        rollout_after: float | None = 0.3,
    ) -> None:
        super().__init__()
        config = net if isinstance(net, NetConfig) else NetConfig.from_dict(dict(net))
        self.save_hyperparameters(
            {
                "net": config.to_dict(),
                "lr": lr,
                "weight_decay": weight_decay,
                "warmup_steps": warmup_steps,
                "iou_weight": iou_weight,
                "sam_loss_weight": sam_loss_weight,
                "rollout_after": rollout_after,
            }
        )
        self.config = config
        self.net = build_net(config)
        self.val_jf = DavisJF()
        self.val_mask_warp_jf = DavisJF()  # the training-free baseline, on the same videos
        self.val_copy_jf = DavisJF()
        self.val_frames = MeanMetric()  # frames per validation video, and seconds it took, for fps
        self.val_seconds = MeanMetric()
        self.val_iframe_ms = MeanMetric()  # per frame, over every I-frame (P-frame) of the videos
        self.val_pframe_ms = MeanMetric()

    def forward_train(self, batch: TrainBatch) -> TrainOutputs:
        """Key (I-frame) and target outputs, both matched against the reference frame."""
        net = self.net
        ref = net.reference(net.encode(batch.ref_image), batch.ref_mask)
        key_feats = net.encode(batch.key_image)
        key_logits = net.decode(
            key_feats, net.scores(key_feats, ref)[:, 0], batch.key_image, batch.key_residual,
            batch.key_prior, key=True,
        )  # fmt: skip
        if self.config.propagation == "mask":
            return TrainOutputs(key_logits, None, None)
        if self.config.propagation == "framewise":
            feats, attention = net.encode(batch.target_image), None
        else:
            out = net.propagate(key_feats, batch.mv_acc, batch.residual_acc, batch.mv, batch.gauss)
            feats, attention = out.feats, out.attention_coarse
        target_logits = net.decode(
            feats, net.scores(feats, ref)[:, 0], batch.target_image, batch.residual_acc,
            self._target_prior(batch, key_logits), key=self.config.propagation == "framewise",
        )  # fmt: skip
        return TrainOutputs(key_logits, target_logits, attention)

    def _target_prior(self, batch: TrainBatch, key_logits: Tensor) -> Tensor:
        """The data's target prior, or (every other row, late in training) the network's own
        I-frame output warped to the target as mask_warp would: B x 1 x H x W."""
        after = self.hparams.rollout_after
        total = self.trainer.estimated_stepping_batches if self._trainer is not None else 0
        if after is None or not total or self.global_step < after * total:
            return batch.target_prior
        own = warp_mask(key_logits.detach().sigmoid(), batch.mv_acc)
        rows = torch.arange(len(own), device=own.device)
        use = ((rows + self.global_step) % 2 == 0).view(-1, 1, 1, 1)
        return torch.where(use, own, batch.target_prior)

    def training_step(self, batch: TrainBatch, batch_idx: int) -> Tensor:
        out = self.forward_train(batch)
        size = batch.key_mask.shape[0]
        iou_weight = self.hparams.iou_weight
        loss = key_loss = mask_loss(out.key_logits, batch.key_mask, iou_weight)
        self.log("train/key_loss", key_loss, batch_size=size)
        moving = batch.gop_position > 0  # I-frame targets are their key: learnt already
        if out.target_logits is not None and moving.any():
            target = batch.target_mask[moving]
            target_loss = mask_loss(out.target_logits[moving], target, iou_weight)
            loss = loss + target_loss
            self.log("train/target_loss", target_loss, batch_size=size)
            if out.attention_logits is not None:
                small = F.adaptive_avg_pool2d(target, out.attention_logits.shape[-2:])
                sam_loss = balanced_cross_entropy(out.attention_logits[moving], small)
                loss = loss + self.hparams.sam_loss_weight * sam_loss
                self.log("train/sam_loss", sam_loss, batch_size=size)
        self.log("train/loss", loss, prog_bar=True, batch_size=size)
        return loss

    def validation_step(self, sequence: EvalSequence, batch_idx: int) -> None:
        if sequence.gt_masks is None:
            return
        propagator = Propagator(self.net, self.config, device=self.device)
        labels, timing = segment_sequence(propagator, sequence)
        self.val_jf.update(labels, sequence.gt_masks, sequence.object_ids)
        baseline, _ = segment_sequence(Propagator(None, mask_warp_config()), sequence)
        self.val_mask_warp_jf.update(baseline, sequence.gt_masks, sequence.object_ids)
        self.val_copy_jf.update(sequence.copy_first_masks(), sequence.gt_masks, sequence.object_ids)
        self.val_frames.update(timing.frames)
        self.val_seconds.update(timing.total_s)
        for metric, seconds in (
            (self.val_iframe_ms, timing.iframe_s),
            (self.val_pframe_ms, timing.pframe_s),
        ):
            if seconds:
                metric.update(1000 * sum(seconds) / len(seconds), weight=len(seconds))

    def on_validation_epoch_end(self) -> None:
        scores = self.val_jf.compute()
        self.log("val/J&F", scores["J&F-Mean"], prog_bar=True)
        self.log("val/J", scores["J-Mean"])
        self.log("val/F", scores["F-Mean"])
        self.log("val/mask_warp_J&F", self.val_mask_warp_jf.compute()["J&F-Mean"])
        self.log("val/copy_baseline_J&F", self.val_copy_jf.compute()["J&F-Mean"])
        self.log("val/fps", self.val_frames.compute() / self.val_seconds.compute().clamp_min(1e-9))
        for name, metric in (("iframe", self.val_iframe_ms), ("pframe", self.val_pframe_ms)):
            if metric.update_called:  # clips within one GOP have no I-frame past the first
                self.log(f"val/ms_per_{name}", metric.compute())
        metrics = (self.val_jf, self.val_mask_warp_jf, self.val_copy_jf, self.val_iframe_ms)
        for metric in (*metrics, self.val_pframe_ms, self.val_frames, self.val_seconds):
            metric.reset()

    def configure_optimizers(self) -> dict[str, Any]:
        """AdamW; the learning rate warms up linearly, then decays along a cosine to zero."""
        optimizer = torch.optim.AdamW(
            self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay
        )
        steps = max(int(self.trainer.estimated_stepping_batches), 1)
        warmup = max(int(self.hparams.warmup_steps), 1)

        def factor(step: int) -> float:
            return (
                min(1.0, (step + 1) / warmup)
                * 0.5
                * (1 + math.cos(math.pi * min(step, steps) / steps))
            )

        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


def segment_sequence(
    propagator: Propagator, sequence: EvalSequence
) -> tuple[np.ndarray, StreamTiming]:
    """T x H x W labels of a whole validation video, streamed as at inference, and timing."""
    labels = np.zeros((len(sequence.frame_names), sequence.height, sequence.width), np.uint8)
    timing = StreamTiming()
    frames = stream(propagator, sequence.frames(), sequence.init_masks, timing)
    for index, (_, output) in enumerate(frames):
        labels[index] = output.labels
    return labels, timing
