"""The coordinator's bookkeeping around the ``[pretrain]`` stage and stops, on a real SQLite
store: which cells it claims, retries, fails and releases.

What is tested is the runner (:func:`scalelab.execute.runner.run_study_cells`) and its
store; the executor is a stand-in that answers each task at once, so the tests can put a
lost worker, a failed pretraining run or a signal exactly where they need it. The real
executors carry the same tasks end to end in ``test_transfer.py`` and ``test_ray.py``.
"""

from __future__ import annotations

import os
import signal

import pytest
import torch

from scalelab.errors import InputError
from scalelab.execute.local import WorkerLost
from scalelab.execute.pretraining import TASK_PREFIX
from scalelab.execute.runner import Interrupted, run_study_cells
from scalelab.execute.work import CellResult
from scalelab.spec import parse_spec
from scalelab.store import RunStore


class InstantExecutor:
    """Runs nothing: each task's answer comes from ``answer(task_id, config)`` at the next
    wait(), unless ``intercept(executor)`` returns events of its own first."""

    def __init__(self, *, workers: int = 2, answer=None, intercept=None):
        self.workers = workers
        self.slots: list[list[tuple[str, dict]]] = []
        self.size = 0
        self.answer = answer or (lambda task_id, config: done(task_id))
        self.intercept = intercept
        self.submitted: list[str] = []

    def start(self, n_tasks: int, *, preload=None) -> None:
        self.size = min(self.workers, max(self.size, n_tasks))

    def idle_slots(self) -> int:
        return self.size - len(self.slots)

    def in_flight(self) -> list[str]:
        return [task_id for task in self.slots for task_id, _ in task]

    def submit(self, task) -> None:
        assert len(self.slots) < self.size, "a task was submitted with no idle worker"
        self.slots.append(list(task))
        self.submitted += [task_id for task_id, _ in task]

    def wait(self, timeout: float):
        if self.intercept is not None:
            events = self.intercept(self)
            if events:
                return events
        events = [self.answer(task_id, config) for task in self.slots for task_id, config in task]
        self.slots = []
        return events

    def stop(self) -> None:
        self.slots = []

    shutdown = stop


def done(task_id: str) -> CellResult:
    checkpoint = _weights() if task_id.startswith(TASK_PREFIX) else None
    return CellResult(task_id, "done", {"test_loss": 1.0}, None, checkpoint)


def _weights() -> bytes:
    import io

    buffer = io.BytesIO()
    torch.save({"w": torch.zeros(1)}, buffer)
    return buffer.getvalue()


TRANSFER = {
    "name": "t",
    "data": {"name": "digits"},
    "model": {"family": "mlp"},
    "train": {"epochs": 1},
    "pretrain": {"data": {"name": "digits", "label_noise": 0.1}, "train": {"epochs": 1}},
    "grid": {"init_from": ["none", "pretrain"], "data_fraction": [0.5, 1.0], "seed": [0, 1]},
}


@pytest.fixture
def study(tmp_path):
    spec = parse_spec(TRANSFER, source="t.toml")
    store = RunStore.open(tmp_path / "runs.db")
    store.register_study(spec)
    yield spec, store
    store.close()


def states(store: RunStore) -> dict[str, str]:
    return {f"{c.params['init_from']} {c.params['data_fraction']} {c.params['seed']}": c.state for c in store.cells("t")}


def test_fine_tuned_cells_are_claimed_only_after_their_checkpoint_is_stored(study):
    spec, store = study
    order = []

    def answer(task_id, config):
        if not task_id.startswith(TASK_PREFIX):
            starts = config.get("initial_weights")
            order.append((task_id, None if starts is None else starts["pretrain"]["id"], set(store.checkpoint_ids())))
        return done(task_id)

    summary = run_study_cells(spec, store, InstantExecutor(answer=answer), progress=False)
    assert summary.pretrained == 2 and summary.counts["done"] == 8
    for _, checkpoint_id, held in order:
        assert checkpoint_id is None or checkpoint_id in held


