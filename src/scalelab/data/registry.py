"""The catalogue of datasets: their options (validated with pydantic) and loaders.

Importing this module is cheap; loaders import their heavy dependencies on first use.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from scalelab.data.dataset import Dataset
from scalelab.user_code import is_python_reference


MAX_SYNTHETIC_VALUES = 2**30


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class NoOptions(_Options):
    """Datasets with nothing to configure beyond the common ``[data]`` fields."""


MNIST1D_GENERATION = ("scale_coeff", "max_translation", "corr_noise_scale", "iid_noise_scale", "shear_scale")


class Mnist1dOptions(_Options):
    n_samples: int = Field(5000, ge=100, le=10_000_000, description="samples generated, train and test together")
    generator_seed: int = Field(42, ge=0, le=2**32 - 1, description="seed of the generator (42 is the published dataset)")
    # The generator's own knobs, to make a shifted source task for transfer studies; unset
    # means the published dataset's value.
    scale_coeff: float | None = Field(None, ge=0, le=10, description="random rescaling of each digit's template (published: 0.4)")
    max_translation: int | None = Field(None, ge=0, le=1000, description="largest random shift, in samples (published: 48)")
    corr_noise_scale: float | None = Field(None, ge=0, le=100, description="correlated (smoothed) noise (published: 0.25)")
    iid_noise_scale: float | None = Field(None, ge=0, le=100, description="independent per-sample noise (published: 0.02)")
    shear_scale: float | None = Field(None, ge=0, le=100, description="random shear (published: 0.75)")


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


class CifarOptions(_Options):
    path: str | None = Field(None, min_length=1, description="the extracted folder; defaults to $SCALELAB_CIFAR10")


class Cifar100Options(_Options):
    path: str | None = Field(None, min_length=1, description="the extracted folder; defaults to $SCALELAB_CIFAR100")
    labels: Literal["fine", "coarse"] = Field("fine", description="the 100 fine classes or the 20 coarse ones")


class NpzOptions(_Options):
    path: str = Field(min_length=1, description="an .npz file with X and y, optionally X_test and y_test, group and group_test")
    n_classes: int | None = Field(None, ge=2, le=1_000_000, description="classes; by default 1 + the largest label")


class CsvOptions(_Options):
    path: str = Field(min_length=1, description="a CSV file with a header row")
    target: str = Field("target", min_length=1, description="the column of class indices")
    test_path: str | None = Field(None, min_length=1, description="a CSV file of the same layout holding the test split")
    n_classes: int | None = Field(None, ge=2, le=1_000_000, description="classes; by default 1 + the largest label")
    group: str | None = Field(None, min_length=1, description="a column of group values (not a feature), for per-group metrics")


class PystdlibOptions(_Options):
    """A language-model corpus: how it is tokenized and split, and what one cell trains on
    (see :mod:`scalelab.data.tokens`)."""

    tokenizer: Literal["byte", "bpe"] = Field("byte", description="byte (257 symbols, no dependency) or bpe (the optional text extra)")
    vocab_size: int | None = Field(None, ge=257, le=2**20, description="BPE vocabulary size (tokenizer = 'bpe' only)")
    val_share: float = Field(0.05, gt=0, lt=0.5, description="share of the documents held out for validation")
    test_share: float = Field(0.05, gt=0, lt=0.5, description="share of the documents held out for test")
    window: int | None = Field(None, ge=1, le=2**16, description="tokens per training window; defaults to the model's context")
    tokens: int | None = Field(None, ge=1, le=10**13, description="training tokens per cell; defaults to unique_tokens (one epoch)")
    unique_tokens: int | None = Field(None, ge=2, le=10**13, description="distinct training tokens (a prefix); beyond them the data repeats")
    flops_budget: float | None = Field(None, gt=0, le=1e30, description="training FLOPs per cell instead of tokens (tokens = budget / measured FLOPs per token)")
    eval_tokens: int = Field(65_536, ge=1, le=10**10, description="validation and test tokens scored per evaluation")

    def model_post_init(self, _context) -> None:
        if self.tokens is not None and self.flops_budget is not None:
            raise ValueError("tokens and flops_budget both set a cell's training length; give one")
        if self.tokenizer == "bpe" and self.vocab_size is None:
            raise ValueError("tokenizer = 'bpe' needs a vocab_size (at least 257)")
        if self.tokenizer == "byte" and self.vocab_size is not None:
            raise ValueError("vocab_size is for tokenizer = 'bpe'; the byte tokenizer's vocabulary is always 257")


class TextOptions(PystdlibOptions):
    path: str = Field(min_length=1, description="a UTF-8 text file, a folder of them or a glob; each file is a document")


class PythonDatasetOptions(_Options):
    """Any keys: they are the function's keyword arguments (JSON-like values only)."""

    model_config = ConfigDict(extra="allow", frozen=True, strict=True, allow_inf_nan=False)
    __pydantic_extra__: dict[str, JsonValue]


