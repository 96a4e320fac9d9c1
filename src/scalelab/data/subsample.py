"""Nested, stratified subsets of a training split."""

from __future__ import annotations

import numpy as np

from scalelab.errors import DatasetError


def nested_subsample(y: np.ndarray, fraction: float, *, seed: int) -> np.ndarray:
    """Indices of a stratified subset holding ``fraction`` of each class of ``y``.

    Each class is shuffled once by a generator that depends only on ``seed`` and the
    class, and the subset takes a prefix of that order. So for one seed the subset of a
    smaller fraction always lies inside the subset of a larger one, and class
    proportions are kept up to rounding. Returned indices are sorted.

    Raises :class:`DatasetError` when the fraction would leave some class with no
    samples, since training on such a subset fails later in confusing ways.

    Examples
    --------
    >>> y = np.repeat(np.arange(3), 8)
    >>> small = nested_subsample(y, 0.25, seed=0)
    >>> large = nested_subsample(y, 0.5, seed=0)
    >>> set(small) <= set(large), np.bincount(y[small]).tolist()
    (True, [2, 2, 2])
    """
    if not 0.0 < fraction <= 1.0:
        raise DatasetError(f"data_fraction {fraction} must be in (0, 1]")
    y = np.asarray(y)
    if fraction == 1.0:
        return np.arange(len(y))
    chosen = []
    for cls in np.unique(y):
        members = class_order(y, int(cls), seed=seed)
        chosen.append(members[: class_share(len(members), fraction, cls=int(cls))])
    return np.sort(np.concatenate(chosen))


def class_order(y: np.ndarray, cls: int, *, seed: int) -> np.ndarray:
    """The rows of class ``cls`` in the seeded order whose prefixes are the nested subsets."""
    members = np.flatnonzero(y == cls)
    return members[np.random.default_rng([seed, cls]).permutation(len(members))]


def class_share(n_members: int, fraction: float, *, cls: int) -> int:
    """How many of a class's ``n_members`` rows a subset of ``fraction`` keeps (at least one).

    Raises :class:`DatasetError` when the fraction would keep none of them.
    """
    keep = n_members if fraction == 1.0 else int(round(fraction * n_members))
    if keep == 0:
        raise DatasetError(
            f"data_fraction {fraction} leaves class {cls} with no training samples "
            f"(it has {n_members}); use a larger fraction"
        )
    return keep


def subset_size(y: np.ndarray, fraction: float) -> int:
    """Number of samples :func:`nested_subsample` keeps, without drawing them."""
    if fraction == 1.0:
        return len(y)
    counts = np.unique(np.asarray(y), return_counts=True)[1]
    return int(sum(int(round(fraction * c)) for c in counts))
