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
* A run's training curve (its log-spaced evaluations) is written with its result, in
  the same transaction, to a table of its own (``run_curves``), so a rerun replaces it.
* Pretrained checkpoints (a study's ``[pretrain]`` stage) are kept beside the cells,
  keyed by the hash of the configuration that trained them, with the SHA-256 of their
  bytes: trained once, reused by every cell and every later run that needs them.
* Readers (:meth:`RunStore.open_existing`) hold a connection that cannot write, create
  no schema, and read stores on read-only media too.
* A full disk, a damaged file or read-only media becomes a :class:`StoreError` whose
  message is one line naming the store and the cause; one unreadable record (a damaged
  byte in its JSON) is named in a warning, and the other records are still read.
"""

from __future__ import annotations

import errno
import json
import math
import os
import shutil
import socket
import sqlite3
import sys
import time
import uuid
from collections.abc import Collection, Iterable, Mapping
import hashlib
from dataclasses import dataclass
from pathlib import Path

from scalelab.errors import InputError, did_you_mean
from scalelab.train.outcome import CURVE_KEY

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
CREATE TABLE IF NOT EXISTS run_curves (
    cell_id TEXT NOT NULL REFERENCES cells(cell_id),
    step INTEGER NOT NULL,
    point_json TEXT NOT NULL,
    PRIMARY KEY (cell_id, step)
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
    unreadable: str | None = None  # why part of the stored record could not be read (a damaged byte)


class _Undecodable(str):
    """Text the store holds as bytes that are not UTF-8, decoded with replacement characters."""


def _decode_text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return _Undecodable(raw.decode("utf-8", "replace"))


def _parse_json(text, kind: type | None = None):
    """``(value, None)`` for a stored JSON text of ``kind``, else ``(None, why not)``."""
    if isinstance(text, _Undecodable):
        return None, "not UTF-8 text"
    if not isinstance(text, str):
        return None, f"{type(text).__name__} where JSON text belongs"
    try:
        value = json.loads(text)
    except ValueError as exc:
        return None, f"not valid JSON: {exc}"
    if kind is not None and not isinstance(value, kind):
        return None, f"a JSON {type(value).__name__} where a {'JSON object' if kind is dict else 'JSON list'} belongs"
    return value, None


# Warnings already given in this process (a command reads the same records more than once).
_WARNED: set[tuple] = set()


def _warn(message: str) -> None:
    """One warning line on stderr (the runs that could be read are still used)."""
    print(f"scalelab: warning: {message}".replace("\n", "\\n"), file=sys.stderr)


def _warn_once(key: tuple, message: str) -> None:
    if key not in _WARNED:
        _WARNED.add(key)
        _warn(message)


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

    def __init__(self, path: Path, connection: sqlite3.Connection, *, read_only: bool = False):
        self.path = path
        self._db = connection
        self._read_only = read_only
        # A damaged byte can leave text that is not UTF-8; it reads as text marked
        # undecodable (see _records) instead of failing the whole query.
        connection.text_factory = _decode_text

    # -- opening ---------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | Path, *, busy_timeout_s: float = 60.0) -> RunStore:
        """Open the store at ``path``, creating the file and schema if needed.

        An empty database (a zero-byte file, or SQLite's header with no tables: what a
        run that failed while creating the store leaves behind) becomes a store. Raises
        :class:`InputError` for a file that is not a store, :class:`StoreReadOnlyError`
        where the store cannot be written, :class:`StoreFullError` on a full disk and
        :class:`StoreCorruptError` for a damaged file.
        """
        path = Path(path).expanduser()
        if path.parent and not path.parent.exists():
            raise InputError(f"{path}: the store's folder {path.parent} does not exist")
        if path.exists():
            _check_is_store(path, allow_empty=True)
        try:
            db = _retry_while_busy(lambda: _connect_and_initialise(path, busy_timeout_s), busy_timeout_s)
        except sqlite3.DatabaseError as exc:
            raise store_failure(path, exc, writing=True) or InputError(f"{path}: not a usable scalelab store ({exc})") from None
        return cls(path, db)

    @classmethod
    def open_existing(cls, path: str | Path, *, busy_timeout_s: float = 60.0) -> RunStore:
        """Open a store that must already exist, to read it.

        Readers never create, convert or write a file: the connection cannot write (see
        :func:`_connect_read_only`, which also reads a store on read-only media), and no
        schema is created. An empty database reads as a store without studies.
        """
        path = Path(path).expanduser()
        if not path.exists():
            raise InputError(f"{path}: no store here; run a study first or pass --store")
        if _check_is_store(path, allow_empty=False):
            return cls(path, _empty_store_connection(), read_only=True)
        try:
            db = _connect_read_only(path, busy_timeout_s=busy_timeout_s)
        except sqlite3.DatabaseError as exc:
            raise store_failure(path, exc, writing=False) or InputError(f"{path}: not a usable scalelab store ({exc})") from None
        return cls(path, db, read_only=True)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close()
        # A full disk, a damaged page or read-only media met while using the store
        # becomes one StoreError naming the store; anything else passes unchanged.
        failure = store_failure(self.path, exc, writing=not self._read_only) if exc is not None else None
        if failure is not None:
            raise failure from exc

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
        if row is None:
            return None
        value, problem = _parse_json(row[0])
        if problem:
            _warn_once((str(self.path), "meta", key), f"{self.path}: the stored value of {key!r} is unreadable ({problem}); ignored")
        return value

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
            names = self.study_names()
            raise InputError(f"{self.path}: no study named {name!r} in this store{did_you_mean(name, names)} (studies: {', '.join(names) or 'none'})")
        (raw, raw_problem), (grid_keys, keys_problem) = _parse_json(row[1], dict), _parse_json(row[2], list)
        if raw_problem or keys_problem:
            what = "; ".join(f"{column}: {p}" for column, p in (("spec_json", raw_problem), ("grid_keys_json", keys_problem)) if p)
            raise StoreCorruptError(
                f"{self.path}: the record of study {name!r} is unreadable ({what}); run its study file again to rewrite it"
            )
        return {"name": name, "source": row[0], "raw": raw, "grid_keys": grid_keys, "target_metric": row[3]}

    def cells(self, study: str) -> list[CellRecord]:
        """Every cell of a study's current grid, in grid order."""
        return self._records("s.study = ?", (study,))

    def records_by_id(self, cell_ids: Iterable[str]) -> dict[str, CellRecord]:
        """The cells the store holds among ``cell_ids`` (whichever study ran them), by id;
        their ``params`` are empty (a study file's cells carry their own)."""
        ids, rows = list(dict.fromkeys(cell_ids)), []
        for begin in range(0, len(ids), 500):  # SQLite caps the number of bound parameters
            chunk = ids[begin : begin + 500]
            rows += self._db.execute(
                "SELECT c.cell_id, c.state, c.config_json, '{}', c.metrics_json, c.reason, c.attempts FROM cells c "
                f"WHERE c.cell_id IN ({', '.join('?' * len(chunk))})",
                chunk,
            ).fetchall()
        return {record.cell_id: record for record in self._parse_records(rows)}

    def study_cell_ids(self, study: str) -> list[str]:
        """The ids of the grid the store last registered for ``study``, in grid order."""
        return [row[0] for row in self._db.execute("SELECT cell_id FROM study_cells WHERE study = ? ORDER BY position", (study,))]

    def _records(self, where: str, args: tuple) -> list[CellRecord]:
        rows = self._db.execute(
            "SELECT c.cell_id, c.state, c.config_json, s.params_json, c.metrics_json, c.reason, c.attempts "
            f"FROM study_cells s JOIN cells c ON c.cell_id = s.cell_id WHERE {where} ORDER BY s.position",
            args,
        ).fetchall()
        return self._parse_records(rows)

    def _parse_records(self, rows) -> list[CellRecord]:
        records, unreadable = [], {}
        for cell_id, state, config_text, params_text, metrics_text, reason, attempts in rows:
            # One damaged record must not hide the others: what cannot be read is left
            # empty, the record says why, and one warning line names the cells.
            (config, p_config), (params, p_params) = _parse_json(config_text, dict), _parse_json(params_text, dict)
            metrics, p_metrics = _parse_json(metrics_text, dict) if metrics_text else ({}, None)
            problems = [f"{column}: {p}" for column, p in (("config_json", p_config), ("params_json", p_params),
                                                          ("metrics_json", p_metrics)) if p]  # fmt: skip
            if state not in STATES:
                problems.append(f"state {state!r} is none of {', '.join(STATES)}")
            note = f"unreadable record in the store ({'; '.join(problems)})" if problems else None
            if note:
                unreadable[cell_id] = note
                reason = note if not reason else f"{reason}; {note}"
            records.append(CellRecord(cell_id=cell_id, state=state, config=config or {}, params=params or {}, metrics=metrics or {},
                                      reason=reason, attempts=attempts, unreadable=note))  # fmt: skip
        new = {cell_id: note for cell_id, note in unreadable.items() if (str(self.path), "cell", cell_id) not in _WARNED}
        if new:
            _WARNED.update((str(self.path), "cell", cell_id) for cell_id in new)
            first_id, first_note = next(iter(new.items()))
            more = f" and {len(new) - 1} more ({', '.join(list(new)[1:4])}{', ...' if len(new) > 4 else ''})" if len(new) > 1 else ""
            _warn(f"{self.path}: cell {first_id}{more}: {first_note}; shown without what could not be read")
        return records

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
        metrics = dict(metrics or {})
        curve = metrics.pop(CURVE_KEY, None) or []
        with _transaction(self._db):
            cursor = self._db.execute(
                "UPDATE cells SET state = ?, metrics_json = ?, reason = ?, finished_at = ?, "
                "lease_owner = NULL, lease_expires = NULL WHERE cell_id = ? AND state = 'running' AND lease_owner = ?",
                (state, _json_safe(metrics), reason, time.time(), cell_id, owner),
            )
            if cursor.rowcount != 1:
                return False
            self._db.execute("DELETE FROM run_curves WHERE cell_id = ?", (cell_id,))
            self._db.executemany(
                "INSERT INTO run_curves(cell_id, step, point_json) VALUES (?, ?, ?)",
                [(cell_id, int(point["step"]), _json_safe(point)) for point in curve],
            )
            return True

    def curves(self, cell_ids: Iterable[str]) -> dict[str, list[dict]]:
        """The training curves of ``cell_ids`` that have one, by id, each point a dict in
        step order (a store from before curves were kept has none)."""
        if "run_curves" not in {row[0] for row in self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}:
            return {}
        ids, out = list(dict.fromkeys(cell_ids)), {}
        for begin in range(0, len(ids), 500):  # SQLite caps the number of bound parameters
            chunk = ids[begin : begin + 500]
            rows = self._db.execute(
                f"SELECT cell_id, point_json FROM run_curves WHERE cell_id IN ({', '.join('?' * len(chunk))}) ORDER BY cell_id, step",
                chunk,
            ).fetchall()
            for cell_id, text in rows:
                point, problem = _parse_json(_decode_text(text) if isinstance(text, bytes) else text, dict)
                if point is None:
                    _warn_once((str(self.path), "curve", cell_id), f"{self.path}: a training-curve point of cell {cell_id} is unreadable ({problem}); left out")
                    continue
                out.setdefault(cell_id, []).append(point)
        return out

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
            # Through the readers' connection: a plain mode=ro one leaves -wal and -shm files.
            db = _connect_read_only(path, busy_timeout_s=5.0)
        except (sqlite3.Error, StoreError):
            return {}  # not readable as a store here: the command that needs it says why
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


def _check_is_store(path: Path, *, allow_empty: bool) -> bool:
    """Refuse, without writing to it, a file that is not a scalelab store; True when it is
    an empty database (a zero-byte file, or SQLite's header and no tables).

    An empty database may become a store when a run opens it: it is what a run that
    failed while creating the store (a full disk, say) leaves behind. Any other database
    is someone else's and is left untouched.
    """
    if path.is_dir():
        raise InputError(f"{path}: is a folder, not a store file")
    if path.stat().st_size == 0:
        if allow_empty:
            return True
        raise InputError(f"{path}: is an empty file, not a scalelab store")
    if not _has_sqlite_header(path):
        raise InputError(f"{path}: not a scalelab store (file is not a database)")
    try:
        tables = _retry_while_busy(lambda: _table_names(path), timeout_s=60.0)
    except sqlite3.DatabaseError as exc:
        raise store_failure(path, exc, writing=False) or InputError(f"{path}: not a scalelab store ({exc})") from None
    if not tables:
        return True
    if not STORE_TABLES <= tables:
        raise InputError(f"{path}: is an SQLite database but not a scalelab store; pass another --store")
    return False


def is_store(path: Path) -> bool:
    """Whether the file at ``path`` holds a scalelab store's tables (read without writing)."""
    try:
        return STORE_TABLES <= _table_names(path)
    except (sqlite3.DatabaseError, StoreError):
        return False


def _table_names(path: Path) -> set[str]:
    """The table names in the SQLite file at ``path``, read through a read-only connection."""
    db = _connect_read_only(path, busy_timeout_s=5.0)
    try:
        return {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        db.close()


# -- reading without writing ---------------------------------------------------------------
STORE_TABLES = frozenset({"meta", "studies", "cells", "study_cells"})
_SQLITE_HEADER = b"SQLite format 3\x00"
# SQLite's primary result codes: the low byte of an error's ``sqlite_errorcode``.
_SQLITE_READONLY, _SQLITE_IOERR, _SQLITE_CORRUPT, _SQLITE_FULL, _SQLITE_CANTOPEN, _SQLITE_NOTADB = 8, 10, 11, 13, 14, 26


def _sqlite_code(exc: BaseException) -> int:
    return (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF


def _has_sqlite_header(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(len(_SQLITE_HEADER)) == _SQLITE_HEADER


def _log_files(path: Path) -> tuple[Path, Path]:
    """The write-ahead log and shared-memory index SQLite keeps beside a WAL-mode file."""
    return path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")


def _connect_read_only(path: Path, *, busy_timeout_s: float = 60.0) -> sqlite3.Connection:
    """A connection that cannot write to the SQLite file at ``path``, opened and checked.

    In order of preference:

    * Where the file and its folder are writable, a normal connection with
      ``PRAGMA query_only``: SQLite refuses every write through it, and it removes the
      -wal and -shm files it made when it is the last to close. A ``mode=ro`` connection
      cannot remove them, so every read would leave two files beside the store.
    * ``mode=ro`` where SQLite cannot open the file for writing (read-only media, a
      read-only file), when the -wal and -shm files exist or can be made.
    * ``mode=ro&immutable=1`` where even those cannot be made (a read-only folder or
      medium with no -shm file beside the store, or a full disk): SQLite then reads the
      file without locks or log, which is safe because nothing can write it there. A log
      that holds data would be ignored that way, so that case is refused instead.

    A malformed file, or one on a full disk, is left as it was found: the -wal and -shm
    files that a failed attempt made are removed again. Raises sqlite3.Error as SQLite
    does (a lock held longer than ``busy_timeout_s``, damage), or :class:`StoreError`
    for a log that cannot be read.
    """
    uri = path.resolve().as_uri()
    wal, shm = _log_files(path)
    found = wal.exists() or shm.exists()
    for suffix, query_only in (("?mode=rw", True), ("?mode=ro", False)):
        try:
            db = sqlite3.connect(uri + suffix, uri=True, timeout=busy_timeout_s, isolation_level=None)
        except sqlite3.OperationalError as exc:
            if _sqlite_code(exc) not in (_SQLITE_CANTOPEN, _SQLITE_READONLY, _SQLITE_IOERR):
                raise
            continue
        try:
            if query_only:
                db.execute("PRAGMA query_only = ON")
            # Connecting is lazy: this first read opens the file and its log, or fails.
            _retry_while_busy(lambda: db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone(), busy_timeout_s)
            return db
        except sqlite3.DatabaseError as exc:
            db.close()
            if not found:
                # A file that proves malformed, or a disk too full for the -shm file,
                # fails every other opener too: no one else is using what this made.
                _remove_empty_log(wal, shm)
            # A full disk answers SQLITE_IOERR when the -shm file cannot grow.
            if _sqlite_code(exc) not in (_SQLITE_CANTOPEN, _SQLITE_READONLY, _SQLITE_IOERR):
                raise
    if wal.exists() and wal.stat().st_size > 0:
        raise StoreError(
            f"{path}: cannot be read here: its write-ahead log {wal.name} holds data that SQLite reads only with a "
            f"{shm.name} file, which cannot be made or opened there (read-only media, or a full disk); copy the store and its "
            f"{wal.name} to writable storage and read the copy"
        )
    db = sqlite3.connect(uri + "?mode=ro&immutable=1", uri=True, isolation_level=None)
    try:
        db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
    except BaseException:
        db.close()
        raise
    return db


def _remove_empty_log(wal: Path, shm: Path) -> None:
    """Remove an empty -wal file and its -shm that opening a malformed file made."""
    try:
        if wal.exists() and wal.stat().st_size > 0:
            return
        wal.unlink(missing_ok=True)
        shm.unlink(missing_ok=True)
    except OSError:
        pass  # read-only media: then SQLite could not have made them either


def _empty_store_connection() -> sqlite3.Connection:
    """An empty store held in memory, read-only: what a reader sees of an empty database
    (the file itself is neither read further nor written)."""
    db = sqlite3.connect(":memory:", isolation_level=None)
    for statement in filter(str.strip, _SCHEMA.split(";")):
        db.execute(statement)
    db.execute("PRAGMA query_only = ON")
    return db


# -- failures: one line that names the store and the cause ---------------------------------
class StoreError(Exception):
    """The store at a path cannot be used as asked: a full disk, damage, or media it cannot
    be read or written on. Its message is one line naming the store and the cause."""


class StoreFullError(StoreError):
    """The disk holding the store is full. Not an input error: what was recorded as done
    stays, and the same command finishes the rest once there is space again."""


class StoreCorruptError(StoreError, InputError):
    """The store's file is damaged: an input error, like any corrupt or truncated input file."""


class StoreReadOnlyError(StoreError, InputError):
    """A writer was given a store where it cannot write (read-only media, file or folder):
    an input error naming the ``--store`` at fault, found before anything is written."""


_FULL_ADVICE = "every cell recorded as done is kept; free some space and run the same command again"
_NEARLY_FULL_BYTES = 1 << 20


def store_failure(path: Path, exc: BaseException | None, *, writing: bool) -> StoreError | None:
    """The :class:`StoreError` that ``exc``, raised while using the store at ``path``,
    stands for; None when it is no failure of the store's file or disk (a lock held too
    long, a bug), which then keeps its traceback.

    The exceptions ``exc`` was raised while handling count too: a full disk that failed a
    commit is often reported last as the failed statement that followed it.
    """
    seen = set()
    while exc is not None and id(exc) not in seen and not isinstance(exc, StoreError):
        seen.add(id(exc))
        failure = _one_failure(path, exc, writing=writing)
        if failure is not None:
            return failure
        exc = exc.__cause__ or exc.__context__
    return None


def _one_failure(path: Path, exc: BaseException, *, writing: bool) -> StoreError | None:
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        where = f" writing {exc.filename}" if exc.filename else ""
        return StoreFullError(f"{path}: the disk is full (no space left on the device{where}); {_FULL_ADVICE}")
    if not isinstance(exc, sqlite3.DatabaseError):
        return None
    code = _sqlite_code(exc)
    if code == _SQLITE_FULL:
        return StoreFullError(f"{path}: the disk is full (SQLite: {exc}); {_FULL_ADVICE}")
    if code == _SQLITE_IOERR:
        # SQLite reports a -shm file it could not grow as an I/O error, not as a full disk.
        free = _free_bytes(path)
        if free is not None and free < _NEARLY_FULL_BYTES:
            return StoreFullError(f"{path}: the disk is full (SQLite: {exc}, with {free // 1024} KiB free); {_FULL_ADVICE}")
        return StoreError(f"{path}: the disk failed to read or write the store (SQLite: {exc}, {exc.sqlite_errorname})")
    if code in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
        return StoreCorruptError(
            f"{path}: the store's file is damaged (SQLite: {exc}; PRAGMA integrity_check: {_integrity_verdict(path)}); "
            "restore a copy of it or pass another --store"
        )
    if code in (_SQLITE_READONLY, _SQLITE_CANTOPEN):
        if writing:
            return StoreReadOnlyError(
                f"{path}: cannot write the store: {_why_not_writable(path)} (SQLite: {exc}); commands that only read it "
                "(status, runs, fit, report) work there, but run needs a --store on writable storage"
            )
        return StoreError(f"{path}: cannot open the store to read it (SQLite: {exc})")
    return None


def _free_bytes(path: Path) -> int | None:
    try:
        return shutil.disk_usage(path.parent).free
    except OSError:
        return None


def _why_not_writable(path: Path) -> str:
    folder = path.parent
    try:
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return f"{folder} is on read-only media"
    except OSError:
        pass
    if path.exists() and not os.access(path, os.W_OK):
        return "the file is read-only"
    if not os.access(folder, os.W_OK):
        return f"its folder {folder} is read-only"
    return "the file or its folder cannot be written"


def _integrity_verdict(path: Path) -> str:
    """What ``PRAGMA integrity_check`` says of the file at ``path``, on one line."""
    wal, _ = _log_files(path)
    # immutable=1 makes no -wal or -shm file beside a damaged file; with a log, read it too.
    suffix = "?mode=ro" if wal.exists() else "?mode=ro&immutable=1"
    try:
        db = sqlite3.connect(path.resolve().as_uri() + suffix, uri=True, timeout=5.0)
    except sqlite3.Error as exc:
        return f"could not run ({exc})"
    try:
        rows = [str(row[0]) for row in db.execute("PRAGMA integrity_check(4)")]
    except sqlite3.Error as exc:
        # A damaged b-tree can stop the whole check; checking table by table names the
        # tables it is in.
        rows = [f"{exc}"]
        try:
            tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            broken = []
            for table in tables:
                try:
                    verdict = [str(row[0]) for row in db.execute(f'PRAGMA integrity_check("{table.replace(chr(34), chr(34) * 2)}")')]
                except sqlite3.Error as table_exc:
                    verdict = [str(table_exc)]
                if verdict != ["ok"]:
                    broken.append(f"table {table}: {', '.join(verdict)}")
            rows = broken or rows
        except sqlite3.Error:
            pass
    finally:
        db.close()
    problems = [line for row in rows for line in row.splitlines() if line.strip() and not line.startswith("*** in database")]
    if problems == ["ok"]:
        return "ok"
    return "; ".join(problems[:3]) + ("; ..." if len(problems) > 3 else "")


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
        if exc_type is None:
            try:
                self._db.execute("COMMIT")
            except BaseException:
                # A commit that failed (a full disk) may leave the transaction open; end
                # it, so the connection can still release cells and close cleanly.
                self._rollback()
                raise
        else:
            self._rollback()  # SQLite may already have rolled back (after SQLITE_FULL, say)
        return False

    def _rollback(self) -> None:
        if self._db.in_transaction:
            try:
                self._db.execute("ROLLBACK")
            except sqlite3.Error:
                pass  # the error that brought us here is the one to report
