"""``scalelab fit`` and ``scalelab backtest`` end to end: real subprocesses, real files.

These read like DESIGN.md's contracts and issue 4's acceptance:

* the Chinchilla joint fit on Epoch's 240 points lands inside their 95% intervals, and
  ``--format json`` has exactly the documented shape;
* ``--group`` fits one law per group, and a group that cannot be fitted appears with
  ``"error"`` and no predictions, while the command still succeeds;
* every bad input exits 2 with one line on stderr naming the problem, and prints nothing;
* ``backtest --format json`` reports each form's extrapolation error, and which form
  ``auto`` chose;
* on a real (tiny) study, ``fit`` defaults to x = ``n_train`` and y = the study's target.

Nothing is timed: timeouts are only safety nets.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cli_helpers import (
    assert_one_line_error,
    cli_env,
    nonempty_lines,
    run_cli,
    runs_csv,
    write_study,
)
from shared_data import chinchilla_csv_path

EXIT_OK, EXIT_USAGE = 0, 2


# Besiroglu et al. 2024 (Epoch AI), 95% bootstrap intervals on this file, n = 240.
EPOCH_95 = {
    "E": (1.769, 1.871),
    "A": (285.2, 743.6),
    "B": (1042.4, 5810.3),
    "alpha": (0.317, 0.373),
    "beta": (0.331, 0.415),
}


@pytest.fixture
def env(tmp_path):
    return cli_env(tmp_path / "cache")


def fit_json(*args, env, cwd) -> dict:
    cli = run_cli("fit", *args, "--format", "json", env=env, cwd=cwd)
    assert cli.returncode == EXIT_OK, cli.describe()
    return json.loads(cli.stdout)


def write_csv(path: Path, columns: dict) -> Path:
    pd.DataFrame(columns).to_csv(path, index=False)
    return path


def saturating_points(seed: int, *, E=0.05, B=3.0, beta=0.5, sizes=10, seeds=3, sigma=0.02):
    x = np.repeat(np.geomspace(100, 1e5, sizes), seeds)
    y = (E + B * x**-beta) * np.exp(np.random.default_rng(seed).normal(0, sigma, len(x)))
    return x, y


def assert_group_shape(group: dict, *, n_x: int, n_predictions: int) -> None:
    """One entry of ``{"groups": [...]}`` as DESIGN.md fixes it."""
    assert {"group", "form", "params", "n_points", "predictions"} <= set(group), group
    assert isinstance(group["form"], str)
    assert isinstance(group["params"], dict) and all(isinstance(v, float) for v in group["params"].values())
    assert isinstance(group["n_points"], int)
    assert len(group["predictions"]) == n_predictions
    for p in group["predictions"]:
        assert set(p) == {"x", "y", "lo", "hi"}, p
        if n_x == 2:
            assert isinstance(p["x"], list) and len(p["x"]) == 2
        else:
            assert isinstance(p["x"], float)
        assert p["lo"] <= p["y"] <= p["hi"], p


# -- the Chinchilla acceptance -------------------------------------------------------------
@pytest.fixture
def chinchilla_csv(tmp_path) -> Path:
    """N = Model Size, D = Training FLOP / (6 N), loss; the 5 highest losses dropped, as Epoch did."""
    raw = pd.read_csv(chinchilla_csv_path())
    assert len(raw) == 245
    kept = raw.drop(raw["loss"].nlargest(5).index)
    N = kept["Model Size"].to_numpy(float)
    table = pd.DataFrame({"N": N, "D": kept["Training FLOP"].to_numpy(float) / (6 * N), "loss": kept["loss"].to_numpy(float)})
    return write_csv(tmp_path / "chinchilla.csv", table)


def test_chinchilla_joint_fit_lands_inside_epochs_95_percent_intervals(chinchilla_csv, env, tmp_path):
    out = fit_json(chinchilla_csv, "--x", "N", "--x", "D", "--y", "loss", "--form", "chinchilla", env=env, cwd=tmp_path)
    assert set(out) == {"groups"}
    (group,) = out["groups"]
    assert_group_shape(group, n_x=2, n_predictions=0)
    assert group["group"] is None
    assert group["form"] == "chinchilla"
    assert group["n_points"] == 240
    assert set(group["params"]) == set(EPOCH_95)
    outside = {k: (v, EPOCH_95[k]) for k, v in group["params"].items() if not EPOCH_95[k][0] <= v <= EPOCH_95[k][1]}
    assert not outside, f"outside Epoch's 95% intervals: {outside}"


def test_chinchilla_predictions_take_n_d_pairs_and_carry_intervals(chinchilla_csv, env, tmp_path):
    out = fit_json(
        chinchilla_csv, "--x", "N", "--x", "D", "--y", "loss", "--form", "chinchilla",
        "--predict", "1e9,2e10", "7e10,1.4e12", "--level", "0.9", env=env, cwd=tmp_path,
    )  # fmt: skip
    (group,) = out["groups"]
    assert_group_shape(group, n_x=2, n_predictions=2)
    small, chinchilla = group["predictions"]
    assert small["x"] == [1e9, 2e10] and chinchilla["x"] == [7e10, 1.4e12]
    # Chinchilla itself (70B parameters, 1.4T tokens) sits near a loss of 1.9-2.0 under this law.
    assert 1.85 < chinchilla["y"] < 2.05, chinchilla
    assert small["y"] > chinchilla["y"]
    assert chinchilla["hi"] - chinchilla["lo"] > 0


# -- groups --------------------------------------------------------------------------------
def test_group_that_cannot_be_fitted_appears_with_an_error_and_the_rest_are_fitted(env, tmp_path):
    xa, ya = saturating_points(0, sizes=8, seeds=1)
    xc, yc = saturating_points(1, E=0.1, B=5.0, beta=0.4, sizes=8, seeds=1)
    path = write_csv(
        tmp_path / "groups.csv",
        {"curve": ["a"] * 8 + ["b"] * 2 + ["c"] * 8, "n": np.r_[xa, [100.0, 1000.0], xc], "loss": np.r_[ya, [0.4, 0.15], yc]},
    )
    out = fit_json(path, "--x", "n", "--y", "loss", "--group", "curve", "--form", "saturating", "--predict", "1e6", env=env, cwd=tmp_path)
    groups = out["groups"]
    assert [g["group"] for g in groups] == ["a", "b", "c"]  # first-seen order, every group
    for g in (groups[0], groups[2]):
        assert "error" not in g
        assert_group_shape(g, n_x=1, n_predictions=1)
        assert g["form"] == "saturating" and g["n_points"] == 8
        assert g["predictions"][0]["x"] == 1e6
    broken = groups[1]
    assert isinstance(broken.get("error"), str) and "parameters" in broken["error"], broken
    assert "predictions" not in broken or broken["predictions"] == [], broken
    assert "params" not in broken


def test_group_with_a_single_point_is_an_error_entry_under_auto(env, tmp_path):
    x, y = saturating_points(2, sizes=8, seeds=1)
    path = write_csv(tmp_path / "one.csv", {"g": [1] * 8 + [2], "n": np.r_[x, 500.0], "loss": np.r_[y, 0.2]})
    out = fit_json(path, "--x", "n", "--y", "loss", "--group", "g", env=env, cwd=tmp_path)
    first, lone = out["groups"]
    assert first["group"] == 1 and "error" not in first and "selection" in first
    assert lone["group"] == 2 and "error" in lone


# -- bad inputs ------------------------------------------------------------------------------
def _bad_inputs(tmp_path: Path) -> dict[str, tuple[list, str | tuple[str, ...]]]:
    x = np.geomspace(100, 1e5, 6)
    y = 0.05 + 3.0 * x**-0.5
    ok = write_csv(tmp_path / "ok.csv", {"n": x, "loss": y})
    text = write_csv(tmp_path / "text.csv", {"n": x, "loss": [*y[:3], "n/a-ish", *y[4:]]})
    two = write_csv(tmp_path / "two.csv", {"n": x[:2], "loss": y[:2]})
    zero = write_csv(tmp_path / "zero.csv", {"size": [0.0, *x[1:]], "loss": y})
    err = write_csv(tmp_path / "err.csv", {"n": x, "test_error": [1.3, 0.8, 0.5, 0.3, 0.2, 0.1]})
    return {
        # name: (arguments, texts the error line must contain)
        "missing-column": ([ok, "--x", "n", "--y", "accuracy"], "accuracy"),
        "missing-x-column": ([ok, "--x", "width", "--y", "loss"], "width"),
        "non-numeric": ([text, "--x", "n", "--y", "loss"], ("loss", "n/a-ish")),
        "too-few-points": ([two, "--x", "n", "--y", "loss", "--form", "saturating"], ("parameters", "2 points")),
        "x-not-positive": ([zero, "--x", "size", "--y", "loss"], ("size", "positive")),
        "error-rate-above-one": ([err, "--x", "n", "--y", "test_error"], ("test_error", "1.3")),
        "missing-file": ([tmp_path / "nowhere.csv", "--x", "n", "--y", "loss"], "nowhere.csv"),
        "unknown-form": ([ok, "--x", "n", "--y", "loss", "--form", "cubic"], "cubic"),
        "one-x-for-joint-form": ([ok, "--x", "n", "--y", "loss", "--form", "chinchilla"], "chinchilla"),
        "csv-without-columns": ([ok], "--x"),
        "missing-group-column": ([ok, "--x", "n", "--y", "loss", "--group", "family"], "family"),
        "bad-predict": ([ok, "--x", "n", "--y", "loss", "--predict", "lots"], "lots"),
    }


BAD_INPUTS = [
    "missing-column", "missing-x-column", "non-numeric", "too-few-points", "x-not-positive",
    "error-rate-above-one", "missing-file", "unknown-form", "one-x-for-joint-form",
    "csv-without-columns", "missing-group-column", "bad-predict",
]  # fmt: skip


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_exits_2_with_one_line_naming_the_problem(case, env, tmp_path):
    args, named = _bad_inputs(tmp_path)[case]
    cli = run_cli("fit", *args, "--format", "json", env=env, cwd=tmp_path)
    assert_one_line_error(cli, *((named,) if isinstance(named, str) else named))


def test_backtest_shares_the_bad_input_checks(env, tmp_path):
    args, named = _bad_inputs(tmp_path)["missing-column"]
    cli = run_cli("backtest", *args, "--format", "json", env=env, cwd=tmp_path)
    assert cli.returncode == EXIT_USAGE, cli.describe()
    assert len(nonempty_lines(cli.stderr)) == 1 and named in cli.stderr and cli.stdout == ""


# -- backtest --------------------------------------------------------------------------------
def test_backtest_reports_each_forms_extrapolation_error_and_autos_choice(env, tmp_path):
    x, y = saturating_points(3, sizes=10, seeds=3)
    path = write_csv(tmp_path / "curve.csv", {"n": x, "loss": y})
    cli = run_cli("backtest", path, "--x", "n", "--y", "loss", "--bootstrap", "200", "--format", "json", env=env, cwd=tmp_path)
    assert cli.returncode == EXIT_OK, cli.describe()
    (group,) = json.loads(cli.stdout)["groups"]
    rows = {r["form"]: r for r in group["forms"]}
    assert {"power", "saturating", "m3", "m4", "bnsl", "auto"} <= set(rows)
    held_out = np.sort(x)[-3:]  # the three seeds at the largest size
    for row in rows.values():
        assert "error" not in row, row
        assert row["n_fit"] == 27
        assert {"abs_error", "rel_error", "coverage", "points"} <= set(row)
        assert sorted(p["x"] for p in row["points"]) == held_out.tolist()
        for p in row["points"]:
            assert p["abs_error"] == pytest.approx(abs(p["predicted"] - p["actual"]))
            assert p["rel_error"] == pytest.approx(p["abs_error"] / p["actual"])
            assert p["covered"] == (p["lo"] <= p["actual"] <= p["hi"])
        assert row["abs_error"] == pytest.approx(np.mean([p["abs_error"] for p in row["points"]]))
        assert 0.0 <= row["coverage"] <= 1.0
    auto = rows["auto"]
    assert auto["chosen"] in {"power", "saturating", "m3", "m4", "bnsl"}
    assert auto["chosen"] == max(auto["weights"], key=auto["weights"].get)
    # auto's extrapolation is the weighted geometric mean of its forms' fits on the same points.
    for i, point in enumerate(auto["points"]):
        mean_log = sum(w * np.log(rows[name]["points"][i]["predicted"]) for name, w in auto["weights"].items())
        assert point["predicted"] == pytest.approx(np.exp(mean_log), rel=1e-9)
    assert all("chosen" not in r for f, r in rows.items() if f != "auto")


def test_backtest_group_that_cannot_be_used_appears_with_an_error(env, tmp_path):
    x, y = saturating_points(5, sizes=6, seeds=1)
    path = write_csv(tmp_path / "groups.csv", {"g": ["a"] * 6 + ["b"] * 6, "n": np.r_[x, 0.0, x[1:]], "loss": np.r_[y, y]})
    cli = run_cli("backtest", path, "--x", "n", "--y", "loss", "--group", "g", "--bootstrap", "50", "--format", "json", env=env, cwd=tmp_path)
    assert cli.returncode == EXIT_OK, cli.describe()
    good, bad = json.loads(cli.stdout)["groups"]
    assert good["group"] == "a" and good["forms"]
    assert bad["group"] == "b" and "positive" in bad["error"]


def test_backtest_table_names_autos_choice(env, tmp_path):
    x, y = saturating_points(4, sizes=8, seeds=2)
    path = write_csv(tmp_path / "curve.csv", {"n": x, "loss": y})
    cli = run_cli("backtest", path, "--x", "n", "--y", "loss", "--holdout", "2", "--bootstrap", "100", env=env, cwd=tmp_path)
    assert cli.returncode == EXIT_OK, cli.describe()
    assert "chose " in cli.stdout and "auto" in cli.stdout, cli.stdout


# -- a real study ------------------------------------------------------------------------------
TINY_STUDY = """\
name = "tiny-fit"

