"""Honest answers on every path: one layer decides which runs form a curve.

A small copy of the demo's grid (two families, two widths, four data fractions, clean
and noisy labels, two seeds) is trained once by a ``python -m scalelab run`` process;
then ``fit``, ``backtest``, ``plan``, ``runs`` and ``status`` are asked about it as a user
would, through ``scalelab.cli.main`` (the console script's entry point) in this process,
which answers as a ``scalelab`` process does:

* ``fit --group width`` gives one law per family and width, on the clean runs, and says
  what it grouped by and what it left out;
* ``plan`` gives one plan per family, and its "now" (the law at the best point) holds
  the best point's mean over seeds inside its interval;
* ``plan --hardware h100`` gives the same hours on every call and names the MFU it
  assumed; an unknown device is refused before any fitting;
* every JSON output parses with a strict parser (no NaN, no Infinity);
* the envelope of a learning-rate sweep is chosen on the training loss when there is no
  validation split (on val_error when there is), never on the test metric itself;
* every run records its MFU against the CPU peak measured once and kept in the store.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cli_helpers import assert_one_line_error, cli_env, read_store, run_cli, write_study

pytestmark = pytest.mark.slow

MINI_DEMO = """
name = "mini-demo"

[data]
name = "digits"
test_size = 0.25

[train]
device = "cpu"
lr = 2e-3
batch_size = 32
epochs = 2
min_steps = 40

[grid]
family = ["mlp", "seed_cnn"]
width = [0.5, 1]
data_fraction = [0.125, 0.25, 0.5, 1.0]
label_noise = [0.0, 0.2]
seed = [0, 1]

[target]
metric = "test_error"
"""


def strict_loads(text: str):
    """json.loads that refuses NaN and Infinity, which are not JSON."""

    def refuse(name):
        raise ValueError(f"not JSON: {name}")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    """(env, folder, store) of the trained mini demo."""
    folder = tmp_path_factory.mktemp("mini-demo")
    env = cli_env(folder / "cache")
    study = write_study(folder / "mini.toml", MINI_DEMO)
    store = folder / "scalelab.db"
    cli = run_cli("run", study, "--store", store, "--quiet", env=env, cwd=folder, timeout=600)
    assert cli.returncode == 0, cli.describe()
    return env, folder, store


@pytest.fixture
def scalelab(scalelab_main, mini):
    """``scalelab(*args)``: a command in the mini demo's folder, with its cache, in this process."""
    env, folder, store = mini

    def run(*args):
        return scalelab_main(*args, cwd=folder, cache_dir=folder / "cache")

    return run


@pytest.fixture
def ask(scalelab, mini):
    """``ask(*args)``: the parsed JSON a command prints about the mini demo's store."""
    env, folder, store = mini

    def run(*args) -> dict:
        cli = scalelab(*args, "--store", store, "--format", "json")
        assert cli.returncode == 0, cli.describe()
        return strict_loads(cli.stdout)

    return run


def test_fit_with_group_width_gives_one_law_per_family_and_width_on_clean_runs(mini, ask, scalelab):
    out = ask("fit", "mini-demo", "--group", "width", "--predict", "5000", "--bootstrap", "200")
    curves = sorted((g["curve"]["family"], g["curve"]["width"]) for g in out["groups"])
    assert curves == [("mlp", 0.5), ("mlp", 1.0), ("seed_cnn", 0.5), ("seed_cnn", 1.0)]
    for g in out["groups"]:
        assert "error" not in g, g
        assert g["n_points"] == 8  # 4 fractions x 2 seeds, clean labels only
        assert g["group"] == f"{g['curve']['family']}, width {g['curve']['width']:g}"
    info = out["curves"]
    assert info["by"] == ["family", "width"] and info["held"] == {"label_noise": 0.0}
    assert len(info["left_out"]) == 32 and all("label_noise = 0.2" in r["reason"] for r in info["left_out"])
    env, folder, store = mini
    cli = scalelab("fit", "mini-demo", "--store", store, "--group", "width", "--bootstrap", "100")
    assert cli.returncode == 0, cli.describe()
    assert "one curve per family, width" in cli.stdout and "held at: label_noise = 0" in cli.stdout
    assert "left out 32 of 64 runs" in cli.stdout


def test_without_group_the_curves_still_split_by_model(ask):
    out = ask("fit", "mini-demo", "--bootstrap", "100")
    assert len(out["groups"]) == 4 and out["curves"]["by"] == ["family", "width"]


