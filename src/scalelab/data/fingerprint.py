"""The content of the files a dataset reads, as one SHA-256 that joins a cell's identity.

A cell trained on ``data.csv`` is the same cell only while ``data.csv`` holds the same
bytes: :func:`data_content_sha256` hashes every file the dataset's loader reads (the CSV
and its test file, the npz, the CIFAR batches, the files a ``python:`` dataset declares
in ``data.files``), and :mod:`scalelab.spec` puts the result in the resolved ``[data]``
section as ``content_sha256``. For the built-in file datasets the path then leaves the
cell's id (:func:`identity_view`), so a moved, unchanged copy keeps its cells.

Hashing is cached by (resolved path, size, mtime_ns): in this process, and in the run
store (:class:`ContentHashes` starts from the store's entries, and a run writes back the
ones it used), so a large dataset is read in full once per version of its files, not on
every command.

A file that cannot be read gives no hash here: the dataset's loader reports it, in one
line naming the file, before any work (see :func:`scalelab.estimate.preflight`).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path

from scalelab.errors import DatasetError

CONTENT_KEY = "content_sha256"
# The options of each built-in dataset that name what it reads. With the content hashed,
# they are left out of the cell's id: the bytes decide what the cell is, not where they lie.
PATH_OPTIONS = {"csv": ("path", "test_path"), "npz": ("path",), "cifar10": ("path",), "cifar100": ("path",), "text": ("path",)}
DECLARED = "files"  # [data] files = [...]: what a python: dataset function reads

# (resolved path, size, mtime_ns) -> SHA-256, for every file hashed in this process.
_HASHED: dict[tuple[str, int, int], str] = {}


class ContentHashes:
    """SHA-256 of files, cached by (resolved path, size, mtime_ns).

    ``known``: entries a run store already holds, ``{path: (size, mtime_ns, sha256)}``;
    an entry is used only while the file's size and mtime still match it.
    ``recorded``: ``{data section key: content hash}`` of the cells a store holds for a
    study, used only for a dataset whose files cannot be read here (a study loaded by
    name from another folder), so its cells still line up with the stored ones.

    :attr:`used` collects ``{path: (size, mtime_ns, sha256)}`` for every file hashed or
    looked up, for the store to keep.
    """

    def __init__(self, known: Mapping[str, tuple[int, int, str]] | None = None, recorded: Mapping[str, str] | None = None):
        self._known = dict(known or {})
        self._recorded = dict(recorded or {})
        self._sections: dict[str, str | None] = {}
        self.used: dict[str, tuple[int, int, str]] = {}
        self.read = 0  # files read in full by this object (the others came from a cache)

    def file_sha256(self, path: str | os.PathLike) -> str:
        """The SHA-256 of one file's bytes. Raises ``OSError`` when it cannot be read."""
        resolved = Path(path).expanduser().resolve()
        stat = resolved.stat()
        key = (str(resolved), stat.st_size, stat.st_mtime_ns)
        known = self._known.get(key[0])
        if known is not None and tuple(known[:2]) == key[1:]:
            digest = known[2]
        elif key in _HASHED:
            digest = _HASHED[key]
        else:
            digest = _sha256_of(resolved)
            _HASHED[key] = digest
            self.read += 1
        self.used[key[0]] = (key[1], key[2], digest)
        return digest

    def data_sha256(self, data: dict) -> str | None:
        """The content hash of a resolved ``[data]`` section (without ``content_sha256``),
        or ``None`` for a dataset that reads no file.

        A built-in dataset's file that cannot be read gives ``None`` too (the loader names
        the problem when preflight loads the data); a declared file that cannot be read
        raises :class:`DatasetError` naming it."""
        key = section_key(data)
        # Sections that differ only in what is done with the rows (fraction, seeds, noise)
        # read the same files: look at them once.
        files_key = json.dumps([data["name"], data.get("options", {}), data.get(DECLARED)], sort_keys=True)
        if files_key not in self._sections:
            try:
                roles = [(role, self.file_sha256(file)) for role, file in loader_files(data)]
                roles += [(role, self._declared_sha256(file)) for role, file in declared_files(data)]
                digest = combined_sha256(roles) if roles else None
            except _DeclaredMissing:
                if key not in self._recorded:
                    raise
                return self._recorded[key]
            except (OSError, DatasetError):
                return self._recorded.get(key)  # None: the loader names the problem
            self._sections[files_key] = digest
        return self._sections[files_key]

    def _declared_sha256(self, file: Path) -> str:
        try:
            return self.file_sha256(file)
        except OSError as exc:
            raise _DeclaredMissing(f"data.files: {file}: {'file not found' if not file.exists() else f'cannot read ({exc.strerror or exc})'}") from None


