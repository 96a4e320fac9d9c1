"""The store when its disk, its file or its medium fails: a full disk, a damaged page, one
unreadable record, read-only media (DESIGN.md, "The run store" and the exit codes).

Everything runs the real command line on real SQLite files: the store every test starts
from is trained once per module by a real ``python -m scalelab run`` and copied per test,
and a full disk is met by a real subprocess; the other commands go through
``scalelab.cli.main``, the console script's own entry point, in this process (their exit
status and what they print are the same, without a Python start-up each). The disk is a
real small tmpfs and read-only media a real read-only bind mount; both need root (and a
kernel that lets us mount), and the tests that need them skip, with the reason, elsewhere.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest
from cli_helpers import cli_env, cpu_digits_mlp_study, nonempty_lines, read_store, run_cli, write_study

from scalelab.store import RunStore

STUDY = "failing"
SMALL_GRID = "data_fraction = [0.25]\nseed = [0, 1]"
LARGE_GRID = "data_fraction = [0.25, 0.5, 1.0]\nseed = [0, 1]"


def study_text(grid: str = SMALL_GRID) -> str:
    return cpu_digits_mlp_study(STUDY, model="width = 0.25", train="epochs = 1\nbatch_size = 64", grid=grid)


def run_args(study: Path, store: Path) -> tuple:
    return ("run", study, "--store", store, "--workers", "1", "--quiet")


def run_study_subprocess(study: Path, store: Path, *, cwd: Path):
    """``scalelab run`` as a real ``python -m scalelab`` process."""
    return run_cli(*run_args(study, store), env=cli_env(cwd / "cache"), cwd=cwd)


@pytest.fixture
def scalelab(scalelab_main):
    """``scalelab(*args, cwd=...)``: a command through ``scalelab.cli.main`` in this process."""
    return scalelab_main


@pytest.fixture
def run_study(scalelab_main):
    """``run_study(study, store, cwd=...)``: ``scalelab run`` in this process (real workers)."""

    def run(study: Path, store: Path, *, cwd: Path):
        return scalelab_main(*run_args(study, store), cwd=cwd)

    return run


def assert_one_error_line(cli, status: int, *needles: str) -> str:
    """Exit ``status``, exactly one non-empty stderr line, holding every needle, no traceback."""
    assert cli.returncode == status, cli.describe()
    lines = nonempty_lines(cli.stderr)
    assert len(lines) == 1, f"expected one line on stderr:\n{cli.describe()}"
    assert "Traceback" not in cli.stderr
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in the error line: {lines[0]!r}"
    return lines[0]


def peek(store: Path, sql: str) -> list[tuple]:
    """Rows of a query on a store no process is using, read without making any file beside it."""
    db = sqlite3.connect(f"{store.resolve().as_uri()}?mode=ro&immutable=1", uri=True)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def done_metrics(store: Path) -> dict[str, str]:
    """{cell_id: metrics_json} of the done cells (read without writing)."""
    return dict(read_store(store, "SELECT cell_id, metrics_json FROM cells WHERE state = 'done'"))


def snapshot(store: Path):
    """The store's folder listing, bytes and modification time."""
    return sorted(p.name for p in store.parent.iterdir()), hashlib.sha256(store.read_bytes()).hexdigest(), store.stat().st_mtime_ns


@pytest.fixture(scope="module")
def finished_store(tmp_path_factory) -> Path:
    """A store in which the CLI trained the small grid (two done cells), closed cleanly."""
    folder = tmp_path_factory.mktemp("finished")
    study = write_study(folder / "study.toml", study_text())
    cli = run_study_subprocess(study, folder / "store.db", cwd=folder)
    assert cli.returncode == 0, cli.describe()
    assert not list(folder.glob("store.db-*")), "a cleanly closed store keeps no -wal or -shm file"
    assert len(peek(folder / "store.db", "SELECT cell_id FROM cells WHERE state = 'done'")) == 2
    return folder / "store.db"


@pytest.fixture
def workdir(tmp_path: Path, finished_store: Path) -> Path:
    """A folder holding the study file (the one the store was made from)."""
    write_study(tmp_path / "study.toml", study_text())
    return tmp_path


def copy_store(finished_store: Path, folder: Path, name: str = "store.db") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy(finished_store, folder / name))