@dataclass(frozen=True)
class DatasetEntry:
    """One registered dataset: its options model, how to load it, and its default preprocessing."""

    name: str
    options: type[_Options]
    load: Callable[..., Dataset]
    description: str
    preprocess: str = "none"


def _digits(options, *, test_size, split_seed):
    from scalelab.data.builtin import load_digits

    return load_digits(test_size=test_size, split_seed=split_seed)


def _mnist1d(options, *, test_size, split_seed):
    from scalelab.data.builtin import load_mnist1d

    generation = {name: value for name, value in options.model_dump().items() if name in MNIST1D_GENERATION and value is not None}
    return load_mnist1d(
        n_samples=options.n_samples, test_size=test_size, split_seed=split_seed, generator_seed=options.generator_seed, **generation
    )


def _synthetic(options, *, test_size, split_seed):
    from scalelab.data.builtin import load_synthetic

    return load_synthetic(**options.model_dump(), test_size=test_size, split_seed=split_seed)


def _cifar10(options, *, test_size, split_seed):
    from scalelab.data.cifar import load_cifar10

    return load_cifar10(options.path)


def _cifar100(options, *, test_size, split_seed):
    from scalelab.data.cifar import load_cifar100

    return load_cifar100(options.path, labels=options.labels)


def _npz(options, *, test_size, split_seed):
    from scalelab.data.files import load_npz

    return load_npz(**options.model_dump(), test_size=test_size, split_seed=split_seed)


def _csv(options, *, test_size, split_seed):
    from scalelab.data.files import load_csv

    return load_csv(**options.model_dump(), test_size=test_size, split_seed=split_seed)


def _text(options, *, test_size, split_seed):
    from scalelab.data.text import read_documents

    documents = read_documents(options.path)
    return _token_dataset("text", documents, options, split_seed=split_seed, record={})


def _pystdlib(options, *, test_size, split_seed):
    from scalelab.data.text import pystdlib_documents

    documents, record = pystdlib_documents()
    return _token_dataset("pystdlib", documents, options, split_seed=split_seed, record={"python_version": record["python_version"]})


def _token_dataset(name: str, documents, options, *, split_seed: int, record: dict):
    from scalelab.data.text import build_corpus
    from scalelab.data.tokens import TokenDataset

    corpus = build_corpus(documents, tokenizer=options.tokenizer, vocab_size=options.vocab_size, val_share=options.val_share,
                          test_share=options.test_share, seed=split_seed)  # fmt: skip
    record = {**record, "corpus_sha256": corpus.sha256, "n_documents": len(documents), "tokenizer": corpus.tokenizer,
              "vocab_size": corpus.vocab_size, "train_tokens_available": int(len(corpus.train))}  # fmt: skip
    return TokenDataset(name=name, corpus=corpus, record=record)


DATASETS: dict[str, DatasetEntry] = {
    entry.name: entry
    for entry in (
        DatasetEntry("digits", NoOptions, _digits, "scikit-learn's bundled 8x8 digits, 1797 images, 10 classes"),
        DatasetEntry("mnist1d", Mnist1dOptions, _mnist1d, "MNIST-1D, procedurally generated 1x40 signals, 10 classes"),
        DatasetEntry("synthetic", SyntheticOptions, _synthetic, "seeded learnable task, tabular or image-shaped"),
        DatasetEntry("cifar10", CifarOptions, _cifar10, "CIFAR-10 from its python or binary folder on disk", preprocess="scale"),
        DatasetEntry("cifar100", Cifar100Options, _cifar100, "CIFAR-100 from its python or binary folder on disk", preprocess="scale"),
        DatasetEntry("npz", NpzOptions, _npz, "arrays X and y (and X_test, y_test) from an .npz file"),
        DatasetEntry("csv", CsvOptions, _csv, "numeric feature columns and a target column from a CSV file"),
        DatasetEntry("text", TextOptions, _text, "UTF-8 text (a file, folder or glob) as tokens, for language models"),
        DatasetEntry("pystdlib", PystdlibOptions, _pystdlib, "this Python's standard library source as text, for language models"),
    )
}


