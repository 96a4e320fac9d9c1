"""Federated averaging written the plain way, for the tests to compare the vectorised
simulation and Flower's strategy against: one client after another, each a copy of the
model with its own ``torch.optim.SGD`` (scalelab's ``local_sgd``, the step the Flower
engine's clients take), averaged by a plain loop."""

from __future__ import annotations

import copy

import numpy as np
import torch

from scalelab.train.federated import FederatedSettings, local_sgd, sample_clients


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
    """One client's local epochs from the global model (scalelab's plain local SGD): its parameters afterwards."""
    return local_sgd(global_model, x, y, rows_of_client, s, round_index=round_index, client=client)[0]
