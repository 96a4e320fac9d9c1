"""Language-model studies through the command line: a text corpus trains a gpt grid in
tokens, records what a language-model run records, plans by the isoFLOP approach, and
refuses bad settings in one line before any work.

The commands run through ``scalelab.cli.main`` in this process (the ``scalelab_main``
fixture): these tests are about what the commands answer, not how a process starts.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from cli_helpers import assert_one_line_error, nonempty_lines, write_study
from hypothesis import given, settings
from hypothesis import strategies as st

from scalelab.laws.isoflop import fit_isoflop
from scalelab.spec import load_spec

WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda".split()


def write_corpus(folder, n_docs: int = 12, words: int = 300, seed: int = 0):
    """A folder of small text documents, each a seeded stream of words."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n_docs):
        text = " ".join(rng.choice(WORDS, size=words)) + "\n"
        (folder / f"doc{i:02d}.txt").write_text(text, encoding="utf-8")
    return folder


def lm_study(name: str, corpus, *, data: str = "", train: str = "", grid: str = "tokens = [4096]") -> str:
    return (
        f'name = "{name}"\n[data]\nname = "text"\npath = "{corpus}"\neval_tokens = 1024\n{data}\n'
        f'[model]\nfamily = "gpt"\nn_layer = 1\nn_embd = 16\nn_head = 2\ncontext = 32\n'
        f'[train]\ndevice = "cpu"\noptimizer = "adamw"\nlr = 0.003\nbatch_size = 8\neval_points = 3\n{train}\n'
        f"[target]\nmetric = \"val_loss\"\n[grid]\n{grid}\n"
    )


def runs_of(scalelab_main, study, store, cwd) -> list[dict]:
    cli = scalelab_main("runs", study, "--store", store, "--format", "json", cwd=cwd)
    assert cli.returncode == 0, cli.describe()
    return json.loads(cli.stdout)


# -- a text grid, end to end ---------------------------------------------------------------
def test_a_text_grid_trains_in_tokens_and_records_a_language_models_metrics(tmp_path, scalelab_main):
    corpus = write_corpus(tmp_path / "corpus")
    study = write_study(tmp_path / "lm.toml", lm_study("lm", corpus, data="unique_tokens = 2000", grid="tokens = [1000, 5000]"))
    store = tmp_path / "s.db"
    cli = scalelab_main("run", study, "--store", store, "--quiet", cwd=tmp_path)
    assert cli.returncode == 0, cli.describe()
    runs = {r["tokens"]: r for r in runs_of(scalelab_main, study, store, tmp_path)}
    assert sorted(runs) == [1000, 5000]  # the grid's values; what was processed is recorded beside them
    short, long = runs[1000], runs[5000]
    # Tokens are whole steps of 8 windows of 32 tokens: 1000 -> 4 steps, 5000 -> 20 steps.
    assert (short["recorded_tokens"], long["recorded_tokens"]) == (4 * 8 * 32, 20 * 8 * 32)
    assert short["steps"] == 4 and long["steps"] == 20
    assert short["unique_tokens"] == long["unique_tokens"] == 2000
    assert short["epochs"] == pytest.approx(1024 / 2000) and long["epochs"] == pytest.approx(5120 / 2000)
    # 2000 unique tokens hold 62 windows of 32 (+1 target); 160 windows repeat them.
    assert long["n_distinct"] == (2000 - 1) // 32 and short["n_distinct"] is None
    for run in (short, long):
        assert run["state"] == "done" and run["context"] == 32 and run["vocab_size"] == 257
        assert run["tokenizer"] == "byte" and len(run["corpus_sha256"]) == 64
        # Nats per token and bits per byte agree: the byte tokenizer's tokens are bytes,
        # except each document's separator.
        assert run["val_bpb"] == pytest.approx(run["val_loss"] / math.log(2), rel=0.02)
        assert 0 < run["n_params_non_embedding"] < run["n_params"]
        assert run["flops"] == pytest.approx(run["flops_per_token"] * run["recorded_tokens"], rel=1e-9)
        assert run["flops_per_token_analytic"] == 6 * run["n_params_non_embedding"] + 12 * 1 * 16 * 32
        assert run["val_tokens"] == run["test_tokens"] and run["val_tokens"] % 32 == 0
    assert long["val_loss"] < short["val_loss"]  # five times the tokens learn more

    cli = scalelab_main("runs", study, "--store", store, "--curves", "--format", "json", cwd=tmp_path)
    assert cli.returncode == 0, cli.describe()
    points = [p for p in json.loads(cli.stdout) if p["cell_id"] == long["cell_id"]]
    assert points[-1]["step"] == 20 and points[-1]["tokens"] == 5120
    assert all(p["tokens"] == p["samples"] * 32 for p in points)


