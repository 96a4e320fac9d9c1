"""The run store: one SQLite file holding every cell's state, configuration and metrics.

Semantics (see DESIGN.md, "The run store"):

* WAL mode and a busy timeout, so readers never block the writer and two coordinators
  on one file take turns instead of failing.
* A cell moves ``pending → running → done | failed | diverged``. Claiming is one
  ``BEGIN IMMEDIATE`` transaction, so two coordinators never claim the same cell.
* A running cell carries a lease (owner, expiry). The owning coordinator renews it;
  a cell whose lease expired, or whose owner is a dead process on this host, is
  claimable again. So ``kill -9`` at any moment loses only unfinished work.
* A finished cell is written in one transaction with its metrics, so a crash never
  leaves a half-recorded result.
* Pretrained checkpoints (a study's ``[pretrain]`` stage) are kept beside the cells,
  keyed by the hash of the configuration that trained them, with the SHA-256 of their
  bytes: trained once, reused by every cell and every later run that needs them.
"""

from __future__ import annotations

import json
import math
import os
import socket
import sqlite3
import time
import uuid
from collections.abc import Collection, Iterable, Mapping
import hashlib
from dataclasses import dataclass
from pathlib import Path

from scalelab.errors import InputError

STATES = ("pending", "running", "done", "failed", "diverged")
FINISHED = ("done", "failed", "diverged")
DEFAULT_LEASE_S = 60.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS studies (
    name TEXT PRIMARY KEY,
    source TEXT,
    spec_json TEXT NOT NULL,
    grid_keys_json TEXT NOT NULL,
    target_metric TEXT NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS cells (
    cell_id TEXT PRIMARY KEY,
    config_json TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'running', 'done', 'failed', 'diverged')),
    metrics_json TEXT,
    reason TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_expires REAL,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL
);
CREATE TABLE IF NOT EXISTS study_cells (
    study TEXT NOT NULL REFERENCES studies(name),
    cell_id TEXT NOT NULL REFERENCES cells(cell_id),
    position INTEGER NOT NULL,
    cost REAL NOT NULL DEFAULT 0,
    params_json TEXT NOT NULL,
    PRIMARY KEY (study, cell_id)
);
CREATE INDEX IF NOT EXISTS cells_by_state ON cells(state);
CREATE TABLE IF NOT EXISTS checkpoints (
    checkpoint_id TEXT PRIMARY KEY,
    config_json TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    weights BLOB NOT NULL,
    metrics_json TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS file_hashes (
    path TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    hashed_at REAL NOT NULL
);
"""
SCHEMA_VERSION = "1"


@dataclass(frozen=True)
class CellRecord:
    """A cell as the store holds it."""

    cell_id: str
    state: str
    config: dict
    params: dict
    metrics: dict
    reason: str | None
    attempts: int


def _json_safe(metrics: dict) -> str:
    """Metrics as JSON with NaN/inf written as null (SQLite and readers both cope)."""
    clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in metrics.items()}
    return json.dumps(clean, sort_keys=True)


def new_owner_id() -> str:
    """A lease owner id: host, pid and a random token (the pid lets us spot dead owners)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _owner_is_dead(owner: str) -> bool:
    """True when ``owner`` names a process on this host that no longer exists."""
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class RunStore:
    """The SQLite run store. Open with :meth:`open` (creates) or :meth:`open_existing`."""

    def __init__(self, path: Path, connection: sqlite3.Connection):
        self.path = path
        self._db = connection

    # -- opening ---------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | Path, *, busy_timeout_s: float = 60.0) -> RunStore:
        """Open the store at ``path``, creating the file and schema if needed."""
        path = Path(path).expanduser()
        if path.parent and not path.parent.exists():
            raise InputError(f"{path}: the store's folder {path.parent} does not exist")
        if path.exists():
            _check_is_store(path, allow_empty=True)
        try:
            db = _retry_while_busy(lambda: _connect_and_initialise(path, busy_timeout_s), busy_timeout_s)
        except sqlite3.DatabaseError as exc:
            raise InputError(f"{path}: not a usable scalelab store ({exc})") from None
        return cls(path, db)

    @classmethod
    def open_existing(cls, path: str | Path) -> RunStore:
        """Open a store that must already exist (readers never create or convert a file)."""
        path = Path(path).expanduser()
        if not path.exists():
            raise InputError(f"{path}: no store here; run a study first or pass --store")
        _check_is_store(path, allow_empty=False)
        return cls.open(path)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- studies and cells -----------------------------------------------------------
    def register_study(self, spec, *, costs: dict[str, float] | None = None) -> None:
        """Record a study and its current grid; new cells start ``pending``.

        ``costs`` (estimated FLOPs per cell id) sets the claim order: the most
        expensive cells go first, so a pool of workers does not end its run waiting on
        one large cell started last.

        Cells already in the store (same resolved configuration, hence same id) keep
        their state and results. Cells no longer in the grid stay in the store but leave
        the study's membership, so editing the grid never mixes configurations.
        """
        now = time.time()
        with _transaction(self._db):
            self._db.execute(
                "INSERT INTO studies(name, source, spec_json, grid_keys_json, target_metric, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET source=excluded.source, "
                "spec_json=excluded.spec_json, grid_keys_json=excluded.grid_keys_json, "
                "target_metric=excluded.target_metric, updated_at=excluded.updated_at",
                (spec.name, spec.source, json.dumps(spec.raw, sort_keys=True), json.dumps(spec.grid_keys), spec.target_metric, now),
            )
            self._db.executemany(
                "INSERT OR IGNORE INTO cells(cell_id, config_json, state, created_at) VALUES (?, ?, 'pending', ?)",
                [(c.cell_id, json.dumps(c.config, sort_keys=True), now) for c in spec.cells],
            )
            self._db.execute("DELETE FROM study_cells WHERE study = ?", (spec.name,))
            costs = costs or {}
            self._db.executemany(
                "INSERT INTO study_cells(study, cell_id, position, cost, params_json) VALUES (?, ?, ?, ?, ?)",
                [(spec.name, c.cell_id, i, costs.get(c.cell_id, 0.0), json.dumps(c.params)) for i, c in enumerate(spec.cells)],
            )

    def meta(self, key: str):
        """A value kept in the store's ``meta`` table (JSON), or None."""
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def set_meta(self, key: str, value) -> None:
        """Keep ``value`` (JSON) under ``key`` in the store's ``meta`` table."""
        with _transaction(self._db):
            self._db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, json.dumps(value, sort_keys=True)))

    def study_names(self) -> list[str]:
        return [row[0] for row in self._db.execute("SELECT name FROM studies ORDER BY name")]

    def study_info(self, name: str) -> dict:
        """The stored record of a study: source, parsed study file, grid keys, target."""
        row = self._db.execute(
            "SELECT source, spec_json, grid_keys_json, target_metric FROM studies WHERE name = ?", (name,)
        ).fetchone()
        if row is None:
            known = ", ".join(self.study_names()) or "none"
            raise InputError(f"{self.path}: no study named {name!r} in this store (studies: {known})")
        return {"name": name, "source": row[0], "raw": json.loads(row[1]), "grid_keys": json.loads(row[2]), "target_metric": row[3]}

    def cells(self, study: str) -> list[CellRecord]:
        """Every cell of a study's current grid, in grid order."""
        return self._records("s.study = ?", (study,))

    def _records(self, where: str, args: tuple) -> list[CellRecord]:
        rows = self._db.execute(
            "SELECT c.cell_id, c.state, c.config_json, s.params_json, c.metrics_json, c.reason, c.attempts "
            f"FROM study_cells s JOIN cells c ON c.cell_id = s.cell_id WHERE {where} ORDER BY s.position",
            args,
        ).fetchall()
        return [
            CellRecord(
                cell_id=r[0],
                state=r[1],
                config=json.loads(r[2]),
                params=json.loads(r[3]),
                metrics=json.loads(r[4]) if r[4] else {},
                reason=r[5],
                attempts=r[6],
            )
            for r in rows
        ]

    def state_counts(self, study: str) -> dict[str, int]:
        """Number of the study's cells in each state (every state present, zeros included)."""
        counts = dict.fromkeys(STATES, 0)
        for state, n in self._db.execute(
            "SELECT c.state, COUNT(*) FROM study_cells s JOIN cells c ON c.cell_id = s.cell_id "
            "WHERE s.study = ? GROUP BY c.state",
            (study,),
        ):
            counts[state] = n
        return counts

    def count_in_states(self, cell_ids: Iterable[str], states: Iterable[str]) -> int:
        """How many of these cells the store holds in one of ``states`` (any study's)."""
        ids, wanted = list(cell_ids), list(states)
        total = 0
        for start in range(0, len(ids), 500):  # SQLite caps the parameters of one statement
            chunk = ids[start : start + 500]
            query = (f"SELECT COUNT(*) FROM cells WHERE cell_id IN ({','.join('?' * len(chunk))}) "
                     f"AND state IN ({','.join('?' * len(wanted))})")  # fmt: skip
            total += self._db.execute(query, (*chunk, *wanted)).fetchone()[0]
        return total

    # -- state transitions (coordinator only) ----------------------------------------
    def reset_failed(self, study: str) -> int:
        """Return the study's failed and diverged cells to ``pending``; their old reason is kept until rerun."""
        with _transaction(self._db):
            cursor = self._db.execute(
                "UPDATE cells SET state = 'pending', lease_owner = NULL, lease_expires = NULL "
                "WHERE state IN ('failed', 'diverged') AND cell_id IN (SELECT cell_id FROM study_cells WHERE study = ?)",
                (study,),
            )
            return cursor.rowcount

    def reclaim_dead(self) -> int:
        """Return to ``pending`` the running cells whose owner process on this host is gone."""
        owners = [r[0] for r in self._db.execute("SELECT DISTINCT lease_owner FROM cells WHERE state = 'running'")]
        dead = [o for o in owners if o and _owner_is_dead(o)]
        if not dead:
            return 0
        with _transaction(self._db):
            total = 0
            for owner in dead:
                total += self._db.execute(
                    "UPDATE cells SET state = 'pending', lease_owner = NULL, lease_expires = NULL "
                    "WHERE state = 'running' AND lease_owner = ?",
                    (owner,),
                ).rowcount
            return total

    def claim(
        self,
        study: str,
        owner: str,
        *,
        limit: int = 1,
        lease_s: float = DEFAULT_LEASE_S,
        group_of: Mapping[str, str | None] | None = None,
        skip: Collection[str] = (),
    ) -> list[CellRecord]:
        """Atomically take up to ``limit`` claimable cells of a study and mark them ``running``.

        Claimable: ``pending``, or ``running`` with an expired lease, and not in ``skip``
        (cells still waiting for their pretrained checkpoint). With ``group_of`` (cell id
        to a group key, or ``None`` for a cell that stands alone), ``limit`` counts groups,
        and a claimed cell brings every claimable cell of its group along, so cells that
        train together are taken together.
        """
        now = time.time()
        limited = not (group_of or skip)
        with _transaction(self._db):
            claimable = [
                r[0]
                for r in self._db.execute(
                    "SELECT c.cell_id FROM study_cells s JOIN cells c ON c.cell_id = s.cell_id "
                    "WHERE s.study = ? AND (c.state = 'pending' OR (c.state = 'running' AND c.lease_expires < ?)) "
                    "ORDER BY s.cost DESC, s.position" + (" LIMIT ?" if limited else ""),
                    (study, now, limit) if limited else (study, now),
                )
                if r[0] not in skip
            ]
            ids = _take_groups(claimable, group_of, limit) if group_of else claimable[:limit]
            self._db.executemany(
                "UPDATE cells SET state = 'running', lease_owner = ?, lease_expires = ?, started_at = ?, "
                "attempts = attempts + 1 WHERE cell_id = ?",
                [(owner, now + lease_s, now, cid) for cid in ids],
            )
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        return self._records(f"s.study = ? AND c.cell_id IN ({marks})", (study, *ids))

    def renew(self, owner: str, *, lease_s: float = DEFAULT_LEASE_S) -> None:
        """Extend every lease ``owner`` holds (the coordinator's heartbeat)."""
        with _transaction(self._db):
            self._db.execute(
                "UPDATE cells SET lease_expires = ? WHERE state = 'running' AND lease_owner = ?",
                (time.time() + lease_s, owner),
            )

    def finish(self, cell_id: str, owner: str, *, state: str, metrics: dict | None = None, reason: str | None = None) -> bool:
        """Record a cell's final state and metrics, if ``owner`` still holds its lease.

        Returns False (and writes nothing) when the lease was lost to another
        coordinator, so one cell is never recorded twice.
        """
        if state not in FINISHED:
            raise ValueError(f"finish() takes one of {FINISHED}, not {state!r}")
        with _transaction(self._db):
            cursor = self._db.execute(
                "UPDATE cells SET state = ?, metrics_json = ?, reason = ?, finished_at = ?, "
                "lease_owner = NULL, lease_expires = NULL WHERE cell_id = ? AND state = 'running' AND lease_owner = ?",
                (state, _json_safe(metrics or {}), reason, time.time(), cell_id, owner),
            )
            return cursor.rowcount == 1

    def fail_pending(self, cell_ids: Iterable[str], reason: str) -> int:
        """Mark pending cells ``failed`` without running them (their pretraining failed)."""
        now = time.time()
        with _transaction(self._db):
            return sum(
                self._db.execute(
                    "UPDATE cells SET state = 'failed', reason = ?, finished_at = ?, metrics_json = '{}' WHERE cell_id = ? AND state = 'pending'",
                    (reason, now, cid),
                ).rowcount
                for cid in cell_ids
            )

    # -- pretrained checkpoints ------------------------------------------------------
    def save_checkpoint(self, checkpoint_id: str, config: dict, weights: bytes, metrics: dict) -> str:
        """Keep a pretrained checkpoint's bytes; returns their SHA-256. A checkpoint already
        held (another coordinator trained it too) is left as it was."""
        digest = hashlib.sha256(weights).hexdigest()
        with _transaction(self._db):
            self._db.execute(
                "INSERT OR IGNORE INTO checkpoints(checkpoint_id, config_json, sha256, weights, metrics_json, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (checkpoint_id, json.dumps(config, sort_keys=True), digest, sqlite3.Binary(weights), _json_safe(metrics), time.time()),
            )
        return digest

    def checkpoint_ids(self) -> set[str]:
        """The ids of every checkpoint the store holds."""
        return {row[0] for row in self._db.execute("SELECT checkpoint_id FROM checkpoints")}

    def checkpoint(self, checkpoint_id: str) -> tuple[bytes, dict] | None:
        """A checkpoint's bytes and the metrics of the run that trained it, or ``None``."""
        row = self._db.execute("SELECT weights, metrics_json, sha256 FROM checkpoints WHERE checkpoint_id = ?", (checkpoint_id,)).fetchone()
        if row is None:
            return None
        return bytes(row[0]), {**json.loads(row[1]), "sha256": row[2]}

    def release(self, cell_ids: Iterable[str], owner: str) -> None:
        """Return cells this owner holds to ``pending`` (on Ctrl-C, SIGTERM or a lost worker)."""
        with _transaction(self._db):
            self._db.executemany(
                "UPDATE cells SET state = 'pending', lease_owner = NULL, lease_expires = NULL "
                "WHERE cell_id = ? AND state = 'running' AND lease_owner = ?",
                [(cid, owner) for cid in cell_ids],
            )

    # -- the content of data files ---------------------------------------------------
    # A cell's id holds the SHA-256 of the files it reads (scalelab.data.fingerprint). The
    # store keeps each file's hash with the size and mtime it had, so a dataset is read in
    # full once per version of its files, not on every command.
    def file_hashes(self) -> dict[str, tuple[int, int, str]]:
        """``{resolved path: (size, mtime_ns, sha256)}`` of the files hashed for this store."""
        try:
            return {r[0]: (r[1], r[2], r[3]) for r in self._db.execute("SELECT path, size, mtime_ns, sha256 FROM file_hashes")}
        except sqlite3.OperationalError:  # a store opened read-only from before the table
            return {}

    @staticmethod
    def read_file_hashes(path: str | Path) -> dict[str, tuple[int, int, str]]:
        """:meth:`file_hashes` of the store at ``path``, read without writing to it; empty
        when there is no readable store there (a first run, or a file refused elsewhere)."""
        path = Path(path).expanduser()
        if not path.is_file() or path.stat().st_size == 0:
            return {}
        try:
            db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5.0)
        except sqlite3.Error:
            return {}
        try:
            rows = db.execute("SELECT path, size, mtime_ns, sha256 FROM file_hashes").fetchall()
            return {r[0]: (r[1], r[2], r[3]) for r in rows}
        except sqlite3.Error:
            return {}
        finally:
            db.close()

    def remember_file_hashes(self, entries: Mapping[str, tuple[int, int, str]]) -> None:
        """Keep ``{resolved path: (size, mtime_ns, sha256)}`` (a spec's ``file_hashes``), one
        entry per path: a file's new version replaces its old one."""
        if not entries:
            return
        now = time.time()
        with _transaction(self._db):
            self._db.executemany(
                "INSERT INTO file_hashes(path, size, mtime_ns, sha256, hashed_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT(path) DO UPDATE SET size=excluded.size, mtime_ns=excluded.mtime_ns, "
                "sha256=excluded.sha256, hashed_at=excluded.hashed_at "
                "WHERE size != excluded.size OR mtime_ns != excluded.mtime_ns OR sha256 != excluded.sha256",
                [(p, int(size), int(mtime_ns), sha, now) for p, (size, mtime_ns, sha) in entries.items()],
            )

    def refresh_unfinished_configs(self, cells) -> int:
        """Give the spec's cells not yet ``done`` the configuration the spec resolved now.

        A cell's id holds its data's content, not the path of a built-in dataset, so a
        moved, unchanged copy keeps the id while the stored configuration still names the
        old place; workers load what the claimed configuration names. Done cells keep the
        configuration they were trained with. Returns how many cells changed."""
        changed = 0
        with _transaction(self._db):
            for cell in cells:
                text = json.dumps(cell.config, sort_keys=True)
                changed += self._db.execute(
                    "UPDATE cells SET config_json = ? WHERE cell_id = ? AND state != 'done' AND config_json != ?", (text, cell.cell_id, text)
                ).rowcount
        return changed

    def stored_data_hashes(self, study: str) -> dict[str, str]:
        """``{[data] section key: content hash}`` of the cells the store holds for a study
        (see :func:`scalelab.data.fingerprint.recorded_hashes`); unreadable records are skipped."""
        from scalelab.data.fingerprint import recorded_hashes

        configs = []
        for (text,) in self._db.execute(
            "SELECT c.config_json FROM study_cells s JOIN cells c ON c.cell_id = s.cell_id WHERE s.study = ?", (study,)
        ):
            try:
                configs.append(json.loads(text))
            except (TypeError, ValueError):
                continue
        return recorded_hashes(configs)


