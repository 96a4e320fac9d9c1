"""Federated averaging written the plain way, for the tests to compare the vectorised
simulation and Flower's strategy against: one client after another, each a copy of the
model with its own ``torch.optim.SGD``."""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F

from scalelab.train.federated import FederatedSettings, client_batches, sample_clients


def problem(n=240, features=10, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, features, generator=g)
    y = (x[:, :classes].argmax(dim=1) + (torch.rand(n, generator=g) < 0.1).long()) % classes
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(features, 16), torch.nn.Tanh(), torch.nn.Linear(16, classes))
    return model, x, y


def sequential_fedavg(model, x, y, parts, s: FederatedSettings, *, equal_weights=False):
    """FedAvg (or FedProx) one client at a time, as the papers write it."""
    global_model = copy.deepcopy(model)
    for r in range(s.rounds):
        chosen = sample_clients(len(parts), s.participation, seed=s.seed, round_index=r)
        states, sizes = [], []
        for k in chosen:
            states.append(train_client(global_model, x, y, parts[k], s, round_index=r, client=k))
            sizes.append(len(parts[k]))
        weights = np.full(len(sizes), 1 / len(sizes)) if equal_weights else np.array(sizes) / sum(sizes)
        with torch.no_grad():
            for i, p in enumerate(global_model.parameters()):
                p.copy_(sum(float(w) * st[i] for w, st in zip(weights, states)))
    return dict(global_model.named_parameters())




def train_client(global_model, x, y, rows_of_client, s: FederatedSettings, *, round_index: int, client: int) -> list[torch.Tensor]:
    """One client's local epochs from the global model: its parameters afterwards."""
    local = copy.deepcopy(global_model)
    anchor = [p.detach().clone() for p in global_model.parameters()]
    opt = torch.optim.SGD(local.parameters(), lr=s.lr)
    for batch in client_batches(len(rows_of_client), s.batch_size, s.local_epochs, seed=s.seed, round_index=round_index, client=client):
        rows = torch.as_tensor(rows_of_client[batch])
        loss = F.cross_entropy(local(x[rows]), y[rows])
        if s.aggregation == "fedprox":
            loss = loss + 0.5 * s.mu * sum(((p - a) ** 2).sum() for p, a in zip(local.parameters(), anchor))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return [p.detach().clone() for p in local.parameters()]
