"""The CVOS LightningModule: losses, optimiser and schedule, and J/F on whole validation videos."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor
from torchmetrics import MeanMetric

from cvos.data import EvalSequence, TrainBatch
from cvos.errors import CheckpointError
from cvos.inference import Propagator, copy_first_masks, segment_sequence
from cvos.inference.propagator import PROPAGATIONS
from cvos.lit.losses import balanced_cross_entropy
from cvos.metrics import DavisJF
from cvos.models import CVOSNet, build_encoder


@dataclass
class TrainOutputs:
    """The network's outputs on one training batch."""

    key_logits: Tensor  # B x 2 x H x W, I-frame output
    target_logits: Tensor  # B x 2 x H x W, P-frame (or I-frame) target output
    attention_logits: Tensor | None  # B x 2 x H x W, SAM's auxiliary output


class CVOSLitModule(pl.LightningModule):
    """Trains one CVOS variant; every constructor argument is plain data saved in the checkpoint."""

    def __init__(
        self,
        *,
        variant: str,
        propagation: str,
        encoder: dict[str, Any],
        use_rsm: bool = False,
        use_sam: bool = False,
        embed_dim: int | None = None,
        topk: int = 20,
        temperature: float = 10.0,
        sam_loss_weight: float = 0.5,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        input_size: tuple[int, int] | None = None,
        gop_size: int = 12,
    ) -> None:
        super().__init__()
        if propagation not in PROPAGATIONS:
            raise ValueError(f"propagation must be one of {PROPAGATIONS}, got {propagation!r}")
        self.save_hyperparameters()
        self.net = CVOSNet(
            build_encoder(**encoder),
            embed_dim=embed_dim,
            use_rsm=use_rsm,
            use_sam=use_sam,
            topk=topk,
            temperature=temperature,
        )
        self.val_jf = DavisJF()
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
        if self.hparams.propagation == "framewise":
            target_logits = net.decode(net.encode(batch.target_image), ref, size)[:, 0]
        elif self.hparams.propagation == "mask":
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

    def propagator(self) -> Propagator:
        """A fresh streaming propagator for one video, on this module's device."""
        return Propagator(
            self.net,
            propagation=self.hparams.propagation,
            input_size=self.hparams.input_size,
            device=self.device,
        )

    def validation_step(self, sequence: EvalSequence, batch_idx: int) -> None:
        if sequence.gt_masks is None:
            return
        result = segment_sequence(self.propagator(), sequence)
        self.val_jf.update(result.labels, sequence.gt_masks, sequence.object_ids)
        self.val_copy_jf.update(copy_first_masks(sequence), sequence.gt_masks, sequence.object_ids)
        self.val_frames.update(result.timing.frames)
        self.val_seconds.update(result.timing.total_s)

    def on_validation_epoch_end(self) -> None:
        scores = self.val_jf.compute()
        copy = self.val_copy_jf.compute()
        self.log("val/J&F", scores["J&F-Mean"], prog_bar=True)
        self.log("val/J", scores["J-Mean"])
        self.log("val/F", scores["F-Mean"])
        self.log("val/copy_baseline_J&F", copy["J&F-Mean"])
        self.log("val/fps", self.val_frames.compute() / self.val_seconds.compute().clamp_min(1e-9))
        for metric in (self.val_jf, self.val_copy_jf, self.val_frames, self.val_seconds):
            metric.reset()

    def configure_optimizers(self) -> dict[str, Any]:
        """Adam with weight decay and a cosine decay of the learning rate over the whole run."""
        optimizer = torch.optim.AdamW(
            self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay
        )
        steps = max(int(self.trainer.estimated_stepping_batches), 1)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


def save_checkpoint(module: CVOSLitModule, path: str | Path) -> None:
    """Save the network as `load_checkpoint` reads it: tensors and plain config only.

    Lightning's own checkpoints have the same two keys; this is for networks made outside a
    training run (benchmarks, tests).
    """
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}, path)


def load_checkpoint(path: str | Path, *, variant: str | None = None) -> CVOSLitModule:
    """Load a checkpoint (tensors and plain config only) and check that it is of `variant`.

    `mask_warp` accepts a checkpoint of any variant: it only uses the I-frame path.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        hparams = dict(checkpoint["hyper_parameters"])
    except Exception as err:  # torch raises many types for corrupt files; one message for all
        raise CheckpointError(
            f"{path}: not a readable cvos checkpoint ({type(err).__name__}: {err})"
        ) from err
    hparams["encoder"] = {
        **hparams["encoder"],
        "weights": None,
    }  # the weights are in the checkpoint
    module = CVOSLitModule(**hparams)
    try:
        module.load_state_dict(checkpoint["state_dict"])
    except (KeyError, RuntimeError) as err:
        raise CheckpointError(f"{path}: weights do not fit the saved model config ({err})") from err
    saved = module.hparams.variant
    if variant is not None and variant not in (saved, "mask_warp"):
        raise CheckpointError(
            f"{path}: checkpoint is of model variant {saved!r}, not {variant!r}; set model={saved}"
        )
    return module