def test_a_corpus_joins_the_cell_id_by_content_not_by_folder(tmp_path):
    corpus = write_corpus(tmp_path / "a")
    first = load_spec(write_study(tmp_path / "s.toml", lm_study("lm", corpus))).cells[0].cell_id
    moved = write_corpus(tmp_path / "b")  # the same documents elsewhere
    assert load_spec(write_study(tmp_path / "s.toml", lm_study("lm", moved))).cells[0].cell_id == first
    (moved / "doc03.txt").write_text("changed text\n", encoding="utf-8")
    assert load_spec(write_study(tmp_path / "s.toml", lm_study("lm", moved))).cells[0].cell_id != first


def test_a_flops_budget_sets_tokens_by_the_measured_cost_per_token(tmp_path, scalelab_main):
    corpus = write_corpus(tmp_path / "corpus")
    study = write_study(tmp_path / "iso.toml", lm_study("iso", corpus, grid="flops_budget = [3e8]\nwidth = [0.5, 1.0]"))
    store = tmp_path / "s.db"
    cli = scalelab_main("run", study, "--store", store, "--quiet", cwd=tmp_path)
    assert cli.returncode == 0, cli.describe()
    runs = runs_of(scalelab_main, study, store, tmp_path)
    assert len(runs) == 2
    for run in runs:
        step_flops = run["flops_per_token"] * 8 * 32
        # Whole steps, at least the budget, less than one step beyond it.
        assert 3e8 <= run["flops"] < 3e8 + step_flops
    small, big = sorted(runs, key=lambda r: r["n_params"])
    assert small["tokens"] > big["tokens"]  # the same compute buys a smaller model more tokens


# -- bad inputs: one line, exit 2, nothing written -----------------------------------------
@pytest.mark.parametrize(
    ("case", "needles"),
    [
        ("empty-corpus", ("empty",)),
        ("window-longer-than-the-text", ("context", "larger than the text")),
        ("heads-do-not-divide-width", ("n_embd", "n_head")),
        ("budget-below-one-step", ("flops_budget", "below one training step")),
        ("gpt-on-images", ("gpt", "text")),
        ("mlp-on-text", ("mlp", "token windows")),
        ("epochs-on-text", ("train.epochs", "data.tokens")),
        ("tokens-and-budget", ("tokens", "flops_budget")),
        ("window-beyond-the-model", ("data.window", "model.context")),
        ("unique-beyond-the-split", ("unique_tokens", "training split")),
        ("classifier-data-field", ("data.validation_split", "held-out documents")),
    ],
)
def test_bad_language_model_settings_exit_2_in_one_line(tmp_path, scalelab_main, case, needles):
    corpus = write_corpus(tmp_path / "corpus", n_docs=6, words=40)
    study = {
        "empty-corpus": None,
        "window-longer-than-the-text": lm_study("bad", corpus).replace("context = 32", "context = 4096"),
        "heads-do-not-divide-width": lm_study("bad", corpus).replace("n_head = 2", "n_head = 3"),
        "budget-below-one-step": lm_study("bad", corpus, grid="flops_budget = [1000.0]"),
        "gpt-on-images": 'name = "bad"\n[data]\nname = "digits"\n[model]\nfamily = "gpt"\n',
        "mlp-on-text": lm_study("bad", corpus).replace('family = "gpt"\nn_layer = 1\nn_embd = 16\nn_head = 2\ncontext = 32', 'family = "mlp"'),
        "epochs-on-text": lm_study("bad", corpus, train="epochs = 3"),
        "tokens-and-budget": lm_study("bad", corpus, data="flops_budget = 1e9"),
        "window-beyond-the-model": lm_study("bad", corpus, data="window = 64"),
        "unique-beyond-the-split": lm_study("bad", corpus, data="unique_tokens = 10000000"),
        "classifier-data-field": lm_study("bad", corpus, data="validation_split = 0.1"),
    }[case]
    if study is None:
        empty = tmp_path / "empty"
        empty.mkdir()
        (empty / "a.txt").write_text("", encoding="utf-8")
        study = lm_study("bad", empty)
    path = write_study(tmp_path / "bad.toml", study)
    store = tmp_path / "s.db"
    cli = scalelab_main("run", path, "--store", store, cwd=tmp_path)
    assert cli.returncode == 2, cli.describe()
    assert_one_line_error(cli, *needles)
    assert not store.exists()


