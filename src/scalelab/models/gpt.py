"""A decoder-only transformer in the GPT-2 shape, small enough to read top to bottom.

Token and learned position embeddings, ``n_layer`` pre-LayerNorm blocks (causal
self-attention through ``scaled_dot_product_attention``, then a 4× GELU MLP, each added
to the residual stream), a final LayerNorm, and an output head that shares the token
embedding's weights.

The logits come out as ``(batch, vocab, time)``: the layout ``F.cross_entropy`` takes
for ``(batch, time)`` targets, so a trainer's ``F.cross_entropy(model(x), y)`` and
``logits.argmax(dim=1)`` work on sequences as they do on classes.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from scalelab.errors import InputError


class CausalSelfAttention(nn.Module):
    def __init__(self, n_embd: int, n_head: int):
        super().__init__()
        self.n_head = n_head
        self.qkv = nn.Linear(n_embd, 3 * n_embd)
        self.proj = nn.Linear(n_embd, n_embd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, time, channels = x.shape
        # (B, T, 3C) -> three (B, heads, T, C / heads)
        q, k, v = (
            self.qkv(x)
            .view(batch, time, 3, self.n_head, channels // self.n_head)
            .permute(2, 0, 3, 1, 4)
        )
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(y.transpose(1, 2).reshape(batch, time, channels))


class Block(nn.Module):
    def __init__(self, n_embd: int, n_head: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(n_embd)
        self.attn = CausalSelfAttention(n_embd, n_head)
        self.ln_2 = nn.LayerNorm(n_embd)
        self.mlp = nn.Sequential(
            nn.Linear(n_embd, 4 * n_embd), nn.GELU(), nn.Linear(4 * n_embd, n_embd)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """A GPT-2-style language model over ``vocab_size`` tokens and ``context`` positions."""

    def __init__(
        self, vocab_size: int, *, n_layer: int, n_embd: int, n_head: int, context: int
    ):
        super().__init__()
        if n_embd % n_head:
            raise InputError(
                f"model.n_embd = {n_embd} is not divisible by model.n_head = {n_head}"
            )
        self.vocab_size, self.n_layer, self.n_embd, self.n_head, self.context = (
            vocab_size,
            n_layer,
            n_embd,
            n_head,
            context,
        )
        self.wte = nn.Embedding(vocab_size, n_embd)
        self.wpe = nn.Embedding(context, n_embd)
        self.blocks = nn.ModuleList(Block(n_embd, n_head) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(n_embd)
        self.head = nn.Linear(n_embd, vocab_size, bias=False)
        self.head.weight = (
            self.wte.weight
        )  # tied: one matrix reads tokens in and writes them out
        self._init_weights()

    def _init_weights(self) -> None:
        # GPT-2's: normal(0, 0.02), zero biases, and each residual branch's last projection
        # scaled by 1/sqrt(2·n_layer) so the residual stream's variance does not grow with depth.
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
        for block in self.blocks:
            for projection in (block.attn.proj, block.mlp[2]):
                nn.init.normal_(
                    projection.weight, mean=0.0, std=0.02 / math.sqrt(2 * self.n_layer)
                )

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        time = idx.shape[1]
        if time > self.context:
            raise ValueError(
                f"a sequence of {time} tokens is longer than the model's context of {self.context}"
            )
        x = self.wte(idx) + self.wpe(torch.arange(time, device=idx.device))
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x)).transpose(
            1, 2
        )  # (B, vocab, T): see the module docstring


def parameter_count(vocab_size: int, *, n_layer: int, n_embd: int, context: int) -> int:
    """Parameters of a :class:`GPT`, the tied head counted once: embeddings (V + T)·d,
    12·d² + 13·d per block (attention 4d² + 4d, MLP 8d² + 5d, two LayerNorms 4d), and the
    final LayerNorm's 2·d."""
    d = n_embd
    return (vocab_size + context) * d + n_layer * (12 * d * d + 13 * d) + 2 * d


def non_embedding_params(model: GPT) -> int:
    """Kaplan et al.'s N: every parameter but the token and position embeddings (the
    tied head is the token embedding, so it is out too)."""
    total = sum(p.numel() for p in model.parameters())
    return total - model.wte.weight.numel() - model.wpe.weight.numel()


def analytic_flops_per_token(model: GPT) -> float:
    """Training FLOPs per token, forward and backward: 6·N for the weights' matmuls (2 per
    multiply-add forward, twice that backward) plus 12·n_layer·n_embd·context for the
    attention scores and their weighted sum (Kaplan et al. 2020, table 1, with the same
    factor of 3 for the backward pass). Like Kaplan's count it leaves out the output
    head's 6·n_embd·vocab, which :func:`scaling_metrics` reports on its own."""
    return (
        6.0 * non_embedding_params(model)
        + 12.0 * model.n_layer * model.n_embd * model.context
    )


def scaling_metrics(model: GPT) -> dict:
    """What a language-model run records about its model's size and cost per token."""
    return {
        "n_params_non_embedding": non_embedding_params(model),
        "flops_per_token_analytic": analytic_flops_per_token(model),
        "flops_per_token_head": 6.0 * model.n_embd * model.vocab_size,
    }