def test_a_worker_lost_in_pretraining_is_retried_once_then_its_cells_fail(study):
    spec, store = study
    losses = {"left": 1}

    def answer(task_id, config):
        if task_id.startswith(TASK_PREFIX) and losses["left"]:
            losses["left"] -= 1
            return WorkerLost(task_id, "worker process died (killed by signal 9)")
        return done(task_id)

    executor = InstantExecutor(answer=answer)
    summary = run_study_cells(spec, store, executor, progress=False)
    assert summary.pretrained == 2 and set(states(store).values()) == {"done"}
    assert len([t for t in executor.submitted if t.startswith(TASK_PREFIX)]) == 3  # one retry

    spec2 = parse_spec({**TRANSFER, "name": "u", "pretrain": {**TRANSFER["pretrain"], "train": {"epochs": 2}}}, source="u.toml")
    store.register_study(spec2)
    always = InstantExecutor(answer=lambda t, c: WorkerLost(t, "worker process died") if t.startswith(TASK_PREFIX) else done(t))
    run_study_cells(spec2, store, always, progress=False)
    tuned = [c for c in store.cells("u") if c.params["init_from"] == "pretrain"]
    assert {c.state for c in tuned} == {"failed"} and all("lost its worker" in c.reason for c in tuned)


def test_cells_of_a_failed_pretraining_are_not_claimed_again_in_the_same_run(study):
    """Another process resets them with --retry-failed mid-run: this run leaves them
    pending for a later run (which trains the checkpoint again) instead of crashing."""
    spec, store = study
    reset = {"done": False}

    def answer(task_id, config):
        if task_id.startswith(TASK_PREFIX):
            return CellResult(task_id, "failed", reason="Traceback: out of memory")
        return done(task_id)

    def intercept(executor):
        failed = [c for c in store.cells("t") if c.state == "failed"]
        if failed and not reset["done"]:
            with RunStore.open(store.path) as other:
                assert other.reset_failed("t") == len(failed)
            reset["done"] = True
        return None

    summary = run_study_cells(spec, store, InstantExecutor(answer=answer, intercept=intercept), progress=False)
    assert reset["done"] and summary.pretrained == 0
    assert {s for k, s in states(store).items() if k.startswith("pretrain")} == {"pending"}
    assert {s for k, s in states(store).items() if k.startswith("none")} == {"done"}


def test_cells_claimed_but_not_handed_out_go_back_to_pending_on_an_error(tmp_path):
    checkpoint = tmp_path / "ck.pt"
    torch.save({"w": torch.zeros(1)}, checkpoint)
    raw = {"name": "f", "data": {"name": "digits"}, "model": {"family": "mlp"}, "train": {"init_from": str(checkpoint)},
           "grid": {"seed": [0, 1, 2, 3]}}  # fmt: skip
    spec = parse_spec(raw, source="f.toml")
    torch.save({"w": torch.ones(1)}, checkpoint)  # changed after the study was read
    with RunStore.open(tmp_path / "runs.db") as store:
        store.register_study(spec)
        with pytest.raises(InputError, match="the file changed after the study was read"):
            run_study_cells(spec, store, InstantExecutor(), progress=False)
        assert store.state_counts("f")["pending"] == 4  # claimable at once, not after the lease


def test_a_result_after_a_lost_worker_in_one_batch_is_kept_when_stopping(tmp_path):
    """A group-wide SIGTERM kills one worker just as the other finishes: the finished cell
    is recorded and the lost one goes back to pending."""
    spec = parse_spec({"name": "s", "data": {"name": "digits"}, "model": {"family": "mlp"}, "grid": {"seed": [0, 1]}}, source="s.toml")

    def intercept(executor):
        lost, finished = (task[0][0] for task in executor.slots)
        executor.slots = []
        os.kill(os.getpid(), signal.SIGTERM)  # the runner's handler records it
        return [WorkerLost(lost, "worker process died (killed by signal 15)"), done(finished)]

    with RunStore.open(tmp_path / "runs.db") as store:
        store.register_study(spec)
        with pytest.raises(Interrupted):
            run_study_cells(spec, store, InstantExecutor(intercept=intercept), progress=False)
        assert {k: v for k, v in store.state_counts("s").items() if v} == {"pending": 1, "done": 1}