# -- the isoFLOP approach --------------------------------------------------------------------
def synthetic_profiles(a_true: float, *, budgets=(1e15, 1e16, 1e17, 1e18), sizes: int = 7, noise: float = 0.0, seed: int = 0):
    """Runs on isoFLOP profiles of L = E + A/N^α + B/D^β with D = C / (6N), whose optimum
    grows as N* ∝ C^(β/(α+β)); β is set so that exponent is ``a_true``."""
    E, A, B, alpha = 1.7, 400.0, 1000.0, 0.34
    beta = alpha * a_true / (1 - a_true)
    rng = np.random.default_rng(seed)
    rows = []
    for C in budgets:
        n_star = (alpha * A / (beta * B)) ** (1 / (alpha + beta)) * (C / 6) ** (beta / (alpha + beta))
        for factor in np.geomspace(0.25, 4, sizes):
            n = n_star * factor
            d = C / (6 * n)
            rows.append({"flops_budget": C, "n_params": n, "tokens": d, "loss": E + A / n**alpha + B / d**beta + rng.normal(0, noise)})
    return pd.DataFrame(rows), beta / (alpha + beta)


@settings(max_examples=25, deadline=None)
@given(a_true=st.floats(0.3, 0.7))
def test_the_isoflop_fit_recovers_a_known_optimum(a_true):
    runs, exponent = synthetic_profiles(a_true)
    fit = fit_isoflop(runs.flops_budget, runs.n_params, runs.loss, runs.tokens, n_boot=50)
    # A parabola in log N is not the law's exact valley, but its floor is close to it.
    assert fit.laws.a == pytest.approx(exponent, abs=0.01)
    assert fit.laws.a + fit.laws.b == pytest.approx(1.0, abs=1e-6)  # D* = C / (6 N*) exactly
    assert all(p.interior for p in fit.profiles)


def test_isoflop_intervals_cover_the_true_exponent_with_noise():
    covered = 0
    for seed in range(20):
        runs, exponent = synthetic_profiles(0.5, noise=0.004, seed=seed)
        fit = fit_isoflop(runs.flops_budget, runs.n_params, runs.loss, runs.tokens, n_boot=200, level=0.8, seed=seed)
        covered += fit.laws.a_range[0] <= exponent <= fit.laws.a_range[1]
    assert covered >= 12  # an 80% interval; 20 trials leave room for chance


def test_plan_by_the_isoflop_approach_prints_a_and_b_with_intervals(tmp_path, scalelab_main):
    runs, exponent = synthetic_profiles(0.45, noise=0.002)
    csv = tmp_path / "runs.csv"
    runs.to_csv(csv, index=False)
    args = ("plan", csv, "--x", "n_params", "--x", "tokens", "--y", "loss", "--approach", "isoflop", "--bootstrap", "100")
    cli = scalelab_main(*args, "--budget", "1e19", "--format", "json", cwd=tmp_path)
    assert cli.returncode == 0, cli.describe()
    (plan,) = json.loads(cli.stdout)["plans"]
    fit = plan["isoflop"]
    assert fit["a_range"][0] < fit["a"] < fit["a_range"][1]
    assert fit["a"] == pytest.approx(exponent, abs=0.02)
    assert len(fit["profiles"]) == 4 and all(p["interior"] for p in fit["profiles"])
    assert plan["budget"]["n_params_range"][0] < plan["budget"]["n_params"] < plan["budget"]["n_params_range"][1]

    table = scalelab_main(*args, cwd=tmp_path)
    assert table.returncode == 0, table.describe()
    assert "a = " in table.stdout and "b = " in table.stdout and "isoFLOP profiles" in table.stdout


