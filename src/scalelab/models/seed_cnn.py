"""The source document's CIFAR-10 CNN, with a width multiplier.

At ``width = 1`` on 3×32×32 inputs with 10 classes this is exactly the Keras model of
the article: Conv(32, 3×3) – MaxPool(2) – Conv(64, 3×3) – MaxPool(2) – Conv(64, 3×3) –
Flatten – Dense(64) – Dense(10), ReLU throughout, "valid" padding, 122,570 parameters.
Each ReLU runs after its pooling layer rather than before: the same function.
``width`` multiplies every channel count and the hidden dense layer (rounded, at least 1).

**Small inputs.** With valid padding the spatial side shrinks as
``s → s-2 → ⌊·/2⌋ → -2 → ⌊·/2⌋ → -2``, which needs a side of at least 18. For smaller
inputs (8×8 digits, say) every convolution uses "same" padding (1 pixel), and a pooling
layer is skipped when the side is already below 2, so 8×8 becomes 8 → 4 → 2 → 2.
Inputs of shape (C, L) use the same stack with 1-D convolutions and pooling.
"""

from __future__ import annotations

import math

from torch import nn

CHANNELS = (32, 64, 64)
HIDDEN = 64
KERNEL = 3


def _scaled(base: int, width: float) -> int:
    return max(1, round(base * width))


def _valid_padding_fits(side: int) -> bool:
    for layer in range(len(CHANNELS)):
        side -= KERNEL - 1
        if side < 1:
            return False
        if layer < len(CHANNELS) - 1:
            side //= 2
    return True


def build_seed_cnn(input_shape: tuple[int, ...], n_classes: int, *, width: float) -> nn.Module:
    """Build the seed CNN for ``input_shape`` = (C, H, W) or (C, L)."""
    if len(input_shape) not in (2, 3):
        raise ValueError(f"seed_cnn needs inputs shaped (C, H, W) or (C, L), got {input_shape}")
    spatial = input_shape[1:]
    conv, pool = (nn.Conv2d, nn.MaxPool2d) if len(spatial) == 2 else (nn.Conv1d, nn.MaxPool1d)
    padding = 0 if _valid_padding_fits(min(spatial)) else KERNEL // 2

    layers: list[nn.Module] = []
    sides = list(spatial)
    in_channels = input_shape[0]
    for i, base in enumerate(CHANNELS):
        out_channels = _scaled(base, width)
        layers.append(conv(in_channels, out_channels, KERNEL, padding=padding))
        sides = [s + 2 * padding - (KERNEL - 1) for s in sides]
        in_channels = out_channels
        if i < len(CHANNELS) - 1 and min(sides) >= 2:
            # Pooling before the ReLU computes the same function with the same gradients
            # (ReLU is monotone, so it commutes with max), on a quarter of the elements
            # (half for 1-D inputs).
            layers.append(pool(2))
            sides = [s // 2 for s in sides]
        layers.append(nn.ReLU())
    hidden = _scaled(HIDDEN, width)
    layers += [
        nn.Flatten(),
        nn.Linear(in_channels * math.prod(sides), hidden),
        nn.ReLU(),
        nn.Linear(hidden, n_classes),
    ]
    return nn.Sequential(*layers)
