"""The laws a big run needs besides N and D, on a real (tiny) language-model study:
``scalelab hparams`` (the best learning rate and batch size across scale), ``plan
--unique-tokens`` (the data-constrained law) and ``fit --via`` (a metric from the loss).

One study is trained once for the module, through the Python API: GPTs at two widths and
two token counts, each at 3 learning rates x 2 batch sizes, and beside them (a second
[[grid]] table) the same widths on few unique tokens, repeated. The commands then run
through ``scalelab.cli.main`` in this process (the ``scalelab_main`` fixture).
"""

from __future__ import annotations

import json

import pytest
from cli_helpers import assert_one_line_error, write_study
from test_lm_study import write_corpus

from scalelab.study import load_study

STUDY = """
name = "tune"
[data]
name = "text"
path = "{corpus}"
eval_tokens = 1024
[model]
family = "gpt"
n_layer = 1
n_embd = 16
n_head = 2
context = 32
[train]
device = "cpu"
optimizer = "adamw"
lr_schedule = "cosine"
eval_points = 2
[target]
metric = "test_loss"

[[grid]]
width = [0.5, 1.0]
tokens = [2048, 4096, 8192]
lr = [3e-3, 1e-2, 3e-2]
batch_size = [4, 8]

[[grid]]
width = [0.5, 1.0]
tokens = 8192
unique_tokens = [1024, 2048]
lr = 1e-2
batch_size = 4
"""


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    """(folder, study file, store) of the trained study."""
    folder = tmp_path_factory.mktemp("tune")
    corpus = write_corpus(folder / "corpus", n_docs=16, words=400)
    study_file = write_study(folder / "tune.toml", STUDY.format(corpus=corpus))
    store = folder / "s.db"
    summary = load_study(study_file, store=store).run(workers=2, progress=False)
    assert summary.counts.get("done") == 40, summary
    return folder, study_file, store


def run(scalelab_main, tuned, *args):
    folder, _study_file, store = tuned
    return scalelab_main(*args, "--store", store, cwd=folder)


def test_laws_of_n_and_d_leave_runs_that_repeat_their_data_out_with_why(scalelab_main, tuned):
    cli = run(scalelab_main, tuned, "fit", "tune", "--x", "n_params", "--x", "tokens", "--format", "json")
    assert cli.returncode == 0, cli.describe()
    out = json.loads(cli.stdout)
    reasons = [r["reason"] for r in out["curves"]["left_out"]]
    assert sum("repeating their data" in r for r in reasons) == 4  # the four runs of the second table
    assert out["curves"]["held"]["unique_tokens"] == "each token once"


def test_plan_with_unique_tokens_gives_n_d_and_epochs_with_intervals(scalelab_main, tuned):
    cli = run(scalelab_main, tuned, "plan", "tune", "--budget", "1e11", "--unique-tokens", "4096", "--format", "json")
    assert cli.returncode == 0, cli.describe()
    (plan,) = json.loads(cli.stdout)["plans"]
    assert plan["approach"] == "data-constrained" and plan["unique"] == 4096
    b = plan["budget"]
    assert b["epochs"] == pytest.approx(b["tokens"] / 4096)
    for key in ("n_params", "tokens", "loss"):
        lo, hi = b[f"{key}_range"]
        assert lo <= b[key] <= hi, key
    # The law was fitted on runs of both kinds.
    assert plan["law"]["n_points"] == 6 + 4  # one run per single-epoch point (its best setting), and the repeated ones
    assert "repeating their data" in " ".join(plan["notes"])
    table = run(scalelab_main, tuned, "plan", "tune", "--budget", "1e11", "--unique-tokens", "4096")
    assert table.returncode == 0, table.describe()
    assert "epochs over the unique data" in table.stdout and "unlimited data" in table.stdout


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--unique-tokens", "4096"], "give --budget FLOPS as well"),
        (["--budget", "1e11", "--unique-tokens", "-5"], "--unique-tokens -5: must be positive"),
        (["--budget", "1e11", "--unique-tokens", "4096", "--approach", "isoflop"], "takes no --target or --approach"),
        (["--budget", "1e11", "--unique-tokens", "4096", "--y", "test_error"], "models a loss"),
    ],
)
def test_plan_unique_tokens_misuse_exits_2_with_one_line(scalelab_main, tuned, args, needle):
    cli = run(scalelab_main, tuned, "plan", "tune", *args)
    assert_one_line_error(cli, needle)


