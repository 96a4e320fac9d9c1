"""Model families: the seed CNN and the MLP, their shapes and parameter counts."""

from __future__ import annotations

import math

import pytest
import torch

from scalelab.models import build_model, count_parameters


def seed_cnn(width: float, shape=(3, 32, 32), n_classes: int = 10):
    return build_model({"family": "seed_cnn", "knobs": {"width": width}}, shape, n_classes)


def mlp(width: float, depth: int, shape=(1, 8, 8), n_classes: int = 10):
    return build_model({"family": "mlp", "knobs": {"width": width, "depth": depth}}, shape, n_classes)


def test_seed_cnn_at_width_one_is_the_articles_model():
    """Conv32-Pool-Conv64-Pool-Conv64-Dense64-Dense10 on CIFAR shapes: 122,570 parameters."""
    assert count_parameters(seed_cnn(1.0)) == 122_570


@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 8, 8), (1, 40), (3, 17, 17), (3, 18, 18), (2, 5)])
@pytest.mark.parametrize("width", [0.25, 1.0])
def test_seed_cnn_forward_pass_gives_one_logit_per_class(shape, width):
    torch.manual_seed(0)
    model = seed_cnn(width, shape)
    logits = model(torch.rand(4, *shape))
    assert logits.shape == (4, 10)
    assert torch.isfinite(logits).all()
    logits.sum().backward()  # trainable end to end


@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 8, 8), (1, 40)])
def test_seed_cnn_parameters_grow_with_width(shape):
    counts = [count_parameters(seed_cnn(w, shape)) for w in (0.25, 0.5, 1, 2, 4)]
    assert counts == sorted(counts)
    assert len(set(counts)) == len(counts)


def _article_order(model: torch.nn.Sequential) -> torch.nn.Sequential:
    """The same layers in the article's order, each ReLU before its pooling layer."""
    layers = list(model)
    for i in range(len(layers) - 1):
        if isinstance(layers[i], (torch.nn.MaxPool1d, torch.nn.MaxPool2d)) and isinstance(layers[i + 1], torch.nn.ReLU):
            layers[i], layers[i + 1] = layers[i + 1], layers[i]
    return torch.nn.Sequential(*layers)


@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 8, 8), (1, 40), (3, 19, 19)])
def test_seed_cnn_pooling_before_relu_is_the_articles_function_with_its_gradients(shape):
    torch.manual_seed(0)
    model = seed_cnn(0.5, shape)
    reference = _article_order(model)
    assert [type(m) for m in reference] != [type(m) for m in model]  # the order really differs
    x = torch.randn(16, *shape)
    ours, theirs = model(x), reference(x)
    assert torch.equal(ours, theirs)
    grads = torch.autograd.grad(ours.square().sum(), list(model.parameters()))
    reference_grads = torch.autograd.grad(theirs.square().sum(), list(reference.parameters()))
    for g, h in zip(grads, reference_grads):
        assert torch.equal(g, h)


def test_seed_cnn_rejects_inputs_it_cannot_convolve():
    with pytest.raises(ValueError):
        seed_cnn(1.0, (10,))


def test_seed_cnn_respects_n_classes():
    assert seed_cnn(1.0, (1, 8, 8), n_classes=3)(torch.rand(2, 1, 8, 8)).shape == (2, 3)


def expected_mlp_parameters(n_inputs: int, n_classes: int, width: float, depth: int) -> int:
    hidden = max(1, round(64 * width))
    first = n_inputs * hidden + hidden
    middle = (depth - 1) * (hidden * hidden + hidden)
    last = hidden * n_classes + n_classes
    return first + middle + last


@pytest.mark.parametrize("width", [0.01, 0.25, 0.5, 1.0, 1.5, 3.0])
@pytest.mark.parametrize("depth", [1, 2, 4])
@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 40), (20,)])
def test_mlp_parameter_count_matches_the_formula(width, depth, shape):
    model = mlp(width, depth, shape)
    assert count_parameters(model) == expected_mlp_parameters(math.prod(shape), 10, width, depth)
    assert model(torch.rand(3, *shape)).shape == (3, 10)


def test_mlp_parameters_grow_with_width_and_depth():
    by_width = [count_parameters(mlp(w, 2)) for w in (0.25, 0.5, 1, 2)]
    by_depth = [count_parameters(mlp(1, d)) for d in (1, 2, 3)]
    assert by_width == sorted(set(by_width))
    assert by_depth == sorted(set(by_depth))


def test_count_parameters_ignores_frozen_ones():
    model = mlp(1.0, 1)
    total = count_parameters(model)
    first = model[1]  # Flatten, then the first Linear
    first.weight.requires_grad_(False)
    assert count_parameters(model) == total - first.weight.numel()
