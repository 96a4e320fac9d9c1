"""A plain ReLU multilayer perceptron, f(x) = σ(Wx + b) stacked ``depth`` times."""

from __future__ import annotations

import math

from torch import nn

BASE_HIDDEN = 64


def build_mlp(input_shape: tuple[int, ...], n_classes: int, *, width: float, depth: int) -> nn.Module:
    """An MLP with ``depth`` hidden layers of ``round(64 * width)`` units.

    Inputs of any shape are flattened first, so image datasets work unchanged.
    """
    hidden = max(1, round(BASE_HIDDEN * width))
    layers: list[nn.Module] = [nn.Flatten()]
    fan_in = math.prod(input_shape)
    for _ in range(depth):
        layers += [nn.Linear(fan_in, hidden), nn.ReLU()]
        fan_in = hidden
    layers.append(nn.Linear(fan_in, n_classes))
    return nn.Sequential(*layers)
