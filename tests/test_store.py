"""The run store: a real SQLite file, its states, leases and concurrency (DESIGN.md, "The run store")."""

from __future__ import annotations

import json
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from scalelab.runs import runs_frame
from scalelab.spec import parse_spec
from scalelab.store import STATES, RunStore, new_owner_id

TIMEOUT_S = 120  # safety net for the subprocesses only; nothing asserts on speed


def make_spec(lrs=(0.1, 0.2, 0.3), *, name: str = "study", seeds=(0,)):
    raw = {
        "name": name,
        "data": {"name": "digits"},
        "model": {"family": "mlp"},
        "train": {"epochs": 1},
        "grid": {"lr": list(lrs), "seed": list(seeds)},
    }
    return parse_spec(raw, source=f"{name}.toml")


@pytest.fixture
def store(tmp_store: Path):
    with RunStore.open(tmp_store) as opened:
        yield opened


@pytest.fixture
def spec(store: RunStore):
    spec = make_spec()
    store.register_study(spec)
    return spec


def states(store: RunStore, study: str = "study") -> dict[str, str]:
    return {c.cell_id: c.state for c in store.cells(study)}


def test_registered_study_has_every_cell_pending(store, spec):
    cells = store.cells("study")
    assert [c.cell_id for c in cells] == [c.cell_id for c in spec.cells]
    assert all(c.state == "pending" and c.attempts == 0 and c.metrics == {} for c in cells)
    assert [c.config for c in cells] == [c.config for c in spec.cells]
    assert [c.params for c in cells] == [c.params for c in spec.cells]
    assert store.study_names() == ["study"]
    assert store.study_info("study")["grid_keys"] == ["lr", "seed"]


def test_state_counts_has_all_five_states(store, spec):
    assert store.state_counts("study") == {"pending": 3, "running": 0, "done": 0, "failed": 0, "diverged": 0}
    assert set(store.state_counts("study")) == set(STATES) == {"pending", "running", "done", "failed", "diverged"}


def test_claim_marks_running_and_counts_attempts(store, spec):
    (claimed,) = store.claim("study", "owner-a")
    assert claimed.cell_id == spec.cells[0].cell_id  # grid order
    assert claimed.state == "running"
    assert claimed.attempts == 1
    assert states(store)[claimed.cell_id] == "running"
    assert store.state_counts("study")["running"] == 1


def test_claims_by_two_owners_never_overlap(store, spec):
    seen = []
    for turn in range(10):
        seen += [c.cell_id for c in store.claim("study", f"owner-{turn % 2}")]
    assert sorted(seen) == sorted(c.cell_id for c in spec.cells)
    assert store.claim("study", "owner-late") == []


def test_claim_limit(store, spec):
    assert len(store.claim("study", "a", limit=2)) == 2
    assert len(store.claim("study", "b", limit=5)) == 1


def test_finish_by_owner_records_metrics(store, spec):
    (cell,) = store.claim("study", "owner-a")
    assert store.finish(cell.cell_id, "owner-a", state="done", metrics={"test_loss": 0.5, "n_params": 10})
    (record,) = [c for c in store.cells("study") if c.cell_id == cell.cell_id]
    assert record.state == "done"
    assert record.metrics == {"test_loss": 0.5, "n_params": 10}
    assert record.reason is None


def test_finish_writes_non_finite_metrics_as_null(store, spec):
    (cell,) = store.claim("study", "a")
    assert store.finish(cell.cell_id, "a", state="diverged", metrics={"test_loss": float("nan"), "steps": 3}, reason="r")
    (record,) = [c for c in store.cells("study") if c.cell_id == cell.cell_id]
    assert record.metrics == {"test_loss": None, "steps": 3}


def test_finish_by_a_non_owner_writes_nothing(store, spec):
    (cell,) = store.claim("study", "owner-a")
    assert store.finish(cell.cell_id, "intruder", state="done", metrics={"test_loss": 0.5}) is False
    (record,) = [c for c in store.cells("study") if c.cell_id == cell.cell_id]
    assert record.state == "running"
    assert record.metrics == {}


