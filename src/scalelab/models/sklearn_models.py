"""scikit-learn model families and their parameter counts.

* ``tree``: ``DecisionTreeClassifier``; its size knob is ``max_leaf_nodes`` and its
  parameter count is the number of nodes (the tree ``T(x) = Σ w_i · I(x ∈ R_i)`` of the
  source document stores a test or a value in each).
* ``gbdt``: ``HistGradientBoostingClassifier``; knobs ``max_iter`` (boosting rounds) and
  ``max_leaf_nodes`` (per tree); its parameter count is the total number of leaves.

A scikit-learn estimator from a user's factory is counted by the same rules where they
apply (trees, boosting, ensembles of them), else by the size of its fitted coefficients.
"""

from __future__ import annotations

import numpy as np


def build_tree(*, max_leaf_nodes: int | None, seed: int | None):
    """A decision tree grown best-first to at most ``max_leaf_nodes`` leaves (unlimited if None)."""
    from sklearn.tree import DecisionTreeClassifier

    return DecisionTreeClassifier(max_leaf_nodes=max_leaf_nodes, random_state=seed)


def build_gbdt(*, max_iter: int, max_leaf_nodes: int, learning_rate: float, seed: int | None):
    """Histogram gradient boosting with exactly ``max_iter`` rounds (early stopping off)."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    # Early stopping would make the size knob a ceiling that depends on the data; off, it is exact.
    return HistGradientBoostingClassifier(
        max_iter=max_iter, max_leaf_nodes=max_leaf_nodes, learning_rate=learning_rate, early_stopping=False, random_state=seed
    )


def is_sklearn_estimator(model) -> bool:
    """Duck typing, as scikit-learn itself does: an object with ``fit`` and ``predict``."""
    return callable(getattr(model, "fit", None)) and callable(getattr(model, "predict", None))


def fitted_parameter_count(estimator) -> int | None:
    """Parameters of a fitted estimator: nodes of a tree, leaves of boosting, else coefficients.

    Returns None when none of the rules applies (a k-NN classifier, say).
    """
    steps = getattr(estimator, "steps", None)  # a Pipeline: its final estimator holds the model
    if steps:
        return fitted_parameter_count(steps[-1][1])
    tree = getattr(estimator, "tree_", None)
    if tree is not None:
        return int(tree.node_count)
    predictors = getattr(estimator, "_predictors", None)  # HistGradientBoosting*: a list per round
    if predictors is not None:
        return int(sum(predictor.get_n_leaf_nodes() for round_ in predictors for predictor in round_))
    members = getattr(estimator, "estimators_", None)  # forests, bagging, classic boosting
    if members is not None:
        counts = [fitted_parameter_count(m) for m in np.ravel(np.asarray(members, dtype=object))]
        return int(sum(counts)) if counts and None not in counts else None
    arrays = []
    for name in ("coef_", "intercept_", "coefs_", "intercepts_", "support_vectors_", "dual_coef_"):
        value = getattr(estimator, name, None)
        if value is not None:
            arrays += value if isinstance(value, list) else [value]
    return int(sum(np.size(a) for a in arrays)) if arrays else None