def test_hparams_prints_each_points_optimum_the_laws_and_a_recommendation(scalelab_main, tuned):
    cli = run(scalelab_main, tuned, "hparams", "tune", "--format", "json", "--at", "1e5,1e6", "--budget", "1e12")
    assert cli.returncode == 0, cli.describe()
    out = json.loads(cli.stdout)
    assert out["score"] == "val_loss" and out["swept"] == ["batch_size", "lr"]
    assert len(out["optima"]) == 6  # 2 widths x 3 token counts; the repeated runs stand on no point
    for optimum in out["optima"]:
        assert optimum["n_runs"] == 6 and 3e-3 <= optimum["lr"] <= 3e-2 and 4 <= optimum["batch_size"] <= 8
        assert optimum["lr_range"][0] <= optimum["lr"] <= optimum["lr_range"][1]
    assert set(out["laws"]) == {"lr_nd", "batch_d", "lr_c", "batch_c"}
    assert set(out["laws"]["lr_nd"]["exponents"]) == {"N", "D"}
    by_nd, by_budget = out["recommendations"]
    assert by_nd["at"] == {"N": 1e5, "D": 1e6} and by_nd["lr"] > 0 and by_nd["extrapolation"]["N"] > 0
    assert by_budget["at"] == {"C": 1e12} and by_budget["laws"]["lr"].startswith("lr* = ")
    table = run(scalelab_main, tuned, "hparams", "tune")
    assert table.returncode == 0, table.describe()
    assert "Recommended at N = " in table.stdout and "lr* = " in table.stdout and "batch_size* = " in table.stdout
    folder, _study_file, store = tuned
    narrow = scalelab_main("hparams", "tune", "--store", store, cwd=folder, columns=80)
    assert narrow.returncode == 0, narrow.describe()
    lines = narrow.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines), narrow.stdout
    header = next(line for line in lines if "lr*" in line and "batch_size*" in line)
    assert "…" not in narrow.stdout and "N (n_params)" in header and "D (tokens)" in header, narrow.stdout
    assert "not shown at this width: " in narrow.stdout  # the columns dropped are named, not cut


def test_plan_gives_the_planned_runs_learning_rate_and_batch_size(scalelab_main, tuned):
    cli = run(scalelab_main, tuned, "plan", "tune", "--budget", "1e11", "--format", "json")
    assert cli.returncode == 0, cli.describe()
    (plan,) = json.loads(cli.stdout)["plans"]
    rec = plan["hparams"]
    assert rec["at"] == {"N": pytest.approx(plan["budget"]["n_params"]), "D": pytest.approx(plan["budget"]["samples"])}
    assert rec["lr_range"][0] <= rec["lr"] <= rec["lr_range"][1]
    table = run(scalelab_main, tuned, "plan", "tune", "--budget", "1e11")
    assert "Settings for the planned run (scalelab hparams): lr = " in table.stdout


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--at", "1e5"], "--at '1e5': expected N,D"),
        (["--at", "1e5,-3"], "N and D must be positive"),
        (["--budget", "0"], "--budget 0: must be positive"),
        (["--y", "no_such_metric"], "--y no_such_metric: no column 'no_such_metric'"),
    ],
)
def test_hparams_misuse_exits_2_with_one_line(scalelab_main, tuned, args, needle):
    assert_one_line_error(run(scalelab_main, tuned, "hparams", "tune", *args), needle)


def test_hparams_on_a_grid_without_lr_or_batch_size_exits_2(scalelab_main, tmp_path):
    study = write_study(tmp_path / "plain.toml", 'name = "plain"\n[data]\nname = "digits"\n[model]\nfamily = "mlp"\n[train]\nepochs = 1\n[grid]\nwidth = [0.5, 1.0]\n')
    assert scalelab_main("run", study, "--store", tmp_path / "s.db", "--quiet", cwd=tmp_path).returncode == 0
    cli = scalelab_main("hparams", study, "--store", tmp_path / "s.db", cwd=tmp_path)
    assert_one_line_error(cli, "the grid sweeps neither lr nor batch_size")


def test_fit_via_predicts_the_error_from_the_loss_law_and_its_link(scalelab_main, tuned):
    cli = run(scalelab_main, tuned, "fit", "tune", "--x", "n_params", "--x", "tokens", "--y", "test_error", "--via", "test_loss",
              "--predict", "1e5,1e6", "--format", "json")  # fmt: skip
    assert cli.returncode == 0, cli.describe()
    (group,) = json.loads(cli.stdout)["groups"]
    assert group["via"] == "test_loss" and group["form"] == "chinchilla" and group["link"]["sign"] == 1
    (p,) = group["predictions"]
    assert 0 <= p["lo"] <= p["y"] <= p["hi"] <= 1 and p["loss"] > 0
    same = run(scalelab_main, tuned, "fit", "tune", "--x", "n_params", "--x", "tokens", "--y", "test_error", "--via", "test_error")
    assert_one_line_error(same, "--via test_error is the target itself")


def test_the_report_has_the_settings_repetition_and_link_sections(scalelab_main, tuned):
    folder = tuned[0]
    cli = run(scalelab_main, tuned, "report", "tune", "-o", folder / "tune.html")
    assert cli.returncode == 0, cli.describe()
    html = (folder / "tune.html").read_text(encoding="utf-8")
    for anchor in ('id="hparams"', 'id="fig-hparams"', 'id="hparams-table"', 'id="repetition"', 'id="fig-repetition"', 'id="link"', 'id="fig-link"'):
        assert anchor in html, anchor
    assert "lr* = " in html and "R*_D = " in html and "--via test_loss" in html
