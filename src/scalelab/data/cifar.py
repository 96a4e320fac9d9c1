"""CIFAR-10 and CIFAR-100 from the user's own copy on disk. Nothing is ever downloaded.

Supported layouts, as distributed by the dataset's authors:

* CIFAR-10 "python version" (``cifar-10-batches-py``): pickles ``data_batch_1`` …
  ``data_batch_5`` and ``test_batch``, each a dict with ``b"data"`` (uint8, N×3072) and
  ``b"labels"`` (N class indices);
* CIFAR-10 "binary version" (``cifar-10-batches-bin``): ``data_batch_1.bin`` …
  ``data_batch_5.bin`` and ``test_batch.bin``, records of 1 label byte and 3072 pixel
  bytes;
* CIFAR-100 "python version" (``cifar-100-python``): pickles ``train`` and ``test``
  with ``b"fine_labels"`` and ``b"coarse_labels"``;
* CIFAR-100 "binary version" (``cifar-100-binary``): ``train.bin`` and ``test.bin``,
  records of a coarse and a fine label byte and 3072 pixel bytes.

Each image's 3072 bytes are the red, green and blue 32×32 planes in row-major order,
so they reshape to (3, 32, 32) directly. Images stay uint8 in memory (a quarter of the
float32 size); the per-cell view converts them, and CIFAR's default preprocessing
scales them to [0, 1]. The pickles are untrusted: see :mod:`scalelab.data.safe_pickle`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from scalelab.data.dataset import Dataset, checked_dataset
from scalelab.data.safe_pickle import load_data_pickle
from scalelab.errors import DatasetError

IMAGE_SHAPE = (3, 32, 32)
IMAGE_BYTES = 3 * 32 * 32
N_TRAIN_BATCHES = 5
ENV_CIFAR10 = "SCALELAB_CIFAR10"
ENV_CIFAR100 = "SCALELAB_CIFAR100"


def cifar_root(path: str | None, *, env_var: str, dataset: str) -> Path:
    """The folder a study names, or the one ``env_var`` names when the study gives none."""
    if path is None:
        path = os.environ.get(env_var)
        if not path:
            raise DatasetError(f"{dataset}: no folder given; set data.path in the study file or the {env_var} environment variable")
    root = Path(path).expanduser()
    if not root.exists():
        raise DatasetError(f"{root}: {dataset} folder not found")
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder; {dataset} is read from its extracted folder")
    return root


def cifar10_files(path: str | None) -> tuple[str, list[Path], Path]:
    """What :func:`load_cifar10` reads: its format (``"python"`` or ``"binary"``), the five
    training batches and then the test batch, in order, and the folder the study names.

    Raises :class:`DatasetError` when the folder is missing or holds neither layout."""
    root = cifar_root(path, env_var=ENV_CIFAR10, dataset="cifar10")
    train_names = [f"data_batch_{i}" for i in range(1, N_TRAIN_BATCHES + 1)]
    for folder in (root, root / "cifar-10-batches-py", root / "cifar-10-batches-bin"):
        if (folder / "data_batch_1").exists() or (folder / "test_batch").exists():
            return "python", [folder / name for name in [*train_names, "test_batch"]], root
        if (folder / "data_batch_1.bin").exists() or (folder / "test_batch.bin").exists():
            return "binary", [folder / f"{name}.bin" for name in [*train_names, "test_batch"]], root
    raise DatasetError(
        f"{root}: not a CIFAR-10 folder; expected data_batch_1 … data_batch_5 and test_batch "
        "(python version) or the same names ending in .bin (binary version)"
    )


def cifar100_files(path: str | None) -> tuple[str, list[Path], Path]:
    """What :func:`load_cifar100` reads: its format, the training file and then the test
    file, and the folder the study names."""
    root = cifar_root(path, env_var=ENV_CIFAR100, dataset="cifar100")
    for folder in (root, root / "cifar-100-python", root / "cifar-100-binary"):
        if (folder / "train").exists() or (folder / "test").exists():
            return "python", [folder / "train", folder / "test"], root
        if (folder / "train.bin").exists() or (folder / "test.bin").exists():
            return "binary", [folder / "train.bin", folder / "test.bin"], root
    raise DatasetError(
        f"{root}: not a CIFAR-100 folder; expected train and test (python version) or train.bin and test.bin (binary version)"
    )


def load_cifar10(path: str | None) -> Dataset:
    """CIFAR-10 from its python or binary folder (or a folder holding one of them)."""
    layout, files, root = cifar10_files(path)
    if layout == "python":
        batches = [_python_batch(file, label_key=b"labels", n_classes=10) for file in files]
    else:
        batches = [_binary_batch(file, label_bytes=1, label_index=0, n_classes=10) for file in files]
    return _assemble(str(root), batches[:-1], batches[-1], n_classes=10)


def load_cifar100(path: str | None, *, labels: str) -> Dataset:
    """CIFAR-100 from its python or binary folder, with its 100 fine or 20 coarse labels."""
    layout, files, root = cifar100_files(path)
    n_classes = 100 if labels == "fine" else 20
    if layout == "python":
        key = b"fine_labels" if labels == "fine" else b"coarse_labels"
        train, test = (_python_batch(file, label_key=key, n_classes=n_classes) for file in files)
    else:
        index = 1 if labels == "fine" else 0  # each record starts with the coarse, then the fine label
        train, test = (_binary_batch(file, label_bytes=2, label_index=index, n_classes=n_classes) for file in files)
    return _assemble(str(root), [train], test, n_classes=n_classes)


def _assemble(name: str, train: list[tuple[np.ndarray, np.ndarray]], test: tuple[np.ndarray, np.ndarray], *, n_classes: int) -> Dataset:
    X_train = np.concatenate([X for X, _ in train]).reshape(-1, *IMAGE_SHAPE)
    y_train = np.concatenate([y for _, y in train])
    X_test, y_test = test
    return checked_dataset(name, X_train, y_train, X_test.reshape(-1, *IMAGE_SHAPE), y_test, n_classes=n_classes)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise DatasetError(f"{path}: missing from the CIFAR folder") from None
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read ({exc.strerror or exc})") from None


def _python_batch(path: Path, *, label_key: bytes, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 3072) uint8 and labels of one pickled batch, every field checked."""
    try:
        batch = load_data_pickle(_read(path))
    except DatasetError as exc:
        if str(exc).startswith(str(path)):
            raise
        raise DatasetError(f"{path}: {exc}") from None
    if not isinstance(batch, dict):
        raise DatasetError(f"{path}: expected a pickled dict of data and labels, found {type(batch).__name__}")
    # Python 2 wrote the keys as byte strings; a copy re-saved from Python 3 may use text.
    batch = {k.encode() if isinstance(k, str) else k: v for k, v in batch.items()}
    for key in (b"data", label_key):
        if key not in batch:
            raise DatasetError(f"{path}: no {key.decode()!r} entry; is this a CIFAR batch?")
    data = batch[b"data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8:
        found = f"{data.dtype} array" if isinstance(data, np.ndarray) else type(data).__name__
        raise DatasetError(f"{path}: 'data' must be a uint8 array, found {found}")
    if data.ndim != 2 or data.shape[1] != IMAGE_BYTES:
        raise DatasetError(f"{path}: 'data' has shape {data.shape}; CIFAR images are rows of {IMAGE_BYTES} bytes (N, {IMAGE_BYTES})")
    labels = _labels(batch[label_key], path=path, key=label_key.decode(), n_classes=n_classes)
    if len(labels) != len(data):
        raise DatasetError(f"{path}: {len(data)} images but {len(labels)} labels")
    return data, labels


def _labels(raw, *, path: Path, key: str, n_classes: int) -> np.ndarray:
    if isinstance(raw, np.ndarray):
        values = raw
    elif isinstance(raw, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in raw):
        values = np.array(raw, dtype=np.int64)
    else:
        raise DatasetError(f"{path}: {key!r} must be a list of class indices")
    if values.ndim != 1 or values.dtype.kind not in "iu":
        raise DatasetError(f"{path}: {key!r} must be a one-dimensional list of integer class indices")
    values = values.astype(np.int64)
    if len(values) and (values.min() < 0 or values.max() >= n_classes):
        bad = int(values[(values < 0) | (values >= n_classes)][0])
        raise DatasetError(f"{path}: label {bad} is out of range [0, {n_classes})")
    return values


def _binary_batch(path: Path, *, label_bytes: int, label_index: int, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Images and labels of one binary batch: fixed-size records of label bytes, then pixels."""
    raw = _read(path)
    record = label_bytes + IMAGE_BYTES
    if not raw:
        raise DatasetError(f"{path}: empty file")
    if len(raw) % record:
        raise DatasetError(
            f"{path}: truncated or corrupt: {len(raw)} bytes is not a whole number of {record}-byte records"
        )
    records = np.frombuffer(raw, dtype=np.uint8).reshape(-1, record)
    labels = records[:, label_index].astype(np.int64)
    if labels.max() >= n_classes:
        bad = int(labels[labels >= n_classes][0])
        raise DatasetError(f"{path}: label {bad} is out of range [0, {n_classes}) (corrupt file, or not CIFAR)")
    return records[:, label_bytes:], labels
