"""What a worker does with one cell, whichever executor hosts it.

Workers keep the datasets they have loaded, keyed by the dataset part of the
configuration, so a warm worker loads each dataset once however many cells use it.
"""

from __future__ import annotations

import socket
import traceback
from dataclasses import dataclass, field


@dataclass
class CellResult:
    """A finished cell as a worker reports it: final state, metrics, and a reason or
    traceback; a pretraining task's result also carries its checkpoint's bytes."""

    cell_id: str
    state: str  # done | diverged | failed
    metrics: dict = field(default_factory=dict)
    reason: str | None = None
    checkpoint: bytes | None = None


class CellWorker:
    """Runs cells in the current process, caching loaded datasets between them."""

    def __init__(self, *, executor: str = "local", preload: list[dict] = ()) -> None:
        """``executor`` is recorded with every result, with this machine's host name;
        ``preload``: ``[data]`` configurations to load now, before any cell asks for them."""
        from scalelab.train.torch_trainer import warm_up

        self._where = {"executor": executor, "host": socket.gethostname()}
        self._datasets: dict[str, object] = {}
        warm_up()
        for data_config in preload:
            try:
                self.dataset(data_config)
            except Exception:  # noqa: BLE001 - raised again, with its traceback, by the first cell that needs it
                continue

    def has_dataset(self, key: str) -> bool:
        return key in self._datasets

    def adopt_dataset(self, key: str, dataset) -> None:
        """Use an already loaded dataset (one from Ray's object store, say) for ``key``."""
        self._datasets[key] = dataset

    def dataset(self, data_config: dict):
        from scalelab.data import dataset_key, load_dataset

        key = dataset_key(data_config)
        if key not in self._datasets:
            self._datasets[key] = load_dataset(data_config)
        return self._datasets[key]

    def run(self, cell_id: str, config: dict) -> CellResult:
        """Train one cell with its family's trainer (torch or scikit-learn); any exception
        becomes a ``failed`` result carrying its traceback."""
        from scalelab.train.cell import run_cell

        try:
            outcome = run_cell(config, self.dataset(config["data"]))
        except Exception:  # reported to the coordinator, which records it with the cell
            return CellResult(cell_id, "failed", reason=traceback.format_exc())
        return CellResult(cell_id, outcome.state, outcome.metrics, outcome.reason, outcome.checkpoint)

    def run_group(self, cells: list[tuple[str, dict]]) -> list[CellResult]:
        """Train one task: a single cell, or seed siblings together (``batch_seeds``).

        An exception in a batched run fails every cell of the group with its traceback.
        """
        results = [self.run(*cells[0])] if len(cells) == 1 else self._run_seed_group(cells)
        for result in results:
            result.metrics.update(self._where)
        return results

    def _run_seed_group(self, cells: list[tuple[str, dict]]) -> list[CellResult]:
        from scalelab.train.cell import run_seed_group

        configs = [config for _, config in cells]
        try:
            outcomes = run_seed_group(configs, self.dataset(configs[0]["data"]))
        except Exception:  # reported to the coordinator, which records it with each cell
            reason = traceback.format_exc()
            return [CellResult(cell_id, "failed", reason=reason) for cell_id, _ in cells]
        return [CellResult(cell_id, o.state, o.metrics, o.reason) for (cell_id, _), o in zip(cells, outcomes)]
