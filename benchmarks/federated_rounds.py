"""Federated rounds: every sampled client at once (scalelab's vmapped engine) against the
same clients one after another (each a copy of the model with its own SGD, as a plain
FedAvg loop or a simulation engine that runs clients in turn trains them).

Both train a 64-unit MLP on the 1,437 training digits split among K clients (Dirichlet,
alpha = 1), half the clients a round, one local epoch of batch 16, lr 0.1, for the same
rounds with the same batches; the result of each is checked to agree. Prints the
seconds per round of each, their ratio and the largest difference in the weights.

Run:  python benchmarks/federated_rounds.py            (about a minute on 2 cores)
"""

from __future__ import annotations

import argparse
import copy
import time

import numpy as np
import torch
from sklearn.datasets import load_digits

from scalelab.data.partition import partition_clients
from scalelab.models.mlp import build_mlp
from scalelab.train.federated import (
    FederatedSettings,
    federated_train,
    local_sgd,
    sample_clients,
)


def sequential(model, x, y, parts, s: FederatedSettings):
    """FedAvg with the clients trained one at a time, by the same local SGD."""
    global_model = copy.deepcopy(model)
    for r in range(s.rounds):
        chosen = sample_clients(len(parts), s.participation, seed=s.seed, round_index=r)
        trained = [local_sgd(global_model, x, y, parts[k], s, round_index=r, client=k)[0] for k in chosen]
        weights = np.array([len(parts[k]) for k in chosen], dtype=float)
        weights /= weights.sum()
        with torch.no_grad():
            for i, p in enumerate(global_model.parameters()):
                p.copy_(sum(float(w) * t[i] for w, t in zip(weights, trained)))
    return dict(global_model.named_parameters())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[10, 50, 200])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)  # as a worker of the local pool trains
    digits = load_digits()
    x = torch.tensor(digits.data[:1437] / 16.0, dtype=torch.float32).reshape(-1, 1, 8, 8)
    y = torch.tensor(digits.target[:1437], dtype=torch.long)
    torch.manual_seed(0)
    model = build_mlp((1, 8, 8), 10, width=1.0, depth=2)
    warm = partition_clients(y.numpy(), clients=4, seed=0)
    federated_train(model, x, y, warm, FederatedSettings(rounds=1, batch_size=16))  # vmap's first call traces; time the rest
    print(f"{'clients':>8} {'per round':>10} {'vmapped s/round':>16} {'sequential s/round':>19} {'speed-up':>9} {'max |Δw|':>10}")
    for K in args.clients:
        parts = partition_clients(y.numpy(), clients=K, scheme="dirichlet", alpha=1.0, seed=0)
        s = FederatedSettings(rounds=args.rounds, participation=0.5, local_epochs=1, batch_size=16, lr=0.1, seed=1)
        started = time.perf_counter()
        ours, _ = federated_train(model, x, y, parts, s)
        vmapped = (time.perf_counter() - started) / s.rounds
        started = time.perf_counter()
        plain = sequential(model, x, y, parts, s)
        one_by_one = (time.perf_counter() - started) / s.rounds
        gap = max(float((ours[n] - p.detach()).abs().max()) for n, p in plain.items())
        m = max(1, round(0.5 * K))
        print(f"{K:>8} {m:>10} {vmapped:>16.4f} {one_by_one:>19.4f} {one_by_one / vmapped:>8.1f}× {gap:>10.1e}")


if __name__ == "__main__":
    main()
