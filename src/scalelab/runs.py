"""The runs table: one row per cell of a study, every recorded field a column."""

from __future__ import annotations

import pandas as pd

from scalelab.store import RunStore

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


def runs_records(store: RunStore, study: str) -> tuple[list[str], list[dict]]:
    """The study's cells in grid order, as column names and one dict per cell.

    Columns: ``cell_id``, ``state``, one per grid key, the recorded metrics
    (:data:`RUN_FIELDS` first), ``attempts`` and ``reason`` (why a cell failed or
    diverged, or which part of its stored record is unreadable). Cells without results,
    or whose stored results cannot be read, hold ``None`` for their metrics.
    """
    info = store.study_info(study)
    grid_keys = list(info["grid_keys"])
    records = store.cells(study)
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


def runs_frame(store: RunStore, study: str) -> pd.DataFrame:
    """The runs table of :func:`runs_records` as a DataFrame."""
    columns, rows = runs_records(store, study)
    return pd.DataFrame(rows, columns=columns)
