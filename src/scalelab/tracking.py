"""Mirror a study's runs from the run store into MLflow.

The run store stays the record; MLflow gets a copy to browse and compare. One parent run
per study (tag ``scalelab.study``) holds one child run per cell (tags
``mlflow.parentRunId``, ``scalelab.cell_id``, ``scalelab.state``) with the cell's
configuration as parameters, its recorded numeric fields as metrics and, for torch runs,
its training curve as ``curve/<field>`` metrics by step.

A sync can be repeated at will: runs are looked up by their tags before any is created,
a cell already logged in its final state is skipped, and a cell whose state changed
(pending, then done) is updated in the run that already holds it.

Examples
--------
>>> target = resolve_target(spec, track="mlflow")          # doctest: +SKIP
>>> with RunStore.open_existing("runs.db") as store:       # doctest: +SKIP
...     sync_study(spec, store, target)
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass

from scalelab.errors import InputError

TRACKERS = ("mlflow",)
MLFLOW_MISSING = "tracking runs in MLflow needs the mlflow package: pip install -e '.[mlflow]'"
FINAL_STATES = ("done", "failed", "diverged")
# MLflow's own limits (mlflow.utils.validation); fixed here so that reading them needs no
# private import, and a value is cut to fit rather than refused by the server.
MAX_KEY_LENGTH = 250
MAX_PARAM_LENGTH = 6000
MAX_TAG_LENGTH = 8000
MAX_PER_BATCH = 100  # params and tags per log_batch call; metrics are sent 1000 at a time
# How a store state reads in MLflow: a diverged run is an outcome, not a failure; a pending
# cell waits for the next run (an interrupted study leaves some).
RUN_STATUS = {"done": "FINISHED", "diverged": "FINISHED", "failed": "FAILED", "running": "RUNNING", "pending": "SCHEDULED"}
CURVE_PREFIX = "curve/"


class TrackingError(RuntimeError):
    """Mirroring runs into MLflow failed after training; the run store holds every result.

    ``summary``: what the run did (a :class:`~scalelab.execute.runner.RunSummary`), when it
    finished; ``interrupted``: the :class:`~scalelab.execute.runner.Interrupted` that
    stopped it otherwise.
    """

    def __init__(self, message: str, *, summary=None, interrupted=None):
        super().__init__(message)
        self.summary = summary
        self.interrupted = interrupted


@dataclass(frozen=True)
class Target:
    """Where a study's runs go: an MLflow tracking URI and experiment name."""

    uri: str
    experiment: str


