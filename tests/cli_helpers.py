"""Helpers for the end-to-end command-line tests: real subprocesses, real SQLite.

Everything here drives ``python -m scalelab`` exactly as a user would, and reads the
run store only through read-only SQLite connections. Every process a test starts runs
in its own session (process group), so a test can always kill what it started, and
:func:`run_cli` fails a test whose command leaves a process behind.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

# Safety nets only: no test asserts on how fast anything is.
TIMEOUT_S = 180.0
POLL_S = 0.05


def cli_env(cache_dir: Path) -> dict[str, str]:
    """The environment of a ``scalelab`` subprocess: a private cache and a wide console."""
    env = dict(os.environ)
    env["SCALELAB_CACHE_DIR"] = str(cache_dir)
    env["COLUMNS"] = "250"  # rich wraps and truncates at 80 columns when not on a terminal
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("PYTHONSTARTUP", None)
    return env


def scalelab_cmd(*args: str | os.PathLike) -> list[str]:
    return [sys.executable, "-m", "scalelab", *map(str, args)]


# -- processes -------------------------------------------------------------------------
def _proc_stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, pgrp) of a live process from /proc, or None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name sits in parentheses and may itself hold spaces or parentheses.
    fields = text[text.rindex(")") + 2 :].split()
    return fields[0], int(fields[1]), int(fields[2])


def pid_alive(pid: int) -> bool:
    """True when ``pid`` is a running process (a zombie waiting to be reaped counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = _proc_stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def _all_pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def children_of(pid: int) -> list[int]:
    """Live direct children of ``pid`` (what ``pgrep -P pid`` prints)."""
    found = []
    for candidate in _all_pids():
        stat = _proc_stat(candidate)
        if stat is not None and stat[1] == pid and stat[0] not in ("Z", "X"):
            found.append(candidate)
    return found


def group_members(pgid: int) -> list[int]:
    """Live processes of process group ``pgid``."""
    found = []
    for candidate in _all_pids():
        stat = _proc_stat(candidate)
        if stat is not None and stat[2] == pgid and stat[0] not in ("Z", "X"):
            found.append(candidate)
    return found


def kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def wait_until(predicate, *, timeout: float = TIMEOUT_S, what: str = "condition"):
    """Poll ``predicate`` until it returns something truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(POLL_S)


def wait_for_group_to_empty(pgid: int, *, timeout: float = 30.0) -> list[int]:
    """Wait until no live process is left in group ``pgid``; return the ones that stayed."""
    deadline = time.monotonic() + timeout
    while True:
        left = group_members(pgid)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(POLL_S)


class CLIProcess:
    """A ``scalelab`` command started in its own session; killed with its group on exit."""

    def __init__(self, args, *, env, cwd):
        self.args = [str(a) for a in args]
        self.proc = subprocess.Popen(
            scalelab_cmd(*args),
            env=env,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.pid = self.proc.pid  # also the process group id
        self.stdout = ""
        self.stderr = ""

    def communicate(self, timeout: float = TIMEOUT_S) -> int:
        try:
            self.stdout, self.stderr = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_group(self.pid)
            self.stdout, self.stderr = self.proc.communicate()
            raise AssertionError(
                f"`scalelab {' '.join(self.args)}` did not finish within {timeout:.0f} s\n"
                f"stdout:\n{self.stdout}\nstderr:\n{self.stderr}"
            ) from None
        return self.proc.returncode

    @property
    def returncode(self):
        return self.proc.returncode

    def describe(self) -> str:
        return (
            f"`scalelab {' '.join(self.args)}` exited {self.proc.returncode}\n"
            f"--- stdout ---\n{self.stdout}\n--- stderr ---\n{self.stderr}"
        )

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            kill_group(self.pid)
            with contextlib.suppress(Exception):
                self.proc.communicate(timeout=30)
        else:
            kill_group(self.pid)  # stragglers of a finished leader, if any
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                with contextlib.suppress(Exception):
                    stream.close()
        return False


def run_cli(*args, env, cwd, timeout: float = TIMEOUT_S, check_no_leftovers: bool = True) -> CLIProcess:
    """Run ``python -m scalelab ARGS`` to completion and return it (``.returncode``, ``.stdout``, ``.stderr``).

    With ``check_no_leftovers`` the test fails when any process of the command's group
    (its workers, say) is still alive some seconds after the command exited.
    """
    with CLIProcess(args, env=env, cwd=cwd) as cli:
        cli.communicate(timeout=timeout)
        if check_no_leftovers:
            left = wait_for_group_to_empty(cli.pid)
            if left:
                kill_group(cli.pid)
                raise AssertionError(f"processes {left} outlived {cli.describe()}")
    return cli


# -- the store, read-only ---------------------------------------------------------------
def read_store(db: Path, sql: str, params=()) -> list[tuple]:
    """Rows of a read-only query on the store at ``db`` (raises sqlite3.Error if not ready)."""
    uri = f"file:{Path(db).resolve()}?mode=ro"
    connection = sqlite3.connect(uri, uri=True, timeout=10)
    try:
        return connection.execute(sql, params).fetchall()
    finally:
        connection.close()


def cell_states(db: Path, study: str) -> dict[str, str]:
    """{cell_id: state} of a study's current grid; empty while the store is not there yet."""
    if not Path(db).exists():
        return {}
    try:
        rows = read_store(
            db,
            "SELECT c.cell_id, c.state FROM study_cells s JOIN cells c ON c.cell_id = s.cell_id WHERE s.study = ?",
            (study,),
        )
    except sqlite3.Error:  # created but no schema yet, or locked for a moment
        return {}
    return dict(rows)


def cell_rows(db: Path, study: str) -> dict[str, dict]:
    """{cell_id: {state, attempts, metrics_json, reason}} straight from the store."""
    rows = read_store(
        db,
        "SELECT c.cell_id, c.state, c.attempts, c.metrics_json, c.reason "
        "FROM study_cells s JOIN cells c ON c.cell_id = s.cell_id WHERE s.study = ?",
        (study,),
    )
    return {r[0]: {"state": r[1], "attempts": r[2], "metrics_json": r[3], "reason": r[4]} for r in rows}


# -- studies and outputs -----------------------------------------------------------------
def cpu_digits_mlp_study(name: str, *, grid: str, train: str = "", model: str = "") -> str:
    """A study file: an MLP on bundled digits, on the CPU, with extra ``[train]`` and
    ``[model]`` lines and the ``[grid]`` lines given."""
    return (
        f'name = "{name}"\n\n[data]\nname = "digits"\n\n[model]\nfamily = "mlp"\n{model}\n\n'
        f'[train]\ndevice = "cpu"\n{train}\n\n[grid]\n{grid}\n'
    )


def write_study(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def expected_cell_ids(study_file: Path) -> set[str]:
    """The grid's cell ids, from the library's own parser of the study file."""
    from scalelab.spec import load_spec

    return {cell.cell_id for cell in load_spec(study_file).cells}


def status_json(study, *, store, env, cwd) -> dict:
    cli = run_cli("status", study, "--store", store, "--format", "json", env=env, cwd=cwd)
    assert cli.returncode == 0, cli.describe()
    (entry,) = json.loads(cli.stdout)["studies"]
    return entry


def runs_json(study, *, store, env, cwd) -> list[dict]:
    cli = run_cli("runs", study, "--store", store, "--format", "json", env=env, cwd=cwd)
    assert cli.returncode == 0, cli.describe()
    return json.loads(cli.stdout)


def runs_csv(study, *, store, env, cwd) -> tuple[list[str], list[dict]]:
    """(header, rows) of ``scalelab runs --format csv``."""
    cli = run_cli("runs", study, "--store", store, "--format", "csv", env=env, cwd=cwd)
    assert cli.returncode == 0, cli.describe()
    reader = csv.DictReader(io.StringIO(cli.stdout))
    rows = list(reader)
    return list(reader.fieldnames or []), rows


def nonempty_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def assert_one_line_error(cli, *needles: str) -> str:
    """Exit 2, nothing on stdout, exactly one non-empty stderr line holding every needle."""
    assert cli.returncode == 2, cli.describe()
    lines = nonempty_lines(cli.stderr)
    assert len(lines) == 1, f"expected one line on stderr:\n{cli.describe()}"
    assert cli.stdout.strip() == "", cli.describe()
    line = lines[0]
    for needle in needles:
        assert needle in line, f"{needle!r} not named in the error line: {line!r}"
    assert "Traceback" not in cli.stderr
    return line


# -- the same commands in this process ----------------------------------------------------
class InProcessCLI:
    """What :func:`run_in_process` returns: ``.returncode``, ``.stdout``, ``.stderr`` and
    ``describe()``, as :class:`CLIProcess` has them."""

    def __init__(self, args, returncode, stdout: str, stderr: str):
        self.args = [str(a) for a in args]
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr

    def describe(self) -> str:
        return (
            f"`scalelab {' '.join(self.args)}` (in process) exited {self.returncode}\n"
            f"--- stdout ---\n{self.stdout}\n--- stderr ---\n{self.stderr}"
        )


def run_in_process(*args, cache_dir: Path, cwd: Path, monkeypatch, capfd, columns: int = 250) -> InProcessCLI:
    """Run ``scalelab ARGS`` through :func:`scalelab.cli.main`, the console script's own entry
    point, in ``cwd`` with the environment :func:`cli_env` gives a subprocess, and return
    what it printed. For commands whose test is about what they answer, not about how a
    process starts, stops or is killed: those keep :func:`run_cli`.

    Warnings are printed to stderr as a console script prints them (not kept by pytest),
    so that a test counting stderr lines sees them; the SIGTERM and SIGINT handlers the
    command installs, ``sys.path`` and torch's thread count are put back afterwards.
    """
    import signal
    import warnings

    from scalelab import store
    from scalelab.cli import main

    store._WARNED.clear()  # a new process has warned about nothing yet
    argv = [str(a) for a in args]
    torch = sys.modules.get("torch")
    threads = torch.get_num_threads() if torch is not None else None
    with monkeypatch.context() as patch:
        patch.setattr(sys, "path", list(sys.path))  # a python: reference may append the folder
        patch.setenv("SCALELAB_CACHE_DIR", str(cache_dir))
        patch.setenv("COLUMNS", str(columns))
        patch.chdir(cwd)
        capfd.readouterr()
        old_term, old_int = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
        try:
            with warnings.catch_warnings():
                warnings.resetwarnings()  # the interpreter's defaults, as a console script has them
                for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
                    warnings.simplefilter("ignore", category)
                warnings.showwarning = lambda m, cat, f, n, file=None, line=None: sys.stderr.write(
                    warnings.formatwarning(m, cat, f, n, line)
                )
                try:
                    code = main(argv)
                except SystemExit as exc:
                    code = exc.code
        finally:
            signal.signal(signal.SIGTERM, old_term)
            signal.signal(signal.SIGINT, old_int)  # an interrupted command ignores further ones
            torch = sys.modules.get("torch")
            if torch is not None:  # a run sizes this process's torch threads to its workers
                torch.set_num_threads(threads or torch.get_num_threads())
            sys.stdout.flush()
            sys.stderr.flush()
        out, err = capfd.readouterr()
    if code is None:
        code = 0
    return InProcessCLI(argv, code, out, err)
