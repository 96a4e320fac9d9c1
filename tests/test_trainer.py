"""The torch trainer: one cell, real training on tiny data (DESIGN.md, "train", "Determinism", "Divergence")."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from scalelab.data import load_dataset, subset_size
from scalelab.models import build_model, count_parameters
from scalelab.spec import parse_spec
from scalelab.train.torch_trainer import train_cell

RECORDED = (
    "train_loss", "test_loss", "test_error", "n_params", "n_train", "epochs", "steps", "flops", "wall_s",
    "samples_per_s", "device", "dtype", "seed", "torch_version", "eval_flops",
)  # fmt: skip
TIMING = ("wall_s", "train_s", "samples_per_s", "flops_per_s", "inference_samples_per_s")


def cell_config(*, data=None, model=None, **train) -> dict:
    """A resolved cell: digits at a quarter of the data, a narrow MLP, one epoch on the CPU."""
    raw = {
        "name": "t",
        "data": data or {"name": "digits", "data_fraction": 0.25},
        "model": model or {"family": "mlp", "width": 0.5},
        "train": {"epochs": 1, "device": "cpu", **train},
    }
    (cell,) = parse_spec(raw, source="t.toml").cells
    return cell.config


@pytest.fixture(scope="module")
def digits():
    return load_dataset(cell_config()["data"])


def test_every_field_is_recorded(digits):
    config = cell_config(epochs=2, batch_size=32, seed=3)
    outcome = train_cell(config, digits)
    m = outcome.metrics
    assert outcome.state == "done" and outcome.reason is None
    assert set(RECORDED) <= set(m)

    expected_n_train = subset_size(digits.y_train, 0.25)
    assert m["n_train"] == expected_n_train
    assert m["epochs"] == 2
    assert m["steps"] == 2 * math.ceil(expected_n_train / 32)
    torch.manual_seed(0)
    model = build_model(config["model"], digits.input_shape, digits.n_classes)
    assert m["n_params"] == count_parameters(model)
    assert m["seed"] == 3
    assert m["device"] == "cpu"
    assert m["dtype"] == "float32"
    assert m["torch_version"] == torch.__version__
    for name in ("train_loss", "test_loss"):
        assert math.isfinite(m[name]) and m[name] > 0
    assert 0.0 <= m["test_error"] <= 1.0
    assert m["test_error"] < 0.9  # two epochs on digits beat chance
    assert m["flops"] > 0 and m["eval_flops"] > 0
    # Matmul FLOPs of an MLP, 2 per multiply-add: forward 2 per weight, backward 2 for the weight
    # gradient plus 2 for the input gradient, which the first layer does not need.
    weights = [layer.weight.numel() for layer in model if isinstance(layer, torch.nn.Linear)]
    assert m["flops"] / (m["n_train"] * m["epochs"]) == 6 * sum(weights) - 2 * weights[0]
    assert m["eval_flops"] == 2 * sum(weights) * len(digits.y_test)
    assert m["wall_s"] > 0 and m["samples_per_s"] > 0


def test_same_config_gives_identical_metrics(digits):
    config = cell_config(model={"family": "seed_cnn", "width": 0.25}, epochs=2)
    first = train_cell(config, digits).metrics
    second = train_cell(config, digits).metrics
    strip = lambda m: {k: v for k, v in m.items() if k not in TIMING}  # noqa: E731
    assert strip(first) == strip(second)


def test_different_seed_gives_different_losses(digits):
    a = train_cell(cell_config(seed=0), digits).metrics
    b = train_cell(cell_config(seed=1), digits).metrics
    assert a["train_loss"] != b["train_loss"]
    assert a["test_loss"] != b["test_loss"]


def test_subsample_seed_changes_the_training_rows_not_their_count(digits):
    a = train_cell(cell_config(data={"name": "digits", "data_fraction": 0.25, "subsample_seed": 0}), digits).metrics
    b = train_cell(cell_config(data={"name": "digits", "data_fraction": 0.25, "subsample_seed": 1}), digits).metrics
    assert a["n_train"] == b["n_train"]
    assert a["train_loss"] != b["train_loss"]


def test_seed_cnn_flops_per_sample_on_cifar_shapes():
    """The article's CNN costs about 25.7 MFLOPs per training sample (forward + backward, 2 per MAC)."""
    config = cell_config(
        data={"name": "synthetic", "n_samples": 100, "shape": [3, 32, 32]},
        model={"family": "seed_cnn", "width": 1},
        batch_size=16,
    )
    outcome = train_cell(config, load_dataset(config["data"]))
    m = outcome.metrics
    assert m["n_params"] == 122_570
    assert m["flops"] / (m["n_train"] * m["epochs"]) == pytest.approx(25.7e6, rel=0.01)
    # Evaluation is one forward pass: about a third of a training step.
    assert m["eval_flops"] / m["n_test"] == pytest.approx(9.1e6, rel=0.01)