@pytest.mark.parametrize(
    ("extra", "drop", "needles"),
    [
        (("--approach", "isoflop"), "flops_budget", ("flops_budget",)),
        (("--approach", "isoflop", "--target", "2.0"), None, ("--target", "joint")),
        (("--approach", "envelopes"), None, ("--approach", "envelopes")),
        ((), None, ("--budget", "--target")),
    ],
    ids=["no-budgets", "target", "unknown-approach", "joint-without-a-question"],
)
def test_plan_approach_misuse_exits_2_in_one_line(tmp_path, scalelab_main, extra, drop, needles):
    runs, _ = synthetic_profiles(0.5)
    if drop:
        runs = runs.drop(columns=[drop])
    csv = tmp_path / "runs.csv"
    runs.to_csv(csv, index=False)
    cli = scalelab_main("plan", csv, "--x", "n_params", "--x", "tokens", "--y", "loss", *extra, cwd=tmp_path)
    assert cli.returncode == 2, cli.describe()
    assert_one_line_error(cli, *needles)


def test_a_profile_without_a_floor_is_named_and_left_out(tmp_path, scalelab_main):
    runs, _ = synthetic_profiles(0.5)
    # The smallest budget's losses fall all the way to its largest size: no floor.
    at = runs.flops_budget == 1e15
    runs.loc[at, "loss"] = np.linspace(3.0, 2.0, at.sum())
    csv = tmp_path / "runs.csv"
    runs.to_csv(csv, index=False)
    cli = scalelab_main("plan", csv, "--x", "n_params", "--x", "tokens", "--y", "loss", "--approach", "isoflop", cwd=tmp_path)
    assert cli.returncode == 0, cli.describe()
    assert any("1e+15" in line and "left out" in line for line in nonempty_lines(cli.stdout))


# -- the envelope approach -------------------------------------------------------------------
def synthetic_curves(a_true: float, *, sizes: int = 12):
    """Training curves of L = E + A/N^α + B/D^β (D the tokens seen, C = 6·N·D) for sizes
    spanning three decades, each run long enough to pass the others' optima."""
    from scalelab.laws.envelope import RunCurve

    E, A, B, alpha = 1.7, 400.0, 1000.0, 0.34
    beta = alpha * a_true / (1 - a_true)
    curves = []
    for n in np.geomspace(1e5, 1e8, sizes):
        tokens = np.geomspace(1e3, 1e11, 60)
        curves.append(RunCurve(float(n), 6 * n * tokens, tokens, E + A / n**alpha + B / tokens**beta))
    return curves, beta / (alpha + beta)


@pytest.mark.parametrize("a_true", [0.4, 0.5, 0.6])
def test_the_envelope_of_training_curves_recovers_the_optimum_exponent(a_true):
    from scalelab.laws.envelope import fit_envelope

    curves, exponent = synthetic_curves(a_true)
    fit = fit_envelope(curves, n_boot=100)
    # Twelve sizes make N*(C) a staircase; its fitted slope is close to the law's.
    assert fit.laws.a == pytest.approx(exponent, abs=0.06)
    assert fit.laws.a_range[0] <= fit.laws.a <= fit.laws.a_range[1]
    assert fit.n_sizes == 12


def test_plan_by_the_envelope_reads_the_stored_curves_and_refuses_cosine(tmp_path, scalelab_main):
    corpus = write_corpus(tmp_path / "corpus", n_docs=12, words=400)
    grid = "width = [0.25, 1.0, 2.0]\ntokens = [12000]"
    study = write_study(tmp_path / "env.toml", lm_study("env", corpus, grid=grid).replace("eval_points = 3", "eval_points = 8"))
    store = tmp_path / "s.db"
    assert scalelab_main("run", study, "--store", store, "--quiet", cwd=tmp_path).returncode == 0
    cli = scalelab_main("plan", study, "--store", store, "--approach", "envelope", "--bootstrap", "50", "--format", "json", cwd=tmp_path)
    if cli.returncode == 0:
        (plan,) = json.loads(cli.stdout)["plans"]
        envelope = plan["envelope"]["envelope"]
        assert plan["approach"] == "envelope" and len(envelope) >= 2
        assert all(e["n_params_opt"] in {r["n_params"] for r in runs_of(scalelab_main, study, store, tmp_path)} for e in envelope)
    else:  # tiny models' curves need not cross; then the refusal says so in one line
        assert_one_line_error(cli, "never has a best size")

    cosine = write_study(tmp_path / "cos.toml", lm_study("cos", corpus, train='lr_schedule = "cosine"', grid=grid))
    assert scalelab_main("run", cosine, "--store", store, "--quiet", cwd=tmp_path).returncode == 0
    cli = scalelab_main("plan", cosine, "--store", store, "--approach", "envelope", cwd=tmp_path)
    assert cli.returncode == 2, cli.describe()
    assert_one_line_error(cli, "cosine", "isoflop")


