"""Grid overhead: what the local executor costs on top of the training itself.

    python benchmarks/grid_overhead.py        # about 2 min on 2 cores

A grid of 48 small cells (an MLP on digits: 4 widths × 3 data fractions × 4 seeds, 10
epochs, tens of milliseconds each). Measures, on one machine in one run:

1. **in-process**: the dataset loaded once, then ``run_cell`` for every cell in a loop.
   The sum of the cells' times is the pure cost of the work, with nothing around it.
2. **scalelab run, 1 worker**: the real command on a fresh store (process start, the
   store, claims, leases, result writes, the worker pool). Its overhead is its wall time
   over the in-process sum.
3. **scalelab run, one worker per core**, against the in-process sum divided by the cores.
4. **a fresh process per cell**: what a shell loop over a training script would cost
   (each process imports torch and loads the data again).

The command's start-up (importing torch in the coordinator and the workers, checking the
study) is paid once per run, not per cell: it is measured on a one-cell study and shown
apart, and the per-cell overhead is the rest.

Prints, no assertions.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STUDY = """
name = "overhead"
[data]
name = "digits"
[model]
family = "mlp"
[train]
epochs = 10
[grid]
width = [0.25, 0.5, 1, 2]
data_fraction = [0.25, 0.5, 1.0]
seed = [0, 1, 2, 3]
"""

ONE_CELL = """
import sys
from scalelab.data import load_dataset
from scalelab.spec import load_spec
from scalelab.train.cell import run_cell
cell = load_spec(sys.argv[1]).cells[int(sys.argv[2])]
run_cell(cell.config, load_dataset(cell.config["data"]))
"""


def in_process(study: Path, threads: int) -> tuple[float, int]:
    import torch

    from scalelab.data import load_dataset
    from scalelab.spec import load_spec
    from scalelab.train.cell import run_cell

    torch.set_num_threads(threads)  # as one worker of a pool with this many threads each
    cells = load_spec(study).cells
    dataset = load_dataset(cells[0].config["data"])
    run_cell(cells[0].config, dataset)  # warm-up: lazy imports, as a warm worker has paid them
    start = time.perf_counter()
    for cell in cells:
        run_cell(cell.config, dataset)
    return time.perf_counter() - start, len(cells)


def scalelab_run(study: Path, workers: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "scalelab", "run", str(study), "--store", str(Path(tmp) / "s.db"), "--workers", str(workers), "--quiet"],
            check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        return time.perf_counter() - start


def fresh_processes(study: Path, n_cells: int) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    for index in range(n_cells):
        subprocess.run([sys.executable, "-c", ONE_CELL, str(study), str(index)], check=True, env=env)
    return time.perf_counter() - start


def main() -> None:
    cores = os.cpu_count() or 1
    print(f"scalelab grid overhead — {cores} CPUs, python {sys.version.split()[0]}; load average before: {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        study = Path(tmp) / "overhead.toml"
        study.write_text(STUDY)
        # A study of one cell per worker pays the whole start-up and almost no training.
        starter = Path(tmp) / "starter.toml"
        starter.write_text(STUDY.replace('name = "overhead"', 'name = "starter"').split("[grid]")[0] + f"[grid]\nseed = {list(range(cores))}\n")
        rows = []
        for workers in (1, cores):
            pure, n = in_process(study, max(1, cores // workers))
            start_up = min(scalelab_run(starter, workers) for _ in range(2))
            wall = min(scalelab_run(study, workers) for _ in range(2))
            # The starter's cells are as big as the grid's first ones: count them as work done.
            rows.append((workers, wall, start_up, pure * (n - workers) / n / workers, pure))
        fresh = fresh_processes(study, n)
    print(f"\n{n} cells (mlp on digits, 10 epochs each, {pure / n * 1000:.0f} ms each in-process on 1 thread)")
    print(f"{'how':<44}{'wall s':>8}{'start-up s':>12}{'rest s':>8}{'pure share s':>14}{'overhead':>10}")
    for workers, wall, start_up, share, loop in rows:
        threads = max(1, cores // workers)
        print(f"{f'in-process loop, {threads} thread(s) (pure work)':<44}{loop:>8.1f}{'':>12}{loop:>8.1f}{loop:>14.1f}{'':>10}")
        rest = wall - start_up
        print(f"{f'scalelab run --workers {workers}':<44}{wall:>8.1f}{start_up:>12.1f}{rest:>8.1f}{share:>14.1f}{rest / share - 1:>10.0%}")
    print(f"{'a fresh process per cell, one after another':<44}{fresh:>8.1f}{'':>12}{'':>8}{pure:>14.1f}{fresh / pure - 1:>10.0%}")
    print("   start-up: a study of one cell per worker (process start, torch imports, the study check), paid once per run;")
    print("   rest: the wall time after it; pure share: the in-process time of the remaining cells divided among the workers.")
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
