"""The CVOS LightningModule: losses, optimiser and schedule, and J/F on whole validation videos."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch import Tensor
from torchmetrics import MeanMetric

from cvos.data import EvalSequence, TrainBatch
from cvos.inference import Propagator, StreamTiming, stream
from cvos.lit.losses import balanced_cross_entropy
from cvos.metrics import DavisJF
from cvos.models import NetConfig, build_net, mask_warp_config


@dataclass
class TrainOutputs:
    """The network's outputs on one training batch."""

    key_logits: Tensor  # B x 2 x H x W, I-frame output
    target_logits: Tensor  # B x 2 x H x W, P-frame (or I-frame) target output
    attention_logits: Tensor | None  # B x 2 x H x W, SAM's auxiliary output


class CVOSLitModule(pl.LightningModule):
    """Trains one CVOS network: a NetConfig, the net it builds, and how to optimise it.

    The checkpoint's hyper-parameters are plain data: `net` (the NetConfig as a dict, which
    `cvos.models.load_net` reads back) and the optimiser's and losses' settings.
    """

    def __init__(
        self,
        *,
        net: NetConfig | Mapping[str, Any],
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        sam_loss_weight: float = 0.5,
    ) -> None:
        super().__init__()
        config = net if isinstance(net, NetConfig) else NetConfig.from_dict(dict(net))
        self.save_hyperparameters(
            {
                "net": config.to_dict(),
                "lr": lr,
                "weight_decay": weight_decay,
                "sam_loss_weight": sam_loss_weight,
            }
        )
        self.config = config
        self.net = build_net(config)
        self.val_jf = DavisJF()
        self.val_mask_warp_jf = DavisJF()  # the training-free baseline, on the same videos
        self.val_copy_jf = DavisJF()
        self.val_frames = MeanMetric()  # frames per validation video, and seconds it took, for fps
        self.val_seconds = MeanMetric()

    def forward_train(self, batch: TrainBatch) -> TrainOutputs:
        """Key (I-frame) and target outputs, both matched against the reference frame."""
        size = tuple(batch.target_mask.shape[-2:])
        net = self.net
        ref = net.reference(net.encode(batch.ref_image), batch.ref_mask)
        key_feats = net.encode(batch.key_image)
        key_logits = net.decode(key_feats, ref, size)[:, 0]  # B x 2 x H x W
        attention = None
        if self.config.propagation == "framewise":
            target_logits = net.decode(net.encode(batch.target_image), ref, size)[:, 0]
        elif self.config.propagation == "mask":
            target_logits = key_logits
        else:
            out = net.propagate(key_feats, batch.mv_acc, batch.residual_acc, batch.mv, batch.prior)
            target_logits = net.decode(out.feats, ref, size)[:, 0]
            attention = out.attention_logits
        is_key = (batch.gop_position == 0).view(-1, 1, 1, 1)
        target_logits = torch.where(is_key, key_logits, target_logits)
        return TrainOutputs(key_logits, target_logits, attention)

    def training_step(self, batch: TrainBatch, batch_idx: int) -> Tensor:
        out = self.forward_train(batch)
        key_loss = balanced_cross_entropy(out.key_logits, batch.key_mask)
        target_loss = balanced_cross_entropy(out.target_logits, batch.target_mask)
        loss = key_loss + target_loss
        weight = 2.0
        if out.attention_logits is not None:
            sam_loss = balanced_cross_entropy(out.attention_logits, batch.target_mask)
            loss = loss + self.hparams.sam_loss_weight * sam_loss
            weight += self.hparams.sam_loss_weight
            self.log("train/sam_loss", sam_loss)
        loss = loss / weight  # the original divides by 2.5 = 1 + 1 + 0.5
        size = batch.key_mask.shape[0]
        self.log("train/key_loss", key_loss, batch_size=size)
        self.log("train/target_loss", target_loss, batch_size=size)
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

    def on_validation_epoch_end(self) -> None:
        scores = self.val_jf.compute()
        self.log("val/J&F", scores["J&F-Mean"], prog_bar=True)
        self.log("val/J", scores["J-Mean"])
        self.log("val/F", scores["F-Mean"])
        self.log("val/mask_warp_J&F", self.val_mask_warp_jf.compute()["J&F-Mean"])
        self.log("val/copy_baseline_J&F", self.val_copy_jf.compute()["J&F-Mean"])
        self.log("val/fps", self.val_frames.compute() / self.val_seconds.compute().clamp_min(1e-9))
        metrics = (self.val_jf, self.val_mask_warp_jf, self.val_copy_jf)
        for metric in (*metrics, self.val_frames, self.val_seconds):
            metric.reset()

    def configure_optimizers(self) -> dict[str, Any]:
        """Adam with weight decay and a cosine decay of the learning rate over the whole run."""
        optimizer = torch.optim.AdamW(
            self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay
        )
        steps = max(int(self.trainer.estimated_stepping_batches), 1)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
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
