"""The coordinator: claims cells from the store, feeds an executor, records results.

Only this loop writes to the store. It trains the ``[pretrain]`` checkpoints its cells
need first (:mod:`scalelab.execute.pretraining`), on the same executor. It renews the leases of the cells it holds (the
heartbeat), turns Ctrl-C and SIGTERM into a clean stop that returns unfinished cells to
``pending``, and retries a cell whose worker died, up to ``max_attempts`` worker deaths
in this run: a cell released by a signal or left behind by a dead coordinator has not
been tried and failed, so those releases are not attempts.
"""

from __future__ import annotations

import signal
import threading
import time
from dataclasses import dataclass, field

from scalelab.execute.local import WorkerLost
from scalelab.execute.pretraining import PretrainStage
from scalelab.execute.work import CellResult
from scalelab.hardware import CPU_PEAK_KEY, run_mfu
from scalelab.spec import seed_group_key
from scalelab.store import DEFAULT_LEASE_S, RunStore, new_owner_id


class Interrupted(Exception):
    """The run was stopped by SIGINT or SIGTERM; unfinished cells went back to pending."""

    def __init__(self, signum: int):
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum


@dataclass
class RunSummary:
    """What one call of :func:`run_study_cells` did."""

    ran: int = 0
    pretrained: int = 0  # checkpoints of the [pretrain] stage trained by this call
    counts: dict = field(default_factory=dict)  # final state counts of the study
    busy_elsewhere: int = 0  # cells another live coordinator was still running
    wall_s: float = 0.0


class _Progress:
    """A rich progress bar with an ETA on stderr (silent when ``show`` is False)."""

    def __init__(self, *, total: int, finished: int, show: bool):
        self._bar = None
        if not show:
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self._bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        self._bar.start()
        self._task = self._bar.add_task("cells", total=total, completed=finished, status="")

    def update(self, *, advance: int, counts: dict, pretraining: str = "") -> None:
        if self._bar is None:
            return
        status = " ".join(f"{state} {n}" for state, n in counts.items() if n and state in ("failed", "diverged"))
        self._bar.update(self._task, advance=advance, status=" ".join(filter(None, [pretraining, status])))

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


def run_study_cells(
    spec,
    store: RunStore,
    executor,
    *,
    retry_failed: bool = False,
    progress: bool = True,
    lease_s: float = DEFAULT_LEASE_S,
    max_attempts: int = 2,
    on_finished=None,
) -> RunSummary:
    """Run every unfinished cell of a registered study; return what happened.

    ``on_finished``, when given, is called with no argument after each cell's result is in
    the store (a tracker that mirrors the runs elsewhere as they finish).
    Raises :class:`Interrupted` after a clean stop on SIGINT or SIGTERM.
    """
    started = time.perf_counter()
    owner = new_owner_id()
    if retry_failed:
        store.reset_failed(spec.name)
    store.reclaim_dead()
    counts = store.state_counts(spec.name)
    to_run = counts["pending"] + counts["running"]
    summary = RunSummary()
    pretraining = PretrainStage(spec, store, max_attempts=max_attempts)
    cpu_peak = store.meta(CPU_PEAK_KEY)  # measured once per store, before any worker started

    stop_signal: list[int] = []

    def on_signal(signum, _frame):
        stop_signal.append(signum)

    # Signal handlers can only be installed from the main thread (a notebook may call us elsewhere).
    handled = (signal.SIGINT, signal.SIGTERM) if threading.current_thread() is threading.main_thread() else ()
    previous = {s: signal.signal(s, on_signal) for s in handled}
    bar = _Progress(total=sum(counts.values()), finished=sum(counts[s] for s in ("done", "failed", "diverged")), show=progress)
    # Seed siblings under batch_seeds are claimed and trained as one task.
    group_of = {cell.cell_id: key for cell in spec.cells if (key := seed_group_key(cell.config))}
    most_tasks = len(spec.cells) - len(group_of) + len(set(group_of.values()))
    executor.start(min(to_run, most_tasks) + pretraining.queued)
    last_renewal = time.monotonic()
    deaths: dict[str, int] = {}  # worker deaths per cell in this run: what a retry counts
    clean = False

    def pretrain_status() -> str:
        return f"pretrained {pretraining.trained}/{pretraining.total}" if pretraining.total else ""

    try:
        while not stop_signal:
            # Pretraining runs go first: the cells that need their checkpoints wait for them.
            for task in pretraining.next_tasks(executor.idle_slots()):
                executor.submit(task)
            idle = executor.idle_slots()
            if idle:
                tasks: dict[str, list[tuple[str, dict]]] = {}
                claimed = store.claim(spec.name, owner, limit=idle, lease_s=lease_s, group_of=group_of, skip=pretraining.waiting_cells())
                submitted: set[str] = set()
                try:
                    for cell in claimed:
                        tasks.setdefault(group_of.get(cell.cell_id) or cell.cell_id, []).append((cell.cell_id, pretraining.prepared(cell.config)))
                    for task in tasks.values():
                        executor.submit(task)
                        submitted.update(cell_id for cell_id, _ in task)
                except BaseException:
                    # Claimed but never handed to a worker (a checkpoint file changed, say):
                    # back to pending now, not left running until the lease expires.
                    store.release([c.cell_id for c in claimed if c.cell_id not in submitted], owner)
                    raise
            if not executor.in_flight():
                break
            for event in executor.wait(timeout=0.5):
                if stop_signal and isinstance(event, WorkerLost):
                    # A group-wide SIGTERM killed the worker too: its cell goes back to pending
                    # (it has left the executor's in-flight list); later results still count.
                    if not pretraining.owns(event.cell_id):
                        store.release([event.cell_id], owner)
                    continue
                if pretraining.owns(event.cell_id):
                    blocked, reason = pretraining.record(event)
                    failed = store.fail_pending(blocked, reason) if blocked else 0
                    bar.update(advance=failed, counts=store.state_counts(spec.name), pretraining=pretrain_status())
                elif isinstance(event, CellResult):
                    metrics = event.metrics
                    if metrics and (mfu := run_mfu(metrics, cpu_peak=cpu_peak)) is not None:
                        metrics = {**metrics, "mfu": mfu}
                    store.finish(event.cell_id, owner, state=event.state, metrics=metrics, reason=event.reason)
                    summary.ran += 1
                    bar.update(advance=1, counts=store.state_counts(spec.name), pretraining=pretrain_status())
                    if on_finished is not None:
                        on_finished()
                elif isinstance(event, WorkerLost):
                    deaths[event.cell_id] = deaths.get(event.cell_id, 0) + 1
                    if deaths[event.cell_id] < max_attempts:
                        store.release([event.cell_id], owner)
                    else:
                        store.finish(event.cell_id, owner, state="failed", reason=event.reason)
                        bar.update(advance=1, counts=store.state_counts(spec.name))
            if time.monotonic() - last_renewal > lease_s / 4:
                store.renew(owner, lease_s=lease_s)
                last_renewal = time.monotonic()
        if stop_signal:
            raise Interrupted(stop_signal[0])
        clean = True
    finally:
        held = [task_id for task_id in executor.in_flight() if not pretraining.owns(task_id)]
        if clean:
            executor.shutdown()
        else:
            executor.stop()
        if held:
            store.release(held, owner)
        bar.close()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    summary.pretrained = pretraining.trained
    summary.counts = store.state_counts(spec.name)
    summary.busy_elsewhere = summary.counts["running"]
    summary.wall_s = time.perf_counter() - started
    return summary