def test_finish_of_an_unclaimed_cell_writes_nothing(store, spec):
    assert store.finish(spec.cells[0].cell_id, "owner-a", state="done", metrics={"x": 1}) is False
    assert states(store)[spec.cells[0].cell_id] == "pending"


def test_finish_rejects_a_non_final_state(store, spec):
    (cell,) = store.claim("study", "a")
    with pytest.raises(ValueError):
        store.finish(cell.cell_id, "a", state="pending")


def test_release_returns_cells_to_pending(store, spec):
    claimed = store.claim("study", "owner-a", limit=2)
    store.release([claimed[0].cell_id], "someone-else")  # not theirs: no effect
    assert states(store)[claimed[0].cell_id] == "running"
    store.release([c.cell_id for c in claimed], "owner-a")
    assert set(states(store).values()) == {"pending"}
    again = store.claim("study", "owner-b", limit=3)
    assert {c.cell_id: c.attempts for c in again}[claimed[0].cell_id] == 2


def test_reset_failed_requeues_failed_and_diverged_and_keeps_reason(store, spec):
    a, b, c = store.claim("study", "o", limit=3)
    store.finish(a.cell_id, "o", state="failed", reason="Traceback: boom")
    store.finish(b.cell_id, "o", state="diverged", metrics={"diverged_step": 4}, reason="non-finite at step 4")
    store.finish(c.cell_id, "o", state="done", metrics={"test_loss": 1.0})
    assert store.reset_failed("study") == 2
    records = {r.cell_id: r for r in store.cells("study")}
    assert records[a.cell_id].state == "pending" and records[a.cell_id].reason == "Traceback: boom"
    assert records[b.cell_id].state == "pending" and records[b.cell_id].reason == "non-finite at step 4"
    assert records[c.cell_id].state == "done" and records[c.cell_id].metrics == {"test_loss": 1.0}
    assert {r.cell_id for r in store.claim("study", "o2", limit=5)} == {a.cell_id, b.cell_id}


def test_expired_lease_is_claimable_again_and_the_old_owner_loses_it(store, spec):
    (cell,) = store.claim("study", "slow", lease_s=0.01)
    time.sleep(0.1)
    taken = store.claim("study", "fresh", limit=3)
    assert cell.cell_id in {c.cell_id for c in taken}
    assert {c.cell_id: c.attempts for c in taken}[cell.cell_id] == 2
    # The first owner's late result must not overwrite the new run's.
    assert store.finish(cell.cell_id, "slow", state="done", metrics={"x": 1}) is False
    assert store.finish(cell.cell_id, "fresh", state="done", metrics={"x": 2}) is True
    (record,) = [c for c in store.cells("study") if c.cell_id == cell.cell_id]
    assert record.metrics == {"x": 2}


def test_live_lease_is_not_claimable(store, spec):
    store.claim("study", "a", limit=3, lease_s=3600)
    assert store.claim("study", "b", limit=3) == []


def test_renew_keeps_a_lease_alive(store, spec):
    store.claim("study", "a", limit=3, lease_s=0.01)
    store.renew("a", lease_s=3600)
    time.sleep(0.05)
    assert store.claim("study", "b", limit=3) == []


def test_reclaim_dead_requeues_cells_of_a_dead_process(store, spec):
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait(timeout=TIMEOUT_S)
    dead_owner = f"{socket.gethostname()}:{process.pid}:deadbeef"
    live_owner = new_owner_id()  # this process: alive
    (dead_cell,) = store.claim("study", dead_owner, lease_s=3600)
    (live_cell,) = store.claim("study", live_owner, lease_s=3600)
    assert store.reclaim_dead() == 1
    current = states(store)
    assert current[dead_cell.cell_id] == "pending"
    assert current[live_cell.cell_id] == "running"
    assert store.reclaim_dead() == 0


