"""Splitting a training set among federated clients: IID, Dirichlet label skew, or a few
classes per client.

- ``iid``: a seeded shuffle cut into ``clients`` near-equal shares.
- ``dirichlet`` (Hsu et al. 2019): for each class, the clients' shares of that class are
  drawn from Dirichlet(α·1); small α gives each client a few dominant classes, large α
  approaches IID.
- ``by_class`` (McMahan et al. 2017's pathological split): each client holds
  ``classes_per_client`` classes; each class is shared evenly among the clients that hold it.

Every client gets at least one sample, or the split is refused: a client with nothing to
train on would be silently dropped from every round.
"""

from __future__ import annotations

import numpy as np

from scalelab.errors import DatasetError

SCHEMES = ("iid", "dirichlet", "by_class")
# Dirichlet draws with a tiny alpha can leave a client empty; they are redrawn this many
# times before the split is refused.
DIRICHLET_TRIES = 100


def partition_clients(labels, *, clients: int, scheme: str = "iid", alpha: float | None = None,
                      classes_per_client: int | None = None, seed: int = 0) -> list[np.ndarray]:  # fmt: skip
    """The indices into ``labels`` that each of ``clients`` clients holds, sorted, disjoint
    and together covering every sample.

    Parameters
    ----------
    labels : array-like of int (n,)
        The training labels.
    clients : int
        K, the number of clients.
    scheme : {"iid", "dirichlet", "by_class"}
    alpha : float
        The Dirichlet concentration (``dirichlet`` only), > 0.
    classes_per_client : int
        Classes each client holds (``by_class`` only), between 1 and the number of classes.
    seed : int
        The split is a function of the seed alone.

    Examples
    --------
    >>> parts = partition_clients(np.repeat(np.arange(4), 5), clients=4, scheme="by_class", classes_per_client=1)
    >>> [sorted(set(np.repeat(np.arange(4), 5)[p].tolist())) for p in parts]
    [[0], [1], [2], [3]]
    """
    y = np.asarray(labels).ravel()
    if scheme not in SCHEMES:
        raise DatasetError(f"partition {scheme!r} is not one of {', '.join(SCHEMES)}")
    if clients < 1:
        raise DatasetError(f"clients = {clients} must be at least 1")
    if clients > len(y):
        raise DatasetError(f"clients = {clients} is more than the {len(y)} training samples: some client would hold none")
    rng = np.random.default_rng([seed, 7919])
    if scheme == "iid":
        return [np.sort(p) for p in np.array_split(rng.permutation(len(y)), clients)]
    classes = np.unique(y)
    if scheme == "dirichlet":
        if alpha is None or not alpha > 0:
            raise DatasetError(f"partition dirichlet needs alpha > 0, not {alpha}")
        return _dirichlet(y, classes, clients, float(alpha), rng)
    if classes_per_client is None or not 1 <= classes_per_client <= len(classes):
        raise DatasetError(f"partition by_class needs classes_per_client between 1 and the {len(classes)} classes, not {classes_per_client}")
    if clients * classes_per_client < len(classes):
        raise DatasetError(f"partition by_class: {clients} clients × {classes_per_client} classes each cannot hold all {len(classes)} classes")
    return _by_class(y, classes, clients, int(classes_per_client), rng)


def _dirichlet(y, classes, clients, alpha, rng) -> list[np.ndarray]:
    for _ in range(DIRICHLET_TRIES):
        owned: list[list[np.ndarray]] = [[] for _ in range(clients)]
        for cls in classes:
            members = rng.permutation(np.flatnonzero(y == cls))
            shares = rng.dirichlet(np.full(clients, alpha))
            cuts = np.round(np.cumsum(shares)[:-1] * len(members)).astype(int)
            for k, piece in enumerate(np.split(members, cuts)):
                owned[k].append(piece)
        parts = [np.sort(np.concatenate(p)) for p in owned]
        if min(len(p) for p in parts) > 0:
            return parts
    raise DatasetError(f"partition dirichlet with alpha = {alpha:g} left a client with no samples in {DIRICHLET_TRIES} draws "
                       f"of {len(y)} samples over {clients} clients; raise alpha or lower clients")  # fmt: skip


def _by_class(y, classes, clients, per_client, rng) -> list[np.ndarray]:
    # Client k holds classes k·m, k·m+1, ... (mod the number of classes) of a shuffled
    # class order, so every class is held by about the same number of clients.
    order = rng.permutation(classes)
    held = [[order[(k * per_client + j) % len(order)] for j in range(per_client)] for k in range(clients)]
    owned: list[list[np.ndarray]] = [[] for _ in range(clients)]
    for cls in classes:
        holders = [k for k in range(clients) if cls in held[k]]
        members = rng.permutation(np.flatnonzero(y == cls))
        for k, piece in zip(holders, np.array_split(members, len(holders))):
            owned[k].append(piece)
    parts = [np.sort(np.concatenate(p)) for p in owned]
    if min(len(p) for p in parts) == 0:
        raise DatasetError(f"partition by_class: {clients} clients share classes too thinly for the {len(y)} samples; some client holds none")
    return parts


def label_skew(labels, parts: list[np.ndarray]) -> float:
    """The mean total-variation distance between each client's label distribution and the
    whole training set's: 0 for identical mixes, 1 for clients with disjoint classes
    from a set they would each need to match."""
    y = np.asarray(labels).ravel()
    classes, overall = np.unique(y, return_counts=True)
    overall = overall / overall.sum()
    distances = []
    for p in parts:
        mix = np.array([(y[p] == c).sum() for c in classes]) / len(p)
        distances.append(0.5 * np.abs(mix - overall).sum())
    return float(np.mean(distances))
