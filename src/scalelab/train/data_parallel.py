"""One cell trained by several processes with DistributedDataParallel (``data_parallel = N``).

Locally, :func:`train_data_parallel` spawns N processes that meet through a file in a
temporary directory and form a process group: gloo on the CPU, NCCL on CUDA (rank r
uses GPU r modulo the GPUs present). Each rank builds the same seeded model, draws the
same shuffled global batches and trains on its share of each; gradients are averaged,
so the run takes the steps a single process with the same global batch would. The
cores (or torch threads) the worker had are split among the ranks. Rank 0 evaluates
and reports (batch norm is synchronised across ranks on CUDA, and refused on the CPU,
where its per-shard statistics would differ from one process's); the run records ``world_size``, the total and per-process throughput, the
throughput one rank reached alone, and the scaling efficiency.

Across hosts, start one process per GPU or host with ``torchrun``; each reads its rank
from the environment::

    torchrun --nnodes 2 --nproc-per-node 1 --rdzv-backend c10d --rdzv-endpoint HEAD:29500 \\
        -m scalelab.train.data_parallel study.toml CELL_ID --out metrics.json

(``scalelab run STUDY --dry-run`` lists the cell ids.) Rank 0 writes the cell's state
and metrics to ``--out`` as JSON.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import queue
import sys
import tempfile
import traceback

import torch

from scalelab.data import Dataset
from scalelab.processes import exit_when_parent_dies
from scalelab.train.outcome import CellOutcome


def _rank_main(rank: int, world_size: int, init_method: str, config: dict, dataset: Dataset, threads: int, results, parent_pid: int) -> None:
    import torch.distributed as dist

    from scalelab.train.torch_trainer import Replica, train_cell

    exit_when_parent_dies(parent_pid)  # a worker stopped or killed mid-cell takes its ranks with it
    torch.set_num_threads(threads)
    joined = False
    try:
        backend = _backend_for(config, world_size, local_rank=rank)
        dist.init_process_group(backend, init_method=init_method, rank=rank, world_size=world_size)
        joined = True
        outcome = train_cell(config, dataset, replica=Replica(rank, world_size))
        report = (rank, "ok", outcome if rank == 0 else None)
    except Exception:  # sent to the launcher, which fails the cell with it
        report = (rank, "error", traceback.format_exc())
    # Report before leaving the group: leaving can block while other ranks wait in a collective.
    results.put(report)
    results.close()
    results.join_thread()  # the report is in the pipe
    if joined and report[1] == "ok":
        dist.destroy_process_group()
    # Skip the interpreter's teardown: gloo's threads, destroyed at exit, abort the process
    # with "terminate called without an active exception" on stderr.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _backend_for(config: dict, world_size: int, *, local_rank: int) -> str:
    """gloo on the CPU; NCCL on CUDA, one GPU per rank (this rank's made current)."""
    from scalelab.train.torch_trainer import resolve_device

    if resolve_device(config["train"]["device"]).type != "cuda":
        return "gloo"
    gpus = torch.cuda.device_count()
    if world_size > gpus:
        raise RuntimeError(f"train.data_parallel = {world_size} on CUDA needs one GPU per process; this machine has {gpus}")
    torch.cuda.set_device(local_rank)
    return "nccl"


def train_data_parallel(config: dict, dataset: Dataset) -> CellOutcome:
    """Train one cell as ``train.data_parallel`` local processes; rank 0's outcome.

    Raises ``RuntimeError`` with the failing rank's traceback when any rank fails or dies.
    """
    world_size = int(config["train"]["data_parallel"])
    threads = max(1, torch.get_num_threads() // world_size)
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    with tempfile.TemporaryDirectory(prefix="scalelab-ddp-") as rendezvous:
        init_method = f"file://{os.path.join(rendezvous, 'store')}"
        ranks = [
            ctx.Process(target=_rank_main, args=(rank, world_size, init_method, config, dataset, threads, results, os.getpid()))
            for rank in range(world_size)
        ]
        outcome, errors = None, []
        try:
            for process in ranks:
                process.start()
            for _ in range(world_size):
                rank, status, payload = _next_result(results, ranks)
                if status == "ok" and rank == 0:
                    outcome = payload
                elif status != "ok":
                    errors.append(f"rank {rank}: {payload}")
                    break  # the other ranks may be stuck waiting for this one
        finally:
            # After a failure, or when this worker is being stopped (SIGTERM), the ranks
            # go too; after success they are already leaving.
            for process in ranks:
                if process.pid is not None and (errors or outcome is None):
                    process.kill()
            for process in ranks:
                if process.pid is not None:
                    process.join()
    if errors or outcome is None:
        raise RuntimeError(f"data-parallel training failed on {errors[0] if errors else 'rank 0 (no result)'}")
    return outcome


def _next_result(results, ranks) -> tuple[int, str, object]:
    """The next rank's report, or a failure for a rank that died without one."""
    while True:
        try:
            return results.get(timeout=1.0)
        except queue.Empty:
            for rank, process in enumerate(ranks):
                if process.exitcode not in (None, 0):
                    return rank, "error", f"process died (exit code {process.exitcode})"


def main(argv: list[str] | None = None) -> int:
    """Entry point for ``torchrun``: train one cell of a study on this rank."""
    import torch.distributed as dist

    from scalelab.data import load_dataset
    from scalelab.spec import load_spec
    from scalelab.train.torch_trainer import Replica, train_cell

    parser = argparse.ArgumentParser(prog="python -m scalelab.train.data_parallel", description=main.__doc__)
    parser.add_argument("study")
    parser.add_argument("cell_id")
    parser.add_argument("--out", required=True, help="JSON file that rank 0 writes the cell's outcome to")
    args = parser.parse_args(argv)
    cells = {cell.cell_id: cell for cell in load_spec(args.study).cells}
    if args.cell_id not in cells:
        print(f"{args.study}: no cell {args.cell_id!r}; `scalelab run {args.study} --dry-run` lists them", file=sys.stderr)
        return 2
    config = cells[args.cell_id].config
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    backend = _backend_for(config, int(os.environ.get("LOCAL_WORLD_SIZE", 1)), local_rank=local_rank)
    dist.init_process_group(backend)  # RANK, WORLD_SIZE and the rendezvous come from torchrun
    replica = Replica(dist.get_rank(), dist.get_world_size())
    try:
        outcome = train_cell(config, load_dataset(config["data"]), replica=replica)
    finally:
        dist.destroy_process_group()
    if replica.rank == 0:
        with open(args.out, "w", encoding="utf-8") as handle:
            json.dump({"cell_id": args.cell_id, "state": outcome.state, "reason": outcome.reason, "metrics": outcome.metrics}, handle, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
