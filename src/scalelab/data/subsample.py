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
        members = np.flatnonzero(y == cls)
        keep = int(round(fraction * len(members)))
        if keep == 0:
            raise DatasetError(
                f"data_fraction {fraction} leaves class {int(cls)} with no training samples "
                f"(it has {len(members)}); use a larger fraction"
            )
        order = np.random.default_rng([seed, int(cls)]).permutation(len(members))
        chosen.append(members[order[:keep]])
    return np.sort(np.concatenate(chosen))


def subset_size(y: np.ndarray, fraction: float) -> int:
    """Number of samples :func:`nested_subsample` keeps, without drawing them."""
    if fraction == 1.0:
        return len(y)
    counts = np.unique(np.asarray(y), return_counts=True)[1]
    return int(sum(int(round(fraction * c)) for c in counts))
