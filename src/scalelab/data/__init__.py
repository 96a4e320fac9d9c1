"""Datasets: a registry of loaders returning in-memory arrays, and each cell's view of them."""

from scalelab.data.dataset import Dataset, checked_dataset
from scalelab.data.quality import DataQuality, RowPlan, plan_rows
from scalelab.data.registry import DATASETS, dataset_entry, dataset_key, is_known_dataset, load_dataset
from scalelab.data.subsample import nested_subsample, subset_size
from scalelab.data.view import TrainingView, training_view

__all__ = [
    "DATASETS",
    "DataQuality",
    "Dataset",
    "RowPlan",
    "TrainingView",
    "checked_dataset",
    "dataset_entry",
    "dataset_key",
    "is_known_dataset",
    "load_dataset",
    "nested_subsample",
    "plan_rows",
    "subset_size",
    "training_view",
]
