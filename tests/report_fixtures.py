"""Studies for the report tests, written straight into a real run store.

Training is not what these tests check, so the cells' metrics come from a known law
(plus seeded noise) and are recorded through the store's own claim-and-finish path, the
way the coordinator records them. The browser test trains a real, tiny study instead.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from scalelab.spec import load_spec
from scalelab.store import RunStore, new_owner_id
from scalelab.study import Study

STUDY = """\
name = {name!r}
description = {description!r}

[data]
name = "digits"
test_size = 0.25

[model]
family = "mlp"

[train]
epochs = 1

[grid]
{grid}

[target]
metric = "test_error"
"""


def synthetic_metrics(params: dict) -> dict:
    """Metrics of a cell from a saturating law in data and size; label noise adds error."""
    fraction, width, seed = params["data_fraction"], params["width"], params["seed"]
    noise = params.get("label_noise", 0.0)
    n_train = round(1347 * fraction)
    n_params = int(4000 * width)
    per_sample = 6 * n_params
    epochs = 3
    rng = np.random.default_rng(abs(hash((fraction, width, seed, noise))) % 2**32)
    error = 0.01 + 2.5 * n_train**-0.6 + 4.0 * n_params**-0.5 + 0.5 * noise
    error = float(np.clip(error * np.exp(rng.normal(0, 0.05)), 0.001, 0.89))
    flops = float(per_sample * n_train * epochs)
    return {
        "train_loss": error / 2, "test_loss": 3 * error, "test_error": error, "n_params": n_params, "n_train": n_train,
        "n_test": 450, "n_classes": 10, "epochs": epochs, "steps": 10, "flops": flops, "flops_per_sample": per_sample,
        "wall_s": 0.2, "train_s": 0.1, "samples_per_s": 1e4, "compute": flops, "compute_unit": "flops",
        "device": "cpu", "dtype": "float32", "seed": seed,
    }  # fmt: skip


def fake_study(folder: Path, *, grid: str, name: str = "fake", description: str = "", failures: dict | None = None) -> Study:
    """A study whose cells are all finished: done with :func:`synthetic_metrics`, or failed
    or diverged as ``failures`` says ({cell index: (state, reason)})."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "study.toml"
    path.write_text(STUDY.format(name=name, description=description, grid=grid), encoding="utf-8")
    spec = load_spec(path)
    store_path = folder / "scalelab.db"
    failures = failures or {}
    owner = new_owner_id()
    with RunStore.open(store_path) as store:
        store.register_study(spec)
        claimed = {c.cell_id: c for c in store.claim(spec.name, owner, limit=len(spec.cells))}
        for i, cell in enumerate(spec.cells):
            assert cell.cell_id in claimed
            if i in failures:
                state, reason = failures[i]
                store.finish(cell.cell_id, owner, state=state, reason=reason)
            else:
                store.finish(cell.cell_id, owner, state="done", metrics=synthetic_metrics(cell.params))
    return Study(spec, store=store_path)
