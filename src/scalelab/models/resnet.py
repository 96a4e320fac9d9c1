"""A small residual CNN with batch norm: what to scale when the seed's CNN saturates.

The CIFAR ResNets of He et al. (2016): a 3×3 stem, three stages of ``depth`` basic
blocks (two 3×3 convolutions with batch norm, and an identity shortcut) at 16, 32 and 64
channels times ``width``, global average pooling and one linear layer. The first block of
the second and third stage halves the spatial size (with a 1×1 projection on the
shortcut) unless the input is already smaller than 4 pixels a side, so 8×8 digits work
too. ``depth = 3, width = 1`` is ResNet-20 (272,474 parameters on CIFAR-10). Inputs
shaped (C, L) use the same network with 1-D convolutions.
"""

from __future__ import annotations

from torch import nn

STAGE_CHANNELS = (16, 32, 64)


class BasicBlock(nn.Module):
    """Two 3×3 convolutions with batch norm, added to a shortcut, then ReLU."""

    def __init__(self, conv, norm, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.conv1 = conv(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = norm(out_channels)
        self.conv2 = conv(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = norm(out_channels)
        self.relu = nn.ReLU()
        self.shortcut = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(conv(in_channels, out_channels, 1, stride=stride, bias=False), norm(out_channels))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


def build_resnet(input_shape: tuple[int, ...], n_classes: int, *, width: float, depth: int) -> nn.Module:
    """A CIFAR-style ResNet with ``6 * depth + 2`` layers for inputs (C, H, W) or (C, L)."""
    if len(input_shape) not in (2, 3):
        raise ValueError(f"resnet needs inputs shaped (C, H, W) or (C, L), got {input_shape}")
    two_d = len(input_shape) == 3
    conv, norm, pool = (nn.Conv2d, nn.BatchNorm2d, nn.AdaptiveAvgPool2d) if two_d else (nn.Conv1d, nn.BatchNorm1d, nn.AdaptiveAvgPool1d)
    channels = [max(1, round(base * width)) for base in STAGE_CHANNELS]
    side = min(input_shape[1:])

    layers: list[nn.Module] = [conv(input_shape[0], channels[0], 3, padding=1, bias=False), norm(channels[0]), nn.ReLU()]
    in_channels = channels[0]
    for stage, out_channels in enumerate(channels):
        for block in range(depth):
            stride = 2 if stage > 0 and block == 0 and side >= 4 else 1
            side = (side + 1) // stride if stride == 2 else side
            layers.append(BasicBlock(conv, norm, in_channels, out_channels, stride))
            in_channels = out_channels
    layers += [pool(1), nn.Flatten(), nn.Linear(in_channels, n_classes)]
    return nn.Sequential(*layers)
