"""Reading untrusted pickles that should hold only plain data and numpy arrays.

CIFAR's "python version" files are pickles, and unpickling runs whatever callable a
file names. :func:`load_data_pickle` admits only the globals numpy's own array and
dtype pickles use, and even those are replaced by stand-ins that decode the bytes
themselves: no numpy code (and nothing else) runs on a file's say-so. Any other global
(``os.system``, ``builtins.eval``, ...) is refused before it is looked up.

Numbers, strings, bytes, lists, tuples and dicts need no globals at all, so pickles of
plain data load unchanged.
"""

from __future__ import annotations

import io
import math
import pickle
import struct

import numpy as np

from scalelab.errors import DatasetError

# Kinds of dtype an array in a data file may have: booleans, integers and floats.
_NUMERIC_KINDS = "biuf"
_MAX_NESTING = 16


class _NDArrayType:
    """Stands in for ``numpy.ndarray``, which pickles name only as the type to rebuild."""


class _PickledDtype:
    """Stands in for ``numpy.dtype``: records the type code and byte order, builds nothing."""

    def __init__(self, code, align=False, copy=True):
        self.code = code
        self.byteorder = "="

    def __setstate__(self, state):
        if not isinstance(state, tuple) or len(state) < 2:
            raise DatasetError(f"unexpected dtype state {_short(state)}")
        self.byteorder = _text(state[1])

    def to_numpy(self) -> np.dtype:
        code = _text(self.code)
        try:
            dtype = np.dtype(code)
        except TypeError:
            raise DatasetError(f"unsupported array type {code!r}") from None
        if dtype.kind not in _NUMERIC_KINDS or dtype.fields is not None or dtype.subdtype is not None:
            raise DatasetError(f"unsupported array type {code!r}; data files may hold numeric arrays only")
        if self.byteorder in ("<", ">"):
            dtype = dtype.newbyteorder(self.byteorder)
        elif self.byteorder not in ("|", "="):
            raise DatasetError(f"unknown byte order {self.byteorder!r}")
        return dtype


class _PickledArray:
    """What ``numpy.core.multiarray._reconstruct`` would build; its state is decoded here."""

    def __init__(self):
        self.array: np.ndarray | None = None

    def __setstate__(self, state):
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise DatasetError(f"unexpected array state {_short(state)}")
        shape, dtype, fortran_order, raw = state[-4:]
        self.array = _array_from_bytes(raw, dtype, shape, "F" if fortran_order else "C")


def _reconstruct(subtype, shape, typecode):
    if subtype is not _NDArrayType:
        raise DatasetError("an array of a type other than numpy.ndarray")
    return _PickledArray()


def _frombuffer(buffer, dtype, shape, order):
    """What numpy's protocol-5 pickles call instead of ``_reconstruct``."""
    return _array_from_bytes(buffer, dtype, shape, order)


def _latin1_bytes(text, encoding):
    """``_codecs.encode``, which Python 3 writes into protocol-2 pickles of ``bytes``."""
    if not isinstance(text, str) or _text(encoding).lower().replace("-", "") != "latin1":
        raise DatasetError("a bytes object in an unexpected encoding")
    return text.encode("latin-1")


def _array_from_bytes(raw, dtype, shape, order) -> np.ndarray:
    if not isinstance(dtype, _PickledDtype):
        raise DatasetError("an array without a numeric dtype")
    dtype = dtype.to_numpy()
    if isinstance(raw, str):  # a Python 2 pickle read with encoding="latin1"
        raw = raw.encode("latin-1")
    if isinstance(raw, pickle.PickleBuffer):
        raw = bytes(raw)
    if not isinstance(raw, (bytes, bytearray)):
        raise DatasetError(f"array data of type {type(raw).__name__}; expected raw bytes")
    if not isinstance(shape, tuple) or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape):
        raise DatasetError(f"invalid array shape {_short(shape)}")
    expected = math.prod(shape) * dtype.itemsize
    if len(raw) != expected:
        raise DatasetError(f"array data holds {len(raw)} bytes but its shape {shape} needs {expected}")
    return np.frombuffer(raw, dtype=dtype).reshape(shape, order=_text(order))


# (module, name) -> stand-in. numpy 1.x pickles say numpy.core, numpy 2.x numpy._core.
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("numpy", "ndarray"): _NDArrayType,
    ("numpy", "dtype"): _PickledDtype,
    ("_codecs", "encode"): _latin1_bytes,
}


class RefusedGlobal(DatasetError):
    """The pickle names a callable outside the data-only allowlist."""


class _DataUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise RefusedGlobal(
                f"refused to unpickle {module}.{name}: data files may hold only numbers, strings, "
                "bytes, lists, dicts and numpy arrays (the file may be malicious)"
            ) from None

    def persistent_load(self, pid):
        raise RefusedGlobal("refused a persistent reference: data files may not hold any")


def load_data_pickle(data: bytes):
    """Unpickle ``data`` admitting only plain data and numeric numpy arrays.

    Strings written by Python 2 come back as ``bytes`` (as with
    ``pickle.load(f, encoding="bytes")``, the usual way to read CIFAR). Arrays come back
    as read-only ``numpy.ndarray`` objects. Raises :class:`DatasetError` for a refused
    global and for truncated or corrupt data; the message is one line.
    """
    try:
        loaded = _DataUnpickler(io.BytesIO(data), encoding="bytes").load()
    except DatasetError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError,
            AttributeError, OverflowError, UnicodeDecodeError, struct.error, RecursionError) as exc:  # fmt: skip
        raise DatasetError(f"truncated or corrupt pickle ({type(exc).__name__}: {' '.join(str(exc).split())})") from None
    return _materialise(loaded, depth=0)


def _materialise(value, *, depth: int):
    """Replace the stand-ins left in containers by the arrays they decoded."""
    if depth > _MAX_NESTING:
        raise DatasetError("data nested too deeply")
    if isinstance(value, _PickledArray):
        if value.array is None:
            raise DatasetError("an array without its data (truncated or corrupt pickle)")
        return value.array
    if isinstance(value, (_PickledDtype, _NDArrayType)) or value is _NDArrayType:
        raise DatasetError("a bare numpy type where data was expected")
    if isinstance(value, dict):
        return {k: _materialise(v, depth=depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [_materialise(v, depth=depth + 1) for v in value]
    if isinstance(value, tuple):
        return tuple(_materialise(v, depth=depth + 1) for v in value)
    return value


def _text(value) -> str:
    if isinstance(value, bytes):
        return value.decode("ascii", errors="replace")
    if isinstance(value, str):
        return value
    raise DatasetError(f"expected a string, got {type(value).__name__}")


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
