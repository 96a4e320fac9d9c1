"""One cell trained by several processes with DistributedDataParallel (``data_parallel = N``).

Locally, :func:`train_data_parallel` starts the N processes through PyTorch's elastic
launcher, the same agent ``torchrun`` runs (``torch.distributed.launcher.elastic_launch``,
a c10d rendezvous on a free local port, as ``torchrun --standalone``), and each rank joins
its process group from the environment the agent sets: gloo on the CPU, NCCL on CUDA (rank
r uses GPU r modulo the GPUs present). Each rank builds the same seeded model, draws the
same shuffled global batches and trains on its share of each; gradients are averaged, so
the run takes the steps a single process with the same global batch would. The cores (or
torch threads) the worker had are split among the ranks. Rank 0 evaluates and reports
(batch norm is synchronised across ranks on CUDA, and refused on the CPU, where its
per-shard statistics would differ from one process's); the run records ``world_size``, the
total and per-process throughput, the throughput one rank reached alone, and the scaling
efficiency.

A rank that hangs (a stuck data loader, a deadlocked GPU) would hold the others in their
next collective for ever. Every collective of training waits at most ``train.data_parallel_timeout``
seconds: the ranks still waiting then fail, the agent stops the rest, and the cell fails
with the first failure's traceback and the timeout named. Joining the group at the
start waits longer (``START_S`` at least): ranks start seconds apart on a busy machine.

Across hosts, start one process per GPU or host with ``torchrun``; each reads its rank
from the environment::

    torchrun --nnodes 2 --nproc-per-node 1 --rdzv-backend c10d --rdzv-endpoint HEAD:29500 \\
        -m scalelab.train.data_parallel study.toml CELL_ID --out metrics.json

(``scalelab run STUDY --dry-run`` lists the cell ids.) Rank 0 writes the cell's state
and metrics to ``--out`` as JSON.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import signal
import sys
import tempfile
import uuid

import torch

from scalelab.data import Dataset
from scalelab.processes import exit_when_parent_dies
from scalelab.train.outcome import CellOutcome

DEFAULT_TIMEOUT_S = 600.0  # the spec's default for train.data_parallel_timeout
START_S = 120.0  # seconds every rank has to start and join the process group
# Seconds the agent gives ranks to leave after SIGTERM before it kills them: a rank that
# hangs would otherwise hold the cell for the launcher's default 30 s more.
SHUTDOWN_S = 5
# The agent logs every launch, failure and shutdown; the cell's outcome (or its failure,
# with the rank's traceback) already says what happened.
_AGENT_LOGGERS = ("torch.distributed.elastic", "torch.distributed.launcher", "torch.multiprocessing")


def run_rank(config: dict, dataset: Dataset) -> CellOutcome | None:
    """Join the process group described by the environment (``RANK``, ``WORLD_SIZE``,
    ``MASTER_ADDR``/``MASTER_PORT``, as torchrun and the elastic agent set them), train
    this rank's share of the cell and leave; rank 0's outcome, None on the other ranks."""
    import torch.distributed as dist

    from scalelab.train.torch_trainer import Replica, train_cell

    timeout_s = float(config["train"].get("data_parallel_timeout", DEFAULT_TIMEOUT_S))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    backend = _backend_for(config, int(os.environ.get("LOCAL_WORLD_SIZE", "1")), local_rank=local_rank)
    # Joining waits for every rank to start (a new Python importing torch, seconds apart on
    # a busy machine); training's collectives then wait at most the timeout, in a group of
    # the same ranks made with it.
    dist.init_process_group(backend, timeout=datetime.timedelta(seconds=max(START_S, timeout_s)))
    group = dist.new_group(backend=backend, timeout=datetime.timedelta(seconds=timeout_s))
    replica = Replica(dist.get_rank(), dist.get_world_size(), group=group)
    outcome = train_cell(config, dataset, replica=replica)
    # Only after success: leaving the group can block while other ranks wait in a
    # collective, and after a failure the agent stops every rank anyway.
    dist.destroy_process_group()
    return outcome if replica.rank == 0 else None


def _launched_rank(config: dict, dataset: Dataset, threads: int, parent_pid: int) -> CellOutcome | None:
    """A rank started by :func:`train_data_parallel` (what the agent runs in each process)."""
    exit_when_parent_dies(parent_pid)  # a worker stopped or killed mid-cell takes its ranks with it
    torch.set_num_threads(threads)
    return run_rank(config, dataset)


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

    Raises ``RuntimeError`` with the failing rank's traceback when any rank fails, dies or
    times out in a collective.
    """
    from torch.distributed.elastic.multiprocessing import (
        DefaultLogsSpecs,
        SignalException,
    )
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    world_size = int(config["train"]["data_parallel"])
    timeout_s = float(config["train"].get("data_parallel_timeout", DEFAULT_TIMEOUT_S))
    threads = max(1, torch.get_num_threads() // world_size)
    # The agent installs its own handler for the signals it is told to handle and does not
    # put the old ones back. It handles SIGTERM only (how a worker is stopped: it then stops
    # the ranks and re-raises); SIGINT stays as the worker set it (ignored: the parent
    # decides what Ctrl-C means), and both are restored after the cell.
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    quiet = {name: logging.getLogger(name).level for name in _AGENT_LOGGERS}
    for name in _AGENT_LOGGERS:
        logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        with tempfile.TemporaryDirectory(prefix="scalelab-ddp-") as logs:
            launch = LaunchConfig(
                min_nodes=1, max_nodes=1, nproc_per_node=world_size, run_id=uuid.uuid4().hex,
                rdzv_backend="c10d", rdzv_endpoint="localhost:0",  # torchrun --standalone
                rdzv_configs={"timeout": int(max(START_S, timeout_s))},  # every rank must join within it
                max_restarts=0,  # a failed cell is the store's to retry, not the agent's
                monitor_interval=0.2, start_method="spawn", logs_specs=DefaultLogsSpecs(log_dir=logs),
                signals_to_handle="SIGTERM", shutdown_timeout=SHUTDOWN_S,
            )  # fmt: skip
            returned = elastic_launch(launch, _launched_rank)(config, dataset, threads, os.getpid())
    except ChildFailedError as failed:
        raise RuntimeError(f"data-parallel training failed on {_describe_failure(failed, timeout_s)}") from None
    except SignalException as stopped:
        # The agent has stopped the ranks; the worker leaves as its own SIGTERM handler would.
        raise SystemExit(128 + int(stopped.sigval)) from None
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
        for name, level in quiet.items():
            logging.getLogger(name).setLevel(level)
    outcome = returned.get(0)
    if outcome is None:
        raise RuntimeError("data-parallel training failed on rank 0 (no result)")
    return outcome


def _describe_failure(failed, timeout_s: float) -> str:
    """``rank R: <traceback>`` of the first rank to fail, naming the timeout when a
    collective ran out of it (another rank hung or died)."""
    rank, failure = failed.get_first_failure()
    message = failure.message
    if isinstance(message, dict):  # the error file the rank's wrapper wrote
        text = message.get("extraInfo", {}).get("py_callstack") or message.get("message", "")
    else:
        text = message or ""
    if not text:
        text = f"process died (exit code {failure.exitcode})" if failure.exitcode >= 0 else f"process killed by signal {-failure.exitcode}"
    if "timed out" in text.lower() or "wait timeout" in text.lower():
        text = (f"timed out after {timeout_s:g} s waiting for another rank in a collective "
                f"(train.data_parallel_timeout; another rank hung or died)\n{text}")  # fmt: skip
    return f"rank {rank}: {text}"


def main(argv: list[str] | None = None) -> int:
    """Entry point for ``torchrun``: train one cell of a study on this rank."""
    from scalelab.data import load_dataset
    from scalelab.spec import load_spec

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
    outcome = run_rank(config, load_dataset(config["data"]))
    if outcome is not None:
        with open(args.out, "w", encoding="utf-8") as handle:
            json.dump({"cell_id": args.cell_id, "state": outcome.state, "reason": outcome.reason, "metrics": outcome.metrics}, handle, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
