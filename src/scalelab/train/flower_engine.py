"""A federated cell run on Flower's own simulation engine (``engine = "flower"``), for
users who want exactly Flower's behaviour: its FedAvg strategy, its client sampling and
its Ray-based simulation, with each client a ``NumPyClient`` that trains by
:func:`scalelab.train.federated.local_sgd`.

With every client in every round (``participation = 1``) the result equals scalelab's
own vectorised engine (a test checks it); with fewer, Flower samples the clients itself,
so the rounds see other clients than scalelab's seeded sampling would.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch

from scalelab.train.federated import (
    FederatedHistory,
    FederatedSettings,
    clients_per_round,
    local_sgd,
)


def flower_train(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, parts: list[np.ndarray],
                 settings: FederatedSettings) -> tuple[dict[str, torch.Tensor], FederatedHistory]:  # fmt: skip
    """Train ``model`` by Flower's simulation of ``settings.rounds`` FedAvg rounds (FedProx's
    proximal term in the clients' loss when asked); the same return as
    :func:`scalelab.train.federated.federated_train`."""
    from flwr.client import NumPyClient
    from flwr.common import ndarrays_to_parameters, parameters_to_ndarrays
    from flwr.server import ServerConfig
    from flwr.server.strategy import FedAvg
    from flwr.simulation import start_simulation

    logging.getLogger("flwr").setLevel(logging.WARNING)  # its per-round INFO lines would drown the progress bar
    names = [name for name, _ in model.named_parameters()]
    param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())

    class Client(NumPyClient):
        def __init__(self, k: int):
            self.k = k

        def fit(self, parameters, config):
            with torch.no_grad():
                for p, w in zip(model.parameters(), parameters):
                    p.copy_(torch.from_numpy(np.asarray(w)))
            weights, loss = local_sgd(model, x, y, parts[self.k], settings, round_index=int(config["round"]), client=self.k)
            steps = math.ceil(len(parts[self.k]) / settings.batch_size) * settings.local_epochs
            return [w.numpy() for w in weights], len(parts[self.k]), {"client": self.k, "steps": steps, "loss": loss}

    def client_fn(context):
        return Client(int(context.node_config["partition-id"])).to_client()

    history = FederatedHistory()
    final: dict[str, list] = {}

    class Recording(FedAvg):
        def aggregate_fit(self, server_round, results, failures):
            if failures:
                raise RuntimeError(f"Flower round {server_round}: {len(failures)} clients failed: {failures[0]!r}")
            params, metrics = super().aggregate_fit(server_round, results, failures)
            history.sampled.append(sorted(int(fit.metrics["client"]) for _, fit in results))
            history.local_steps += sum(int(fit.metrics["steps"]) for _, fit in results)
            history.mean_client_loss.append(float(np.mean([float(fit.metrics["loss"]) for _, fit in results])))
            history.bytes_down += len(results) * param_bytes
            history.bytes_up += len(results) * param_bytes
            final["weights"] = parameters_to_ndarrays(params)
            return params, metrics

    K = len(parts)
    m = clients_per_round(K, settings.participation)
    strategy = Recording(fraction_fit=m / K, fraction_evaluate=0.0, min_fit_clients=m, min_available_clients=K,
                         initial_parameters=ndarrays_to_parameters([p.detach().cpu().numpy() for p in model.parameters()]),
                         on_fit_config_fn=lambda server_round: {"round": server_round - 1},
                         fit_metrics_aggregation_fn=lambda metrics: {})  # the clients' metrics are read in aggregate_fit  # fmt: skip
    start_simulation(client_fn=client_fn, num_clients=K, config=ServerConfig(num_rounds=settings.rounds), strategy=strategy,
                     client_resources={"num_cpus": 1},
                     ray_init_args={"num_cpus": 1, "include_dashboard": False, "log_to_driver": False})  # fmt: skip
    params = {name: torch.from_numpy(np.asarray(w)).clone() for name, w in zip(names, final["weights"])}
    return params, history
