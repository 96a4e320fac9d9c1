"""Workers against threads: how to split this machine's cores for a grid.

    python benchmarks/threads_split.py            # about 3 min on 2 cores

scalelab's local executor gives each worker ``cores // workers`` intra-op threads, so
``--workers`` decides the split. This runs the same grid through the real command
(``scalelab run``, a fresh store each time) with one worker per core (N × 1 thread) and
with one worker using every core (1 × N threads), for a small model (an MLP on digits)
and a large one (the seed CNN on CIFAR-shaped data), and prints the wall time and cells
per second of each. Prints, no assertions.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GRIDS = {
    "small: mlp on digits (16 cells)": """
name = "split-small"
[data]
name = "digits"
[model]
family = "mlp"
[train]
epochs = 10
[grid]
width = [0.5, 1]
data_fraction = [0.25, 0.5, 0.75, 1.0]
seed = [0, 1]
""",
    "large: seed CNN on 3x32x32 (4 cells)": """
name = "split-large"
[data]
name = "synthetic"
n_samples = 5000
shape = [3, 32, 32]
n_classes = 10
[model]
family = "seed_cnn"
[train]
epochs = 2
[grid]
data_fraction = [0.5, 1.0]
seed = [0, 1]
""",
}


def run(study: Path, workers: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "scalelab", "run", str(study), "--store", str(Path(tmp) / "s.db"), "--workers", str(workers), "--quiet"],
            stdout=subprocess.DEVNULL,
            check=True,
        )
        return time.perf_counter() - start


def main() -> None:
    cores = os.cpu_count() or 1
    print(f"scalelab threads split — {cores} CPUs, python {sys.version.split()[0]}; load average before: {os.getloadavg()[0]:.2f}")
    print(f"{'grid':<40}{'split':<22}{'wall s':>8}{'cells/s':>9}{'vs 1 worker':>13}")
    with tempfile.TemporaryDirectory() as tmp:
        for title, text in GRIDS.items():
            study = Path(tmp) / f"{title.split(':')[0]}.toml"
            study.write_text(text)
            cells = int(title.split("(")[1].split()[0])
            run(study, 1)  # warm the dataset cache, so neither split pays for generating data
            times = {}
            for workers in (1, cores):
                times[workers] = min(run(study, workers) for _ in range(2))
            for workers, seconds in times.items():
                split = f"{workers} worker{'s' if workers > 1 else ''} x {max(1, cores // workers)} thread{'s' if cores // workers > 1 else ''}"
                print(f"{title:<40}{split:<22}{seconds:>8.1f}{cells / seconds:>9.2f}{times[1] / seconds:>12.2f}x")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
