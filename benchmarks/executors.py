"""Executors: the local pool, the Ray executor and Ray Tune's ``grid_search`` on one tiny
grid; then data-parallel training with 2 processes against 1.

    pip install 'ray[tune]'                  # Tune is only needed here
    python benchmarks/executors.py           # about 4 min on 2 cores

**1. Per-cell overhead.** A grid of tiny cells (an MLP on a quarter of digits, 1 epoch,
a few milliseconds of training each; 200 cells for scalelab, 24 for Tune, whose trials
cost seconds each) run three ways, each as a fresh command or process:

- ``scalelab run --workers 2`` (the local pool);
- ``scalelab run --executor ray`` (a private local Ray instance, actors of 1 CPU);
- Ray Tune with default settings: ``tune.Tuner(trainable, param_space={... tune.grid_search
  ...}).fit()``, the trainable training the same cell with scalelab's ``run_cell``.

Each runs its full grid (N cells) and a grid of 2 cells (one per core). The fixed costs
(process and Ray start, imports) are the same in both, so the per-cell overhead is
``(wall(N) - wall(2)) / (N - 2)`` minus the pure training time per cell divided by the 2
cores (the training itself, measured in-process). Total wall time is printed too.

**2. Data parallelism.** One cell of the seed CNN on CIFAR-shaped data (3x32x32, batch 64)
and one of an MLP on digits, trained in this process with ``data_parallel = 1`` (one
process, 2 threads) and ``= 2`` (two processes over gloo, 1 thread each): samples/s, the
ratio, and the scaling efficiency the run records (total throughput over 2 x what one
rank reaches alone, measured in the same run).

Prints, no assertions.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GRID = """
name = "{name}"
[data]
name = "digits"
data_fraction = 0.25
[model]
family = "mlp"
width = 0.25
[train]
epochs = 1
device = "cpu"
[grid]
seed = {seeds}
"""


def study_file(directory: Path, name: str, n_cells: int) -> Path:
    path = directory / f"{name}.toml"
    path.write_text(GRID.format(name=name, seeds=list(range(n_cells))))
    return path


def timed_command(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def scalelab_wall(study: Path, *extra: str) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "s.db"
        return timed_command([sys.executable, "-m", "scalelab", "run", str(study), "--store", str(store), "--quiet", *extra])


def tune_wall(study: Path) -> float:
    return timed_command([sys.executable, __file__, "--tune-child", str(study)])


def tune_child(study: Path) -> None:
    """Run the study's cells as Ray Tune trials with Tune's defaults (in a fresh process)."""
    import ray
    from ray import tune

    from scalelab.spec import load_spec

    cells = {c.cell_id: c.config for c in load_spec(study).cells}

    def trainable(params):
        from scalelab.data import load_dataset
        from scalelab.train.cell import run_cell

        config = cells[params["cell_id"]]
        outcome = run_cell(config, load_dataset(config["data"]))
        return {"test_error": outcome.metrics["test_error"]}

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    with tempfile.TemporaryDirectory() as storage:
        tuner = tune.Tuner(
            trainable,
            param_space={"cell_id": tune.grid_search(sorted(cells))},
            run_config=tune.RunConfig(storage_path=storage, verbose=0),
        )
        results = tuner.fit()
    assert not results.errors, results.errors
    ray.shutdown()


def pure_training_s(study: Path) -> float:
    """Seconds per cell of training alone, in this process with 1 thread (a worker's share)."""
    import torch

    from scalelab.data import load_dataset
    from scalelab.spec import load_spec
    from scalelab.train.cell import run_cell

    torch.set_num_threads(1)
    cells = load_spec(study).cells
    dataset = load_dataset(cells[0].config["data"])
    run_cell(cells[0].config, dataset)  # warm-up
    start = time.perf_counter()
    for cell in cells:
        run_cell(cell.config, dataset)
    return (time.perf_counter() - start) / len(cells)


def overhead_table(n_cells: int, n_tune_cells: int, repeats: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        full, pair = study_file(Path(tmp), "grid", n_cells), study_file(Path(tmp), "pair", 2)
        tune_full = study_file(Path(tmp), "tune", n_tune_cells)
        pure = pure_training_s(full)
        # (run, its grid): Tune gets fewer cells, since each of its trials costs seconds.
        runners = {
            "local pool (scalelab run --workers 2)": (lambda s: scalelab_wall(s, "--workers", "2"), full),
            "Ray executor (scalelab run --executor ray)": (lambda s: scalelab_wall(s, "--executor", "ray"), full),
            "Ray Tune grid_search, defaults": (tune_wall, tune_full),
        }
        walls: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in runners}
        for _ in range(repeats):  # interleaved, so a busy moment slows all alike
            for name, (run, grid) in runners.items():
                walls[name][0].append(run(grid))
                walls[name][1].append(run(pair))
    print(f"\n== 1. per-cell overhead: tiny cells (mlp on digits, {pure * 1e3:.0f} ms of training each), 2 cores, "
          f"median of {repeats} ==")  # fmt: skip
    print(f"   {'executor':<46}{'cells':>7}{'wall s':>9}{'wall 2 cells s':>16}{'overhead per cell s':>21}{'vs Tune':>9}")
    rows = {}
    for name, (full_walls, pair_walls) in walls.items():
        cells = n_tune_cells if "Tune" in name else n_cells
        wall_full, wall_pair = statistics.median(full_walls), statistics.median(pair_walls)
        rows[name] = (cells, wall_full, wall_pair, (wall_full - wall_pair) / (cells - 2) - pure / 2)
    tune_overhead = rows["Ray Tune grid_search, defaults"][3]
    for name, (cells, wall_full, wall_pair, per_cell) in rows.items():
        # At or below zero the overhead is lost in the run-to-run noise of the walls.
        ratio = f"{tune_overhead / per_cell:>8.1f}x" if per_cell > 0 else f"{'(noise)':>9}"
        print(f"   {name:<46}{cells:>7}{wall_full:>9.1f}{wall_pair:>16.1f}{per_cell:>21.4f}{ratio}")
    print("   overhead per cell: (wall N cells - wall 2 cells) / (N - 2) - training per cell / 2 cores")


def data_parallel_table() -> None:
    import torch

    from scalelab.data import load_dataset
    from scalelab.spec import parse_spec
    from scalelab.train.cell import run_cell

    workloads = {
        "seed CNN, 3x32x32, 4096 samples": (
            {"name": "synthetic", "n_samples": 5120, "shape": [3, 32, 32], "n_classes": 10, "test_size": 0.2},
            {"family": "seed_cnn"},
        ),
        "mlp, digits": ({"name": "digits"}, {"family": "mlp"}),
    }
    print("\n== 2. data parallelism on 2 cores: 1 process x 2 threads against 2 processes x 1 thread (gloo), batch 64, 1 epoch ==")
    print(f"   {'workload':<36}{'1 process samples/s':>21}{'2 processes samples/s':>23}{'ratio':>8}{'scaling efficiency':>20}")
    for name, (data, model) in workloads.items():
        rates = {}
        for world in (1, 2):
            raw = {"name": "dp", "data": data, "model": model, "train": {"epochs": 1, "batch_size": 64, "device": "cpu", "data_parallel": world}}
            (cell,) = parse_spec(raw).cells
            dataset = load_dataset(cell.config["data"])
            torch.set_num_threads(2)
            run_cell(cell.config, dataset)  # warm-up
            metrics = [run_cell(cell.config, dataset).metrics for _ in range(3)]
            rates[world] = (statistics.median(m["samples_per_s"] for m in metrics), metrics[-1].get("scaling_efficiency"))
        (one, _), (two, efficiency) = rates[1], rates[2]
        print(f"   {name:<36}{one:>21.0f}{two:>23.0f}{two / one:>7.2f}x{efficiency:>20.0%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=200, help="cells in scalelab's grid (default 200)")
    parser.add_argument("--tune-cells", type=int, default=24, help="cells in Tune's grid (default 24; each trial costs seconds)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tune-child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.tune_child:
        tune_child(args.tune_child)
        return
    print(f"scalelab executors — {os.cpu_count()} CPUs, python {sys.version.split()[0]}; load average before: {os.getloadavg()[0]:.2f}")
    overhead_table(args.cells, args.tune_cells, args.repeats)
    data_parallel_table()
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
