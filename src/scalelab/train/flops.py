"""Measured FLOPs, counted by ``torch.utils.flop_counter.FlopCounterMode``.

The counter reports 2 FLOPs per multiply-add for matmuls and convolutions, the
convention of the scaling-law literature. It does not count elementwise work
(activations, the optimizer update), which is small next to the matmuls.
"""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode


def training_step_flops(model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> int:
    """FLOPs of one forward and backward pass on this batch; gradients are cleared after."""
    loss_fn = torch.nn.functional.cross_entropy
    with FlopCounterMode(display=False) as counter:
        loss_fn(model(inputs), targets).backward()
    model.zero_grad(set_to_none=True)
    return int(counter.get_total_flops())


def forward_flops(model: torch.nn.Module, inputs: torch.Tensor) -> int:
    """FLOPs of one forward pass on this batch, without building a graph."""
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(inputs)
    return int(counter.get_total_flops())
