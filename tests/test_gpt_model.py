"""The GPT model: its parameter count, tied embeddings, causality, logits layout, and
measured training FLOPs per token against the analytic 6N + 12·n_layer·n_embd·context."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.flop_counter import FlopCounterMode

import scalelab.train.flops  # noqa: F401 - registers the CPU attention kernels' FLOPs
from scalelab.errors import InputError
from scalelab.models.gpt import (
    GPT,
    analytic_flops_per_token,
    non_embedding_params,
    parameter_count,
    scaling_metrics,
)


@settings(max_examples=25, deadline=None)
@given(
    vocab=st.integers(2, 300),
    n_layer=st.integers(1, 3),
    heads=st.integers(1, 4),
    head_dim=st.integers(1, 16),
    context=st.integers(1, 64),
)
def test_parameter_count_formula_matches_the_module(
    vocab, n_layer, heads, head_dim, context
):
    n_embd = heads * head_dim
    model = GPT(vocab, n_layer=n_layer, n_embd=n_embd, n_head=heads, context=context)
    assert parameter_count(
        vocab, n_layer=n_layer, n_embd=n_embd, context=context
    ) == sum(p.numel() for p in model.parameters())
    assert (
        non_embedding_params(model)
        == n_layer * (12 * n_embd**2 + 13 * n_embd) + 2 * n_embd
    )


def test_output_head_is_the_token_embedding():
    model = GPT(50, n_layer=1, n_embd=16, n_head=2, context=8)
    assert model.head.weight is model.wte.weight
    with torch.no_grad():
        model.wte.weight[3, 0] = 7.0
    assert model.head.weight[3, 0] == 7.0


def test_logits_layout_is_batch_vocab_time_and_fits_cross_entropy():
    model = GPT(40, n_layer=2, n_embd=16, n_head=4, context=12)
    tokens = torch.randint(0, 40, (3, 12))
    logits = model(tokens)
    assert logits.shape == (3, 40, 12)
    loss = F.cross_entropy(logits, torch.randint(0, 40, (3, 12))).detach()
    assert (
        torch.isfinite(loss) and abs(loss.item() - torch.log(torch.tensor(40.0))) < 0.5
    )  # near uniform at init


def test_a_later_token_never_changes_earlier_logits():
    torch.manual_seed(0)
    model = GPT(30, n_layer=2, n_embd=16, n_head=2, context=10).eval()
    tokens = torch.randint(0, 30, (1, 10))
    changed = tokens.clone()
    changed[0, 6:] = (changed[0, 6:] + 1) % 30
    before, after = model(tokens), model(changed)
    torch.testing.assert_close(before[..., :6], after[..., :6])
    assert not torch.allclose(before[..., 6:], after[..., 6:])


def test_a_sequence_longer_than_the_context_is_refused():
    model = GPT(10, n_layer=1, n_embd=8, n_head=2, context=4)
    with pytest.raises(ValueError, match="context of 4"):
        model(torch.zeros(1, 5, dtype=torch.long))


def test_n_embd_not_divisible_by_n_head_names_both_keys():
    with pytest.raises(InputError, match=r"model\.n_embd = 30 .* model\.n_head = 4"):
        GPT(10, n_layer=1, n_embd=30, n_head=4, context=8)


@pytest.mark.parametrize(
    ("vocab", "n_layer", "n_embd", "n_head", "context"),
    [(256, 2, 128, 4, 128), (256, 4, 256, 8, 256), (512, 2, 64, 4, 64)],
)
def test_measured_flops_per_token_match_the_analytic_count(
    vocab, n_layer, n_embd, n_head, context
):
    model = GPT(vocab, n_layer=n_layer, n_embd=n_embd, n_head=n_head, context=context)
    batch = 2
    tokens, targets = (
        torch.randint(0, vocab, (batch, context)),
        torch.randint(0, vocab, (batch, context)),
    )
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(model(tokens), targets).backward()
    counts = {str(op): n for op, n in counter.get_flop_counts()["Global"].items()}
    assert any("scaled_dot_product" in op for op in counts), "attention must be counted"
    measured = counter.get_total_flops() / (batch * context)
    # The analytic count leaves the output head out (Kaplan's convention); it is reported apart.
    metrics = scaling_metrics(model)
    assert measured - metrics["flops_per_token_head"] == pytest.approx(
        analytic_flops_per_token(model), rel=0.10
    )
    assert metrics["n_params_non_embedding"] == non_embedding_params(model)
