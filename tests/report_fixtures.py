"""Studies for the report tests, written straight into a real run store.

Training is not what these tests check, so the cells' metrics come from a known law
(plus seeded noise) and are recorded through the store's own claim-and-finish path, the
way the coordinator records them. The browser test trains a real, tiny study instead.

With ``per_class``, the cells also carry the per-class results a classifier records
(lists with a null for a class absent from the test set, the worst class, the gap), and
with ``groups`` the per-group ones (dicts): a store as written since those were added.
Without them the store looks like one written before.

With ``sizes``, the cells also carry what every torch run now records of its model
(``nonzero_params``, ``model_bytes``, ``inference_samples_per_s``, ``inference_device``),
and cells of a ``prune`` or ``quantize`` grid the compressed model's test metrics with the
trained model's kept under ``*_before_compression``. Without it, no size column exists.

Cells of a grid that sweeps ``init_from`` (``extra`` adds the ``[pretrain]`` section it
needs) are recorded as if fine-tuning had been worth :func:`transferred` extra training
samples: a fine-tuned cell's metrics are those of the same model trained from scratch on
``n_train`` plus that many samples.
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
{extra}"""


def synthetic_metrics(params: dict, *, per_class: bool = False, groups: bool = False, sizes: bool = False) -> dict:
    """Metrics of a cell from a saturating law in data and size; label noise adds error,
    class imbalance removes training samples of the rarer classes; with ``sizes``, pruning
    and int8 (:func:`synthetic_compression`) add some after training."""
    fraction, width, seed = params["data_fraction"], params["width"], params["seed"]
    noise = params.get("label_noise", 0.0)
    imbalance = params.get("class_imbalance", 1.0)
    n_train = round(1347 * fraction * class_shares(imbalance).mean())
    n_params = int(4000 * width)
    per_sample = 6 * n_params
    epochs = 3
    # Balanced cells keep the noise they always had, so existing studies keep their numbers.
    tuned = grid_value(params, "init_from", "none") != "none"
    rng = np.random.default_rng(abs(hash((fraction, width, seed, noise, *([imbalance] if imbalance != 1 else []), *([1] if tuned else [])))) % 2**32)
    effective = n_train + (transferred(n_train, n_params) if tuned else 0.0)
    error = 0.01 + 2.5 * effective**-0.6 + 4.0 * n_params**-0.5 + 0.5 * noise
    error = float(np.clip(error * np.exp(rng.normal(0, 0.05)), 0.001, 0.89))
    flops = float(per_sample * n_train * epochs)
    metrics = {
        "train_loss": error / 2, "test_loss": 3 * error, "test_error": error, "n_params": n_params, "n_train": n_train,
        "n_test": 450, "n_classes": 10, "epochs": epochs, "steps": 10, "flops": flops, "flops_per_sample": per_sample,
        "wall_s": 0.2, "train_s": 0.1, "samples_per_s": 1e4, "compute": flops, "compute_unit": "flops",
        "device": "cpu", "dtype": "float32", "seed": seed,
    }  # fmt: skip
    if sizes:
        compressed = synthetic_compression(error, params, n_params=n_params, n_train=n_train, per_sample=per_sample, seed=seed)
        metrics.update(compressed)
        error = compressed.get("test_error", error)
    if per_class:
        metrics.update(synthetic_class_metrics(error, n_train=n_train, imbalance=imbalance, absent=seed == 1))
    if groups:
        group_error = {"north": 0.8 * error, "south": min(1.0, 1.5 * error)}
        metrics.update(group_error=group_error, group_n_test={"north": 300, "south": 150},
                       worst_group_error=max(group_error.values()),
                       group_error_gap=max(group_error.values()) - min(group_error.values()))  # fmt: skip
    return metrics


def transferred(n_train: float, n_params: float) -> float:
    """The samples a fine-tuned cell's checkpoint is worth: D_T = 20·D_F^0.5·(N/4000)^0.3."""
    return 20.0 * n_train**0.5 * (n_params / 4000) ** 0.3