# -- mounts -------------------------------------------------------------------------------
def _mount(*args: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a small or read-only filesystem")
    done = subprocess.run(["mount", *args], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount here ({' '.join(args)}): {done.stderr.strip()}")


def _unmount(path: Path) -> None:
    if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


@contextlib.contextmanager
def small_disk(path: Path, size: str = "2m"):
    """A real tmpfs of ``size`` mounted at ``path``."""
    path.mkdir()
    _mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path))
    try:
        yield path
    finally:
        _unmount(path)


@contextlib.contextmanager
def read_only_view(folder: Path, view: Path):
    """``folder`` seen through a read-only bind mount at ``view`` (root cannot write there)."""
    view.mkdir()
    _mount("--bind", str(folder), str(view))
    try:
        remount = subprocess.run(["mount", "-o", "remount,bind,ro", str(view)], capture_output=True, text=True)
        if remount.returncode != 0:
            pytest.skip(f"cannot make a bind mount read-only here: {remount.stderr.strip()}")
        probe = view / "probe"
        with pytest.raises(OSError):
            probe.write_text("x")  # the medium really refuses writes, even to root
        yield view
    finally:
        _unmount(view)


def fill_disk(disk: Path, *, leave: int) -> Path:
    """Fill the filesystem at ``disk`` with one file, so that only ``leave`` bytes stay free."""
    stats = os.statvfs(disk)
    free = stats.f_bavail * stats.f_frsize
    filler = disk / "filler"
    with open(filler, "wb") as handle:
        handle.write(b"\0" * max(0, free - leave))
    stats = os.statvfs(disk)
    assert stats.f_bavail * stats.f_frsize <= leave
    return filler


# -- a full disk ----------------------------------------------------------------------------
def test_a_disk_that_fills_during_a_run_is_one_line_and_the_next_run_finishes(workdir, finished_store, run_study):
    with small_disk(workdir / "disk") as disk:
        store = copy_store(finished_store, disk)  # the small grid, trained by `scalelab run`
        study = workdir / "study.toml"
        before = done_metrics(store)
        assert len(before) == 2

        write_study(study, study_text(LARGE_GRID))  # four more cells to record
        filler = fill_disk(disk, leave=16 * 1024)
        full = run_study_subprocess(study, store, cwd=workdir)
        # Exit 1, not 2: the study and the store are fine; the disk is not.
        assert_one_error_line(full, 1, str(store), "disk is full", "kept")

        filler.unlink()
        assert read_store(store, "PRAGMA integrity_check") == [("ok",)]
        survived = done_metrics(store)
        assert {k: survived[k] for k in before} == before, "cells done before the disk filled were lost or changed"

        again = run_study(study, store, cwd=workdir)
        assert again.returncode == 0, again.describe()
        after = done_metrics(store)
        assert len(after) == 6
        assert {k: after[k] for k in survived} == survived, "a cell recorded as done was trained again"
        assert f"trained {6 - len(survived)} cells" in again.stdout


@pytest.mark.parametrize("leave", [0, 24 * 1024], ids=["no-space", "room-for-the-header-only"])
def test_a_store_whose_creation_filled_the_disk_becomes_a_store_on_the_next_run(workdir, leave, scalelab, run_study):
    with small_disk(workdir / "disk", size="1m") as disk:
        store = disk / "store.db"
        filler = fill_disk(disk, leave=leave)
        full = run_study(workdir / "study.toml", store, cwd=workdir)
        assert_one_error_line(full, 1, str(store), "disk is full")

        filler.unlink()
        assert store.exists(), "the failed creation was expected to leave a file behind"
        if store.stat().st_size:  # SQLite's header and no tables: a reader sees no studies
            assert read_store(store, "SELECT name FROM sqlite_master") == [], "expected an empty database"
            status = scalelab("status", "--store", store, "--format", "json", cwd=workdir)
            assert status.returncode == 0, status.describe()
            assert json.loads(status.stdout) == {"studies": []}

        again = run_study(workdir / "study.toml", store, cwd=workdir)
        assert again.returncode == 0, again.describe()
        assert len(done_metrics(store)) == 2