def test_reclaim_dead_leaves_other_hosts_alone(store, spec):
    store.claim("study", "some-other-host.invalid:1:cafe", lease_s=3600)
    assert store.reclaim_dead() == 0


def test_count_in_states_counts_the_given_cells_in_the_given_states(store, spec):
    ids = [c.cell_id for c in spec.cells]
    owner = new_owner_id()
    first, second = store.claim("study", owner, limit=2)
    store.finish(first.cell_id, owner, state="done", metrics={"loss": 1.0})
    store.finish(second.cell_id, owner, state="failed", reason="boom")
    assert store.count_in_states(ids, ["done"]) == 1
    assert store.count_in_states(ids, ["done", "failed", "diverged"]) == 2
    assert store.count_in_states(ids, ["pending"]) == len(ids) - 2
    assert store.count_in_states([first.cell_id, "not-a-cell"], ["done"]) == 1
    assert store.count_in_states([], ["done"]) == 0


def test_store_uses_wal_and_a_busy_timeout(tmp_store, store, spec):
    with sqlite3.connect(tmp_store) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal"
    assert store._db.execute("PRAGMA busy_timeout").fetchone()[0] > 0


def test_results_survive_reopening(tmp_store, store, spec):
    (cell,) = store.claim("study", "o")
    store.finish(cell.cell_id, "o", state="done", metrics={"test_loss": 0.25})
    store.close()
    with RunStore.open_existing(tmp_store) as reopened:
        assert states(reopened)[cell.cell_id] == "done"
        assert reopened.state_counts("study")["done"] == 1


def test_reregistering_an_edited_grid_keeps_unchanged_results(store, spec):
    by_lr = {c.params["lr"]: c.cell_id for c in spec.cells}
    claimed = store.claim("study", "o", limit=3)
    for cell in claimed:
        store.finish(cell.cell_id, "o", state="done", metrics={"test_loss": cell.config["train"]["lr"]})

    edited = make_spec(lrs=(0.1, 0.4))
    store.register_study(edited)
    records = {r.params["lr"]: r for r in store.cells("study")}
    assert set(records) == {0.1, 0.4}  # 0.2 and 0.3 left the study's membership
    assert records[0.1].cell_id == by_lr[0.1]
    assert records[0.1].state == "done" and records[0.1].metrics == {"test_loss": 0.1}
    assert records[0.4].state == "pending"
    assert sum(store.state_counts("study").values()) == 2
    assert [r.cell_id for r in store.cells("study")] == [c.cell_id for c in edited.cells]


def test_two_studies_share_identical_cells(store, spec):
    """A cell is its configuration: a second study naming it sees its result."""
    (cell,) = store.claim("study", "o")
    store.finish(cell.cell_id, "o", state="done", metrics={"test_loss": 0.5})
    store.register_study(make_spec(lrs=(0.1,), name="other"))
    (other,) = store.cells("other")
    assert other.cell_id == cell.cell_id and other.state == "done"


def test_runs_frame_has_one_row_per_cell(store):
    spec = make_spec(lrs=(0.1, 0.2), seeds=(0, 1))
    store.register_study(spec)
    first = store.claim("study", "o")[0]
    store.finish(first.cell_id, "o", state="done", metrics={"test_loss": 0.7, "n_params": 100, "custom": 3})
    frame = runs_frame(store, "study")
    assert len(frame) == 4
    assert list(frame.columns[:4]) == ["cell_id", "state", "lr", "seed"]
    assert {"test_loss", "test_error", "n_params", "flops", "custom", "attempts", "reason"} <= set(frame.columns)
    assert list(frame["cell_id"]) == [c.cell_id for c in spec.cells]
    row = frame.set_index("cell_id").loc[first.cell_id]
    assert row["state"] == "done" and row["test_loss"] == 0.7 and row["custom"] == 3 and row["attempts"] == 1
    assert sorted(zip(frame["lr"], frame["seed"])) == [(0.1, 0), (0.1, 1), (0.2, 0), (0.2, 1)]
    assert set(frame["state"]) == {"done", "pending"}


