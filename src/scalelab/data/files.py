"""Datasets from the user's files: ``npz`` and ``csv``.

* ``npz``: arrays ``X`` (n, *input_shape) and ``y`` (n,), and optionally ``X_test`` and
  ``y_test``. Loaded with ``allow_pickle=False``, so a file can hold numbers only.
* ``csv``: a header row, numeric feature columns, and a ``target`` column of class
  indices; optionally a second file of the same layout as the test split.

Without a test split of their own, both are split by ``test_size`` and ``split_seed``.
Every problem is a :class:`DatasetError` whose message starts with the file's path.
Relative paths are relative to the current directory.
"""

from __future__ import annotations

import csv

import zipfile
import zlib
from pathlib import Path

import numpy as np

from scalelab.data.dataset import Dataset, dataset_from_arrays
from scalelab.errors import DatasetError


def _existing_file(path: str) -> Path:
    file = Path(path).expanduser()
    if not file.exists():
        raise DatasetError(f"{file}: file not found")
    if not file.is_file():
        raise DatasetError(f"{file}: not a file")
    return file


def load_npz(*, path: str, n_classes: int | None, test_size: float, split_seed: int) -> Dataset:
    """A dataset from an ``.npz`` file with ``X`` and ``y`` (and optionally ``X_test``,
    ``y_test``, and ``group`` / ``group_test`` for per-group metrics)."""
    file = _existing_file(path)
    with file.open("rb") as stream:
        magic = stream.read(6)
    if not magic.startswith((b"PK", b"\x93NUMPY")):
        # Anything else np.load would take for a pickle; say what the file is not instead.
        raise DatasetError(f"{file}: not an npz file (neither a zip of arrays nor a NumPy array)")
    try:
        loaded = np.load(file, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise DatasetError(f"{file}: a single array; an npz dataset is a zip of arrays X and y (numpy.savez)")
        with loaded as archive:
            names = set(archive.files)
            missing = [key for key in ("X", "y") if key not in names]
            if missing:
                raise DatasetError(f"{file}: no array {missing[0]!r}; the file holds {sorted(names) or 'no arrays'}, and needs X and y")
            arrays = {key: archive[key] for key in ("X", "y", "X_test", "y_test", "group", "group_test") if key in names}
            for key in ("X", "y", "X_test", "y_test"):
                if key in arrays and np.iscomplexobj(arrays[key]):  # a cast to float would drop the imaginary part
                    raise DatasetError(f"{file}: array {key!r} holds complex numbers; features and labels must be real")
    except DatasetError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise DatasetError(f"{file}: cannot read as npz: truncated or corrupt ({type(exc).__name__}: {_one_line(exc)})") from None
    except (ValueError, OSError, KeyError) as exc:  # object arrays (refused: no pickles), bad headers
        raise DatasetError(f"{file}: cannot read as npz ({type(exc).__name__}: {_one_line(exc)})") from None
    return dataset_from_arrays(
        str(file),
        arrays["X"],
        arrays["y"],
        arrays.get("X_test"),
        arrays.get("y_test"),
        n_classes=n_classes,
        test_size=test_size,
        split_seed=split_seed,
        groups=arrays.get("group"),
        groups_test=arrays.get("group_test"),
    )


def load_csv(
    *, path: str, target: str, test_path: str | None, n_classes: int | None, test_size: float, split_seed: int, group: str | None = None
) -> Dataset:
    """A dataset from a CSV file with a header, numeric features and a ``target`` column
    (and, with ``group``, a column of group values, for per-group metrics)."""
    X, y, groups, features = _read_csv(_existing_file(path), target=target, group=group)
    X_test = y_test = groups_test = None
    if test_path is not None:
        # The test file's features are matched to the training file's by name, in any order.
        X_test, y_test, groups_test, _ = _read_csv(_existing_file(test_path), target=target, group=group, features=features)
    return dataset_from_arrays(
        str(Path(path).expanduser()), X, y, X_test, y_test,
        n_classes=n_classes, test_size=test_size, split_seed=split_seed, groups=groups, groups_test=groups_test,
    )  # fmt: skip


def _read_csv(file: Path, *, target: str, group: str | None = None, features: list[str] | None = None):
    """Features, labels, (with ``group``) group values and the feature names of one CSV
    file, naming the line and column of any bad value. The group column is not a feature.
    With ``features`` (the training file's), the file must hold exactly those feature
    columns, in any order; they are taken in that order."""
    import pandas as pd

    try:
        frame = pd.read_csv(file)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError, OSError) as exc:
        raise DatasetError(f"{file}: cannot read as CSV ({_one_line(exc)})") from None
    if not len(frame):
        raise DatasetError(f"{file}: a header and no rows; a dataset needs at least one row per class")
    with file.open(encoding="utf-8", errors="replace") as stream:
        header = next(csv.reader(stream), [])
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:  # pandas would rename the second one 'name.1' and carry on
        raise DatasetError(f"{file}: column {repeated[0]!r} appears more than once in the header; give each column its own name")
    if target not in frame.columns:
        raise DatasetError(f"{file}: no column {target!r} (the target); columns are {', '.join(map(str, frame.columns))}")
    groups = None
    if group is not None:
        if group not in frame.columns:
            raise DatasetError(f"{file}: no column {group!r} (the group); columns are {', '.join(map(str, frame.columns))}")
        if group == target:
            raise DatasetError(f"{file}: the group column {group!r} is also the target")
        missing = np.flatnonzero(frame[group].isna().to_numpy())
        if len(missing):
            raise DatasetError(f"{file}: group column {group!r} is empty on line {int(missing[0]) + 2}")
        groups = frame[group].astype(str).to_numpy()
    found = [c for c in frame.columns if c not in (target, group)]
    if not found:
        raise DatasetError(f"{file}: only the target column {target!r}; a dataset needs feature columns too")
    if features is not None and set(found) != set(features):
        raise DatasetError(f"{file}: feature columns {', '.join(map(str, found))} are not the training file's ({', '.join(map(str, features))})")
    features = list(features) if features is not None else found
    for column in [*features, target]:
        values = frame[column]
        if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            continue
        unreadable = np.flatnonzero((pd.to_numeric(values, errors="coerce").isna() & values.notna()).to_numpy())
        row = int(unreadable[0]) if len(unreadable) else 0
        what = "target column" if column == target else "column"
        raise DatasetError(f"{file}: {what} {column!r} is not numeric (line {row + 2}: {values.iloc[row]!r})")
    X = frame[features].to_numpy(dtype=np.float64)
    y = frame[target].to_numpy()
    bad = ~np.isfinite(X)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise DatasetError(f"{file}: column {features[col]!r} has a missing, NaN or inf value on line {row + 2}")
    if np.issubdtype(y.dtype, np.floating):
        bad_label = ~np.isfinite(y) | (y != np.round(y))
        if bad_label.any():
            row = int(np.flatnonzero(bad_label)[0])
            raise DatasetError(f"{file}: target {target!r} must hold integer class indices, found {y[row].item()!r} on line {row + 2}")
    return X.astype(np.float32), y, groups, features


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())
