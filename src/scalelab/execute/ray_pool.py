"""The Ray executor: warm actors on a Ray cluster, fed by the same coordinator loop.

Each actor is one worker: it imports torch once, keeps the datasets it has been given,
and trains one task (a cell, or a seed group) at a time with the resources the study's
``[resources]`` section asks for. Each dataset is loaded once, by the coordinator, and
put in Ray's object store once; actors read it from there (on a cluster, each node
fetches it once), so cells ship only their configuration. Results come back to the
coordinator, which alone writes the run store. An actor whose process dies mid-task is
reported as lost, so the coordinator retries its cells, and is replaced.

Ray is an optional dependency (``pip install -e '.[ray]'``); without it, choosing this
executor is an input error that says how to install it.
"""

from __future__ import annotations

import logging
import os

from scalelab.errors import InputError
from scalelab.execute.local import WorkerLost, available_cores
from scalelab.execute.work import CellResult

INSTALL_HINT = "pip install -e '.[ray]' (or pip install 'ray>=2.9')"


def import_ray():
    """Ray, or :class:`InputError` saying how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise InputError(f"--executor ray needs Ray, which is not installed ({exc}); install it with {INSTALL_HINT}") from None
    return ray


class CellActor:
    """The body of a Ray actor: a :class:`~scalelab.execute.work.CellWorker` whose datasets
    come from the object store."""

    def __init__(self, threads: int, dataset_refs: dict):
        import torch

        torch.set_num_threads(threads)
        from scalelab.execute.work import CellWorker

        self._refs = dataset_refs  # nested in a dict, so Ray hands over references, not copies
        self._worker = CellWorker(executor="ray")

    def pid(self) -> int:
        return os.getpid()

    def run_group(self, cells: list[tuple[str, dict]]) -> list[CellResult]:
        import ray

        from scalelab.data import dataset_key

        for _, config in cells:
            key = dataset_key(config["data"])
            if key in self._refs and not self._worker.has_dataset(key):
                self._worker.adopt_dataset(key, ray.get(self._refs[key]))
        return self._worker.run_group(cells)


class RayExecutor:
    """Runs tasks on warm Ray actors, each reserving ``cpus`` CPUs and ``gpus`` GPUs.

    ``address``: a running cluster to join (``ray://...``, ``host:port`` or ``auto``);
    ``None`` starts a private local instance bound to 127.0.0.1 with this machine's cores,
    shut down again when the run ends. ``workers`` caps the number of actors; by default
    there are as many as the cluster's resources fit.
    """

    name = "ray"

    def __init__(self, *, workers: int | None = None, address: str | None = None, cpus: float = 1.0, gpus: float = 0.0):
        self._ray = import_ray()
        self.address = address
        self.cpus = cpus
        self.gpus = gpus
        self.workers = workers
        self.threads = max(1, int(cpus))
        self._connected = False
        self._refs: dict = {}
        self._actors: list = []
        self._busy: dict = {}  # actor index -> (future, [cell ids])
        self._actor_class = self._ray.remote(num_cpus=cpus, num_gpus=gpus, max_restarts=0)(CellActor)

    # -- lifecycle ------------------------------------------------------------------------
    def _connect(self) -> None:
        ray = self._ray
        if ray.is_initialized():
            return
        quiet = {"logging_level": logging.ERROR, "log_to_driver": False, "include_dashboard": False}
        if self.address is None:
            ray.init(address="local", num_cpus=available_cores(), _node_ip_address="127.0.0.1", **quiet)
        else:
            try:
                ray.init(address=self.address, **quiet)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise InputError(f"--address {self.address}: cannot join the Ray cluster ({' '.join(str(exc).split())})") from None
        self._connected = True

    def _capacity(self) -> int:
        """How many actors of this size the cluster can hold at once."""
        total = self._ray.cluster_resources()
        fits = [int(total.get("CPU", 0) // self.cpus)] if self.cpus else []
        if self.gpus:
            fits.append(int(total.get("GPU", 0) // self.gpus))
        capacity = min(fits) if fits else 1
        if capacity < 1:
            have = f"{total.get('CPU', 0):g} CPUs and {total.get('GPU', 0):g} GPUs"
            raise InputError(f"[resources] asks {self.cpus:g} CPUs and {self.gpus:g} GPUs per cell; the Ray cluster has {have}")
        return capacity

    def start(self, n_tasks: int, *, preload: list[dict] | None = None) -> None:
        """Join or start Ray, put the datasets in the object store, and start the actors
        (no more than there are tasks, the cluster fits, or ``workers`` allows).

        Calling it again only adds what is missing."""
        self._connect()
        if preload:
            from scalelab.data import dataset_key, load_dataset

            for data_config in preload:
                key = dataset_key(data_config)
                if key not in self._refs:
                    self._refs[key] = self._ray.put(load_dataset(data_config))
        capacity = self._capacity()
        wanted = min(self.workers or capacity, capacity, n_tasks)
        while len(self._actors) < wanted:
            self._actors.append(self._new_actor())

    def _new_actor(self):
        return self._actor_class.remote(self.threads, self._refs)

    # -- the executor interface ------------------------------------------------------------
    def idle_slots(self) -> int:
        return len(self._actors) - len(self._busy)

    def in_flight(self) -> list[str]:
        return [cell_id for _, cell_ids in self._busy.values() for cell_id in cell_ids]

    def submit(self, cells: list[tuple[str, dict]]) -> None:
        """Hand one task to an idle actor: ``(cell_id, config)`` pairs trained as a group."""
        index = next(i for i in range(len(self._actors)) if i not in self._busy)
        future = self._actors[index].run_group.remote(list(cells))
        self._busy[index] = (future, [cell_id for cell_id, _ in cells])

    def wait(self, timeout: float) -> list[CellResult | WorkerLost]:
        """Results and lost actors, waiting at most ``timeout`` seconds for the first."""
        ray = self._ray
        if not self._busy:
            return []
        by_future = {future: index for index, (future, _) in self._busy.items()}
        ready, _ = ray.wait(list(by_future), num_returns=1, timeout=timeout)
        if ready:
            ready, _ = ray.wait(list(by_future), num_returns=len(by_future), timeout=0)
        events: list[CellResult | WorkerLost] = []
        for future in ready:
            index = by_future[future]
            _, cell_ids = self._busy.pop(index)
            try:
                events.extend(ray.get(future))
            except ray.exceptions.RayActorError as exc:
                why = " ".join(str(exc).split())[:300]
                events.extend(WorkerLost(cell_id, f"Ray worker died while training this cell ({why})") for cell_id in cell_ids)
                ray.kill(self._actors[index])  # dead already, unless only its task was lost
                self._actors[index] = self._new_actor()
            except ray.exceptions.RayError as exc:  # the task itself failed outside the trainer (fetching a dataset, say)
                events.extend(CellResult(cell_id, "failed", reason=str(exc)) for cell_id in cell_ids)
        return events

    def stop(self) -> None:
        """Kill every actor now; shut the local Ray instance down (or leave a joined cluster)."""
        for actor in self._actors:
            self._ray.kill(actor)
        self._actors.clear()
        self._busy.clear()
        if self._connected:
            self._ray.shutdown()
            self._connected = False

    def shutdown(self) -> None:
        """Stop after a clean run (nothing is in flight)."""
        self.stop()
