"""The local executor: a pool of warm worker processes on this machine.

Each worker is a spawned process that imports torch once, keeps the datasets it has
loaded, and trains one task at a time, sent over its own pipe: a cell, or a group of
seed siblings that train together (``batch_seeds``). Knowing which worker
holds which cell lets the coordinator notice a worker that died mid-cell and hand
that cell back. Workers ignore SIGINT (the coordinator decides what Ctrl-C means) and
exit on their own if the coordinator disappears.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sys
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait

from scalelab.execute.threads import ThreadSizer, available_cores, fair_share
from scalelab.execute.work import CellResult
from scalelab.processes import exit_when_parent_dies

__all__ = ["LocalExecutor", "WorkerLost", "available_cores"]


def _worker_main(conn: Connection, sizer: ThreadSizer, parent_pid: int, preload: list[dict]) -> None:
    # SIGINT arrives blocked (see _Slot); ignore it, then unblock so a pending one is dropped.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    exit_when_parent_dies(parent_pid)  # the coordinator is gone (kill -9): nobody will read our results
    import torch

    from scalelab.execute.work import CellWorker

    worker = CellWorker(preload=preload)
    # stop() sends SIGTERM: from here on, exit through Python, so cleanups run (a
    # data-parallel cell stops its ranks and removes its rendezvous directory). Not
    # before: a SystemExit raised inside torch's import aborts the process with a C++
    # error on the coordinator's stderr, and until a cell arrives there is nothing to
    # clean up, so the default (a quiet exit) is right.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    while True:
        try:
            task = conn.recv()
        except EOFError:
            task = None
        if task is None:
            break
        # Sized per task: a process that started beside this one since the last cell
        # (a second runner, say) takes cores that these threads would wait for.
        torch.set_num_threads(sizer.threads())
        conn.send(("results", worker.run_group(task)))
    # Every result is sent and the worker holds no open files: skip the interpreter's
    # teardown of torch, most of a second that the coordinator would wait for at the end.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


@dataclass
class WorkerLost:
    """A worker process ended while it held a cell."""

    cell_id: str
    reason: str


class _Slot:
    def __init__(self, ctx, sizer: ThreadSizer, preload: list[dict]):
        self.conn, child = ctx.Pipe()
        # Not a daemon: a data-parallel cell starts processes of its own, which daemonic
        # processes may not. The pool stops its workers itself, and they exit on their own
        # when the coordinator dies (exit_when_parent_dies).
        self.process = ctx.Process(target=_worker_main, args=(child, sizer, os.getpid(), preload), daemon=False)
        # A terminal's Ctrl-C goes to the whole process group. The child inherits this
        # mask, so SIGINT stays blocked while its interpreter starts (before it can
        # ignore the signal) instead of printing a KeyboardInterrupt traceback.
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            self.process.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)
        child.close()
        self.cell_ids: list[str] = []  # the task it holds; empty when idle


class LocalExecutor:
    """Runs cells on ``workers`` warm processes of this machine.

    ``threads``: torch threads per worker. By default each worker takes, before each
    task, its share of the cores (``cores // workers``) or fewer when other processes
    keep some of them busy (:mod:`scalelab.execute.threads`).
    """

    name = "local"

    def __init__(self, *, workers: int, threads: int | None = None):
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self.workers = workers
        self.threads = threads or fair_share(workers)  # at most this many
        self._sizer = ThreadSizer(fair_share(workers), fixed=threads)
        self._ctx = mp.get_context("spawn")
        self._slots: list[_Slot] = []
        self._preload: list[dict] = []

    def start(self, n_cells: int, *, preload: list[dict] | None = None) -> None:
        """Start up to ``workers`` processes (no more than there are cells to run).

        ``preload``: ``[data]`` configurations each worker loads as soon as it is up, before
        its first cell arrives. Calling it again only adds what is missing, so a caller may
        start the pool early, while it still prepares the run, and the runner's own call
        then costs nothing.
        """
        if preload is not None:
            self._preload = list(preload)
        for _ in range(min(self.workers, n_cells) - len(self._slots)):
            self._slots.append(_Slot(self._ctx, self._sizer, self._preload))

    def idle_slots(self) -> int:
        return sum(1 for s in self._slots if not s.cell_ids)

    def in_flight(self) -> list[str]:
        return [cell_id for s in self._slots for cell_id in s.cell_ids]

    def submit(self, cells: list[tuple[str, dict]]) -> None:
        """Hand one task to an idle worker: ``(cell_id, config)`` pairs trained as a group."""
        slot = next(s for s in self._slots if not s.cell_ids)
        slot.conn.send(list(cells))
        slot.cell_ids = [cell_id for cell_id, _ in cells]

    def wait(self, timeout: float) -> list[CellResult | WorkerLost]:
        """Results and lost workers, waiting at most ``timeout`` seconds for the first."""
        busy = [s for s in self._slots if s.cell_ids]
        if not busy:
            time.sleep(min(timeout, 0.05))
            return []
        ready = set(wait([s.conn for s in busy] + [s.process.sentinel for s in busy], timeout))
        events: list[CellResult | WorkerLost] = []
        for slot in busy:
            if slot.conn in ready:
                try:
                    message = slot.conn.recv()
                except (EOFError, OSError):
                    message = None
                if message and message[0] == "results":
                    events.extend(message[1])
                    slot.cell_ids = []
                    continue
            if slot.process.sentinel in ready or not slot.process.is_alive():
                slot.process.join(timeout=1)
                if slot.cell_ids and not slot.process.is_alive():
                    code = slot.process.exitcode
                    how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
                    events.extend(WorkerLost(cell_id, f"worker process died ({how}) while training this cell") for cell_id in slot.cell_ids)
                    self._replace(slot)
        return events

    def _replace(self, slot: _Slot) -> None:
        index = self._slots.index(slot)
        slot.conn.close()
        self._slots[index] = _Slot(self._ctx, self._sizer, self._preload)

    def stop(self) -> None:
        """Stop every worker now; cells they held are the coordinator's to release."""
        for slot in self._slots:
            if slot.process.is_alive():
                slot.process.terminate()
        for slot in self._slots:
            slot.process.join(timeout=5)
            if slot.process.is_alive():
                slot.process.kill()
                slot.process.join(timeout=5)
            slot.conn.close()
        self._slots.clear()

    def shutdown(self) -> None:
        """Ask idle workers to exit, then stop them all."""
        for slot in self._slots:
            try:
                slot.conn.send(None)
            except (BrokenPipeError, OSError):
                pass  # already gone; stop() below reaps it
        for slot in self._slots:
            slot.process.join(timeout=5)
        self.stop()