def test_the_envelope_of_a_csv_is_refused(tmp_path, scalelab_main):
    runs, _ = synthetic_profiles(0.5)
    csv = tmp_path / "runs.csv"
    runs.to_csv(csv, index=False)
    cli = scalelab_main("plan", csv, "--x", "n_params", "--x", "tokens", "--y", "loss", "--approach", "envelope", cwd=tmp_path)
    assert cli.returncode == 2, cli.describe()
    assert_one_line_error(cli, "training curve", "CSV")


# -- the language-model demo's printout --------------------------------------------------------
def test_the_lm_demo_prints_the_numbers_of_its_report(tmp_path, scalelab_main):
    from rich.console import Console

    from scalelab.demo import print_lm_results
    from scalelab.study import Study

    corpus = write_corpus(tmp_path / "corpus", n_docs=12, words=400)
    grid = "flops_budget = [6e7, 2e8, 6e8]\nwidth = [0.25, 0.5, 1.0, 2.0]"
    study_file = write_study(tmp_path / "demo.toml", lm_study("lmdemo", corpus, grid=grid))
    store = tmp_path / "s.db"
    assert scalelab_main("run", study_file, "--store", store, "--quiet", cwd=tmp_path).returncode == 0
    console = Console(record=True, width=250, markup=False, highlight=False)
    path = print_lm_results(Study(load_spec(study_file), store=store), console, out_dir=tmp_path)
    printed_text = console.export_text()
    text = " ".join(printed_text.split())
    page = " ".join(path.read_text(encoding="utf-8").split())
    assert "val_loss (nats per token)" in text and text.count("lmdemo") >= 1
    assert 'id="fig-isoflop-measured"' in page or "No isoFLOP profiles" in page
    if 'id="fig-isoflop-measured"' in page:  # the exponents printed are the report's
        import re

        (printed,) = re.findall(r"a = (-?[0-9.]+) \[(-?[0-9.]+), (-?[0-9.]+)\]; D\*\(C\) ∝ C\^b, b = (-?[0-9.]+)", text)
        assert f"a = {printed[0]} [{printed[1]}, {printed[2]}]" in page and f"b = {printed[3]}" in page
    else:
        note = next(line for line in printed_text.splitlines() if "No isoFLOP profiles" in line)
        assert note.split(":", 1)[1].strip()[:40] in page


@pytest.mark.parametrize("tokenizer", ["byte", "bpe"])
def test_the_bytes_behind_held_out_tokens_are_counted_exactly(tokenizer, private_cache_dir):
    """Bits per byte divide by the bytes of text the scored tokens stand for: for BPE each
    token's own length, for bytes one each, the separators none."""
    if tokenizer == "bpe":
        pytest.importorskip("tokenizers", reason="tokenizer = 'bpe' needs the optional tokenizers package (pip install -e '.[text]')")
    from scalelab.data.text import Document, build_corpus

    docs = [Document(f"d{i}", "héllo wörld, the quick brown fox jumps over the lazy dog. " * 20 + str(i)) for i in range(12)]
    corpus = build_corpus(docs, tokenizer=tokenizer, vocab_size=300 if tokenizer == "bpe" else None)
    for split in ("val", "test"):
        text_bytes = sum(len(d.text.encode("utf-8")) for d in docs if d.name in corpus.documents[split])
        assert corpus.bytes_of(corpus.split(split)) == text_bytes