def test_plan_gives_one_plan_per_family_and_now_holds_the_best_point(ask):
    out = ask("plan", "mini-demo", "--budget", "3.7e10", "--bootstrap", "300")
    assert sorted(p["group"] for p in out["plans"]) == ["mlp", "seed_cnn"] and out["skipped"] == []
    assert out["curves"]["by"] == ["family"]
    for p in out["plans"]:
        assert p["law"]["n_points"] == 16  # 2 widths x 4 fractions x 2 seeds, clean labels
        best, now = p["best_run"], p["marginal"]["now"]
        assert best["seeds"] == 2
        assert now["n_params"] == best["n_params"] and now["samples"] == pytest.approx(best["samples"])
        assert now["lo"] <= best["mean"] <= now["hi"], (p["group"], best, now)


def test_plan_hours_on_an_h100_repeat_exactly_and_name_the_mfu(mini, ask, scalelab):
    first = ask("plan", "mini-demo", "--budget", "1e15", "--hardware", "h100", "--bootstrap", "100")
    second = ask("plan", "mini-demo", "--budget", "1e15", "--hardware", "h100", "--bootstrap", "100")
    for a, b in zip(first["plans"], second["plans"]):
        assert a["hardware"] == b["hardware"]
        h = a["hardware"]
        assert h["precision"] == "bf16" and h["mfu"] == 0.4 and "assumed 40%" in h["mfu_source"]
        assert h["hours"] == pytest.approx(1e15 / (989.4e12 * 0.4) / 3600, rel=1e-12)
        lo, hi = h["hours_range"]
        assert lo < h["hours"] < hi
    env, folder, store = mini
    cli = scalelab("plan", "mini-demo", "--store", store, "--budget", "1e15", "--hardware", "h100", "--bootstrap", "100")
    assert cli.returncode == 0 and "40% MFU" in cli.stdout and "bf16" in cli.stdout, cli.describe()


def test_plan_on_the_cpu_uses_the_runs_own_mfu_and_the_stored_peak(ask):
    out = ask("plan", "mini-demo", "--budget", "1e12", "--hardware", "cpu", "--bootstrap", "100")
    again = ask("plan", "mini-demo", "--budget", "1e12", "--hardware", "cpu", "--bootstrap", "100")
    for p, q in zip(out["plans"], again["plans"]):
        h = p["hardware"]
        assert h == q["hardware"]  # the peak is the store's, measured once: no noise between calls
        assert "median MFU" in h["mfu_source"] and 0 < h["mfu"] < 1.5
        assert h["mfu_range"][0] <= h["mfu"] <= h["mfu_range"][1]


def test_an_unknown_device_is_refused_before_any_fitting(mini, scalelab):
    env, folder, store = mini
    before = store.stat().st_mtime_ns
    cli = scalelab("plan", "mini-demo", "--store", store, "--budget", "1e15", "--hardware", "tpu-v9")
    assert_one_line_error(cli, "tpu-v9", "h100")
    assert store.stat().st_mtime_ns == before


def test_every_run_records_its_mfu_against_the_peak_kept_in_the_store(mini, ask):
    env, folder, store = mini
    ((value,),) = read_store(store, "SELECT value FROM meta WHERE key = 'cpu_peak'")
    peak = json.loads(value)
    assert peak["fp32"] > 0 and peak["threads"] >= 1
    runs = ask("runs", "mini-demo")
    assert len(runs) == 64
    for r in runs:
        assert r["device_name"], r
        share = min(1.0, r["threads"] / peak["threads"])
        assert r["mfu"] == pytest.approx(r["flops_per_s"] / (peak["fp32"] * share), rel=1e-9)


def test_every_json_output_is_strict_json(mini, scalelab):
    env, folder, store = mini
    commands = [
        ("fit", "mini-demo", "--bootstrap", "100", "--predict", "1e9"),  # far out: bands may overflow
        ("backtest", "mini-demo", "--bootstrap", "100"),
        ("plan", "mini-demo", "--target", "0.001", "--bootstrap", "100"),
        ("plan", "mini-demo", "--budget", "1e30", "--bootstrap", "100"),
        ("runs", "mini-demo"),
        ("status", "mini-demo"),
        ("fit", "mini-demo", "--x", "n_params", "--x", "samples", "--bootstrap", "100"),
    ]
    for args in commands:
        cli = scalelab(*args, "--store", store, "--format", "json")
        assert cli.returncode == 0, cli.describe()
        strict_loads(cli.stdout)
        assert "NaN" not in cli.stdout and "Infinity" not in cli.stdout


