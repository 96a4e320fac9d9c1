"""Datasets: a registry of loaders returning in-memory arrays, and nested subsampling."""

from scalelab.data.dataset import Dataset, checked_dataset
from scalelab.data.registry import DATASETS, dataset_key, load_dataset
from scalelab.data.subsample import nested_subsample, subset_size

__all__ = ["DATASETS", "Dataset", "checked_dataset", "dataset_key", "load_dataset", "nested_subsample", "subset_size"]
