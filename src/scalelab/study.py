"""The Python API around one study: load it, run it, read its runs."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from scalelab.errors import InputError
from scalelab.spec import StudySpec, load_spec, parse_spec, seed_group_key
from scalelab.store import RunStore, is_store

DEFAULT_STORE = "scalelab.db"


def resolve_spec(path_or_name: str | Path, *, store: str | Path = DEFAULT_STORE) -> StudySpec:
    """A study from its file, or by name from the store (the file wins when both exist).

    The content of the files its cells read joins their ids, hashed through the store's
    cache (by path, size and mtime), so ``run``, ``--dry-run``, ``status``, ``runs`` and
    ``fit`` agree on the ids without reading a large dataset in full each time. A study
    loaded by name whose data files cannot be read here (another folder, say) takes their
    hashes from the cells the store holds for it.
    """
    from scalelab.data.fingerprint import ContentHashes

    candidate = Path(path_or_name).expanduser()
    if candidate.is_file() and _is_sqlite(candidate):
        raise InputError(f"{candidate}: is a store, not a study; pass the study's name or file, and this file as --store")
    if candidate.suffix == ".toml" or candidate.is_file():
        return load_spec(candidate, hashes=ContentHashes(RunStore.read_file_hashes(store)))
    with RunStore.open_existing(store) as opened:
        info = opened.study_info(str(path_or_name))
        hashes = ContentHashes(opened.file_hashes(), recorded=opened.stored_data_hashes(str(path_or_name)))
    return parse_spec(info["raw"], source=info["source"] or f"{store}:{path_or_name}", hashes=hashes)


def _is_sqlite(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(16) == b"SQLite format 3\x00"


class Study:
    """A study bound to a run store.

    Examples
    --------
    >>> study = load_study("examples/digits-mlp.toml", store="runs.db")  # doctest: +SKIP
    >>> study.run(workers=2)                                             # doctest: +SKIP
    >>> study.runs()[["width", "data_fraction", "test_error"]]           # doctest: +SKIP
    """

    def __init__(self, spec: StudySpec, *, store: str | Path = DEFAULT_STORE):
        self.spec = spec
        self.store_path = Path(store).expanduser()

    @property
    def name(self) -> str:
        return self.spec.name

    def run(
        self,
        *,
        workers: int | None = None,
        threads: int | None = None,
        executor: str = "local",
        address: str | None = None,
        retry_failed: bool = False,
        progress: bool = True,
        track: str | None = None,
        track_every_s: float = 30.0,
    ):
        """Run or resume every unfinished cell; returns a :class:`~scalelab.execute.runner.RunSummary`.

        ``threads``: torch threads per local worker; by default each worker takes its share
        of the cores, fewer while other processes keep some busy
        (:mod:`scalelab.execute.threads`).

        ``executor``: ``"local"`` (a pool of ``workers`` processes, default one per core) or
        ``"ray"`` (actors on the Ray cluster at ``address``, or on a private local instance
        when it is ``None``; each reserves the study's ``[resources]``).

        ``track``: ``"mlflow"`` mirrors the runs into MLflow as cells finish (at most once
        every ``track_every_s`` seconds), after the run, and after an interrupt
        (:mod:`scalelab.tracking`); the study's ``[tracking] mlflow`` URI alone does too. The summary's ``tracked`` is then the (target, counts) logged. A failure
        to log raises :class:`~scalelab.tracking.TrackingError`, which carries the run's
        summary: the store keeps every result.

        Data problems are checked first (:func:`scalelab.estimate.preflight`) and raise
        :class:`InputError` before the store is created or changed.
        """
        from scalelab.estimate import estimate_grid, preflight
        from scalelab.execute.local import LocalExecutor, available_cores
        from scalelab.execute.runner import Interrupted, run_study_cells
        from scalelab.hardware import CPU_PEAK_KEY, measure_cpu_peak
        from scalelab.tracking import LiveSync, TrackingError, resolve_target, sync_study

        if not track_every_s >= 0:
            raise InputError(f"--track-every {track_every_s}: must be a number of seconds, 0 or more")
        if workers is not None and workers < 1:
            raise InputError(f"--workers {workers}: must be at least 1")
        if threads is not None and threads < 1:
            raise InputError(f"--threads {threads}: must be at least 1")
        if not self.store_path.parent.is_dir():  # checked before any worker starts or data loads
            raise InputError(f"{self.store_path}: the store's folder {self.store_path.parent} does not exist")
        # Checked before anything trains: a missing mlflow or a wrong URI found afterwards
        # would leave the runs unlogged.
        target = resolve_target(self.spec, track=track)
        if executor == "local":
            if address is not None:
                raise InputError("--address is for --executor ray")
            pool = LocalExecutor(workers=workers or available_cores(), threads=threads)
        elif executor == "ray":
            if threads is not None:
                raise InputError("--threads is for the local executor; on Ray a cell's threads are its [resources] cpus")
            from scalelab.execute.ray_pool import RayExecutor

            pool = RayExecutor(workers=workers, address=address, **self.spec.resources)
        else:
            raise InputError(f"executor {executor!r} is not available; use 'local' or 'ray'")
        # This machine's matmul peak, for every run's MFU, is measured once per store (kept
        # when the study is registered): after the checks, so a bad study costs nothing,
        # and before any worker competes for the cores.
        cpu_peak = _stored_cpu_peak(self.store_path)
        shapes = None
        try:
            if cpu_peak is None:
                shapes = preflight(self.spec, local=executor == "local")
                cpu_peak = measure_cpu_peak()
            if executor == "local":
                # Start the workers early: each is a new Python process importing torch,
                # seconds of work that the checks and the cost estimate below (loading the
                # data, counting FLOPs) overlap instead of preceding. Failed checks stop them.
                pool.start(self._tasks_to_run(retry_failed), preload=_distinct_datasets(self.spec))
            if shapes is None:
                shapes = preflight(self.spec, local=executor == "local")
            if executor == "ray":
                # Ray starts after the checks: starting a cluster for a study that fails
                # them would cost more than the overlap gains.
                pool.start(self._tasks_to_run(retry_failed), preload=_distinct_datasets(self.spec))
            costs = {e.cell_id: e.flops for e in estimate_grid(self.spec, shapes, workers=workers or available_cores(), calibrate_s=0)}
            with RunStore.open(self.store_path) as store:
                store.register_study(self.spec, costs=costs)
                # Unfinished cells read their data where the spec finds it now (a moved copy
                # keeps its cells' ids), and the file hashes are kept for the next command.
                store.refresh_unfinished_configs(self.spec.cells)
                store.remember_file_hashes(self.spec.file_hashes)
                if store.meta(CPU_PEAK_KEY) is None:
                    store.set_meta(CPU_PEAK_KEY, cpu_peak)
                live = LiveSync(self.spec, store, target, every_s=track_every_s) if target is not None else None
                try:
                    summary = run_study_cells(self.spec, store, pool, retry_failed=retry_failed, progress=progress, on_finished=live)
                except Interrupted as stopped:
                    if target is not None:  # the cells finished before the stop are logged too
                        try:
                            sync_study(self.spec, store, target)
                        except TrackingError as failure:
                            failure.interrupted = stopped
                            raise
                    raise
                if target is not None:
                    try:
                        # Kept on the summary for the caller's report: where the runs went.
                        summary.tracked = (target, sync_study(self.spec, store, target))
                    except TrackingError as failure:
                        failure.summary = summary
                        raise
                return summary
        except BaseException:
            pool.stop()  # the runner stops its pool itself; this covers a failure before it ran
            raise

    def _tasks_to_run(self, retry_failed: bool) -> int:
        """At most how many tasks a run hands to workers: the cells the store does not hold
        finished (all, without a store), and no more than the seed groups under ``batch_seeds``."""
        tasks = len({seed_group_key(c.config) or c.cell_id for c in self.spec.cells})
        if not self.store_path.exists() or self.store_path.stat().st_size == 0:
            return tasks
        finished = ("done",) if retry_failed else ("done", "failed", "diverged")
        with RunStore.open_existing(self.store_path) as store:
            return min(tasks, len(self.spec.cells) - store.count_in_states((c.cell_id for c in self.spec.cells), finished))

    def status(self) -> dict[str, int]:
        """Number of this grid's cells in each state (a cell the store never ran is pending)."""
        from scalelab.store import STATES

        states = self.runs()["state"]
        return {state: int((states == state).sum()) for state in STATES}

    def runs(self) -> pd.DataFrame:
        """One row per cell of this study's grid (as its file reads now), every recorded
        field a column (see :func:`scalelab.runs.runs_frame`)."""
        from scalelab.runs import runs_frame

        with RunStore.open_existing(self.store_path) as store:
            store.study_info(self.name)  # a study never run on this store is an input error
            return runs_frame(store, self.name, spec=self.spec)

    def curves(self, *, x=("n_train",), y: str | None = None, group=None):
        """Which runs form each curve of a law of ``y`` (default: the study's target) against
        ``x``, and which were left out and why: a :class:`~scalelab.curves.CurveSet`, the one
        that ``fit``, ``backtest``, ``plan``, the CLI and the report all use."""
        from scalelab.curves import study_curves

        return study_curves(self.spec, self.runs(), x_cols=list(x), y_col=y or self.spec.target_metric, group=group)

    def fit(self, *, x=("n_train",), y: str | None = None, group=None, form: str = "auto", predict=None, level: float = 0.8,
            chance: float | None = None, n_boot: int = 1000):  # fmt: skip
        """One law per curve (:meth:`curves`), as ``scalelab fit`` fits them: a
        :class:`~scalelab.laws.LawSet` keyed by each curve's label (its ``by`` column is
        ``curve``). Its ``results`` are the dicts in the JSON shape of ``scalelab fit``
        (``group``, ``curve``, ``form``, ``params``, ``at_bound``, ``predictions``, or
        ``error``), each fitted one with its ``law`` (a :class:`~scalelab.laws.FittedLaw`).
        ``predict``: x values (``"N,D"`` strings, or numbers, for two x) whose predictions
        the dicts hold."""
        from scalelab.fitting import fit_source
        from scalelab.laws.lawset import LawSet, check_form

        check_form(form)  # before the runs are read or fitted
        src, y_col, chance = self._source(x, y, group, chance)
        results = fit_source(src, x_cols=list(x), y_col=y_col, form=form, predict=_as_text(predict), level=level, chance=chance, n_boot=n_boot)
        results = [{("law" if k == "_law" else k): v for k, v in r.items()} for r in results]
        return LawSet(results, by=("curve",), x=list(x), y=y_col)

    def backtest(self, *, x=("n_train",), y: str | None = None, group=None, forms=None, holdout: int = 1, gap: float = 1.0,
                 level: float = 0.8, chance: float | None = None, n_boot: int = 1000) -> list[dict]:  # fmt: skip
        """Each form's extrapolation to the held-out largest scale(s) of every curve, as
        ``scalelab backtest`` scores it: ``[{"group", "curve", "rows": [BacktestRow, ...]}]``."""
        from scalelab.fitting import backtest_source
        from scalelab.laws.core import ONE_X_AUTO, TWO_X_AUTO

        src, y_col, chance = self._source(x, y, group, chance)
        forms = list(forms or [*(ONE_X_AUTO if len(x) == 1 else TWO_X_AUTO), "auto"])
        return backtest_source(src, x_cols=list(x), y_col=y_col, forms=forms, holdout=holdout, gap=gap, level=level, chance=chance, n_boot=n_boot)

    def plan(self, *, budget: float | None = None, target: float | None = None, hardware: str | None = None,
             precision: str | None = None, utilisation: float | None = None, group=None, level: float = 0.8,
             chance: float | None = None, n_boot: int = 1000, approach: str = "joint", unique_tokens: float | None = None) -> dict:  # fmt: skip
        """A plan per family, as ``scalelab plan`` makes it: ``{"plans": [...], "skipped": [...]}``,
        each plan with its law (``_law``), the budget's split or the target's needs, the best
        point and what doubling buys, and with ``hardware`` the hours on one such device.
        ``unique_tokens``: only that many distinct tokens (samples, for other families)
        exist; the budget is planned by the data-constrained law, epochs included."""
        from scalelab.fitting import plan_source

        if budget is not None and target is not None:
            raise InputError("give one of budget and target, not both")
        if hardware is not None:
            from scalelab.hardware import check_hardware

            check_hardware(hardware, precision)
        from scalelab.curves import planning_x

        x = planning_x(self.spec)
        src, y_col, chance = self._source(x, None, group, chance)
        return plan_source(src, x_cols=list(x), y_col=y_col, flops_col="flops", budget=budget, target=target, hardware=hardware,
                           precision=precision, utilisation=utilisation, level=level, chance=chance, n_boot=n_boot, approach=approach,
                           unique=unique_tokens)  # fmt: skip

    def _source(self, x, y, group, chance):
        from scalelab.fitting import default_chance, study_source

        y_col = y or self.spec.target_metric
        src = study_source(self.spec, self.runs(), x_cols=list(x), y_col=y_col, group=group, store=str(self.store_path))
        return src, y_col, default_chance(src.table, y_col) if chance is None else chance

    def transfer(self, *, y: str | None = None, level: float = 0.8, n_boot: int = 1000):
        """Effective data transferred by fine-tuning (grid ``init_from = ["none", ...]``):
        a :class:`~scalelab.transfer.TransferAnalysis` with D_E and D_T per model and
        target fraction, with intervals, and the fit D_T = k·D_F^α·N^β."""
        from scalelab.transfer import study_transfer

        return study_transfer(self, y=y, level=level, n_boot=n_boot)

    def report(self, path: str | Path = "report.html", **options) -> Path:
        """Write the self-contained HTML report of this study to ``path``; returns the path.

        ``options`` are those of :func:`scalelab.report.build_report` (``x``, ``y``,
        ``group``, ``form``, ``level``, ``chance``, ``n_boot``).
        """
        from scalelab.report import build_report

        return build_report(self, **options).write(path)

    def _repr_html_(self) -> str:
        from scalelab.report import study_html

        return study_html(self)


def load_study(path_or_name: str | Path, *, store: str | Path = DEFAULT_STORE) -> Study:
    """Load a study from its TOML file, or by name from the store."""
    return Study(resolve_spec(path_or_name, store=store), store=store)


def _as_text(values) -> list[str] | None:
    """Prediction points as ``--predict`` takes them (``"N,D"`` for pairs)."""
    if values is None:
        return None
    return [",".join(str(float(v)) for v in value) if isinstance(value, (list, tuple)) else str(value) for value in values]


def _stored_cpu_peak(store_path: Path) -> dict | None:
    """The CPU peak a store already holds, read without writing to it (None for a new store)."""
    from scalelab.hardware import CPU_PEAK_KEY

    if not store_path.is_file() or store_path.stat().st_size == 0 or not is_store(store_path):
        return None  # a new store, or a file that RunStore.open refuses with its own message below
    with RunStore.open_existing(store_path) as store:
        return store.meta(CPU_PEAK_KEY)


def _distinct_datasets(spec: StudySpec) -> list[dict]:
    """One ``[data]`` configuration per dataset the study loads, its ``[pretrain]`` stage's
    included (workers load each once)."""
    from scalelab.data import dataset_key

    configs = [c.config["data"] for c in spec.cells] + [c.config["pretrain"]["data"] for c in spec.cells if "pretrain" in c.config]
    return list({dataset_key(config): config for config in configs}.values())
