"""Shared, generic fixtures. Test-specific helpers live in their own modules."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def private_cache_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point scalelab's on-disk cache at a fresh folder, so no test reads or fills the user's."""
    cache = tmp_path_factory.mktemp("scalelab-cache")
    monkeypatch.setenv("SCALELAB_CACHE_DIR", str(cache))
    return cache


@pytest.fixture
def tmp_store(tmp_path: Path) -> Path:
    """Path of a run store (SQLite file) that does not exist yet, in a private folder."""
    return tmp_path / "scalelab.db"


@pytest.fixture(scope="module")
def one_torch_thread():
    """In-process training on one thread, as a worker would on a busy 2-core machine (tiny
    models train far faster so). Modules that train in process ask for it with
    ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def scalelab_main(monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture):
    """``scalelab_main(*args, cwd=..., cache_dir=...)``: the command line run in this process
    through ``scalelab.cli.main`` (see ``cli_helpers.run_in_process``); ``cache_dir``
    defaults to ``cwd / "cache"``, as the subprocess tests' ``cli_env(cwd / "cache")``."""
    from cli_helpers import run_in_process

    def run(*args, cwd: Path, cache_dir: Path | None = None, columns: int = 250):
        return run_in_process(*args, cache_dir=cache_dir or Path(cwd) / "cache", cwd=cwd, monkeypatch=monkeypatch, capfd=capfd, columns=columns)

    return run