def test_open_in_a_missing_folder_is_an_input_error(tmp_path):
    from scalelab.errors import InputError

    with pytest.raises(InputError):
        RunStore.open(tmp_path / "nowhere" / "scalelab.db")
    with pytest.raises(InputError):
        RunStore.open_existing(tmp_path / "absent.db")


def test_a_file_that_is_not_a_store_is_an_input_error(tmp_path):
    from scalelab.errors import InputError

    bogus = tmp_path / "bogus.db"
    bogus.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(InputError):
        RunStore.open(bogus)


# ---------------------------------------------------------------------------------------------
# Two real processes on one file.
# ---------------------------------------------------------------------------------------------

CLAIMER = textwrap.dedent(
    """
    import json, os, sys, time
    from pathlib import Path
    from scalelab.store import RunStore, new_owner_id

    store_path, folder, name = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
    store = RunStore.open(store_path)
    owner = new_owner_id()
    (folder / f"ready-{name}").touch()
    while not (folder / "go").exists():  # start together, so the claims really interleave
        time.sleep(0.001)
    mine = []
    while True:
        cells = store.claim("study", owner, limit=1)
        if not cells:
            break
        for cell in cells:
            mine.append(cell.cell_id)
            time.sleep(0.002)  # "training": time outside the lock, so the other process gets turns
            assert store.finish(cell.cell_id, owner, state="done", metrics={"by": name})
    print(json.dumps(mine))
    """
)


def test_two_processes_never_claim_the_same_cell(tmp_store, tmp_path):
    spec = make_spec(lrs=[round(0.001 * (i + 1), 6) for i in range(60)], seeds=(0, 1))
    with RunStore.open(tmp_store) as store:
        store.register_study(spec)
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", CLAIMER, str(tmp_store), str(tmp_path), name],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("a", "b")
    ]
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while not all((tmp_path / f"ready-{n}").exists() for n in "ab"):
            assert all(p.poll() is None for p in processes), [p.communicate() for p in processes]
            assert time.monotonic() < deadline
            time.sleep(0.01)
        (tmp_path / "go").touch()
        outputs = [p.communicate(timeout=TIMEOUT_S) for p in processes]
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
                p.wait()
    for process, (out, err) in zip(processes, outputs):
        assert process.returncode == 0, err
    a, b = (json.loads(out) for out, _ in outputs)
    assert not set(a) & set(b)
    assert len(a) + len(b) == len(set(a) | set(b)) == len(spec.cells)
    with RunStore.open_existing(tmp_store) as store:
        records = store.cells("study")
        assert all(r.state == "done" and r.attempts == 1 for r in records)
        assert {r.cell_id for r in records if r.metrics["by"] == "a"} == set(a)


OPENER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from scalelab.store import RunStore
    store_path, go, ready = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    ready.touch()
    while not go.exists():
        time.sleep(0.001)
    with RunStore.open(store_path) as store:
        print(sorted(store.state_counts("none")))
    """
)


def test_processes_opening_a_new_store_together_all_succeed(tmp_path):
    """Creating the file and its schema races; every opener must wait its turn, not fail."""
    for trial in range(4):
        store_path, go = tmp_path / f"new-{trial}.db", tmp_path / f"go-{trial}"
        ready = [tmp_path / f"ready-{trial}-{i}" for i in range(8)]
        processes = [
            subprocess.Popen(
                [sys.executable, "-c", OPENER, str(store_path), str(go), str(flag)], stderr=subprocess.PIPE, text=True
            )
            for flag in ready
        ]
        deadline = time.monotonic() + TIMEOUT_S
        while not all(flag.exists() for flag in ready) and time.monotonic() < deadline:
            time.sleep(0.01)
        go.touch()  # all at once, so the opens overlap
        errors = [p.communicate(timeout=TIMEOUT_S)[1] for p in processes]
        assert [p.returncode for p in processes] == [0] * len(processes), errors
