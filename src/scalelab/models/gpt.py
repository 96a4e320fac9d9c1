"""A decoder-only transformer in the GPT-2 shape, small enough to read top to bottom.

Token and learned position embeddings, ``n_layer`` pre-LayerNorm blocks (causal
self-attention through ``scaled_dot_product_attention``, then a 4× GELU MLP, each added
to the residual stream), a final LayerNorm, and an output head that shares the token
embedding's weights.

The logits come out as ``(batch, vocab, time)``: the layout ``F.cross_entropy`` takes
for ``(batch, time)`` targets, so a trainer's unchanged ``F.cross_entropy(model(x), y)``
and ``logits.argmax(dim=1)`` work on sequences as they do on classes.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from scalelab.errors import InputError


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention in which position t sees positions 0 … t only."""

    def __init__(self, n_embd: int, n_head: int, dropout: float):
        super().__init__()
        self.n_head = n_head
        self.dropout = dropout
        self.qkv = nn.Linear(n_embd, 3 * n_embd)
        self.proj = nn.Linear(n_embd, n_embd)
        self.proj_dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, time, channels = x.shape
        head_dim = channels // self.n_head
        # (B, T, 3C) -> q, k, v, each (B, heads, T, C / heads)
        qkv = self.qkv(x).view(batch, time, 3, self.n_head, head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        # Dropout on the attention weights only while training; evaluation is exact.
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)
        y = y.transpose(1, 2).reshape(batch, time, channels)
        return self.proj_dropout(self.proj(y))


class Block(nn.Module):
    """One transformer block: x + attn(LN(x)), then x + mlp(LN(x))."""

    def __init__(self, n_embd: int, n_head: int, dropout: float):
        super().__init__()
        self.ln_1 = nn.LayerNorm(n_embd)
        self.attn = CausalSelfAttention(n_embd, n_head, dropout)
        self.ln_2 = nn.LayerNorm(n_embd)
        self.mlp = nn.Sequential(
            nn.Linear(n_embd, 4 * n_embd),
            nn.GELU(),
            nn.Linear(4 * n_embd, n_embd),
            nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """A GPT-2-style language model over ``vocab_size`` tokens and ``context`` positions.

    ``forward(idx)`` takes int64 token ids of shape ``(B, T)``, ``T <= context``, and
    returns logits of shape ``(B, vocab_size, T)`` (see the module docstring).

    Raises :class:`InputError` naming ``model.n_embd`` and ``model.n_head`` when the
    width does not split evenly into heads.
    """

    def __init__(
        self,
        vocab_size: int,
        *,
        n_layer: int,
        n_embd: int,
        n_head: int,
        context: int,
        dropout: float = 0.0,
    ):
        super().__init__()
        if n_embd % n_head:
            raise InputError(
                f"model.n_embd = {n_embd} is not divisible by model.n_head = {n_head}"
            )
        self.vocab_size = vocab_size
        self.n_layer = n_layer
        self.n_embd = n_embd
        self.n_head = n_head
        self.context = context
        self.wte = nn.Embedding(vocab_size, n_embd)
        self.wpe = nn.Embedding(context, n_embd)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            Block(n_embd, n_head, dropout) for _ in range(n_layer)
        )
        self.ln_f = nn.LayerNorm(n_embd)
        # Tied: one matrix reads tokens in and writes them out (GPT-2, Press & Wolf 2017).
        self.head = nn.Linear(n_embd, vocab_size, bias=False)
        self.head.weight = self.wte.weight
        self._init_weights()

    def _init_weights(self) -> None:
        # GPT-2's: normal(0, 0.02) weights, zero biases, and the last projection of each
        # residual branch scaled by 1/sqrt(2·n_layer), because 2·n_layer branches add
        # into the residual stream and its variance should not grow with depth.
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
        residual_std = 0.02 / math.sqrt(2 * self.n_layer)
        for block in self.blocks:
            for projection in (block.attn.proj, block.mlp[2]):
                nn.init.normal_(projection.weight, mean=0.0, std=residual_std)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        time = idx.shape[1]
        if time > self.context:
            raise ValueError(
                f"a sequence of {time} tokens is longer than the model's context "
                f"of {self.context}"
            )
        positions = torch.arange(time, device=idx.device)
        x = self.drop(self.wte(idx) + self.wpe(positions))
        for block in self.blocks:
            x = block(x)
        logits = self.head(self.ln_f(x))  # (B, T, vocab)
        return logits.transpose(1, 2)  # (B, vocab, T): cross_entropy's class axis is 1


def parameter_count(vocab_size: int, n_layer: int, n_embd: int, context: int) -> int:
    """Total parameters of a :class:`GPT`, the tied head counted once.

    Embeddings ``(V + context)·d``; per block ``12·d² + 13·d`` (attention: qkv
    ``3d² + 3d`` and projection ``d² + d``; MLP: ``4d² + 4d`` and ``4d² + d``; two
    LayerNorms ``4d``); the final LayerNorm ``2·d``.
    """
    d = n_embd
    return (vocab_size + context) * d + n_layer * (12 * d * d + 13 * d) + 2 * d


def non_embedding_params(model: GPT) -> int:
    """Kaplan et al.'s N: every parameter but the token and position embeddings.

    The tied head is the token embedding's matrix, so it is excluded with it
    (``model.parameters()`` yields a shared tensor once).
    """
    total = sum(p.numel() for p in model.parameters())
    return total - model.wte.weight.numel() - model.wpe.weight.numel()


def analytic_flops_per_token(model: GPT) -> float:
    """Training FLOPs per token (forward and backward): ``6·N + 12·n_layer·n_embd·context``.

    N is :func:`non_embedding_params`. The output head's ``6·n_embd·vocab`` is not in
    it (see :func:`head_flops_per_token`).
    """
    # Every weight does one multiply-add per token forward (2 FLOPs) and two backward
    # (the gradients of its input and of itself, 4 FLOPs): 6·N. Attention adds two
    # matmuls that have no weights, QKᵀ and the weighted sum of V, each context·n_embd
    # multiply-adds per token and layer: 4·n_layer·n_embd·context forward, times 3 with
    # the backward pass. This is Kaplan et al. 2020 (table 1) as the Chinchilla paper's
    # appendix F counts attention (both matmuls over the full context, no causal
    # discount); biases, LayerNorms, GELU and softmax are left out as negligible, and
    # so is the embedding lookup, which is no matmul.
    attention = 12.0 * model.n_layer * model.n_embd * model.context
    return 6.0 * non_embedding_params(model) + attention


def head_flops_per_token(model: GPT) -> float:
    """Training FLOPs per token of the output head (the unembedding): ``6·n_embd·vocab``.

    Kaplan's count leaves it out with the embeddings; a small vocabulary makes it
    negligible, a large one does not, so it is reported apart rather than hidden.
    """
    return 6.0 * model.n_embd * model.vocab_size


def scaling_metrics(model: GPT) -> dict:
    """What a language-model run records about its model's size and cost per token."""
    return {
        "n_params_non_embedding": non_embedding_params(model),
        "flops_per_token_analytic": analytic_flops_per_token(model),
    }
