"""Per-class results of a classifier: how the worst-served class fares, not only the mean.

Recorded with every classification run, so studies can ask whether scaling closes or
widens the gap between classes (laws fit ``worst_class_error`` like any metric).
"""

from __future__ import annotations

import numpy as np


def class_metrics(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> dict:
    """Recall and error per class (``None`` for a class absent from ``y_true``), the worst
    and best class error, and the gap between them."""
    y_true = np.asarray(y_true)
    totals = np.bincount(y_true, minlength=n_classes)
    correct = np.bincount(y_true[np.asarray(y_pred) == y_true], minlength=n_classes)
    recall = [float(c / t) if t else None for c, t in zip(correct, totals)]
    present = [r for r in recall if r is not None]
    return {
        "class_recall": recall,
        "class_error": [None if r is None else 1.0 - r for r in recall],
        "worst_class_error": 1.0 - min(present),
        "best_class_error": 1.0 - max(present),
        "class_error_gap": max(present) - min(present),
    }


def group_metrics(y_true: np.ndarray, y_pred: np.ndarray, groups: np.ndarray) -> dict:
    """Error and test count per group, the worst group's error and the gap to the best."""
    wrong = np.asarray(y_pred) != np.asarray(y_true)
    names, index, counts = np.unique(groups, return_inverse=True, return_counts=True)
    errors = np.bincount(index, weights=wrong, minlength=len(names)) / counts
    return {
        "group_error": {str(name): float(e) for name, e in zip(names, errors)},
        "group_n_test": {str(name): int(c) for name, c in zip(names, counts)},
        "worst_group_error": float(errors.max()),
        "group_error_gap": float(errors.max() - errors.min()),
    }


def prediction_metrics(view, y_pred: np.ndarray) -> dict:
    """Everything recorded about a run's test predictions beyond its mean error: per class,
    and per group when the dataset declares groups."""
    metrics = class_metrics(view.y_test, y_pred, view.n_classes)
    if view.groups_test is not None:
        metrics.update(group_metrics(view.y_test, y_pred, view.groups_test))
    return metrics
