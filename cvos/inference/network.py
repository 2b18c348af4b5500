"""The network as streaming inference runs it: batch norms folded, on its device, optionally
NHWC and compiled. The same call serves a CPU and a GPU; nothing else changes between them."""

from __future__ import annotations

import torch
from torch import nn

from cvos.models.cvosnet import CVOSNet, fold_batch_norms


def prepare_network(
    net: CVOSNet,
    *,
    device: torch.device | str = "cpu",
    channels_last: bool = False,
    compile: bool = False,
) -> CVOSNet:
    """A copy of `net` for inference (the caller's network, e.g. one being trained, is untouched).

    Batch norms are folded into the convs before them; `channels_last` stores weights NHWC
    (feed the propagator NHWC inputs too); `compile` wraps the heavy modules (encoder, RSM, the
    per-object SAM body, decoders) in `torch.compile`, which compiles on the first frame.
    """
    net = fold_batch_norms(net).to(device)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    if compile:
        _compile_heavy_modules(net)
    return net


def _compile_heavy_modules(net: CVOSNet) -> None:
    net.encoder = torch.compile(net.encoder)
    net.idec = torch.compile(net.idec)
    net.pdec = torch.compile(net.pdec)
    if net.rsm is not None:
        net.rsm = torch.compile(net.rsm)
    if net.sam is not None:
        stages: nn.Sequential = net.sam.encoder.stages
        for index in range(1, len(stages)):  # SAM.forward splits the first stage's conv
            stages[index] = torch.compile(stages[index])
        net.sam.head = torch.compile(net.sam.head)
        net.sam.transform = torch.compile(net.sam.transform)