def dataset_entry(name: str) -> DatasetEntry:
    """The registered dataset ``name``, or the user's function for ``python:pkg.module:function``.

    Raises ``KeyError`` for any other name (the study spec checks names first).
    """
    if name in DATASETS:
        return DATASETS[name]
    if is_python_reference(name):

        def load(options, *, test_size, split_seed):
            from scalelab.data.python_source import load_python_dataset

            return load_python_dataset(name, options.model_dump(), test_size=test_size, split_seed=split_seed)

        return DatasetEntry(name, PythonDatasetOptions, load, "the user's own dataset function")
    raise KeyError(name)


def is_known_dataset(name: str) -> bool:
    """True for a registered dataset or a ``python:pkg.module:function`` reference."""
    return name in DATASETS or is_python_reference(name)


def dataset_option_names() -> set[str]:
    """Every option name any registered dataset accepts (used to route grid keys)."""
    return {name for entry in DATASETS.values() for name in entry.options.model_fields}


def load_dataset(data_config: dict) -> Dataset:
    """Load the dataset a resolved ``[data]`` configuration names.

    The configuration is the resolved one from :mod:`scalelab.spec`; the per-cell
    subsample, data-quality transforms and preprocessing are not applied here (see
    :func:`scalelab.data.training_view`).
    """
    entry = dataset_entry(data_config["name"])
    options = entry.options.model_validate(data_config.get("options", {}))
    dataset = entry.load(options, test_size=data_config["test_size"], split_seed=data_config["split_seed"])
    if data_config.get("classes"):
        dataset = select_classes(dataset, data_config["classes"])
    return dataset


def select_classes(dataset: Dataset, classes: list[int]) -> Dataset:
    """The samples of ``classes`` only, relabelled ``0 … len(classes) − 1`` in the order given
    (``data.classes``: a task on part of a dataset, such as a transfer source or target).

    Raises :class:`DatasetError` for a class the dataset does not have or that leaves a
    split empty.
    """
    import numpy as np

    from scalelab.errors import DatasetError

    unknown = [c for c in classes if not 0 <= c < dataset.n_classes]
    if unknown:
        raise DatasetError(f"{dataset.name}: data.classes names class {unknown[0]}, but the dataset has classes 0 … {dataset.n_classes - 1}")
    relabel = np.full(dataset.n_classes, -1, dtype=np.int64)
    relabel[np.asarray(classes)] = np.arange(len(classes))
    keep_train, keep_test = relabel[dataset.y_train] >= 0, relabel[dataset.y_test] >= 0
    for split, keep, y in (("train", keep_train, dataset.y_train), ("test", keep_test, dataset.y_test)):
        missing = sorted(set(classes) - set(np.unique(y[keep]).tolist()))
        if missing:
            raise DatasetError(f"{dataset.name}: data.classes: class {missing[0]} has no sample in the {split} split")
    groups = None if dataset.groups_test is None else dataset.groups_test[keep_test]
    return Dataset(
        name=dataset.name,
        X_train=dataset.X_train[keep_train],
        y_train=relabel[dataset.y_train[keep_train]],
        X_test=dataset.X_test[keep_test],
        y_test=relabel[dataset.y_test[keep_test]],
        n_classes=len(classes),
        groups_test=groups,
    )


def dataset_key(data_config: dict) -> str:
    """A key identifying the loaded arrays: equal keys load identical datasets (the files'
    content is part of it, see :mod:`scalelab.data.fingerprint`)."""
    import json

    from scalelab.data.tokens import CELL_OPTIONS, TEXT_DATASETS

    keep = {k: data_config[k] for k in ("name", "test_size", "split_seed", "options", "classes", "content_sha256") if k in data_config}
    if keep["name"] in TEXT_DATASETS:  # one corpus serves every cell's windows
        keep["options"] = {k: v for k, v in keep.get("options", {}).items() if k not in CELL_OPTIONS}
    return json.dumps(keep, sort_keys=True)
