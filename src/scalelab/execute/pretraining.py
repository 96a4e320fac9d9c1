"""The ``[pretrain]`` stage of a run: train each checkpoint the cells need, once.

A cell with ``init_from = "pretrain"`` starts from the weights of its pretraining run:
the study's ``[pretrain]`` data and training with the cell's model and seed. Cells that
share a model and seed share that run (:func:`scalelab.spec.pretrain_id`), so a study
trains one checkpoint per (model size, seed), however many target fractions it sweeps.

The coordinator owns this stage. It hands the missing pretraining runs to the same
executor as the cells, first, keeps each finished checkpoint in the run store, and only
then lets the cells that need it be claimed; every other cell runs meanwhile. A cell's
checkpoint travels inside its task, and so do the bytes of an ``init_from`` checkpoint
file, so workers need no shared filesystem (a Ray cluster included). A pretraining run
that fails or diverges fails the cells that needed it, with the reason;
``--retry-failed`` tries again.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from scalelab.errors import InputError
from scalelab.execute.local import WorkerLost
from scalelab.execute.work import CellResult
from scalelab.spec import pretrain_config, pretrain_id
from scalelab.store import RunStore

TASK_PREFIX = "pretrain:"
# What a fine-tuned cell records about the run its weights came from (as pretrain_<name>).
_KEPT_METRICS = ("test_error", "test_loss", "n_train", "epochs", "flops", "wall_s")


class PretrainStage:
    """The checkpoints a run's cells need: which are missing, in training, or failed."""

    def __init__(self, spec, store: RunStore, *, max_attempts: int = 2):
        self._store = store
        self._max_attempts = max_attempts
        claimable = {c.cell_id for c in store.cells(spec.name) if c.state in ("pending", "running")}
        self._configs: dict[str, dict] = {}
        self._users: dict[str, list[str]] = {}
        for cell in spec.cells:
            checkpoint_id = pretrain_id(cell.config)
            if checkpoint_id is None or cell.cell_id not in claimable:
                continue
            self._configs.setdefault(checkpoint_id, pretrain_config(cell.config))
            self._users.setdefault(checkpoint_id, []).append(cell.cell_id)
        held = store.checkpoint_ids()
        self._queue = [cid for cid in self._configs if cid not in held]
        self._missing = set(self._queue)
        self._failed: set[str] = set()
        self._attempts: dict[str, int] = {}
        self._files: dict[str, bytes] = {}  # init_from checkpoint files, read once
        self.trained = 0
        self.total = len(self._queue)

    @property
    def queued(self) -> int:
        """Pretraining runs not yet handed to a worker."""
        return len(self._queue)

    def waiting_cells(self) -> set[str]:
        """Cells whose checkpoint is not in the store: not to be claimed. Those whose
        pretraining failed stay here for the rest of the run, even if another process
        makes them pending again (``--retry-failed``): a later run trains it again."""
        return {cell_id for checkpoint_id in self._missing | self._failed for cell_id in self._users[checkpoint_id]}

    def next_tasks(self, slots: int) -> list[list[tuple[str, dict]]]:
        """Up to ``slots`` pretraining tasks, each one run (task id, configuration)."""
        tasks = []
        while self._queue and len(tasks) < slots:
            checkpoint_id = self._queue.pop(0)
            self._attempts[checkpoint_id] = self._attempts.get(checkpoint_id, 0) + 1
            tasks.append([(TASK_PREFIX + checkpoint_id, {**self._configs[checkpoint_id], "stage": "pretrain"})])
        return tasks

    @staticmethod
    def owns(task_id: str) -> bool:
        return task_id.startswith(TASK_PREFIX)

    def record(self, event: CellResult | WorkerLost) -> tuple[list[str], str | None]:
        """Take a pretraining task's result: keep its checkpoint, or retry a lost one.

        Returns the cells to fail and why, when the run failed, diverged, or lost its
        worker too often; otherwise ``([], None)``.
        """
        checkpoint_id = event.cell_id.removeprefix(TASK_PREFIX)
        if isinstance(event, WorkerLost):
            if self._attempts[checkpoint_id] < self._max_attempts:
                self._queue.insert(0, checkpoint_id)
                return [], None
            what = "lost its worker"
        elif event.state == "done" and event.checkpoint is not None:
            kept = {name: event.metrics.get(name) for name in _KEPT_METRICS}
            self._store.save_checkpoint(checkpoint_id, self._configs[checkpoint_id], event.checkpoint, kept)
            self._missing.discard(checkpoint_id)
            self.trained += 1
            return [], None
        else:
            what = event.state if event.state != "done" else "gave no torch weights (a scikit-learn model cannot be fine-tuned)"
        self._missing.discard(checkpoint_id)
        self._failed.add(checkpoint_id)
        reason = f"its pretraining run (checkpoint {checkpoint_id}) {what}" + (f": {event.reason}" if event.reason else "")
        return self._users[checkpoint_id], reason

    def prepared(self, config: dict) -> dict:
        """A cell's task configuration, carrying the weights it starts from: its
        ``[pretrain]`` checkpoint from the store, or its ``init_from`` file's bytes."""
        init_from = config["train"].get("init_from")
        if init_from is None:
            return config
        if init_from != "pretrain":
            weights = self._file_bytes(init_from, config["train"]["init_from_sha256"])
            return {**config, "initial_weights": {"label": init_from, "sha256": config["train"]["init_from_sha256"], "weights": weights}}
        checkpoint_id = pretrain_id(config)
        held = self._store.checkpoint(checkpoint_id)
        if held is None:  # waiting_cells() keeps such a cell from being claimed
            raise RuntimeError(f"checkpoint {checkpoint_id} is not in the store yet")
        weights, metrics = held
        sha256 = metrics.pop("sha256")
        label = f"pretrained checkpoint {checkpoint_id}"
        return {**config, "initial_weights": {"label": label, "sha256": sha256, "weights": weights, "pretrain": {"id": checkpoint_id, "metrics": metrics}}}

    def _file_bytes(self, path: str, sha256: str) -> bytes:
        """A checkpoint file's bytes, read once per run; a file changed since the study was
        read (another hash than the cell's id holds) is an input error."""
        if path not in self._files:
            weights = Path(path).expanduser().read_bytes()
            if hashlib.sha256(weights).hexdigest() != sha256:
                raise InputError(f"train.init_from = {path!r}: the file changed after the study was read; run again to use the new weights as new cells")
            self._files[path] = weights
        return self._files[path]
