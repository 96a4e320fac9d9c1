"""Federated simulation (``scalelab.train.federated``), client partitions
(``scalelab.data.partition``) and the privacy count (``scalelab.train.privacy``).

The vectorised rounds are checked against FedAvg written the plain way: one client after
another, each a copy of the model with its own ``torch.optim.SGD``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from federated_helpers import problem, sequential_fedavg
from opacus.accountants import RDPAccountant

from scalelab.data.partition import label_skew, partition_clients
from scalelab.errors import InputError
from scalelab.train.federated import (
    FederatedSettings,
    federated_train,
)
from scalelab.train.privacy import client_level_epsilon


@pytest.mark.parametrize("aggregation, mu", [("fedavg", 0.0), ("fedprox", 0.5)])
def test_the_vectorised_rounds_equal_sequential_fedavg(aggregation, mu):
    model, x, y = problem()
    parts = partition_clients(y.numpy(), clients=12, scheme="dirichlet", alpha=0.5, seed=3)
    s = FederatedSettings(rounds=3, participation=0.5, local_epochs=2, batch_size=8, lr=0.2, aggregation=aggregation, mu=mu, seed=1)
    vectorised, history = federated_train(model, x, y, parts, s)
    expected = sequential_fedavg(model, x, y, parts, s)
    for name, p in expected.items():
        torch.testing.assert_close(vectorised[name], p.detach(), rtol=1e-4, atol=1e-5)
    # The clients hold different amounts of data, so their step counts differ: the
    # padding and the finished clients' idle steps are what this comparison checks.
    assert len({len(p) for p in parts}) > 1
    assert [len(c) for c in history.sampled] == [6, 6, 6]
    n_params = sum(p.numel() for p in model.parameters())
    assert history.bytes_up == history.bytes_down == 3 * 6 * n_params * 4
    # The model handed in is left as it was.
    assert not torch.equal(next(iter(vectorised.values())), next(model.parameters()).detach())


def test_private_rounds_clip_each_update_and_average_with_equal_weights():
    model, x, y = problem(seed=2)
    parts = partition_clients(y.numpy(), clients=6, scheme="iid", seed=0)
    # Zero noise and a clip no update reaches: DP-FedAvg is then an equal-weight mean.
    loose = FederatedSettings(rounds=2, participation=1.0, local_epochs=1, batch_size=16, lr=0.1, noise_multiplier=0.0, clip_norm=1e6)
    vectorised, _ = federated_train(model, x, y, parts, loose)
    expected = sequential_fedavg(model, x, y, parts, loose, equal_weights=True)
    for name, p in expected.items():
        torch.testing.assert_close(vectorised[name], p.detach(), rtol=1e-4, atol=1e-5)
    # A tight clip bounds how far one round can move the global model.
    tight = FederatedSettings(rounds=1, local_epochs=3, batch_size=8, lr=0.5, noise_multiplier=0.0, clip_norm=0.05)
    moved, _ = federated_train(model, x, y, parts, tight)
    step = torch.sqrt(sum(((moved[n] - p.detach()) ** 2).sum() for n, p in model.named_parameters()))
    assert 0.0 < float(step) <= 0.05 + 1e-6
    # Noise is seeded: the same settings give the same model, another seed another.
    noisy = FederatedSettings(rounds=1, batch_size=16, noise_multiplier=1.0, clip_norm=0.1, seed=4)
    a, _ = federated_train(model, x, y, parts, noisy)
    b, _ = federated_train(model, x, y, parts, noisy)
    c, _ = federated_train(model, x, y, parts, FederatedSettings(rounds=1, batch_size=16, noise_multiplier=1.0, clip_norm=0.1, seed=5))
    assert all(torch.equal(a[n], b[n]) for n in a) and not all(torch.equal(a[n], c[n]) for n in a)


def test_a_model_with_buffers_is_refused():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2))
    x, y = torch.randn(20, 4), torch.randint(0, 2, (20,))
    with pytest.raises(InputError, match="without buffers.*running_mean"):
        federated_train(model, x, y, partition_clients(y.numpy(), clients=2, seed=0), FederatedSettings(rounds=1))


@pytest.mark.parametrize("alpha", [0.1, 1.0, 10.0])
def test_dirichlet_shares_have_the_requested_spread(alpha):
    # Each class's shares across K clients are Dirichlet(alpha·1): mean 1/K and variance
    # (1/K)(1 − 1/K)/(K·alpha + 1). With 2,000 samples a class, rounding adds little.
    K, classes = 10, 10
    y = np.repeat(np.arange(classes), 2000)
    spreads = []
    for seed in range(20):
        parts = partition_clients(y, clients=K, scheme="dirichlet", alpha=alpha, seed=seed)
        shares = np.array([[np.mean(y[p] == c) * len(p) / 2000 for p in parts] for c in range(classes)])
        np.testing.assert_allclose(shares.sum(axis=1), 1.0)
        spreads.append(shares.var(axis=1, ddof=1).mean())
    expected = (1 / K) * (1 - 1 / K) / (K * alpha + 1)
    assert np.mean(spreads) == pytest.approx(expected, rel=0.2)


def test_partitions_cover_every_sample_once_and_skew_grows_as_alpha_falls():
    y = np.repeat(np.arange(5), 100)
    skews = []
    for alpha in (100.0, 1.0, 0.05):
        parts = partition_clients(y, clients=10, scheme="dirichlet", alpha=alpha, seed=0)
        assert np.array_equal(np.sort(np.concatenate(parts)), np.arange(len(y)))
        skews.append(label_skew(y, parts))
    assert skews[0] < 0.1 < skews[1] < skews[2]
    iid = partition_clients(y, clients=10, seed=0)
    assert sorted(len(p) for p in iid) == [50] * 10 and label_skew(y, iid) < 0.15
    assert partition_clients(y, clients=10, seed=0)[3].tolist() == iid[3].tolist()
    two = partition_clients(y, clients=10, scheme="by_class", classes_per_client=2, seed=1)
    assert all(len(np.unique(y[p])) == 2 for p in two)
    assert np.array_equal(np.sort(np.concatenate(two)), np.arange(len(y)))


@pytest.mark.parametrize("kwargs, message", [
    ({"clients": 600}, "clients = 600 is more than the 500 training samples"),
    ({"clients": 4, "scheme": "dirichlet", "alpha": 0.0}, "alpha > 0"),
    ({"clients": 4, "scheme": "dirichlet"}, "alpha > 0"),
    ({"clients": 4, "scheme": "by_class", "classes_per_client": 6}, "between 1 and the 5 classes"),
    ({"clients": 2, "scheme": "by_class", "classes_per_client": 2}, "cannot hold all 5 classes"),
    ({"clients": 4, "scheme": "shards"}, "not one of iid, dirichlet, by_class"),
])  # fmt: skip
def test_bad_partitions_are_refused_with_the_value_named(kwargs, message):
    with pytest.raises(InputError, match=message):
        partition_clients(np.repeat(np.arange(5), 100), seed=0, **kwargs)


@pytest.mark.parametrize("sigma, q, rounds, delta", [(1.0, 0.1, 100, 1e-5), (0.7, 0.02, 500, 1e-6), (2.0, 1.0, 10, 1e-5)])
def test_epsilon_is_the_accountants_over_the_rounds(sigma, q, rounds, delta):
    accountant = RDPAccountant()
    for _ in range(rounds):
        accountant.step(noise_multiplier=sigma, sample_rate=q)
    assert client_level_epsilon(noise_multiplier=sigma, sample_rate=q, rounds=rounds, delta=delta) == pytest.approx(
        accountant.get_epsilon(delta=delta), rel=1e-9)  # fmt: skip


def test_epsilon_is_tight_beyond_the_accountants_default_orders_and_warns_of_nothing():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the accountant warns when the best order is an end of its list
        loose = client_level_epsilon(noise_multiplier=0.25, sample_rate=0.5, rounds=50, delta=1e-5)
        tight = client_level_epsilon(noise_multiplier=20.0, sample_rate=0.02, rounds=500, delta=1e-5)
    accountant = RDPAccountant()
    accountant.history = [(20.0, 0.02, 500)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        default = accountant.get_epsilon(delta=1e-5)
    assert tight < 0.8 * default  # the best order lies above the default 63
    assert loose == pytest.approx(345.9, rel=1e-3)  # the best order is 1.1 even among orders nearer 1


def test_epsilon_grows_with_rounds_and_falls_with_noise():
    eps = lambda sigma, rounds: client_level_epsilon(noise_multiplier=sigma, sample_rate=0.1, rounds=rounds, delta=1e-5)
    assert eps(1.0, 50) < eps(1.0, 200)
    assert eps(2.0, 100) < eps(1.0, 100)
