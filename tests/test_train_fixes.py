"""The torch trainer's measurements and fine-tuning leave alone what they must leave alone:
a frozen backbone's batch norm, a model whose FLOPs are counted; ``precision = "auto"``
picks bf16 only where a GPU runs it natively; every run names the device it ran on."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from scalelab.data import load_dataset
from scalelab.models import build_model
from scalelab.spec import parse_spec
from scalelab.train.cell import run_cell, run_seed_group
from scalelab.train.flops import forward_flops, training_step_flops
from scalelab.train.torch_trainer import cpu_name, device_name, resolve_precision, train_cell

pytestmark = pytest.mark.usefixtures("one_torch_thread")

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


# ---------------------------------------------------------------------------------------------
# precision = "auto" on GPUs
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "capability, expected",
    [((6, 0), "fp32"), ((7, 0), "fp32"), ((7, 5), "fp32"), ((8, 0), "bf16"), ((8, 9), "bf16"), ((9, 0), "bf16")],
)
def test_auto_precision_uses_bf16_only_on_gpus_that_run_it_natively(monkeypatch, capability, expected):
    # torch's own check counts emulated bf16 as supported on every GPU since Volta; it must not decide.
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    cuda = torch.device("cuda", 0)
    assert resolve_precision("auto", cuda) == expected
    assert resolve_precision("bf16", cuda) == "bf16" and resolve_precision("fp32", cuda) == "fp32"


# ---------------------------------------------------------------------------------------------
# device_name
# ---------------------------------------------------------------------------------------------


def test_a_cpu_run_records_the_processor_it_ran_on(digits):
    metrics = train_cell(configs()[0], digits).metrics
    assert isinstance(metrics["device_name"], str) and metrics["device_name"].strip()
    assert metrics["device_name"] == cpu_name()
    assert metrics["device"] == "cpu"  # the existing field is unchanged
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists() and "model name" in cpuinfo.read_text():
        assert metrics["device_name"] in cpuinfo.read_text()


def test_seed_groups_and_scikit_learn_runs_record_the_device_name_too(digits):
    group = configs(batch_seeds=True, grid={"seed": [0, 1]})
    for outcome in run_seed_group(group, digits):
        assert outcome.metrics["device_name"] == cpu_name()
    (tree,) = configs(model={"family": "tree"})
    metrics = run_cell(tree, digits).metrics
    assert metrics["device_name"] == cpu_name() and metrics["device"] == "cpu"


def test_a_cuda_device_is_named_as_cuda_reports_it(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H100 80GB HBM3")
    assert device_name(torch.device("cuda", 0)) == "NVIDIA H100 80GB HBM3"