@dataclass(frozen=True)
class SyncCounts:
    """What one :func:`sync_study` did, in cells."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0


def resolve_target(spec, *, track: str | None = None) -> Target | None:
    """Where ``spec``'s runs are mirrored, or None when tracking is off; checked before training.

    Parameters
    ----------
    spec : StudySpec
        The study; its ``[tracking] mlflow`` URI alone turns tracking on.
    track : {"mlflow"} or None
        The tracker asked for (``--track``).

    Returns
    -------
    Target or None
        The tracking URI (``MLFLOW_TRACKING_URI`` when set, as MLflow's own tools read it,
        else the study's ``[tracking] mlflow``, else MLflow's default) and experiment (the
        study's ``[tracking] experiment``, else its name).

    Raises
    ------
    InputError
        When the tracker is unknown, mlflow is not installed, or the URI cannot be used.
    """
    settings = spec.tracking or {}
    if track is not None and track not in TRACKERS:
        raise InputError(f"--track {track!r}: unknown tracker; use {', '.join(TRACKERS)}")
    if track is None and not settings.get("mlflow"):
        return None
    try:
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise InputError(MLFLOW_MISSING) from None
    uri = os.environ.get("MLFLOW_TRACKING_URI") or settings.get("mlflow") or _mlflow_default_uri()
    target = Target(uri=uri, experiment=settings.get("experiment") or spec.name)
    # One cheap query now, so a wrong URI (or a server that is down) is refused before
    # hours of training, not after.
    try:
        MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
    except Exception as exc:  # noqa: BLE001 - whatever MLflow raises here is the URI's fault; it is reported
        raise InputError(f"MLflow tracking URI {uri!r} cannot be used: {_first_line(exc)}") from None
    return target


def sync_study(spec, store, target: Target) -> SyncCounts:
    """Log ``spec``'s cells, as ``store`` holds them now, to MLflow at ``target``.

    Parameters
    ----------
    spec : StudySpec
        The study whose grid is mirrored (cells the store never ran are logged pending).
    store : RunStore
        An open run store holding the study.
    target : Target
        From :func:`resolve_target`.

    Returns
    -------
    SyncCounts
        Child runs created, updated and left as they were.

    Raises
    ------
    TrackingError
        With one line saying what MLflow refused; the run store is not changed.
    """
    try:
        return _sync(spec, store, target)
    except TrackingError:
        raise
    except Exception as exc:  # MLflow, its HTTP client and its database raise many kinds; each is reported
        raise TrackingError(f"logging to MLflow at {target.uri} failed: {_first_line(exc)}") from exc


class LiveSync:
    """Mirrors a study into MLflow while it runs: called as each cell finishes, it syncs
    (:func:`sync_study`) at most once every ``every_s`` seconds, so a long study can be
    followed in MLflow and a study of many quick cells is not slowed by a query per cell.
    The run's final sync still happens after the last cell. A failure here stops the live
    syncing and is kept in ``failure``; the final sync reports what MLflow refuses then."""

    def __init__(self, spec, store, target: Target, *, every_s: float = 30.0):
        self.spec, self.store, self.target, self.every_s = spec, store, target, every_s
        self.last = time.monotonic()
        self.failure: TrackingError | None = None

    def __call__(self) -> None:
        if self.failure is not None or time.monotonic() - self.last < self.every_s:
            return
        try:
            sync_study(self.spec, self.store, self.target)
        except TrackingError as failure:
            self.failure = failure
        self.last = time.monotonic()


def _sync(spec, store, target: Target) -> SyncCounts:
    from mlflow.tracking import MlflowClient

    from scalelab.store import CellRecord

    client = MlflowClient(tracking_uri=target.uri)
    experiment_id = _experiment_id(client, target.experiment)
    parent = _find_parent(client, experiment_id, spec.name) or client.create_run(
        experiment_id, run_name=spec.name, tags={"scalelab.study": spec.name, "scalelab.role": "study"}
    )
    parent_id = parent.info.run_id
    children = _children(client, experiment_id, parent_id)

    found = store.records_by_id(c.cell_id for c in spec.cells)
    curves = store.curves(cid for cid, r in found.items() if r.state == "done")
    created = updated = unchanged = 0
    for cell in spec.cells:
        record = found.get(cell.cell_id) or CellRecord(cell_id=cell.cell_id, state="pending", config=cell.config,
                                                       params=dict(cell.params), metrics={}, reason=None, attempts=0)  # fmt: skip
        run = children.get(cell.cell_id)
        # A cell logged in the state (and attempt) the store holds has nothing new: a
        # finished one is never logged twice, and a retried one is logged again.
        logged_as = (run.data.tags.get("scalelab.state"), run.data.tags.get("scalelab.attempts")) if run is not None else None
        if logged_as == (record.state, str(record.attempts)):
            unchanged += 1
            continue
        if run is None:
            run = client.create_run(experiment_id, run_name=cell.cell_id, tags={
                "mlflow.parentRunId": parent_id, "scalelab.study": spec.name, "scalelab.cell_id": cell.cell_id,
            })  # fmt: skip
            created += 1
        else:
            updated += 1
        _log_cell(client, run, cell, record, curves.get(cell.cell_id, []))

    every_final = all((found.get(c.cell_id) is not None and found[c.cell_id].state in FINAL_STATES) for c in spec.cells)
    counts = {f"scalelab.{state}": n for state, n in store.state_counts(spec.name).items()}
    client.log_batch(parent_id, tags=_tags({"scalelab.cells": len(spec.cells), **counts}))
    _set_status(client, parent_id, "FINISHED" if every_final else "SCHEDULED")
    return SyncCounts(created=created, updated=updated, unchanged=unchanged)


def _experiment_id(client, name: str) -> str:
    """The id of experiment ``name``, created when MLflow has none of that name."""
    from mlflow.exceptions import MlflowException

    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        try:
            return client.create_experiment(name)
        except MlflowException:
            # Another process created it between the two calls; anything else is raised.
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                raise
    if experiment.lifecycle_stage != "active":
        raise TrackingError(f"MLflow experiment {name!r} is deleted; restore it (mlflow experiments restore) or set [tracking] experiment")
    return experiment.experiment_id


def _find_parent(client, experiment_id: str, study: str):
    """The study's parent run in the experiment, or None.

    The filter names only the constant role tag: a study name may hold quotes, which
    MLflow's filter strings cannot escape, so the name is compared here."""
    for run in _search(client, experiment_id, "tags.`scalelab.role` = 'study'"):
        if run.data.tags.get("scalelab.study") == study:
            return run
    return None


def _children(client, experiment_id: str, parent_id: str) -> dict:
    """The parent's child runs by their ``scalelab.cell_id`` tag."""
    runs = {}
    for run in _search(client, experiment_id, f"tags.`mlflow.parentRunId` = '{parent_id}'"):
        cell_id = run.data.tags.get("scalelab.cell_id")
        if cell_id is not None:
            runs.setdefault(cell_id, run)
    return runs


def _search(client, experiment_id: str, filter_string: str):
    """Every active run of the experiment that matches, page by page."""
    token = None
    while True:
        page = client.search_runs([experiment_id], filter_string=filter_string, max_results=1000, page_token=token)
        yield from page
        token = page.token
        if not token:
            return


def _log_cell(client, run, cell, record, curve: list[dict]) -> None:
    """Bring one child run up to the cell's record: parameters it lacks, its tags, metrics
    (and curve) when the cell is finished, and the status."""
    from mlflow.entities import Metric, Param

    run_id = run.info.run_id
    # MLflow refuses to change a logged parameter. A cell's id fixes its configuration,
    # except where an unfinished cell's data moved (the store refreshes its path); the
    # value logged first stays.
    logged = run.data.params
    params = [Param(k, v) for k, v in flatten_params(cell).items() if k not in logged]
    tags = {"scalelab.state": record.state, "scalelab.attempts": record.attempts}
    if record.reason:
        tags["scalelab.reason"] = record.reason
    stamp = int(time.time() * 1000)
    metrics = []
    if record.state in FINAL_STATES:
        metrics = [Metric(_key(k), v, stamp, 0) for k, v in numeric_metrics(record.metrics).items()]
        for point in curve:
            step = point.get("step")
            if not isinstance(step, int):
                continue
            for name, value in numeric_metrics({k: v for k, v in point.items() if k != "step"}).items():
                metrics.append(Metric(_key(CURVE_PREFIX + name), value, stamp, step))
    tag_list = _tags(tags)
    for i in range(0, max(len(params), len(tag_list), 1), MAX_PER_BATCH):
        client.log_batch(run_id, params=params[i : i + MAX_PER_BATCH], tags=tag_list[i : i + MAX_PER_BATCH])
    for i in range(0, len(metrics), 1000):
        client.log_batch(run_id, metrics=metrics[i : i + 1000])
    _set_status(client, run_id, RUN_STATUS.get(record.state, "SCHEDULED"))


def flatten_params(cell) -> dict[str, str]:
    """A cell's parameters for MLflow: its grid keys as written, then its resolved
    configuration flattened to dotted keys (``model.width``), each value a string cut to
    MLflow's length limit.

    Examples
    --------
    >>> from scalelab.spec import Cell
    >>> flatten_params(Cell("c1", {"model": {"width": 8}}, {"width": 8}))
    {'width': '8', 'model.width': '8'}
    """
    flat = {_key(str(k)): _text(v, MAX_PARAM_LENGTH) for k, v in cell.params.items()}

    def walk(prefix: str, value) -> None:
        if isinstance(value, dict) and value:
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        elif prefix:
            flat.setdefault(_key(prefix), _text(value, MAX_PARAM_LENGTH))

    walk("", cell.config)
    return flat


def numeric_metrics(values: dict) -> dict[str, float]:
    """The numbers of a record (booleans and text left out), as floats.

    Examples
    --------
    >>> numeric_metrics({"test_error": 0.1, "device": "cpu", "epochs": 3, "ok": True})
    {'test_error': 0.1, 'epochs': 3.0}
    """
    # A diverged run's inf or nan loss is kept: MLflow stores both.
    return {str(k): float(v) for k, v in values.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _tags(values: dict) -> list:
    from mlflow.entities import RunTag

    return [RunTag(_key(k), _text(v, MAX_TAG_LENGTH)) for k, v in values.items()]


def _set_status(client, run_id: str, status: str) -> None:
    if status in ("FINISHED", "FAILED", "KILLED"):
        client.set_terminated(run_id, status=status)
    else:
        client.update_run(run_id, status=status)


def _text(value, limit: int) -> str:
    """A value as MLflow stores it: text, JSON for lists and tables, cut to ``limit``."""
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _key(name: str) -> str:
    return name[:MAX_KEY_LENGTH]


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}".rstrip(": ")


def _mlflow_default_uri() -> str:
    """MLflow's own default (``sqlite:///mlflow.db`` or ``./mlruns``, by version)."""
    import mlflow

    return mlflow.get_tracking_uri()
