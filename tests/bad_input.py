"""Checks for the bad-input contract: exit 2, one line naming the problem, store untouched.

:class:`StoreSnapshot` makes a real store (a study registered through the library, no
training) and later checks that a command left it byte for byte as it was, with the same
modification time and no new files beside it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from cli_helpers import nonempty_lines

from scalelab.spec import parse_spec
from scalelab.store import RunStore

EXIT_USAGE = 2

_REGISTERED = {"name": "registered", "data": {"name": "digits"}, "model": {"family": "mlp"}, "grid": {"seed": [0, 1]}}


class StoreSnapshot:
    """A real store in its own folder, and what it looked like when made."""

    def __init__(self, folder: Path):
        folder.mkdir(parents=True)
        self.folder = folder
        self.store = folder / "runs.db"
        with RunStore.open(self.store) as store:
            store.register_study(parse_spec(_REGISTERED, source="registered.toml"))
        self._before = self._state()

    def _state(self):
        return (
            sorted(p.name for p in self.folder.iterdir()),
            hashlib.sha256(self.store.read_bytes()).hexdigest(),
            self.store.stat().st_mtime_ns,
        )

    def assert_untouched(self) -> None:
        files, digest, mtime = self._state()
        assert files == self._before[0], f"files appeared beside the store: {files}"
        assert digest == self._before[1], "a rejected command changed the store's bytes"
        assert mtime == self._before[2], "a rejected command touched the store"


def assert_input_error(cli, *needles: str) -> str:
    """Exit 2, nothing on stdout, one stderr line holding every needle; returns the line."""
    assert cli.returncode == EXIT_USAGE, cli.describe()
    lines = nonempty_lines(cli.stderr)
    assert len(lines) == 1, f"expected one line on stderr:\n{cli.describe()}"
    assert cli.stdout.strip() == "", cli.describe()
    assert "Traceback" not in cli.stderr
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not named in the error line: {lines[0]!r}"
    return lines[0]
