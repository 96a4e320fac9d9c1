"""Bundled and generated datasets: ``digits``, ``mnist1d`` and ``synthetic``.

None of them touches the network: digits ships with scikit-learn, mnist1d is generated
procedurally (and cached on disk), and synthetic is generated from a seed.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from scalelab.data.dataset import Dataset, checked_dataset, stratified_split


def cache_dir() -> Path:
    """scalelab's cache directory: ``$SCALELAB_CACHE_DIR``, else ``$XDG_CACHE_HOME/scalelab``."""
    explicit = os.environ.get("SCALELAB_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "scalelab"


def load_digits(*, test_size: float, split_seed: int) -> Dataset:
    """scikit-learn's bundled 8×8 digits as (1, 8, 8) images scaled to [0, 1], 10 classes."""
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    X = (bunch.data / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    X_train, X_test, y_train, y_test = stratified_split(X, bunch.target, test_size=test_size, split_seed=split_seed)
    return checked_dataset("digits", X_train, y_train, X_test, y_test, n_classes=10)


def load_mnist1d(*, n_samples: int, test_size: float, split_seed: int, generator_seed: int, **generation: float) -> Dataset:
    """MNIST-1D (Greydanus 2020) generated offline with ``mnist1d.data.make_dataset``.

    Inputs are (1, 40) signals, 10 classes. ``generation`` overrides the generator's
    published arguments (``shear_scale``, ``iid_noise_scale``, ...), which makes related
    but shifted tasks, such as a transfer study's source. The generator makes every
    sample; the train/test split is then scalelab's own, stratified by class and seeded
    by ``split_seed`` like every other dataset's (the generator's split is a fixed cut,
    blind to both). The generated samples are cached under :func:`cache_dir` keyed by the
    generation arguments, because generating tens of thousands of samples takes seconds
    and every worker would otherwise repeat it.
    """
    from mnist1d.data import get_dataset_args, make_dataset
    from mnist1d.utils import ObjectView

    args = get_dataset_args(as_dict=True)
    args.pop("url", None)  # never used: scalelab only generates, it does not download
    # train_split 1.0: every sample comes back in "x"; which become test samples is decided below.
    args.update(num_samples=int(n_samples), train_split=1.0, seed=int(generator_seed), **generation)
    key = hashlib.sha256(json.dumps(args, sort_keys=True).encode()).hexdigest()[:16]
    path = cache_dir() / "mnist1d" / f"{key}.npz"
    if path.exists():
        with np.load(path) as cached:
            X, y = cached["x"], cached["y"]
    else:
        state = np.random.get_state()  # make_dataset reseeds numpy's global generator
        try:
            generated = make_dataset(ObjectView(args))
        finally:
            np.random.set_state(state)
        X, y = np.asarray(generated["x"], dtype=np.float32), np.asarray(generated["y"])
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")
        np.savez(tmp, x=X, y=y)
        os.replace(tmp, path)  # atomic, so concurrent workers never read a half-written file
    X_train, X_test, y_train, y_test = stratified_split(X[:, None, :], y, test_size=test_size, split_seed=split_seed, name="mnist1d")
    return checked_dataset("mnist1d", X_train, y_train, X_test, y_test, n_classes=10)


def load_synthetic(
    *,
    n_samples: int,
    n_classes: int,
    n_features: int,
    shape: tuple[int, ...] | None,
    noise: float,
    generator_seed: int,
    test_size: float,
    split_seed: int,
) -> Dataset:
    """A seeded, learnable classification task of any size.

    Tabular (``shape`` unset): scikit-learn's ``make_classification`` with
    ``n_features`` features, half of them informative, two clusters per class.

    Image-shaped (``shape = [C, H, W]``): each class has two smooth prototype images;
    a sample is one of its class's prototypes plus smooth and pixel noise, shifted by a
    few pixels, squashed into [0, 1]. ``noise`` scales the nuisance terms, so larger
    values make the task harder; at the default a small CNN is well above chance but not
    perfect, and accuracy keeps improving with data.
    """
    rng = np.random.default_rng(generator_seed)
    if shape is None:
        from sklearn.datasets import make_classification

        informative = max(2, n_features // 2)
        X, y = make_classification(
            n_samples=n_samples,
            n_features=n_features,
            n_informative=informative,
            n_redundant=min(n_features - informative, informative // 2),
            n_classes=n_classes,
            n_clusters_per_class=2,
            class_sep=2.5 / noise,  # the default noise (2.5) is scikit-learn's default separation
            flip_y=0.0,
            random_state=int(rng.integers(2**31 - 1)),
        )
        X = X.astype(np.float32)
    else:
        X, y = _synthetic_images(rng, n_samples=n_samples, n_classes=n_classes, shape=tuple(shape), noise=noise)
    X_train, X_test, y_train, y_test = stratified_split(X, y, test_size=test_size, split_seed=split_seed)
    return checked_dataset("synthetic", X_train, y_train, X_test, y_test, n_classes=n_classes)


def _linear_upsampler(coarse: int, fine: int) -> np.ndarray:
    """A (fine × coarse) matrix that interpolates linearly between coarse grid points."""
    positions = np.linspace(0, coarse - 1, fine)
    lower = np.clip(np.floor(positions).astype(int), 0, max(coarse - 2, 0))
    weight = positions - lower
    matrix = np.zeros((fine, coarse), dtype=np.float32)
    matrix[np.arange(fine), lower] = 1 - weight
    if coarse > 1:
        matrix[np.arange(fine), lower + 1] += weight
    return matrix


def _smooth_fields(rng: np.random.Generator, count: int, shape: tuple[int, ...]) -> np.ndarray:
    """Random low-frequency fields of ``shape`` (C, *spatial): a coarse grid, linearly upsampled."""
    channels, *spatial = shape
    coarse_sides = [max(1, side // 8) + 1 for side in spatial]
    fields = rng.standard_normal((count, channels, *coarse_sides), dtype=np.float32)
    # Separable interpolation: one small matrix product per spatial axis.
    for axis, (coarse, fine) in enumerate(zip(coarse_sides, spatial), start=2):
        fields = np.moveaxis(np.tensordot(fields, _linear_upsampler(coarse, fine), axes=([axis], [1])), -1, axis)
    return np.ascontiguousarray(fields)


def _synthetic_images(rng, *, n_samples: int, n_classes: int, shape: tuple[int, ...], noise: float):
    prototypes = _smooth_fields(rng, 2 * n_classes, shape) * 1.5
    y = np.arange(n_samples) % n_classes
    rng.shuffle(y)
    which = y * 2 + rng.integers(0, 2, size=n_samples)
    X = prototypes[which]
    X += noise * 1.2 * _smooth_fields(rng, n_samples, shape)
    X += noise * 0.5 * rng.standard_normal(X.shape, dtype=np.float32)
    # Small random translations, so that a convolutional net's inductive bias pays off.
    # Samples sharing a shift are rolled together: a few dozen vectorised calls, not one per sample.
    spatial_axes = tuple(range(2, X.ndim))
    max_shift = max(1, min(shape[1:]) // 10)
    shifts = rng.integers(-max_shift, max_shift + 1, size=(n_samples, len(spatial_axes)))
    unique_shifts, group = np.unique(shifts, axis=0, return_inverse=True)
    for g, shift in enumerate(unique_shifts):
        members = np.flatnonzero(group.ravel() == g)
        X[members] = np.roll(X[members], tuple(int(s) for s in shift), axis=spatial_axes)
    np.negative(X, out=X)
    np.exp(X, out=X)
    X += 1.0
    np.reciprocal(X, out=X)  # the logistic function, in place: values in (0, 1)
    return X, y