def grid_value(params: dict, name: str, default):
    """A grid value by its name, however the grid wrote the key (``prune`` or ``train.prune``)."""
    return next((v for k, v in params.items() if k.split(".")[-1] == name), default)


def synthetic_compression(error: float, params: dict, *, n_params: int, n_train: int, per_sample: int, seed: int) -> dict:
    """A torch run's size and speed, and a compressed run's metrics after compression.

    Pruning a share r adds the share 0.6·r² to the error (half that after a fine-tune), int8
    0.4 points; int8 stores a weight in 1 byte rather than 4 and runs 1.5 times as fast.
    Throughput grows 10% from one seed to the next, so its mean over seeds is not any run's.
    """
    prune = float(grid_value(params, "prune", 0.0))
    finetune = int(grid_value(params, "prune_finetune_epochs", 0))
    quantize = grid_value(params, "quantize", "none")
    int8 = quantize == "int8"
    speed = 8e9 / n_params * (1 + 0.1 * seed)
    metrics = {
        "nonzero_params": round(n_params * (1 - prune)), "model_bytes": n_params + 2000 if int8 else 4 * n_params + 1200,
        "inference_samples_per_s": speed * (1.5 if int8 else 1.0), "inference_device": "cpu",
    }  # fmt: skip
    if prune > 0 or int8:
        after = min(0.89, error * (1 + 0.6 * prune**2 * (0.5 if finetune else 1.0)) + (0.004 if int8 else 0.0))
        metrics.update(
            test_error=after, test_loss=3 * after, test_error_before_compression=error, test_loss_before_compression=3 * error,
            inference_samples_per_s_before_compression=speed, nonzero_params_before_compression=n_params,
        )  # fmt: skip
    if finetune:
        metrics["prune_finetune_flops"] = float(per_sample * n_train * finetune)
    return metrics


def class_shares(imbalance: float) -> np.ndarray:
    """The share of its training samples each of the 10 classes keeps: ``imbalance**(-k/9)``."""
    return float(imbalance) ** (-np.arange(10) / 9)


def synthetic_class_metrics(error: float, *, n_train: int, imbalance: float, absent: bool) -> dict:
    """Per-class results around ``error``. Balanced, the classes spread in proportion to the
    error, so more data narrows the gap; imbalanced, the rare classes fall further behind as
    the common ones gain data, so the gap widens. ``absent``: the last class is not tested."""
    spread = error * (1 + 0.8 * (np.arange(10) - 4.5) / 4.5)
    behind = 0.35 * (1 - class_shares(imbalance)) * (n_train / 168) ** 0.4
    errors = [float(e) for e in np.clip(spread + behind, 0.0, 1.0)]
    class_error = [*errors[:-1], None] if absent else errors
    present = [e for e in class_error if e is not None]
    return {
        "class_recall": [None if e is None else 1.0 - e for e in class_error], "class_error": class_error,
        "worst_class_error": max(present), "best_class_error": min(present), "class_error_gap": max(present) - min(present),
    }  # fmt: skip


def fake_study(folder: Path, *, grid: str, name: str = "fake", description: str = "", failures: dict | None = None,
               per_class: bool = False, groups: bool = False, sizes: bool = False, extra: str = "") -> Study:  # fmt: skip
    """A study whose cells are all finished: done with :func:`synthetic_metrics`, or failed
    or diverged as ``failures`` says ({cell index: (state, reason)}). ``extra``: more TOML
    after the study (a ``[pretrain]`` section)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "study.toml"
    path.write_text(STUDY.format(name=name, description=description, grid=grid, extra=extra), encoding="utf-8")
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
                store.finish(cell.cell_id, owner, state="done", metrics=synthetic_metrics(cell.params, per_class=per_class, groups=groups, sizes=sizes))
    return Study(spec, store=store_path)
