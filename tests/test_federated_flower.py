"""scalelab's federated rounds against Flower's own FedAvg strategy, and a cell run on
Flower's simulation engine (``engine = "flower"``) against scalelab's.

Each round, the clients scalelab samples train one after another from the global model
(plain ``torch.optim.SGD``, the same batches), their weights go to Flower's
``FedAvg.aggregate_fit`` as the ``FitRes`` a Flower client would send, and Flower's
aggregate becomes the next global model. After the rounds it must equal scalelab's
vectorised simulation.
"""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from federated_helpers import problem, train_client
from flwr.common import (
    Code,
    FitRes,
    Status,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)
from flwr.server.strategy import FedAvg

from scalelab.data.partition import partition_clients
from scalelab.train.federated import FederatedSettings, federated_train, sample_clients


def flower_rounds(model, x, y, parts, s: FederatedSettings):
    strategy = FedAvg()
    global_model = copy.deepcopy(model)
    for r in range(s.rounds):
        results = []
        for k in sample_clients(len(parts), s.participation, seed=s.seed, round_index=r):
            weights = [w.numpy() for w in train_client(global_model, x, y, parts[k], s, round_index=r, client=k)]
            fit = FitRes(status=Status(code=Code.OK, message=""), parameters=ndarrays_to_parameters(weights), num_examples=len(parts[k]), metrics={})
            results.append((None, fit))
        aggregated, _ = strategy.aggregate_fit(r + 1, results, [])
        with torch.no_grad():
            for p, new in zip(global_model.parameters(), parameters_to_ndarrays(aggregated)):
                p.copy_(torch.from_numpy(np.asarray(new)))
    return dict(global_model.named_parameters())


def test_scalelab_rounds_equal_flowers_fedavg():
    model, x, y = problem(n=200, seed=5)
    parts = partition_clients(y.numpy(), clients=10, scheme="dirichlet", alpha=1.0, seed=2)
    s = FederatedSettings(rounds=3, participation=0.4, local_epochs=2, batch_size=8, lr=0.2, seed=3)
    ours, _ = federated_train(model, x, y, parts, s)
    theirs = flower_rounds(model, x, y, parts, s)
    for name, p in theirs.items():
        torch.testing.assert_close(ours[name], p.detach(), rtol=1e-4, atol=1e-5)


def test_a_cell_on_flowers_simulation_engine_matches_scalelabs_engine(tmp_path, scalelab_main):
    # Every client every round: Flower's sampling then picks what scalelab's does, so the
    # two engines must agree on the trained model, hence on its test metrics.
    study = tmp_path / "fed.toml"
    study.write_text('name = "fed"\n[data]\nname = "digits"\n[model]\nfamily = "mlp"\nwidth = 0.25\n'
                     '[train]\noptimizer = "sgd"\nlr = 0.1\nbatch_size = 32\n'
                     '[federated]\nclients = 4\nrounds = 2\npartition = "dirichlet"\nalpha = 1.0\n'
                     '[grid]\nengine = ["scalelab", "flower"]\n')  # fmt: skip
    store = tmp_path / "s.db"
    run = scalelab_main("run", study, "--store", store, "--quiet", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    runs = {r["engine"]: r for r in json.loads(scalelab_main("runs", study, "--store", store, "--format", "json", cwd=tmp_path).stdout)}
    assert runs["flower"]["state"] == runs["scalelab"]["state"] == "done"
    for metric in ("test_loss", "test_error", "train_loss", "worst_client_error"):
        assert runs["flower"][metric] == pytest.approx(runs["scalelab"][metric], rel=1e-4, abs=1e-6), metric
    assert runs["flower"]["bytes_up"] == runs["scalelab"]["bytes_up"] and runs["flower"]["steps"] == runs["scalelab"]["steps"]


def test_flowers_engine_refuses_client_level_privacy():
    import tomllib

    from scalelab.errors import InputError
    from scalelab.spec import parse_spec

    text = ('name = "f"\n[data]\nname = "digits"\n[model]\nfamily = "mlp"\n[train]\noptimizer = "sgd"\n'
            '[federated]\nclients = 4\nrounds = 1\nengine = "flower"\nnoise_multiplier = 1.0\nclip_norm = 1.0\n')  # fmt: skip
    with pytest.raises(InputError, match='engine = "flower" runs Flower\'s plain FedAvg'):
        parse_spec(tomllib.loads(text), source="f.toml")
