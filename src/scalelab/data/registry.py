"""The catalogue of datasets: their options (validated with pydantic) and loaders.

Importing this module is cheap; loaders import their heavy dependencies on first use.
"""

from __future__ import annotations

from dataclasses import dataclass
import math
from typing import Callable

from pydantic import BaseModel, ConfigDict, Field

from scalelab.data.dataset import Dataset


MAX_SYNTHETIC_VALUES = 2**30


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class NoOptions(_Options):
    """Datasets with nothing to configure beyond the common ``[data]`` fields."""


class Mnist1dOptions(_Options):
    n_samples: int = Field(5000, ge=100, le=10_000_000, description="samples generated, train and test together")
    generator_seed: int = Field(42, ge=0, le=2**32 - 1, description="seed of the generator (42 is the published dataset)")


class SyntheticOptions(_Options):
    n_samples: int = Field(10_000, ge=20, le=10_000_000, description="samples generated, train and test together")
    n_classes: int = Field(10, ge=2, le=1000)
    n_features: int = Field(20, ge=2, le=100_000, description="features of tabular inputs (when shape is unset)")
    shape: list[int] | None = Field(None, description="image-shaped inputs, e.g. [3, 32, 32]")
    noise: float = Field(2.5, gt=0, le=100, description="nuisance scale; larger is harder")
    generator_seed: int = Field(0, ge=0, le=2**32 - 1)

    def model_post_init(self, _context) -> None:
        if self.shape is not None and (len(self.shape) not in (2, 3) or min(self.shape) < 1):
            raise ValueError(f"shape {list(self.shape)} must be [C, L] or [C, H, W] with positive sizes")
        features = math.prod(self.shape) if self.shape is not None else self.n_features
        if self.n_samples * features > MAX_SYNTHETIC_VALUES:
            raise ValueError(
                f"n_samples x features = {self.n_samples * features:,} values is more than the "
                f"{MAX_SYNTHETIC_VALUES:,} (4 GiB of float32) synthetic data may hold"
            )
        if self.shape is None and 2 * self.n_classes > 2 ** max(2, self.n_features // 2):
            raise ValueError(
                f"tabular data with {self.n_classes} classes needs more features than {self.n_features} "
                f"(two clusters per class must fit on n_features // 2 informative features)"
            )


@dataclass(frozen=True)
class DatasetEntry:
    """One registered dataset: its options model and how to load it."""

    name: str
    options: type[_Options]
    load: Callable[..., Dataset]
    description: str


def _digits(options, *, test_size, split_seed):
    from scalelab.data.builtin import load_digits

    return load_digits(test_size=test_size, split_seed=split_seed)


def _mnist1d(options, *, test_size, split_seed):
    from scalelab.data.builtin import load_mnist1d

    return load_mnist1d(n_samples=options.n_samples, test_size=test_size, generator_seed=options.generator_seed)


def _synthetic(options, *, test_size, split_seed):
    from scalelab.data.builtin import load_synthetic

    return load_synthetic(**options.model_dump(), test_size=test_size, split_seed=split_seed)


DATASETS: dict[str, DatasetEntry] = {
    entry.name: entry
    for entry in (
        DatasetEntry("digits", NoOptions, _digits, "scikit-learn's bundled 8x8 digits, 1797 images, 10 classes"),
        DatasetEntry("mnist1d", Mnist1dOptions, _mnist1d, "MNIST-1D, procedurally generated 1x40 signals, 10 classes"),
        DatasetEntry("synthetic", SyntheticOptions, _synthetic, "seeded learnable task, tabular or image-shaped"),
    )
}


def dataset_option_names() -> set[str]:
    """Every option name any registered dataset accepts (used to route grid keys)."""
    return {name for entry in DATASETS.values() for name in entry.options.model_fields}


def load_dataset(data_config: dict) -> Dataset:
    """Load the dataset a resolved ``[data]`` configuration names.

    The configuration is the resolved one from :mod:`scalelab.spec`; subsampling by
    ``data_fraction`` is not applied here (see :func:`scalelab.data.nested_subsample`).
    """
    entry = DATASETS[data_config["name"]]
    options = entry.options.model_validate(data_config.get("options", {}))
    return entry.load(options, test_size=data_config["test_size"], split_seed=data_config["split_seed"])


def dataset_key(data_config: dict) -> str:
    """A key identifying the loaded arrays: equal keys load identical datasets."""
    import json

    keep = {k: data_config[k] for k in ("name", "test_size", "split_seed", "options") if k in data_config}
    return json.dumps(keep, sort_keys=True)