class _DeclaredMissing(DatasetError):
    """A file named in ``data.files`` that cannot be read."""


def loader_files(data: dict) -> list[tuple[str, Path]]:
    """``(role, file)`` for each file a built-in dataset's loader reads, in its order; none
    for digits, mnist1d, synthetic and ``python:`` functions.

    Raises :class:`DatasetError` when a CIFAR folder cannot be found.
    """
    name, options = data["name"], data.get("options", {})
    if name in ("csv", "npz"):
        return [(option, Path(options[option]).expanduser()) for option in PATH_OPTIONS[name] if options.get(option) is not None]
    if name in ("cifar10", "cifar100"):
        from scalelab.data.cifar import cifar10_files, cifar100_files

        _, files, _ = (cifar10_files if name == "cifar10" else cifar100_files)(options.get("path"))
        return [(file.name, file) for file in files]
    if name == "text":
        from scalelab.data.text import text_files

        return _relative_roles(text_files(options["path"]))
    if name == "pystdlib":
        from scalelab.data.text import stdlib_files, stdlib_root

        return _relative_roles(stdlib_files(), root=stdlib_root())
    return []


def _relative_roles(files: list[Path], root: Path | None = None) -> list[tuple[str, Path]]:
    """Each file named by its path below ``root`` (by default the files' common folder),
    so a corpus keeps its hash when its folder moves."""
    if not files:
        return []
    root = root if root is not None else Path(os.path.commonpath([f.parent for f in files]))
    return [(f.relative_to(root).as_posix(), f) for f in files]


def declared_files(data: dict) -> list[tuple[str, Path]]:
    """``(role, file)`` for the files ``data.files`` names, a folder's files by their
    relative paths."""
    found = []
    for i, text in enumerate(data.get(DECLARED) or []):
        found += _expand(f"files[{i}]", Path(text).expanduser())
    return found


def _expand(role: str, path: Path) -> list[tuple[str, Path]]:
    """A declared file, or every file under a declared folder (by its relative path)."""
    if not path.is_dir():
        return [(role, path)]
    files = sorted(p for p in path.rglob("*") if p.is_file())
    return [(f"{role}/{p.relative_to(path).as_posix()}", p) for p in files]


def combined_sha256(hashes: list[tuple[str, str]]) -> str:
    """One file's own SHA-256 (what ``sha256sum`` prints), or for several the SHA-256 of
    their ``role sha256`` lines, so that renaming a folder changes nothing."""
    if len(hashes) == 1:
        return hashes[0][1]
    return hashlib.sha256("".join(f"{role} {digest}\n" for role, digest in hashes).encode()).hexdigest()


def section_key(data: dict) -> str:
    """A ``[data]`` section as text, its content hash left out (what the hash is looked up by)."""
    return json.dumps({k: v for k, v in data.items() if k != CONTENT_KEY}, sort_keys=True, separators=(",", ":"))


def identity_view(data: dict) -> dict:
    """What of a resolved ``[data]`` section identifies a cell: with a content hash, the
    built-in datasets' paths and the declared files' names are left out (the bytes decide);
    a ``python:`` function still sees its own options, which stay."""
    if CONTENT_KEY not in data:
        return data
    view = {k: v for k, v in data.items() if k != DECLARED}
    drop = PATH_OPTIONS.get(data["name"], ())
    if drop:
        view["options"] = {k: v for k, v in data.get("options", {}).items() if k not in drop}
    return view


def recorded_hashes(configs) -> dict[str, str]:
    """``{section key: content hash}`` of the ``[data]`` sections (and ``[pretrain]`` data)
    of stored cell configurations."""
    found = {}
    for config in configs:
        for data in (config.get("data"), (config.get("pretrain") or {}).get("data")):
            if isinstance(data, dict) and CONTENT_KEY in data:
                found[section_key(data)] = data[CONTENT_KEY]
    return found


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