[data]
name = "digits"

[model]
family = "mlp"

[train]
epochs = 2
batch_size = 64

[grid]
data_fraction = [0.125, 0.25, 0.5, 1.0]
seed = [0, 1]

[target]
metric = "test_error"
"""


def test_fit_on_a_study_defaults_to_n_train_and_the_target_metric(env, tmp_path):
    from scalelab import laws

    study = write_study(tmp_path / "tiny.toml", TINY_STUDY)
    store = tmp_path / "tiny.db"
    ran = run_cli("run", study, "--store", store, "--workers", "2", "--quiet", env=env, cwd=tmp_path)
    assert ran.returncode == EXIT_OK, ran.describe()

    out = fit_json("tiny-fit", "--store", store, "--predict", "5000", env=env, cwd=tmp_path)
    (group,) = out["groups"]
    assert_group_shape(group, n_x=1, n_predictions=1)
    assert group["n_points"] == 8
    assert "selection" in group and group["form"] in group["selection"]
    pred = group["predictions"][0]
    assert 0.0 <= pred["lo"] <= pred["y"] <= pred["hi"] <= 1.0  # test_error is an error rate

    # The same fit through the API, on the runs table: x = n_train, y = test_error.
    _, rows = runs_csv("tiny-fit", store=store, env=env, cwd=tmp_path)
    done = [r for r in rows if r["state"] == "done"]
    x = np.array([float(r["n_train"]) for r in done])
    y = np.array([float(r["test_error"]) for r in done])
    # The chance level comes from the classes the runs recorded: 1 - 1/10 for digits.
    assert {r["n_classes"] for r in done} == {"10"}
    law = laws.fit(x, y, form=group["form"], error_rate=True, ceiling=0.9)
    assert law.params == pytest.approx(group["params"], rel=1e-9)

    # The study file works as SOURCE too, and the table format says what auto chose.
    table = run_cli("fit", study, "--store", store, env=env, cwd=tmp_path)
    assert table.returncode == EXIT_OK, table.describe()
    assert "auto " in table.stdout and group["form"] in table.stdout and "backtest" in table.stdout, table.stdout


# -- parameters at a bound ---------------------------------------------------------------------
def test_a_fit_that_hits_a_bound_says_so_in_the_table_and_the_json(env, tmp_path):
    # A power law that bends down: the saturating form wants a negative floor, and stops at E = 0.
    x = np.geomspace(100, 1e5, 8)
    path = write_csv(tmp_path / "bends.csv", {"n": x, "loss": 2 * x**-0.5 * (1 - 0.3 * np.log(x) / np.log(1e5))})
    (group,) = fit_json(path, "--x", "n", "--y", "loss", "--form", "saturating", env=env, cwd=tmp_path)["groups"]
    assert group["at_bound"] == {"E": "lower"} and group["params"]["E"] == 0.0
    cli = run_cli("fit", path, "--x", "n", "--y", "loss", "--form", "saturating", env=env, cwd=tmp_path)
    assert cli.returncode == 0, cli.describe()
    row = next(line for line in cli.stdout.splitlines() if "E = " in line)
    assert "(at its lower bound)" in row
    assert "A parameter at its bound" in cli.stdout
    # A clean power law is not at any bound.
    path = write_csv(tmp_path / "clean.csv", {"n": x, "loss": 2 * x**-0.5})
    (group,) = fit_json(path, "--x", "n", "--y", "loss", "--form", "power", env=env, cwd=tmp_path)["groups"]
    assert group["at_bound"] == {}
