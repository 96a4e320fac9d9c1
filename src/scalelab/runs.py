"""The runs table: one row per cell of a study, every recorded field a column."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pandas as pd

from scalelab.store import CellRecord, RunStore

# The order users see; any other recorded metric follows, alphabetically.
RUN_FIELDS = (
    "train_loss",
    "test_loss",
    "test_error",
    "val_loss",
    "val_error",
    "n_params",
    "n_train",
    "n_val",
    "n_test",
    "n_classes",
    "epochs",
    "steps",
    "flops",
    "flops_per_sample",
    "eval_flops",
    "wall_s",
    "train_s",
    "samples_per_s",
    "flops_per_s",
    "compute",
    "compute_unit",
    "device",
    "dtype",
    "seed",
    "threads",
    "torch_version",
    "diverged_step",
)


def runs_records(store: RunStore, study: str, *, spec=None) -> tuple[list[str], list[dict]]:
    """The study's cells in grid order, as column names and one dict per cell.

    Columns: ``cell_id``, ``state``, one per grid key, the recorded metrics
    (:data:`RUN_FIELDS` first), ``attempts`` and ``reason`` (why a cell failed or
    diverged, or which part of its stored record is unreadable). Cells without results,
    or whose stored results cannot be read, hold ``None`` for their metrics.

    With ``spec`` (a study as its file now reads), the cells are that grid's: each with
    what the store holds for its id, or ``pending`` when the store has never run it; the
    grid the store last registered for the study does not matter (see :func:`grid_changes`).
    """
    if spec is None:
        return _table(store.cells(study), list(store.study_info(study)["grid_keys"]))
    found = store.records_by_id(c.cell_id for c in spec.cells)
    records = [
        dataclasses.replace(found[c.cell_id], params=dict(c.params)) if c.cell_id in found
        else CellRecord(cell_id=c.cell_id, state="pending", config=c.config, params=dict(c.params), metrics={}, reason=None, attempts=0)
        for c in spec.cells
    ]  # fmt: skip
    return _table(records, list(spec.grid_keys))


CURVE_FIELDS = ("step", "samples", "tokens", "flops", "lr", "train_loss", "val_loss", "val_error")


def curve_records(store: RunStore, spec, columns: list[str], rows: list[dict]) -> tuple[list[str], list[dict]]:
    """The training curves of the runs in ``rows`` (from :func:`runs_records`): one dict
    per evaluation, with the run's ``cell_id``, its grid values and :data:`CURVE_FIELDS`."""
    grid_keys = [k for k in spec.grid_keys if k in columns]
    curves = store.curves(row["cell_id"] for row in rows)
    out = []
    for row in rows:
        for point in curves.get(row["cell_id"], []):
            out.append({"cell_id": row["cell_id"], **{k: row[k] for k in grid_keys}, **{f: point.get(f) for f in CURVE_FIELDS}})
    return ["cell_id", *grid_keys, *CURVE_FIELDS], out


@dataclass(frozen=True)
class GridChanges:
    """How a study file's grid differs from the one the store last ran for it."""

    new: int  # cells of the file the store has never run
    dropped: int  # cells of the store's grid no longer in the file
    dropped_done: int  # of those, cells done

    def describe(self, source: str) -> str | None:
        """One line for the terminal, or None when the file's grid is the store's."""
        if not self.new and not self.dropped:
            return None
        parts = []
        if self.new:
            parts.append(f"{self.new} cell{'s' * (self.new != 1)} of the file not run yet (pending)")
        if self.dropped:
            parts.append(f"{self.dropped} cell{'s' * (self.dropped != 1)} of the store's grid no longer in the file "
                         f"({self.dropped_done} done; left out)")  # fmt: skip
        return f"{source} differs from the grid the store last ran: " + "; ".join(parts)


def grid_changes(store: RunStore, spec) -> GridChanges:
    """Compare ``spec``'s grid with the one the store last registered under its name."""
    registered = store.study_cell_ids(spec.name) if spec.name in store.study_names() else []
    ids = {c.cell_id for c in spec.cells}
    stored = store.records_by_id(ids)
    dropped = [cell_id for cell_id in registered if cell_id not in ids]
    old = store.records_by_id(dropped)
    return GridChanges(new=sum(1 for c in spec.cells if c.cell_id not in stored), dropped=len(dropped),
                       dropped_done=sum(1 for r in old.values() if r.state == "done"))  # fmt: skip


def _table(records, grid_keys: list[str]) -> tuple[list[str], list[dict]]:
    """Column names and one row per record (see :func:`runs_records`)."""
    # The table's own columns are never a metric's too (a duplicated name breaks every reader).
    own = {"cell_id", "state", "attempts", "reason"}
    extra = sorted({k for r in records for k in r.metrics} - set(RUN_FIELDS) - set(grid_keys) - own)
    # A grid key can share its name with a recorded field (epochs, seed). The column
    # shows the grid value; where the recorded value differs (min_steps raised the
    # epochs, say), it is kept beside it as recorded_<name>.
    shadowed = [
        name
        for name in grid_keys
        if any(name in r.metrics and r.metrics[name] != r.params.get(name) for r in records)
    ]
    columns = [
        "cell_id",
        "state",
        *grid_keys,
        *[f for f in RUN_FIELDS if f not in grid_keys],
        *[f"recorded_{name}" for name in shadowed],
        *extra,
        "attempts",
        "reason",
    ]
    rows = []
    for record in records:
        # A record the store could not read in full (see CellRecord.unreadable) has
        # None for what is missing, and its reason says why.
        row = {"cell_id": record.cell_id, "state": record.state, **dict.fromkeys(grid_keys), **record.params}
        for name in shadowed:
            row[f"recorded_{name}"] = record.metrics.get(name)
        for name in columns[2 + len(grid_keys) :]:
            row.setdefault(name, record.metrics.get(name))
        row["attempts"] = record.attempts
        row["reason"] = record.reason
        rows.append(row)
    return columns, rows


def runs_frame(store: RunStore, study: str, *, spec=None) -> pd.DataFrame:
    """The runs table of :func:`runs_records` as a DataFrame."""
    columns, rows = runs_records(store, study, spec=spec)
    return pd.DataFrame(rows, columns=columns)
