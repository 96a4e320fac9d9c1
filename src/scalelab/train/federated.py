"""Federated averaging, simulated with every client of a round trained at once.

One round: the server samples ``participation · K`` clients; each starts from the global
weights and runs ``local_epochs`` epochs of plain SGD over its own data; the server
averages what comes back (FedAvg, McMahan et al. 2017), weighted by the clients' sample
counts. FedProx (Li et al. 2020) adds ``mu/2 · ||w − w_global||²`` to each client's loss.

The clients of a round are one ``vmap``-ed model (``torch.func``), as seed batching
stacks seeds: one forward and backward pass per local step for all of them, so hundreds
of clients fit on a CPU. Clients hold different amounts of data, so their batches are
padded to one shape and the padding weighs nothing in the loss; a client whose epochs
are done takes no further steps. Each client's batches come from ``client_batches``,
which a plain sequential implementation can call to see the same order; the two agree
within float tolerance.

With ``noise_multiplier`` and ``clip_norm`` the round is DP-FedAvg (McMahan et al.
2018): each client's update is clipped to ``clip_norm`` in L2, the server averages the
clipped updates with equal weights and adds Gaussian noise of standard deviation
``noise_multiplier · clip_norm / m``. The privacy spent is counted by
``scalelab.train.privacy``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, vmap

from scalelab.errors import InputError


@dataclass(frozen=True)
class FederatedSettings:
    """One federated run's settings (validated by the study file's schema)."""

    rounds: int
    participation: float = 1.0
    local_epochs: int = 1
    batch_size: int = 32
    lr: float = 0.1
    aggregation: str = "fedavg"
    mu: float = 0.0
    noise_multiplier: float | None = None
    clip_norm: float | None = None
    seed: int = 0

    @property
    def private(self) -> bool:
        return self.noise_multiplier is not None


@dataclass
class FederatedHistory:
    """What the simulation saw, round by round."""

    sampled: list[list[int]] = field(default_factory=list)
    mean_client_loss: list[float] = field(default_factory=list)
    bytes_down: int = 0
    bytes_up: int = 0
    local_steps: int = 0


def clients_per_round(clients: int, participation: float) -> int:
    """m, the clients the server samples each round: at least one."""
    return max(1, round(participation * clients))


def sample_clients(clients: int, participation: float, *, seed: int, round_index: int) -> list[int]:
    """The clients of one round, drawn without replacement by a generator of the seed and round."""
    rng = np.random.default_rng([seed, round_index, 104729])
    return sorted(rng.choice(clients, size=clients_per_round(clients, participation), replace=False).tolist())


def client_batches(n_samples: int, batch_size: int, epochs: int, *, seed: int, round_index: int, client: int) -> list[np.ndarray]:
    """A client's local batches for one round: each epoch a fresh shuffle of its samples
    (positions into its own data), cut into batches, the last one possibly short."""
    rng = np.random.default_rng([seed, round_index, client, 15485863])
    batches = []
    for _ in range(epochs):
        order = rng.permutation(n_samples)
        batches.extend(order[i : i + batch_size] for i in range(0, n_samples, batch_size))
    return batches


def federated_train(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, parts: list[np.ndarray],
                    settings: FederatedSettings, *, on_round=None) -> tuple[dict[str, torch.Tensor], FederatedHistory]:  # fmt: skip
    """Train ``model`` by federated rounds over the clients' ``parts`` of ``(x, y)``.

    Parameters
    ----------
    model : torch.nn.Module
        The initial global model; it is left untouched. It may hold no buffers (BatchNorm
        statistics would need their own aggregation rule).
    x, y : torch.Tensor
        The whole training set; ``parts[k]`` indexes client k's share.
    parts : list of index arrays
        From ``scalelab.data.partition.partition_clients``.
    settings : FederatedSettings
    on_round : callable, optional
        Called as ``on_round(round_index, global_params)`` after every round (for
        evaluation or progress).

    Returns
    -------
    (global_params, history)
        The final global parameters by name, and what each round did.
    """
    if any(True for _ in model.buffers()):
        raise InputError(f"federated runs need a model without buffers (such as BatchNorm statistics); {type(model).__name__} has "
                         + ", ".join(name for name, _ in model.named_buffers()))  # fmt: skip
    global_params = {name: p.detach().clone() for name, p in model.named_parameters()}
    param_bytes = sum(p.numel() * p.element_size() for p in global_params.values())
    history = FederatedHistory()
    s = settings

    def client_loss(params, anchor, xb, yb, weight):
        logits = functional_call(model, params, (xb,))
        per_sample = F.cross_entropy(logits, yb, reduction="none")
        loss = (per_sample * weight).sum() / weight.sum().clamp_min(1.0)
        if s.aggregation == "fedprox" and s.mu > 0:
            loss = loss + 0.5 * s.mu * sum(((params[k] - anchor[k]) ** 2).sum() for k in params)
        return loss, loss.detach()

    # One gradient per client: vmap over the stacked parameters and batches, with the
    # global weights (FedProx's anchor) shared.
    batched_grad = vmap(grad(client_loss, has_aux=True), in_dims=(0, None, 0, 0, 0))
    generator = torch.Generator().manual_seed(int(s.seed) * 1_000_003 + 17)
    for r in range(s.rounds):
        chosen = sample_clients(len(parts), s.participation, seed=s.seed, round_index=r)
        plans = [client_batches(len(parts[k]), s.batch_size, s.local_epochs, seed=s.seed, round_index=r, client=k) for k in chosen]
        m, steps = len(chosen), max(len(p) for p in plans)
        params = {name: p.unsqueeze(0).repeat(m, *([1] * p.dim())) for name, p in global_params.items()}
        losses = torch.zeros(m)
        for step in range(steps):
            index = torch.zeros(m, s.batch_size, dtype=torch.long)
            weight = torch.zeros(m, s.batch_size)
            active = torch.zeros(m)
            for i, (k, plan) in enumerate(zip(chosen, plans)):
                if step < len(plan):
                    rows = torch.as_tensor(parts[k][plan[step]], dtype=torch.long)
                    index[i, : len(rows)] = rows
                    weight[i, : len(rows)] = 1.0
                    active[i] = 1.0
            grads, loss = batched_grad(params, global_params, x[index], y[index], weight)
            step_size = s.lr * active  # a client whose epochs are done stands still
            params = {name: p - step_size.view(m, *([1] * (p.dim() - 1))) * grads[name] for name, p in params.items()}
            losses += loss * active
        history.local_steps += sum(len(p) for p in plans)
        history.mean_client_loss.append(float((losses / torch.tensor([len(p) for p in plans], dtype=torch.float32)).mean()))
        global_params = _aggregate(global_params, params, [len(parts[k]) for k in chosen], s, generator)
        history.sampled.append(chosen)
        history.bytes_down += m * param_bytes
        history.bytes_up += m * param_bytes
        if on_round is not None:
            on_round(r, global_params)
    return global_params, history


def _aggregate(global_params, client_params, sizes, s: FederatedSettings, generator) -> dict[str, torch.Tensor]:
    m = len(sizes)
    deltas = {name: client_params[name] - global_params[name].unsqueeze(0) for name in global_params}
    if not s.private:
        weights = torch.tensor(sizes, dtype=torch.float32) / float(sum(sizes))
        return {name: global_params[name] + torch.tensordot(weights, deltas[name], dims=1) for name in global_params}
    # Clip each client's whole update (all layers together) to clip_norm, average with
    # equal weights (a weight by sample count would leak each client's size into the
    # sensitivity), and add noise calibrated to one client's largest contribution.
    norms = torch.sqrt(sum((d.reshape(m, -1) ** 2).sum(dim=1) for d in deltas.values()))
    factor = torch.clamp(s.clip_norm / norms.clamp_min(1e-12), max=1.0)
    out = {}
    for name, d in deltas.items():
        clipped = d * factor.view(m, *([1] * (d.dim() - 1)))
        noise = torch.randn(d.shape[1:], generator=generator) * (s.noise_multiplier * s.clip_norm / m)
        out[name] = global_params[name] + clipped.mean(dim=0) + noise
    return out


def local_sgd(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, rows: np.ndarray, settings: FederatedSettings, *,
              round_index: int, client: int) -> tuple[list[torch.Tensor], float]:  # fmt: skip
    """One client's round trained the plain way, on a copy of ``model`` (the global
    weights): ``local_epochs`` of ``torch.optim.SGD`` over its ``rows``, in the batches of
    :func:`client_batches`. Its parameters afterwards, in ``model.parameters()`` order,
    and its mean loss over the steps.
    The engine that runs each client on its own (Flower's) trains with this."""
    import copy

    local = copy.deepcopy(model)
    anchor = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.SGD(local.parameters(), lr=settings.lr)
    losses = []
    for batch in client_batches(len(rows), settings.batch_size, settings.local_epochs, seed=settings.seed, round_index=round_index, client=client):
        index = torch.as_tensor(rows[batch], dtype=torch.long)
        loss = F.cross_entropy(local(x[index]), y[index])
        if settings.aggregation == "fedprox" and settings.mu > 0:
            loss = loss + 0.5 * settings.mu * sum(((p - a) ** 2).sum() for p, a in zip(local.parameters(), anchor))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    return [p.detach().clone() for p in local.parameters()], float(np.mean(losses))


def load_parameters(model: torch.nn.Module, params: dict[str, torch.Tensor]) -> torch.nn.Module:
    """``model`` with ``params`` copied into it (in place), for evaluation."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(params[name])
    return model
