"""A runner on a busy machine: threads sized for the whole machine against threads sized
for the free cores.

    python benchmarks/busy_machine.py            # about 5 min on 2 cores

Runs one 24-cell grid (an MLP on digits) through the real command (``scalelab run``,
a fresh store each time) in three situations:

1. an idle machine (the reference);
2. beside a competing process that keeps one core busy (a one-thread matmul loop);
3. two runners started together on one store, each with ``--workers 1``.

In each, ``--threads`` set to every core (what a worker took before it looked at the
load) is compared with the default, which sizes each worker's threads before each
cell to its share of the cores that other processes leave free
(``scalelab.execute.threads``). Prints wall times and their ratio; no assertions.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from scalelab.execute.threads import available_cores

STUDY = """
name = "busy"
[data]
name = "digits"
[model]
family = "mlp"
[train]
device = "cpu"
epochs = 10
[grid]
width = [0.5, 1, 2]
data_fraction = [0.25, 0.5, 0.75, 1.0]
seed = [0, 1]
"""
# A competing job: one thread of large matmuls, as another PyTorch process would be.
LOAD = "import torch; torch.set_num_threads(1); a = torch.randn(1024, 1024)\nwhile True: a @ a"


def runner(study: Path, store: Path, *options: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "scalelab", "run", str(study), "--store", str(store), "--quiet", *options]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen) -> None:
    _, err = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"scalelab run exited {proc.returncode}: {err}")


def timed(study: Path, *options: str, runners: int = 1, load: bool = False) -> float:
    """Wall seconds until ``runners`` concurrent runners on one fresh store have finished."""
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "s.db"
        competitor = subprocess.Popen([sys.executable, "-c", LOAD]) if load else None
        try:
            if competitor is not None:
                time.sleep(2.0)  # past torch's import: the core is busy before the run starts
            start = time.perf_counter()
            procs = [runner(study, store, *options) for _ in range(runners)]
            for proc in procs:
                finish(proc)
            return time.perf_counter() - start
        finally:
            if competitor is not None:
                competitor.kill()
                competitor.wait()


def main() -> None:
    cores = available_cores()
    repeats = 2
    with tempfile.TemporaryDirectory() as tmp:
        study = Path(tmp) / "busy.toml"
        study.write_text(STUDY)
        whole = ("--threads", str(cores))
        cases = [
            ("idle machine, --workers 1", "threads = every core", {"options": ("--workers", "1", *whole)}),
            ("idle machine, --workers 1", "threads = free share (default)", {"options": ("--workers", "1")}),
            ("one core busy, --workers 1", "threads = every core", {"options": ("--workers", "1", *whole), "load": True}),
            ("one core busy, --workers 1", "threads = free share (default)", {"options": ("--workers", "1"), "load": True}),
            ("one core busy, default workers", "threads = free share (default)", {"options": (), "load": True}),
            ("two runners, one store, --workers 1 each", "threads = every core", {"options": ("--workers", "1", *whole), "runners": 2}),
            ("two runners, one store, --workers 1 each", "threads = free share (default)", {"options": ("--workers", "1"), "runners": 2}),
        ]
        print(f"{cores} cores; 24 cells of an MLP on digits (10 epochs); median of {repeats} runs, interleaved\n")
        times: dict[int, list[float]] = {i: [] for i in range(len(cases))}
        for _ in range(repeats):
            for i, (_, _, kw) in enumerate(cases):
                times[i].append(timed(study, *kw["options"], runners=kw.get("runners", 1), load=kw.get("load", False)))
        reference = statistics.median(times[1])
        print(f"{'situation':44} {'threads':32} {'wall s':>8} {'× idle':>7}")
        for i, (situation, threads, _) in enumerate(cases):
            t = statistics.median(times[i])
            print(f"{situation:44} {threads:32} {t:8.1f} {t / reference:7.2f}")


if __name__ == "__main__":
    main()
