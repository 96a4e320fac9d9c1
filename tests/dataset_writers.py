"""Small datasets written in the exact on-disk formats users have: CIFAR folders, npz, csv
(and, for store tests, another program's SQLite database).

Nothing is downloaded. The CIFAR writers produce the layouts the dataset's authors
distribute (see ``scalelab.data.cifar``) with a few images per batch. Images are
learnable: each class has its own mean colour, plus noise.
"""

from __future__ import annotations

import pickle
import sqlite3
import struct
from pathlib import Path

import numpy as np

IMAGE_BYTES = 3072


def cifar_images(n: int, *, n_classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` uint8 images (n, 3072) in CIFAR's channel-planar layout, and their labels."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % n_classes
    rng.shuffle(labels)
    colours = np.random.default_rng(1234).integers(30, 226, size=(n_classes, 3))
    planes = colours[labels][:, :, None] + rng.normal(0, 25, size=(n, 3, 1024))
    return np.clip(planes, 0, 255).astype(np.uint8).reshape(n, IMAGE_BYTES), labels


# -- CIFAR-10 and CIFAR-100, python version ---------------------------------------------------
def write_cifar10_python(root: Path, *, per_batch: int = 40, n_test: int = 50, protocol: int | None = None, python2: bool = True) -> Path:
    """A ``cifar-10-batches-py`` folder: ``data_batch_1..5``, ``test_batch``, ``batches.meta``.

    With ``python2`` the pickles use the opcodes Python 2's cPickle wrote the published
    files with (byte strings, ``numpy.core.multiarray._reconstruct``); otherwise
    ``pickle.dump`` of this Python with ``protocol``.
    """
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    dump = python2_pickle if python2 else (lambda obj: pickle.dumps(obj, protocol=protocol))
    for i in range(1, 6):
        data, labels = cifar_images(per_batch, n_classes=10, seed=i)
        batch = {
            b"batch_label": f"training batch {i} of 5".encode(),
            b"labels": labels.tolist(),
            b"data": data,
            b"filenames": [f"image_{i}_{j}.png".encode() for j in range(per_batch)],
        }
        (folder / f"data_batch_{i}").write_bytes(dump(batch))
    data, labels = cifar_images(n_test, n_classes=10, seed=99)
    test = {b"batch_label": b"testing batch 1 of 1", b"labels": labels.tolist(), b"data": data, b"filenames": [b"t.png"] * n_test}
    (folder / "test_batch").write_bytes(dump(test))
    meta = {b"label_names": [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"],
            b"num_cases_per_batch": per_batch, b"num_vis": IMAGE_BYTES}  # fmt: skip
    (folder / "batches.meta").write_bytes(dump(meta))
    return folder


def write_cifar100_python(root: Path, *, n_train: int = 200, n_test: int = 50) -> Path:
    """A ``cifar-100-python`` folder: ``train``, ``test`` and ``meta`` with fine and coarse labels."""
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    for name, n, seed in (("train", n_train, 1), ("test", n_test, 2)):
        data, fine = cifar_images(n, n_classes=100, seed=seed)
        batch = {b"filenames": [b"x.png"] * n, b"batch_label": name.encode(), b"fine_labels": fine.tolist(),
                 b"coarse_labels": (fine // 5).tolist(), b"data": data}  # fmt: skip
        (folder / name).write_bytes(python2_pickle(batch))
    (folder / "meta").write_bytes(python2_pickle({b"fine_label_names": [b"c"] * 100, b"coarse_label_names": [b"s"] * 20}))
    return folder


# -- CIFAR-10 and CIFAR-100, binary version -------------------------------------------------
def binary_records(data: np.ndarray, *label_columns: np.ndarray) -> bytes:
    """Records of one byte per label column, then the image's 3072 bytes."""
    labels = np.stack(label_columns, axis=1).astype(np.uint8)
    return np.concatenate([labels, data], axis=1).tobytes()


def write_cifar10_binary(root: Path, *, per_batch: int = 40, n_test: int = 50) -> Path:
    """A ``cifar-10-batches-bin`` folder: ``data_batch_1..5.bin``, ``test_batch.bin``, ``batches.meta.txt``."""
    folder = root / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    for i in range(1, 6):
        data, labels = cifar_images(per_batch, n_classes=10, seed=i)
        (folder / f"data_batch_{i}.bin").write_bytes(binary_records(data, labels))
    data, labels = cifar_images(n_test, n_classes=10, seed=99)
    (folder / "test_batch.bin").write_bytes(binary_records(data, labels))
    (folder / "batches.meta.txt").write_text("airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n")
    return folder


def write_cifar100_binary(root: Path, *, n_train: int = 200, n_test: int = 50) -> Path:
    """A ``cifar-100-binary`` folder: ``train.bin`` and ``test.bin``, records of coarse and fine label."""
    folder = root / "cifar-100-binary"
    folder.mkdir(parents=True)
    for name, n, seed in (("train", n_train, 1), ("test", n_test, 2)):
        data, fine = cifar_images(n, n_classes=100, seed=seed)
        (folder / f"{name}.bin").write_bytes(binary_records(data, fine // 5, fine))
    return folder


# -- Python 2's pickle layout ---------------------------------------------------------------
def python2_pickle(obj) -> bytes:
    """``obj`` pickled with the opcodes of Python 2's ``cPickle.dump(obj, f, 2)``.

    Handles what CIFAR batches hold: dicts, lists, ints, byte strings and numpy arrays
    (as numpy 1.x reduced them, through ``numpy.core.multiarray._reconstruct``).
    """
    return b"\x80\x02" + _encode(obj) + b"."


def _encode(obj) -> bytes:
    if obj is None:
        return b"N"
    if isinstance(obj, bool):
        return b"\x88" if obj else b"\x89"
    if isinstance(obj, int):
        return b"J" + struct.pack("<i", obj)
    if isinstance(obj, bytes):
        if len(obj) < 256:
            return b"U" + bytes([len(obj)]) + obj
        return b"T" + struct.pack("<I", len(obj)) + obj
    if isinstance(obj, tuple):
        return b"(" + b"".join(_encode(v) for v in obj) + b"t"
    if isinstance(obj, list):
        return b"](" + b"".join(_encode(v) for v in obj) + b"e"
    if isinstance(obj, dict):
        return b"}(" + b"".join(_encode(k) + _encode(v) for k, v in obj.items()) + b"u"
    if isinstance(obj, np.ndarray):
        code = obj.dtype.str[1:].encode()  # "u1", "i8", ...
        byteorder = obj.dtype.str[:1].encode()
        dtype = b"cnumpy\ndtype\n" + _encode((code, 0, 1)) + b"R" + _encode((3, byteorder, None, None, None, -1, -1, 0)) + b"b"
        array = b"cnumpy.core.multiarray\n_reconstruct\n" + b"(cnumpy\nndarray\n" + _encode((0,)) + _encode(b"b") + b"tR"
        state = b"(" + _encode(1) + _encode(obj.shape) + dtype + _encode(False) + _encode(obj.tobytes()) + b"t"
        return array + state + b"b"
    raise TypeError(f"cannot encode {type(obj).__name__}")


# -- malicious pickles -----------------------------------------------------------------------
class CreatesFile:
    """Unpickling this calls ``builtins.open(path, "w")``: it would create ``path``."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


class RunsCommand:
    """Unpickling this calls ``os.system`` with a command that creates ``path``."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        import os

        return (os.system, (f"touch '{self.path}'",))


def write_foreign_sqlite(path: Path) -> None:
    """Some other program's SQLite database (rollback journal, one table)."""
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE notes (body TEXT)")
    connection.execute("INSERT INTO notes VALUES ('not scalelab')")
    connection.commit()
    connection.close()
