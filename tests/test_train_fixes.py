"""The torch trainer's measurements and fine-tuning leave alone what they must leave alone:
a frozen backbone's batch norm, a model whose FLOPs are counted."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from scalelab.data import load_dataset
from scalelab.models import build_model
from scalelab.spec import parse_spec
from scalelab.train.flops import forward_flops, training_step_flops
from scalelab.train.torch_trainer import train_cell

RESNET = {"family": "resnet", "width": 0.25, "depth": 1}


def configs(*, model=None, grid=None, **train) -> list[dict]:
    raw = {
        "name": "fixes",
        "data": {"name": "digits", "data_fraction": 0.25},
        "model": model or {"family": "mlp", "width": 0.5},
        "train": {"epochs": 1, "device": "cpu", **train},
        **({"grid": grid} if grid else {}),
    }
    return [cell.config for cell in parse_spec(raw, source="fixes.toml").cells]


@pytest.fixture(scope="module")
def digits():
    return load_dataset(configs()[0]["data"])


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny models on a busy 2-core machine train far faster on one thread."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def batch_norm_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {
        name: buffer.detach().clone()
        for name, buffer in model.named_buffers()
        if name.rsplit(".", 1)[-1] in ("running_mean", "running_var", "num_batches_tracked")
    }


@pytest.fixture(scope="module")
def resnet_checkpoint(tmp_path_factory, digits) -> Path:
    """A small ResNet whose batch norm has seen digits (running statistics away from 0 and 1)."""
    model = build_model(configs(model=RESNET)[0]["model"], digits.input_shape, digits.n_classes, seed=0)
    with torch.no_grad():
        for start in range(0, 512, 64):
            model(torch.from_numpy(digits.X_train[start : start + 64]))
    path = tmp_path_factory.mktemp("ckpt") / "resnet.pt"
    torch.save(model.state_dict(), path)
    return path


# ---------------------------------------------------------------------------------------------
# freeze = "backbone" keeps batch norm's statistics
# ---------------------------------------------------------------------------------------------


def fine_tune(digits, checkpoint: Path, freeze: str) -> tuple[torch.nn.Module, dict]:
    (config,) = configs(model=RESNET, init_from=str(checkpoint), freeze=freeze, head_lr=1e-2, epochs=2)
    model = build_model(config["model"], digits.input_shape, digits.n_classes, seed=0)
    outcome = train_cell(config, digits, model=model)  # trains this very module (on the CPU)
    assert outcome.state == "done", outcome.reason
    return model, outcome.metrics


def test_a_frozen_backbone_keeps_its_batch_norm_statistics(digits, resnet_checkpoint):
    saved = torch.load(resnet_checkpoint, weights_only=True)
    model, metrics = fine_tune(digits, resnet_checkpoint, "backbone")
    after = batch_norm_state(model)
    assert after, "the ResNet has batch norm"
    for name, value in after.items():
        torch.testing.assert_close(value, saved[name], rtol=0, atol=0, msg=name)
    # The head did train, and the backbone's batch norm is still in eval mode afterwards.
    assert not torch.equal(model[-1].weight.detach(), saved[f"{len(model) - 1}.weight"])
    assert all(not m.training for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert metrics["freeze"] == "backbone"


def test_without_freezing_batch_norm_statistics_follow_the_new_data(digits, resnet_checkpoint):
    saved = torch.load(resnet_checkpoint, weights_only=True)
    model, _ = fine_tune(digits, resnet_checkpoint, "none")
    changed = [name for name, value in batch_norm_state(model).items() if not torch.equal(value, saved[name])]
    assert changed  # the contrast that makes the test above mean something


# ---------------------------------------------------------------------------------------------
# Counting FLOPs changes nothing
# ---------------------------------------------------------------------------------------------


def test_counting_flops_leaves_the_model_exactly_as_it_was(digits):
    """Both counts run in training mode here, where batch norm would update its statistics."""
    model = build_model(configs(model=RESNET)[0]["model"], digits.input_shape, digits.n_classes, seed=0)
    model.train()
    X, y = torch.from_numpy(digits.X_train[:32]), torch.from_numpy(digits.y_train[:32])
    state = {name: value.clone() for name, value in model.state_dict().items()}
    rng = torch.get_rng_state()

    flops = training_step_flops(model, X, y)
    assert forward_flops(model, X) > 0

    for name, value in model.state_dict().items():
        assert torch.equal(value, state[name]), f"{name} changed"
    assert all(p.grad is None for p in model.parameters())
    assert torch.equal(torch.get_rng_state(), rng)
    assert model.training

    # The count is that of a real step (forward and backward) on a copy.
    twin = copy.deepcopy(model)
    with FlopCounterMode(display=False) as counter:
        torch.nn.functional.cross_entropy(twin(X), y).backward()
    assert flops == counter.get_total_flops() > 0


def test_flops_of_a_frozen_backbone_count_only_the_gradients_it_needs(digits):
    model = build_model(configs()[0]["model"], digits.input_shape, digits.n_classes, seed=0)
    X, y = torch.from_numpy(digits.X_train[:16]), torch.from_numpy(digits.y_train[:16])
    full = training_step_flops(model, X, y)
    for parameter in list(model.parameters())[:-2]:  # all but the head's weight and bias
        parameter.requires_grad_(False)
    assert 0 < training_step_flops(model, X, y) < full