def _retry_while_busy(action, timeout_s: float):
    """Run ``action``, retrying while SQLite answers "database is locked" for ``timeout_s``.

    Switching the journal mode, and WAL recovery while another process opens or closes
    the file, answer SQLITE_BUSY at once instead of calling the busy handler; two
    coordinators starting together must take turns, not fail.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return action()
        except sqlite3.OperationalError as exc:
            text = str(exc).lower()
            if not ("locked" in text or "busy" in text) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _connect_and_initialise(path: Path, busy_timeout_s: float) -> sqlite3.Connection:
    """Connect in WAL mode and create the schema if missing; close the connection on error."""
    db = sqlite3.connect(path, timeout=busy_timeout_s, isolation_level=None)
    try:
        db.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
        if db.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")  # safe with WAL: a commit survives a process crash
        db.execute("PRAGMA foreign_keys=ON")
        # One transaction, so a process checking the file sees either no tables or all.
        with _transaction(db):
            for statement in filter(str.strip, _SCHEMA.split(";")):
                db.execute(statement)
            db.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', ?)", (SCHEMA_VERSION,))
    except BaseException:
        db.close()
        raise
    return db


def _check_is_store(path: Path, *, allow_empty: bool) -> None:
    """Refuse, without writing to it, a file that is not a scalelab store.

    An empty file (or an empty SQLite database) may become a store when a run opens it;
    any other database is someone else's and is left untouched.
    """
    if path.is_dir():
        raise InputError(f"{path}: is a folder, not a store file")
    if path.stat().st_size == 0:
        if allow_empty:
            return
        raise InputError(f"{path}: is an empty file, not a scalelab store")
    try:
        tables = _retry_while_busy(lambda: _table_names(path), timeout_s=60.0)
    except sqlite3.DatabaseError as exc:
        raise InputError(f"{path}: not a scalelab store ({exc})") from None
    if not tables and allow_empty:
        return
    if not {"meta", "studies", "cells", "study_cells"} <= tables:
        raise InputError(f"{path}: is an SQLite database but not a scalelab store; pass another --store")


def is_store(path: Path) -> bool:
    """Whether the file at ``path`` holds a scalelab store's tables (read without writing)."""
    try:
        return {"meta", "studies", "cells", "study_cells"} <= _table_names(path)
    except sqlite3.DatabaseError:
        return False


def _table_names(path: Path) -> set[str]:
    """The table names in the SQLite file at ``path``, read through a read-only connection."""
    db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        db.close()


def _take_groups(ordered_ids: list[str], group_of: Mapping[str, str | None], limit: int) -> list[str]:
    """The first ``limit`` groups of ``ordered_ids``, each with all its members, in order."""
    members: dict[str, list[str]] = {}
    for cell_id in ordered_ids:
        members.setdefault(group_of.get(cell_id) or cell_id, []).append(cell_id)
    return [cell_id for group in list(members.values())[:limit] for cell_id in group]


class _transaction:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` (or ``ROLLBACK`` on error) on an autocommit connection."""

    def __init__(self, db: sqlite3.Connection):
        self._db = db

    def __enter__(self):
        self._db.execute("BEGIN IMMEDIATE")
        return self._db

    def __exit__(self, exc_type, exc, tb):
        self._db.execute("ROLLBACK" if exc_type else "COMMIT")
        return False
