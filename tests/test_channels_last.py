"""Channels-last is skipped for the convolutions whose NHWC backward pass breaks on the
CPU (a narrow ResNet's 1×1 strided shortcut), and a narrow ResNet trains on one thread.

The crash this guards against is a heap corruption inside torch, so the training runs
in a subprocess: a regression fails the test instead of killing the test run."""

from __future__ import annotations

import subprocess
import sys

import torch

from scalelab.models import build_model
from scalelab.train.torch_trainer import _uses_channels_last

IMAGES = torch.zeros(2, 1, 8, 8)


def resnet(width: float) -> torch.nn.Module:
    return build_model({"family": "resnet", "knobs": {"width": width, "depth": 1}}, (1, 8, 8), 10, seed=0)


def test_narrow_shortcuts_keep_the_default_layout_on_cpu():
    assert not _uses_channels_last(resnet(0.25), IMAGES)  # 4-channel 1×1 stride-2 shortcut
    assert _uses_channels_last(resnet(1.0), IMAGES)  # 16 channels: NHWC as before
    assert not _uses_channels_last(torch.nn.Linear(64, 10), IMAGES.flatten(1))


def test_a_narrow_resnet_trains_on_one_thread():
    script = (
        "import torch; torch.set_num_threads(1)\n"
        "from scalelab.spec import parse_spec\n"
        "from scalelab.data import load_dataset\n"
        "from scalelab.train.torch_trainer import train_cell\n"
        "raw = {'name': 'n', 'data': {'name': 'digits', 'data_fraction': 0.25}, 'model': {'family': 'resnet', 'width': 0.25, 'depth': 1},"
        " 'train': {'epochs': 1, 'device': 'cpu'}}\n"
        "(cell,) = parse_spec(raw, source='n.toml').cells\n"
        "print(train_cell(cell.config, load_dataset(cell.config['data'])).state)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "done"