def test_sgd_with_huge_lr_diverges_and_records_the_step(digits):
    outcome = train_cell(cell_config(optimizer="sgd", lr=1e6, epochs=3), digits)
    assert outcome.state == "diverged"
    step = outcome.metrics["diverged_step"]
    assert isinstance(step, int) and 1 <= step <= outcome.metrics["steps"]
    assert f"step {step}" in outcome.reason
    assert outcome.metrics["epochs"] == 1  # stopped in the epoch where the loss went non-finite
    assert outcome.metrics["steps"] == step


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
@pytest.mark.parametrize("family", ["mlp", "seed_cnn"])
def test_huge_lr_never_raises(digits, optimizer, family):
    outcome = train_cell(cell_config(model={"family": family, "width": 0.25}, optimizer=optimizer, lr=1e6), digits)
    assert outcome.state in ("done", "diverged")
    if outcome.state == "diverged":
        assert f"step {outcome.metrics['diverged_step']}" in outcome.reason
    else:
        assert "diverged_step" not in outcome.metrics


def test_min_steps_raises_epochs_on_small_fractions(digits):
    config = cell_config(data={"name": "digits", "data_fraction": 0.05}, epochs=1, batch_size=32, min_steps=10)
    m = train_cell(config, digits).metrics
    steps_per_epoch = math.ceil(m["n_train"] / 32)
    assert steps_per_epoch < 10  # the premise: one epoch is too few steps
    assert m["epochs"] == math.ceil(10 / steps_per_epoch)
    assert m["steps"] == m["epochs"] * steps_per_epoch >= 10


def test_min_steps_does_not_lower_epochs(digits):
    m = train_cell(cell_config(epochs=2, min_steps=1), digits).metrics
    assert m["epochs"] == 2


def test_batch_larger_than_data_is_one_full_batch_step(digits):
    m = train_cell(cell_config(data={"name": "digits", "data_fraction": 0.05}, batch_size=100_000), digits).metrics
    assert m["steps"] == 1


def test_training_reduces_loss_over_epochs(digits):
    short = train_cell(cell_config(epochs=1, lr=3e-3), digits).metrics
    long = train_cell(cell_config(epochs=8, lr=3e-3), digits).metrics
    assert long["test_loss"] < short["test_loss"]
    assert long["test_error"] < 0.5


def test_metrics_are_plain_json_values(digits):
    """The store writes metrics as JSON, so no numpy or torch scalars may slip through."""
    metrics = train_cell(cell_config(), digits).metrics
    assert not any(isinstance(v, (np.generic, np.ndarray, torch.Tensor)) for v in metrics.values())
    assert json.loads(json.dumps(metrics, allow_nan=False)) == metrics


def test_bf16_precision_is_recorded(digits):
    outcome = train_cell(cell_config(precision="bf16"), digits)
    assert outcome.state == "done"
    assert outcome.metrics["dtype"] == "bfloat16"
    assert math.isfinite(outcome.metrics["test_loss"])


def test_auto_precision_resolves_by_hardware_and_records_the_choice(digits):
    from scalelab.train.torch_trainer import cpu_has_native_bf16, resolve_precision

    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) == "fp32" and resolve_precision("bf16", cpu) == "bf16"
    expected = "bf16" if cpu_has_native_bf16() else "fp32"
    assert resolve_precision("auto", cpu) == expected
    metrics = train_cell(cell_config(precision="auto"), digits).metrics
    assert metrics["precision"] == expected
    assert metrics["dtype"] == {"bf16": "bfloat16", "fp32": "float32"}[expected]


def test_bf16_matches_fp32_accuracy_on_digits(digits):
    """The parity that lets ``auto`` pick bf16: same model, seeds and epochs, errors close."""
    def mean_error(precision):
        errors = [
            train_cell(cell_config(precision=precision, epochs=8, seed=seed, batch_size=32,
                                   data={"name": "digits"}, model={"family": "mlp", "width": 1}), full).metrics["test_error"]
            for seed in (0, 1)
        ]  # fmt: skip
        return sum(errors) / len(errors)

    full = load_dataset(cell_config(data={"name": "digits"})["data"])
    fp32, bf16 = mean_error("fp32"), mean_error("bf16")
    assert fp32 < 0.15 and abs(bf16 - fp32) <= 0.03, (fp32, bf16)


def test_conv_nets_on_images_train_channels_last_and_others_do_not(digits):
    cnn = train_cell(cell_config(model={"family": "seed_cnn", "width": 0.25}), digits).metrics
    mlp = train_cell(cell_config(), digits).metrics
    assert cnn["memory_format"] == "channels_last" and mlp["memory_format"] == "contiguous"
    # The layout changes speed, not results: the same weights give the same outputs.
    config = cell_config(model={"family": "seed_cnn", "width": 0.25})
    model = build_model(config["model"], digits.input_shape, digits.n_classes, seed=0)
    x = torch.from_numpy(digits.X_test[:64]).float()
    expected = model(x)
    model = model.to(memory_format=torch.channels_last)
    torch.testing.assert_close(model(x.contiguous(memory_format=torch.channels_last)), expected, rtol=1e-4, atol=1e-5)


def test_compile_is_opt_in_and_recorded(digits):
    assert train_cell(cell_config(), digits).metrics["compiled"] is False
    assert cell_config(compile=True)["train"]["compile"] is True


def test_unavailable_cuda_is_an_error_not_a_silent_cpu_run(digits):
    if torch.cuda.is_available():
        pytest.skip("CUDA is present here")
    with pytest.raises(RuntimeError, match="CUDA"):
        train_cell(cell_config(device="cuda"), digits)
