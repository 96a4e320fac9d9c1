"""Compression after training (``prune``, ``prune_finetune_epochs``, ``quantize``): what a
compression grid records, and that the settings at their "off" values are the plain run."""

from __future__ import annotations

import math

import pytest
import torch

from scalelab.data import load_dataset
from scalelab.errors import InputError
from scalelab.spec import parse_spec
from scalelab.train.cell import run_cell

TIMING = {"wall_s", "train_s", "samples_per_s", "flops_per_s", "inference_samples_per_s"}


def study(grid: dict, *, model=None, **train) -> dict:
    return {
        "name": "compress",
        "data": {"name": "digits"},
        "model": model or {"family": "mlp", "width": 1},
        "train": {"epochs": 3, "device": "cpu", **train},
        "grid": grid,
    }


@pytest.fixture(scope="module")
def grid_runs():
    spec = parse_spec(study({"prune": [0, 0.5, 0.9], "quantize": ["none", "int8"]}), source="compress.toml")
    dataset = load_dataset(spec.cells[0].config["data"])
    return {(c.params["prune"], c.params["quantize"]): (c, run_cell(c.config, dataset).metrics) for c in spec.cells}, dataset


def test_a_compression_grid_records_size_speed_and_the_metrics_before_and_after(grid_runs):
    runs, _ = grid_runs
    assert set(runs) == {(p, q) for p in (0.0, 0.5, 0.9) for q in ("none", "int8")}
    for (prune, quantize), (_, m) in runs.items():
        assert m["nonzero_params"] > 0 and m["model_bytes"] > 0
        assert math.isfinite(m["inference_samples_per_s"]) and m["inference_samples_per_s"] > 0
        compressed = prune > 0 or quantize != "none"
        assert ("test_error_before_compression" in m) == compressed
        if compressed:
            assert m["test_error_before_compression"] == runs[(0.0, "none")][1]["test_error"]
            assert m["nonzero_params_before_compression"] == runs[(0.0, "none")][1]["nonzero_params"]
        if quantize == "int8":
            assert m["inference_device"] == "cpu"


def test_off_values_are_the_uncompressed_run_with_its_id_and_metrics(grid_runs):
    runs, dataset = grid_runs
    off_cell, off_metrics = runs[(0.0, "none")]
    raw = study({"seed": [0]})
    (plain,) = parse_spec(raw, source="plain.toml").cells
    assert off_cell.cell_id == plain.cell_id
    plain_metrics = run_cell(plain.config, dataset).metrics
    assert {k: v for k, v in off_metrics.items() if k not in TIMING} == {k: v for k, v in plain_metrics.items() if k not in TIMING}


def test_int8_shrinks_the_serialised_linear_layers(grid_runs):
    runs, _ = grid_runs
    for prune in (0.0, 0.5, 0.9):
        dense, int8 = runs[(prune, "none")][1]["model_bytes"], runs[(prune, "int8")][1]["model_bytes"]
        assert int8 < dense / 2  # 4-byte floats become 1-byte ints; an MLP is all Linear layers


def test_pruning_zeroes_that_share_of_the_weights(grid_runs):
    runs, dataset = grid_runs
    cell, _ = runs[(0.0, "none")]
    from scalelab.models import build_model

    model = build_model(cell.config["model"], dataset.input_shape, dataset.n_classes, seed=0)
    weights = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    for prune in (0.5, 0.9):
        m = runs[(prune, "none")][1]
        zeroed = m["nonzero_params_before_compression"] - m["nonzero_params"]
        assert zeroed == round(prune * weights)
    assert runs[(0.9, "none")][1]["test_error"] > runs[(0.0, "none")][1]["test_error"]


def test_finetuning_after_pruning_keeps_the_zeros_and_counts_its_flops(grid_runs):
    runs, dataset = grid_runs
    raw = study({"prune": [0.9]}, prune_finetune_epochs=3)
    (cell,) = parse_spec(raw).cells
    tuned = run_cell(cell.config, dataset).metrics
    untuned = runs[(0.9, "none")][1]
    assert tuned["nonzero_params"] == untuned["nonzero_params"]
    assert tuned["test_error"] < untuned["test_error"]  # the survivors relearn what the cut weights did
    assert tuned["prune_finetune_flops"] == pytest.approx(tuned["flops_per_sample"] * 3 * tuned["n_train"])
    assert tuned["flops"] == pytest.approx(untuned["flops"] + tuned["prune_finetune_flops"])


def test_a_pruned_conv_net_on_channels_last_images(grid_runs):
    _, dataset = grid_runs
    (cell,) = parse_spec(study({"prune": [0.5]}, model={"family": "seed_cnn", "width": 0.25})).cells
    m = run_cell(cell.config, dataset).metrics
    assert m["memory_format"] == "channels_last" and m["nonzero_params"] < m["nonzero_params_before_compression"]


@pytest.mark.parametrize(
    ("train", "message"),
    [
        pytest.param({"prune_finetune_epochs": 2}, "train.prune_finetune_epochs = 2 needs train.prune > 0", id="finetune-without-prune"),
        pytest.param({"prune": 0.5, "batch_seeds": True}, "cannot be combined with train.prune or train.quantize", id="batch-seeds"),
        pytest.param({"quantize": "int8", "data_parallel": 2}, "train.data_parallel = 2 cannot be combined", id="data-parallel"),
        pytest.param({"prune": 1.0}, "train.prune", id="prune-one"),
        pytest.param({"quantize": "int4"}, "train.quantize", id="quantize-int4"),
    ],
)
def test_bad_compression_settings_are_clear_errors(train, message):
    with pytest.raises(InputError) as caught:
        parse_spec(study({"seed": [0]}, **train), source="compress.toml")
    assert str(caught.value).startswith("compress.toml: ") and message in str(caught.value)