# -- damage ----------------------------------------------------------------------------------
def _damage_cells_page(store: Path) -> None:
    """Overwrite the page-type byte of the cells table's root page: a damaged page."""
    ((root,),) = peek(store, "SELECT rootpage FROM sqlite_master WHERE name = 'cells'")
    ((page_size,),) = peek(store, "PRAGMA page_size")
    data = bytearray(store.read_bytes())
    data[(root - 1) * page_size] = 0x55
    store.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "command",
    [["status"], ["status", STUDY], ["runs", STUDY, "--format", "csv"], ["fit", STUDY], ["report", STUDY, "-o", "r.html"]],
    ids=lambda c: "-".join(c[:2]),
)
def test_a_damaged_page_is_one_line_naming_the_damage(workdir, finished_store, command, scalelab):
    store = copy_store(finished_store, workdir / "stores")
    _damage_cells_page(store)
    before = snapshot(store)
    cli = scalelab(*command, "--store", store, cwd=workdir)
    line = assert_one_error_line(cli, 2, str(store), "damaged", "integrity_check")
    verdict = line.split("integrity_check: ", 1)[1]
    assert "table cells" in verdict or "Page" in verdict, f"the check's verdict names no damaged part: {line!r}"
    assert cli.stdout.strip() == ""
    assert snapshot(store) == before, "a reader wrote to the damaged store or left files beside it"


def test_run_on_a_damaged_store_is_one_line_and_writes_nothing(workdir, finished_store, run_study):
    store = copy_store(finished_store, workdir / "stores")
    _damage_cells_page(store)
    before = snapshot(store)
    cli = run_study(workdir / "study.toml", store, cwd=workdir)
    assert_one_error_line(cli, 2, str(store), "damaged", "integrity_check")
    assert snapshot(store) == before


def test_probing_a_malformed_file_leaves_no_log_files_beside_it(workdir, finished_store, scalelab, run_study):
    """A WAL-mode file whose schema page is garbage: refused, and left exactly as found."""
    store = copy_store(finished_store, workdir / "stores")
    data = bytearray(store.read_bytes())
    data[100:4096] = b"\xa5" * (4096 - 100)  # page 1 after the file header: sqlite_master
    store.write_bytes(bytes(data))
    before = snapshot(store)
    for cli in (run_study(workdir / "study.toml", store, cwd=workdir), scalelab("status", "--store", store, cwd=workdir)):
        assert_one_error_line(cli, 2, str(store))
        assert snapshot(store) == before, f"files appeared or changed: {snapshot(store)[0]}"


# -- one unreadable record ---------------------------------------------------------------
@pytest.mark.parametrize("byte", [b"#", b"\xff"], ids=["bad-json", "not-utf8"])
def test_one_unreadable_record_hides_no_other_run(workdir, finished_store, byte, scalelab):
    store = copy_store(finished_store, workdir / "stores")
    good = dict(peek(store, "SELECT cell_id, metrics_json FROM cells WHERE state = 'done'"))
    bad_id = sorted(good)[0]
    text = good[bad_id].encode()
    data = store.read_bytes()
    assert data.count(text) == 1
    at = data.index(text) + 1
    store.write_bytes(data[:at] + byte + data[at + 1 :])

    runs = scalelab("runs", STUDY, "--store", store, "--format", "json", cwd=workdir)
    assert runs.returncode == 0, runs.describe()
    (warning,) = nonempty_lines(runs.stderr)
    assert "warning" in warning and bad_id in warning and "metrics_json" in warning
    rows = {row["cell_id"]: row for row in json.loads(runs.stdout)}
    assert set(rows) == set(good)
    assert rows[bad_id]["test_loss"] is None and "metrics_json" in rows[bad_id]["reason"]
    for cell_id in set(good) - {bad_id}:
        assert rows[cell_id]["test_loss"] == json.loads(good[cell_id])["test_loss"]

    for command in (["fit", STUDY, "--format", "json"], ["report", STUDY, "-o", "r.html"]):
        cli = scalelab(*command, "--store", store, cwd=workdir)
        assert cli.returncode == 0, cli.describe()
        lines = [line for line in nonempty_lines(cli.stderr) if "scalelab:" in line]
        assert len(lines) == 1 and bad_id in lines[0], cli.describe()
        assert "Traceback" not in cli.stderr


# -- readers never write ---------------------------------------------------------------
def test_a_reader_cannot_write_and_leaves_the_store_as_it_was(workdir, finished_store, scalelab):
    store = copy_store(finished_store, workdir / "stores")
    before = snapshot(store)
    with RunStore.open_existing(store) as opened:
        assert len(opened.cells(STUDY)) == 2
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            opened.set_meta("written", 1)
    for command in (["status"], ["runs", STUDY, "--format", "json"], ["fit", STUDY]):
        cli = scalelab(*command, "--store", store, cwd=workdir)
        assert cli.returncode == 0, cli.describe()
    assert snapshot(store) == before