def test_the_python_api_gives_the_cli_answers(mini, ask):
    from scalelab import load_study

    env, folder, store = mini
    study = load_study("mini-demo", store=store)
    laws = study.fit(group="width", n_boot=200, predict=[5000]).results
    cli = ask("fit", "mini-demo", "--group", "width", "--predict", "5000", "--bootstrap", "200")
    assert [r["group"] for r in laws] == [g["group"] for g in cli["groups"]]
    for api, out in zip(laws, cli["groups"]):
        assert api["params"] == pytest.approx(out["params"], rel=1e-9)
        assert api["predictions"][0]["y"] == pytest.approx(out["predictions"][0]["y"], rel=1e-9)
    plans = study.plan(budget=3.7e10, n_boot=300)
    assert [p["group"] for p in plans["plans"]] == ["mlp", "seed_cnn"]


# -- the envelope of a setting sweep ------------------------------------------------------
SWEEP = """
name = "lr-sweep"

[data]
name = "digits"
{data}

[model]
family = "mlp"

[train]
device = "cpu"
epochs = 1
min_steps = 20

[grid]
lr = [3e-4, 1e-2]
data_fraction = [0.25, 0.5, 1.0]
seed = [0, 1]

[target]
metric = "test_error"
"""


@pytest.mark.parametrize(("data", "chosen_on"), [("", "train_loss"), ("validation_split = 0.2", "val_error")])
def test_the_envelope_is_chosen_on_validation_or_training_loss_never_the_test_metric(tmp_path, scalelab_main, data, chosen_on):
    study = write_study(tmp_path / "sweep.toml", SWEEP.format(data=data))
    store = tmp_path / "s.db"
    ran = scalelab_main("run", study, "--store", store, "--workers", "1", "--quiet", cwd=tmp_path)
    assert ran.returncode == 0, ran.describe()
    cli = scalelab_main("fit", "lr-sweep", "--store", store, "--format", "json", "--bootstrap", "50", cwd=tmp_path)
    assert cli.returncode == 0, cli.describe()
    out = strict_loads(cli.stdout)
    assert out["curves"]["selected_on"] == chosen_on and out["curves"]["settings"] == ["lr"]
    runs = strict_loads(scalelab_main("runs", "lr-sweep", "--store", store, "--format", "json", cwd=tmp_path).stdout)
    left = {r["cell_id"] for r in out["curves"]["left_out"]}
    assert len(left) == 6  # one of two learning rates at each of three fractions, both seeds
    for fraction in (0.25, 0.5, 1.0):
        at = [r for r in runs if r["data_fraction"] == fraction]
        means = {lr: np.mean([r[chosen_on] for r in at if r["lr"] == lr]) for lr in (3e-4, 1e-2)}
        best = min(means, key=means.get)
        assert {r["cell_id"] for r in at if r["lr"] != best} <= left
        assert not {r["cell_id"] for r in at if r["lr"] == best} & left


def test_a_study_of_scikit_learn_models_only_has_no_plan_and_says_why(tmp_path, scalelab_main):
    text = ('name = "trees"\n\n[data]\nname = "digits"\n\n[model]\nfamily = "tree"\n\n[grid]\n'
            'max_leaf_nodes = [8, 64]\ndata_fraction = [0.25, 0.5, 1.0]\n\n[target]\nmetric = "test_error"\n')
    study = write_study(tmp_path / "trees.toml", text)
    store = tmp_path / "t.db"
    ran = scalelab_main("run", study, "--store", store, "--workers", "1", "--quiet", cwd=tmp_path)
    assert ran.returncode == 0, ran.describe()
    cli = scalelab_main("plan", "trees", "--store", store, "--budget", "1e12", cwd=tmp_path)
    assert_one_line_error(cli, "trees", "no measured FLOPs")
    fitted = scalelab_main("fit", "trees", "--store", store, "--format", "json", "--bootstrap", "50", cwd=tmp_path)
    assert fitted.returncode == 0, fitted.describe()
    assert sorted(g["curve"]["max_leaf_nodes"] for g in strict_loads(fitted.stdout)["groups"]) == [8, 64]


def test_runs_json_never_holds_nan(tmp_path: Path, scalelab_main):
    """A run without a validation split has no val_loss: null, not NaN."""
    study = write_study(tmp_path / "s.toml", SWEEP.format(data="").replace("lr = [3e-4, 1e-2]", "lr = [1e-3]"))
    store = tmp_path / "s.db"
    ran = scalelab_main("run", study, "--store", store, "--workers", "1", "--quiet", cwd=tmp_path)
    assert ran.returncode == 0, ran.describe()
    cli = scalelab_main("runs", "lr-sweep", "--store", store, "--format", "json", cwd=tmp_path)
    assert cli.returncode == 0, cli.describe()
    rows = strict_loads(cli.stdout)
    assert all(r["val_loss"] is None for r in rows)
