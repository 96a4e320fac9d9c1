"""How many torch threads a worker uses for its next task: its share of the free cores.

PyTorch's CPU kernels run on OpenMP threads that wait for one another at the end of
every parallel operation. When one of the cores they count on is busy with another
process (a second runner on the same store, a build, a notebook), every operation
waits for that core's time slice, and a small model's thousands of short operations
add up: a worker with two threads beside one busy core ran many times slower than the
same worker with one thread (``benchmarks/busy_machine.py`` measures it). Fewer threads
than cores lose little; more threads than free cores lose a lot.

So a worker sizes its threads before each task: the cores of its CPU set minus what
other processes used of them since its last check (its own threads excluded), rounded
down, at least one and at most its fair share (``cores // workers``). The check reads
``/proc/stat`` and the process's own CPU times, and costs microseconds; only the first
one, before any task, samples a short window. Where ``/proc/stat`` does not exist the
fair share is used as is.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

PROC_STAT = Path("/proc/stat")
# The shortest window measured: /proc/stat counts in ticks (10 ms), so a shorter one is
# noise. The first check, with no previous one, samples this long; a task that came
# sooner after the last check keeps the last answer.
MIN_WINDOW_S = 0.2
# A core counts as free when others used less than this share of it: a coordinator
# writing results, or a shell, must not cost a worker a thread.
BUSY_SLACK = 0.25


def available_cores() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def fair_share(workers: int) -> int:
    """Intra-op threads per worker so that workers × threads does not exceed the cores."""
    return max(1, available_cores() // max(1, workers))


def _cpu_set() -> set[int] | None:
    try:
        return set(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return None


def busy_seconds(cpus: set[int] | None) -> float | None:
    """CPU seconds spent not idle on ``cpus`` (every CPU when None) since boot, or None
    where ``/proc/stat`` cannot be read."""
    try:
        lines = PROC_STAT.read_text().splitlines()
    except OSError:
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for line in lines:
        name, *fields = line.split()
        if not name.startswith("cpu") or name == "cpu":
            continue
        if cpus is not None and int(name[3:]) not in cpus:
            continue
        # user nice system idle iowait irq softirq steal (guest time is inside user)
        values = [int(v) for v in fields[:8]]
        total += sum(values) - values[3] - values[4]
    return total / ticks


def own_seconds() -> float:
    """CPU seconds this process and its finished children (data-parallel ranks) used."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class ThreadSizer:
    """Threads for a worker's next task: ``fixed`` when given, else its share of the free cores."""

    def __init__(self, share: int, *, fixed: int | None = None):
        self.share = max(1, share)
        self.fixed = fixed
        self._cpus = _cpu_set()
        self._cores = len(self._cpus) if self._cpus is not None else (os.cpu_count() or 1)
        self._last: tuple[float, float, float] | None = None  # (busy, own, wall) at the last check
        self._others: float | None = None  # the last answer of others_busy

    def _snapshot(self) -> tuple[float, float, float] | None:
        busy = busy_seconds(self._cpus)
        return None if busy is None else (busy, own_seconds(), time.monotonic())

    def others_busy(self) -> float | None:
        """Cores other processes kept busy, on average, since the last measured window
        (None: unknown). Within ``MIN_WINDOW_S`` of it the last answer stands."""
        if self._last is None:
            self._last = self._snapshot()
            if self._last is None:
                return None
            time.sleep(MIN_WINDOW_S)
        elif time.monotonic() - self._last[2] < MIN_WINDOW_S:
            return self._others
        now = self._snapshot()
        if now is None:
            return None
        (busy0, own0, wall0), (busy1, own1, wall1) = self._last, now
        self._last = now
        self._others = max(0.0, (busy1 - busy0) - (own1 - own0)) / (wall1 - wall0)
        return self._others

    def threads(self) -> int:
        """How many threads the next task gets."""
        if self.fixed is not None:
            return self.fixed
        others = self.others_busy()
        if others is None:
            return self.share
        free = int(self._cores - others + BUSY_SLACK)
        return max(1, min(self.share, free))