def test_an_empty_database_reads_as_a_store_without_studies_and_becomes_one(workdir, run_study):
    store = workdir / "stores" / "store.db"
    store.parent.mkdir()
    db = sqlite3.connect(store)
    db.execute("PRAGMA journal_mode=WAL")  # what an interrupted creation leaves: a header, no tables
    db.close()
    with RunStore.open_existing(store) as opened:
        assert opened.study_names() == []
    assert read_store(store, "SELECT name FROM sqlite_master") == [], "a reader created the schema"
    cli = run_study(workdir / "study.toml", store, cwd=workdir)
    assert cli.returncode == 0, cli.describe()
    assert len(done_metrics(store)) == 2


# -- read-only media ----------------------------------------------------------------------
READERS = [
    ["status"],
    ["status", STUDY, "--format", "json"],
    ["runs", STUDY, "--format", "json"],
    ["fit", STUDY, "--format", "json"],
    ["backtest", STUDY, "--format", "json"],
]


def test_read_commands_work_on_read_only_media(workdir, finished_store, scalelab):
    folder = workdir / "medium"
    copy_store(finished_store, folder)
    expected = {tuple(c): scalelab(*c, "--store", folder / "store.db", cwd=workdir) for c in READERS}
    with read_only_view(folder, workdir / "ro") as view:
        for command, writable in expected.items():
            assert writable.returncode == 0, writable.describe()
            cli = scalelab(*command, "--store", view / "store.db", cwd=workdir)
            assert cli.returncode == 0, cli.describe()
            if "json" in command:
                assert json.loads(cli.stdout) == json.loads(writable.stdout)
        report = scalelab("report", STUDY, "--store", view / "store.db", "-o", workdir / "r.html", cwd=workdir)
        assert report.returncode == 0, report.describe()
        assert sorted(p.name for p in view.iterdir()) == ["store.db"]


def test_run_on_read_only_media_is_one_line(workdir, finished_store, run_study):
    folder = workdir / "medium"
    store = copy_store(finished_store, folder)
    before = snapshot(store)
    with read_only_view(folder, workdir / "ro") as view:
        for target in (view / "store.db", view / "new.db"):
            cli = run_study(workdir / "study.toml", target, cwd=workdir)
            assert_one_error_line(cli, 2, str(target), "read-only", "--store")
    assert snapshot(store) == before


def _store_with_an_unmerged_log(finished_store: Path, folder: Path, *, with_shm: bool) -> None:
    """A copy of the store taken while a writer held a change in its write-ahead log only."""
    live = copy_store(finished_store, folder.parent / f"{folder.name}-live")
    db = sqlite3.connect(live, isolation_level=None)
    try:
        db.execute("PRAGMA wal_autocheckpoint = 0")
        db.execute("UPDATE cells SET reason = 'recorded in the log'")
        folder.mkdir()
        for suffix in ("", "-wal", "-shm") if with_shm else ("", "-wal"):
            shutil.copy(f"{live}{suffix}", folder / f"store.db{suffix}")
    finally:
        db.close()
    assert (folder / "store.db-wal").stat().st_size > 0


def test_a_log_on_read_only_media_is_read_with_its_shm_and_refused_without(workdir, finished_store, scalelab):
    with_shm, without = workdir / "with-shm", workdir / "without-shm"
    _store_with_an_unmerged_log(finished_store, with_shm, with_shm=True)
    _store_with_an_unmerged_log(finished_store, without, with_shm=False)
    with read_only_view(with_shm, workdir / "ro-with") as view:
        cli = scalelab("runs", STUDY, "--store", view / "store.db", "--format", "json", cwd=workdir)
        assert cli.returncode == 0, cli.describe()
        assert {row["reason"] for row in json.loads(cli.stdout)} == {"recorded in the log"}
    with read_only_view(without, workdir / "ro-without") as view:
        cli = scalelab("runs", STUDY, "--store", view / "store.db", "--format", "json", cwd=workdir)
        assert_one_error_line(cli, 1, "store.db-wal", "store.db-shm")
