"""Learning curves of classic scikit-learn classifiers, for backtesting the law engine.

    python benchmarks/curves/make_classic_curves.py            # writes curves-classic.csv here

Public learning-curve collections are mostly of this kind: many classifiers on tabular
data, training sizes on a grid a factor sqrt(2) apart, several resamples per size, curves
that flatten or even bend up. These curves complement the studies run through scalelab
(neural nets on digits and MNIST-1D), so the form choice is checked on both. Everything is
generated offline: scikit-learn's bundled datasets, its procedural generators, and
MNIST-1D made by the ``mnist1d`` package.

Each (dataset, classifier) curve has sizes 16 * sqrt(2)^k up to the largest the dataset
allows, two resamples per size (nested per seed, stratified), and the test error on a
fixed test split. The CSV has the columns the backtest reads: ``state``, the curve keys
(``dataset``, ``family``), ``data_fraction``, ``seed``, ``train_loss`` (empty),
``n_train`` and ``test_error``.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.datasets import load_breast_cancer, load_digits, make_classification
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import GaussianNB
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from sklearn.tree import DecisionTreeClassifier

from scalelab.data.builtin import load_mnist1d

OUT = Path(__file__).resolve().parent / "curves-classic.csv"
SEEDS = (0, 1)


def datasets() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    mnist1d = load_mnist1d(n_samples=10000, test_size=0.2, generator_seed=0)  # generated, cached
    out = {
        "digits": load_digits(return_X_y=True),
        "breast_cancer": load_breast_cancer(return_X_y=True),
        "mnist1d": (np.concatenate([mnist1d.X_train, mnist1d.X_test]).reshape(10000, -1), np.concatenate([mnist1d.y_train, mnist1d.y_test])),
    }
    for name, kwargs in {
        "easy_blobs": dict(n_informative=5, class_sep=1.5, flip_y=0.0),
        "hard_noisy": dict(n_informative=10, class_sep=0.6, flip_y=0.1),
        "many_classes": dict(n_informative=12, n_classes=6, class_sep=1.0, flip_y=0.02),
    }.items():
        out[name] = make_classification(n_samples=12000, n_features=20, n_redundant=2, random_state=7, **kwargs)
    return out


def classifiers() -> dict:
    return {
        "logreg": lambda: make_pipeline(StandardScaler(), LogisticRegression(max_iter=300)),
        "knn": lambda: make_pipeline(StandardScaler(), KNeighborsClassifier(5)),
        "naive_bayes": lambda: GaussianNB(),
        "tree": lambda: DecisionTreeClassifier(random_state=0),
        "forest": lambda: RandomForestClassifier(60, random_state=0, n_jobs=1),
        "svm_rbf": lambda: make_pipeline(StandardScaler(), SVC()),
        "hist_gbdt": lambda: HistGradientBoostingClassifier(max_iter=60, random_state=0),
    }


def sizes_for(n_train_pool: int) -> list[int]:
    sizes, k = [], 0
    while (size := int(round(16 * 2 ** (k / 2)))) <= n_train_pool:
        sizes.append(size)
        k += 1
    return sizes


def main() -> None:
    rows = []
    begin = time.perf_counter()
    for data_name, (X, y) in datasets().items():
        rng = np.random.default_rng(123)
        order = rng.permutation(len(y))
        n_test = max(len(y) // 5, 100)
        test, pool = order[:n_test], order[n_test:]
        sizes = sizes_for(len(pool))
        for family, make in classifiers().items():
            started = time.perf_counter()
            for seed in SEEDS:
                # Nested subsets: one permutation per seed, every size a prefix of it.
                perm = np.random.default_rng(seed).permutation(pool)
                for size in sizes:
                    train = perm[:size]
                    if len(np.unique(y[train])) < 2:
                        continue
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        model = make().fit(X[train], y[train])
                        error = float(np.mean(model.predict(X[test]) != y[test]))
                    rows.append({"state": "done", "dataset": data_name, "family": family, "data_fraction": size / len(pool),
                                 "seed": seed, "train_loss": None, "n_train": size, "test_error": error})  # fmt: skip
            print(f"{data_name:<14}{family:<12}{len(sizes)} sizes up to {sizes[-1]:>6}  {time.perf_counter() - started:6.1f} s", flush=True)
    pd.DataFrame(rows).to_csv(OUT, index=False)
    print(f"wrote {len(rows)} rows to {OUT} in {time.perf_counter() - begin:.0f} s")


if __name__ == "__main__":
    main()
