"""Text datasets as a cell sees them: a loaded corpus, a cell's token plan and its windows.

A text dataset (``name = "text"`` or ``"pystdlib"``) loads into a :class:`TokenDataset`:
the corpus's three token streams, split by document (:mod:`scalelab.data.text`). A cell's
``[data]`` options then decide what it trains on (:func:`token_plan`):

* ``unique_tokens``: the distinct training tokens available, a prefix of the training
  stream (the whole stream when unset); ``data_fraction`` takes that share of it, so
  the prefixes of a learning curve nest;
* ``tokens``: the training tokens the cell processes (by default ``unique_tokens``, one
  epoch), or ``flops_budget``: training FLOPs, turned into tokens by the model's
  measured FLOPs per token;
* ``window``: the tokens per window, the context a cell trains at (by default the
  model's own ``context``).

Tokens are rounded up to whole steps of ``batch_size`` windows; beyond the unique tokens
the data repeats, ``tokens / unique_tokens`` epochs of it. Validation and test windows
are the non-overlapping windows of the held-out documents' streams, their first
``eval_tokens`` tokens, so every cell of a study is scored on the same text.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from scalelab.data.text import (
    TokenCorpus,
    check_context,
    draw_starts,
    plan_tokens,
    windows,
)
from scalelab.data.view import TrainingView
from scalelab.errors import DatasetError

TEXT_DATASETS = ("text", "pystdlib")
# The options that set what one cell trains on, not which corpus is loaded.
CELL_OPTIONS = ("window", "tokens", "unique_tokens", "flops_budget", "eval_tokens")


@dataclass(frozen=True)
class TokenDataset:
    """A loaded text corpus (``corpus``) and what identifies it (``record``: the corpus
    SHA-256, its document count and, for ``pystdlib``, the Python version)."""

    name: str
    corpus: TokenCorpus
    record: dict

    @property
    def n_classes(self) -> int:
        """The vocabulary: a language model classifies the next token."""
        return self.corpus.vocab_size


@dataclass(frozen=True)
class TokenPlan:
    """What one cell trains on: ``n_windows`` windows of ``context`` tokens (``tokens`` in
    all, whole steps of the batch), drawn from the first ``unique_tokens`` training tokens,
    ``epochs`` = tokens / unique_tokens passes over them."""

    context: int
    unique_tokens: int
    tokens: int
    steps: int
    n_windows: int
    epochs: float


def is_token_dataset(dataset) -> bool:
    return isinstance(dataset, TokenDataset)


def needs_flops_per_token(data_config: dict) -> bool:
    """Whether the cell's tokens come from a FLOP budget (so the model must be measured first)."""
    return data_config.get("options", {}).get("flops_budget") is not None


def token_plan(dataset: TokenDataset, data_config: dict, *, batch_size: int, flops_per_token: float | None = None) -> TokenPlan:
    """The cell's token plan (module docstring). ``flops_per_token`` (training FLOPs per
    token, measured) is needed when the cell has a ``flops_budget``.

    Raises :class:`DatasetError` naming the setting that cannot be met: a context longer
    than a split, more unique tokens than the training split holds, a budget below one
    step.
    """
    options = data_config.get("options", {})
    context = int(options["window"])
    corpus = dataset.corpus
    corpus.check_context(context)
    available = len(corpus.train)
    wanted = options.get("unique_tokens")
    if wanted is not None and wanted > available:
        raise DatasetError(f"{dataset.name}: unique_tokens = {wanted} is more than the training split's {available} tokens")
    unique = math.floor((wanted or available) * data_config.get("data_fraction", 1.0))
    check_context(range(unique), context, what=f"the cell's unique tokens ({unique} = data_fraction x unique_tokens)")
    if options.get("flops_budget") is not None:
        if flops_per_token is None:
            raise ValueError("a flops_budget cell's plan needs the model's measured FLOPs per token")
        budget = float(options["flops_budget"])
        step_flops = flops_per_token * batch_size * context
        if budget < step_flops:
            raise DatasetError(
                f"{dataset.name}: flops_budget = {budget:.3g} is below one training step "
                f"({batch_size} windows x {context} tokens x {flops_per_token:.3g} FLOPs per token = {step_flops:.3g})"
            )
        requested = math.floor(budget / flops_per_token)
    else:
        requested = int(options.get("tokens") or unique)
    planned = plan_tokens(requested, unique, batch_size=batch_size, context=context)
    return TokenPlan(context=context, unique_tokens=unique, tokens=planned["tokens"], steps=planned["steps"],
                     n_windows=planned["steps"] * batch_size, epochs=planned["epochs"])  # fmt: skip


def training_windows(dataset: TokenDataset, data_config: dict, plan: TokenPlan) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(starts, inputs, targets)`` of the cell's training windows, in training order:
    epochs of the unique prefix's non-overlapping windows, each epoch reshuffled, seeded by
    the cell's subsample seed."""
    starts = draw_starts(plan.unique_tokens, plan.context, n_windows=plan.n_windows, seed=int(data_config.get("subsample_seed", 0)))
    inputs, targets = windows(dataset.corpus.train, starts, plan.context)
    return starts, inputs, targets


def held_out_windows(dataset: TokenDataset, split: str, *, context: int, eval_tokens: int) -> tuple[np.ndarray, np.ndarray]:
    """Inputs and targets of the non-overlapping windows over the first ``eval_tokens``
    tokens of the ``"val"`` or ``"test"`` split (at least one window)."""
    stream = dataset.corpus.split(split)
    usable = min(len(stream) - 1, max(eval_tokens, context))
    n_windows = max(1, usable // context)
    return windows(stream, np.arange(n_windows) * context, context)


def token_view(dataset: TokenDataset, data_config: dict, *, batch_size: int, flops_per_token: float | None = None) -> TrainingView:
    """A cell's windows as a :class:`TrainingView`: int64 inputs ``(n, context)`` and their
    next-token targets, in training order (the trainer takes them as they come, once)."""
    plan = token_plan(dataset, data_config, batch_size=batch_size, flops_per_token=flops_per_token)
    starts, X_train, y_train = training_windows(dataset, data_config, plan)
    eval_tokens = int(data_config["options"]["eval_tokens"])  # the options model fills its default
    X_val, y_val = held_out_windows(dataset, "val", context=plan.context, eval_tokens=eval_tokens)
    X_test, y_test = held_out_windows(dataset, "test", context=plan.context, eval_tokens=eval_tokens)
    return TrainingView(
        X_train=X_train, y_train=y_train, X_val=X_val, y_val=y_val, X_test=X_test, y_test=y_test,
        train_rows=starts, val_rows=np.arange(len(y_val)) * plan.context, n_classes=dataset.n_classes, preprocess="none",
        tokens=plan, val_bytes=dataset.corpus.bytes_of(y_val), test_bytes=dataset.corpus.bytes_of(y_test),
    )  # fmt: skip
