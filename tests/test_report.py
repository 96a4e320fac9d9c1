"""The HTML report (issue 5): what it holds, what it never holds, and its commands.

* a study with a label-noise axis gets the data-quality figure, one without does not;
* runs that record per-class results get the fairness figure and section, whose answer
  (the gap narrows or widens) matches the recorded numbers; a store from before those
  results has no fairness section, and list- and dict-valued columns break nothing;
* a grid that sweeps ``prune`` and ``quantize`` gets the compression figure and a table
  whose numbers are the store's means over seeds, while laws use the uncompressed runs;
  a store without the sweep (or from before the size columns) has no compression section;
* a grid that sweeps ``init_from`` gets the transfer figure and section, whose table holds
  the store's means and each point's D_E and D_T, while everything else uses the runs from
  scratch; a study without it has no transfer section, and one whose fine-tuned cells all
  failed gets a note rather than a failure;
* failed and diverged cells are listed with their reasons;
* every string a user wrote is escaped: a study named ``<script>alert(1)</script>``
  yields no script element and shows the name as text;
* the file loads nothing over the network (no http(s) ``src`` or ``href``);
* ``scalelab report`` works on a study and on a CSV, and a bad input exits 2 and writes
  nothing; ``study.report(path)`` and the notebook HTML work.

The studies here are recorded straight into a real store (:mod:`report_fixtures`), so
nothing trains; the browser test trains a real one.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cli_helpers import cli_env, run_cli
from report_fixtures import fake_study

from scalelab.report import build_report, law_html

EXIT_OK, EXIT_USAGE = 0, 2
GRID = "width = [0.5, 1, 2]\ndata_fraction = [0.125, 0.25, 0.5, 1.0]\nseed = [0, 1]"
FAST = {"n_boot": 60}  # bootstrap replicates: enough for intervals to exist, quick to draw


class Elements(HTMLParser):
    """Every start tag with its attributes, and the page's text."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def parse(html: str) -> Elements:
    parser = Elements()
    parser.feed(html)
    parser.close()
    return parser


def network_references(html: str) -> list[str]:
    """src/href attributes, CSS url()s and imports that would load something from a network."""
    found = []
    for tag, attrs in parse(html).tags:
        for name in ("src", "href", "srcset", "data", "poster", "action"):
            value = (attrs.get(name) or "").strip().lower()
            if value.startswith(("http:", "https:", "//", "ftp:")):
                found.append(f"<{tag} {name}={value[:60]}>")
        if tag in ("script", "link", "iframe", "object", "embed", "base"):
            found.append(f"<{tag}>")
    found += re.findall(r"url\(\s*['\"]?\s*(?:https?:|//)[^)]*\)", html, flags=re.IGNORECASE)
    found += re.findall(r"@import", html, flags=re.IGNORECASE)
    return found


@pytest.fixture(scope="module")
def plain_study(tmp_path_factory):
    return fake_study(tmp_path_factory.mktemp("plain"), grid=GRID, name="plain")


@pytest.fixture(scope="module")
def plain_report(plain_study):
    return build_report(plain_study, **FAST)


# -- figures ---------------------------------------------------------------------------------
def test_a_study_without_a_quality_axis_has_no_data_quality_figure(plain_report):
    assert "fig-data-quality" not in plain_report.figure_ids
    assert 'id="data-quality"' not in plain_report.html
    for expected in ("fig-learning-curves", "fig-model-size", "fig-compute", "fig-laws", "fig-backtest", "fig-plan", "fig-isoflop"):
        assert expected in plain_report.figure_ids, plain_report.figure_ids
    images = [attrs for tag, attrs in parse(plain_report.html).tags if tag == "img"]
    assert len(images) == len(plain_report.figures)
    assert all(a["src"].startswith("data:image/png;base64,") and int(a["width"]) > 0 for a in images)


def test_a_label_noise_axis_gets_the_data_quality_figure(tmp_path):
    study = fake_study(tmp_path / "noisy", grid=GRID + "\nlabel_noise = [0.0, 0.2]", name="noisy")
    report = build_report(study, **FAST)
    assert "fig-data-quality" in report.figure_ids
    assert 'id="data-quality"' in report.html and "label_noise = 0.2" in report.html
    # Laws, curves and frontiers use the clean runs only, and say so.
    assert set(report.data.done["label_noise"]) == {0.0}
    assert "label_noise = 0" in " ".join(report.data.notes)


def _mean_gap(runs: pd.DataFrame, *, imbalance: float, n_train: str) -> float:
    """From the recorded runs, not the report's code: the widest model's mean class error gap
    over seeds at the smallest or largest training set of one imbalance level."""
    rows = runs[(runs["state"] == "done") & (runs["width"] == runs["width"].max()) & (runs["class_imbalance"] == imbalance)]
    at = rows["n_train"].min() if n_train == "smallest" else rows["n_train"].max()
    return float(rows.loc[rows["n_train"] == at, "class_error_gap"].astype(float).mean())


def test_runs_with_per_class_results_get_the_fairness_figure_and_section(tmp_path):
    study = fake_study(tmp_path / "fair", grid=GRID + "\nclass_imbalance = [1, 10]", name="fair", per_class=True, groups=True)
    report = build_report(study, **FAST)
    assert "fig-fairness" in report.figure_ids
    html = report.html
    assert 'id="fairness"' in html and 'id="fig-fairness"' in html
    assert "Fairness across classes" in [t for t in parse(html).text if t.strip()]
    # The answer is read off the runs: balanced, the synthetic gap narrows with data;
    # at an imbalance of 10 the rare classes fall behind, and it widens.
    runs = study.runs()
    for imbalance, word in ((1.0, "narrows"), (10.0, "widens")):
        lo, hi = (_mean_gap(runs, imbalance=imbalance, n_train=end) for end in ("smallest", "largest"))
        assert f"class_imbalance = {imbalance:g}: as training samples grow" in html
        assert f"the class error gap {word} from {100 * lo:.1f} to {100 * hi:.1f} percentage points" in html
    assert "narrows in 1 and widens in 1 of the 2 cases below" in html
    # Per-group results: a table of the worst group's error, naming the group.
    assert 'id="group-table"' in html and "worst-group error" in html and "south" in html
    # The figure distinguishes the imbalance levels and says how.
    figure = next(f for f in report.figures if f.id == "fig-fairness")
    assert "Line style: class_imbalance level" in figure.caption


def test_a_store_without_per_class_results_has_no_fairness_section(plain_report):
    assert "class_error" not in plain_report.data.runs.columns  # a store written before they were recorded
    assert "fig-fairness" not in plain_report.figure_ids
    assert 'id="fairness"' not in plain_report.html
    assert "Fairness across classes" not in plain_report.html
    assert plain_report.analysis.fairness == []


def test_one_training_set_size_gets_the_fairness_section_without_a_trend(tmp_path):
    grid = "width = [0.5, 2]\ndata_fraction = [1.0]\nseed = [0, 1]"
    report = build_report(fake_study(tmp_path / "one", grid=grid, name="one", per_class=True), **FAST)
    fairness = next(s for s in report.sections if s["id"] == "fairness")
    assert "a single training-set size" in fairness["empty"]
    assert "fig-fairness" not in report.figure_ids and not fairness["tables"]


COMPRESSION_GRID = GRID + '\ntrain.prune = [0, 0.5]\nquantize = ["none", "int8"]'
COMPRESSION_LABELS = {(0.0, "none"): "uncompressed", (0.0, "int8"): "int8", (0.5, "none"): "prune 0.5", (0.5, "int8"): "prune 0.5 + int8"}


def _compression_means(runs: pd.DataFrame) -> pd.DataFrame:
    """From the recorded runs, not the report's code: means over seeds at full data per
    width, prune ratio and quantisation (only scalar columns: never the per-class lists)."""
    rows = runs[(runs["state"] == "done") & (runs["data_fraction"] == 1.0)]
    columns = ["test_error", "test_error_before_compression", "nonzero_params", "model_bytes", "inference_samples_per_s"]
    numbers = rows[columns].apply(pd.to_numeric)
    return numbers.groupby([rows["width"], rows["train.prune"], rows["quantize"]]).mean()


def section_parts(report, name: str, heading: str):
    """The figure and the one table of the report's section ``name``, after checking that
    the page has the section, its figure ``fig-NAME``, its table ``NAME-table`` and heading."""
    assert f"fig-{name}" in report.figure_ids
    html = report.html
    assert f'id="{name}"' in html and f'id="fig-{name}"' in html and f'id="{name}-table"' in html
    assert heading in [t for t in parse(html).text if t.strip()]
    figure = next(f for f in report.figures if f.id == f"fig-{name}")
    (table,) = next(s for s in report.sections if s["id"] == name)["tables"]
    return figure, table


def test_a_compression_sweep_gets_the_compression_figure_and_table(tmp_path):
    study = fake_study(tmp_path / "compressed", grid=COMPRESSION_GRID, name="compressed", per_class=True, groups=True, sizes=True)
    report = build_report(study, **FAST)
    figure, table = section_parts(report, "compression", "Compression")
    html = report.html
    assert "colour: prune ratio; marker: quantisation" in figure.caption and "Pareto frontier" in figure.caption
    cells = {(row[0], row[1]): dict(zip(table["columns"], row)) for row in table["rows"]}
    means = _compression_means(study.runs())
    assert len(cells) == len(means) == 3 * 4
    for (width, prune, quantize), m in means.iterrows():
        row = cells[(f"width {width:g}", COMPRESSION_LABELS[(prune, quantize)])]
        compressed = (prune, quantize) != (0.0, "none")
        before = m["test_error_before_compression"] if compressed else m["test_error"]
        assert row["test error before"] == f"{100 * before:.3g}%"
        assert row["test error after"] == f"{100 * m['test_error']:.3g}%"
        assert row["change (points)"] == (f"{100 * (m['test_error'] - before):+.1f}" if compressed else "—")
        assert row["non-zero parameters"] == f"{round(m['nonzero_params']):,}"
        assert row["model bytes"] == f"{round(m['model_bytes']):,}"
        assert row["inference samples/s"] == f"{m['inference_samples_per_s'] / 1e6:.3g}M"
        assert row["seeds"] == "2"
        if compressed:  # the trained model is the uncompressed run: same cell, same seed
            assert m["test_error_before_compression"] == pytest.approx(means.loc[(width, 0.0, "none"), "test_error"])
    # Each model's uncompressed run comes first, the models in order of size.
    assert [r[:2] for r in table["rows"][:5]] == [["width 0.5", "uncompressed"], ["width 0.5", "int8"], ["width 0.5", "prune 0.5"],
                                                  ["width 0.5", "prune 0.5 + int8"], ["width 1", "uncompressed"]]  # fmt: skip
    # The smallest model overall is the first on the size frontier: the narrowest model in
    # int8 ties with its pruned twin in bytes, and wins on error.
    assert "against model bytes (nothing smaller does better): width 0.5, int8 (4,000 bytes," in html
    # Laws, curves, the fairness section use the uncompressed runs, and say so.
    assert set(report.data.done["train.prune"]) == {0.0} and set(report.data.done["quantize"]) == {"none"}
    assert set(report.data.fairness_runs["quantize"]) == {"none"}
    assert "Laws, curves and frontiers use the runs with train.prune = 0" in " ".join(report.data.notes)
    assert report.data.winners is None


def test_a_store_without_a_compression_sweep_has_no_compression_section(plain_report, tmp_path):
    assert "model_bytes" not in plain_report.data.runs.columns  # a store written before sizes were recorded
    sized = build_report(fake_study(tmp_path / "sized", grid=GRID + '\nquantize = ["int8"]', name="sized", sizes=True), **FAST)
    assert "model_bytes" in sized.data.runs.columns
    for report in (plain_report, sized):
        assert "fig-compression" not in report.figure_ids
        assert 'id="compression"' not in report.html and "compression-table" not in report.html
        assert report.data.compression_runs is None and report.analysis.compression is None


TRANSFER_GRID = GRID + '\ninit_from = ["none", "pretrain"]'
PRETRAIN = '\n[pretrain.data]\nname = "digits"\nfeature_noise = 0.5\n\n[pretrain.train]\nepochs = 1\n'


@pytest.fixture(scope="module")
def transfer_study(tmp_path_factory):
    """Each model from scratch and fine-tuned, each then int8-quantised or not, with per-class results."""
    grid = TRANSFER_GRID + '\nquantize = ["none", "int8"]'
    return fake_study(tmp_path_factory.mktemp("transfer"), grid=grid, name="transfer", per_class=True, sizes=True, extra=PRETRAIN)


@pytest.fixture(scope="module")
def transfer_report(transfer_study):
    return build_report(transfer_study, **FAST)


def _transfer_means(runs: pd.DataFrame) -> pd.DataFrame:
    """From the recorded runs, not the report's code: the mean test error over seeds of the
    unquantised runs per width, data fraction and init_from, with their n_train."""
    rows = runs[(runs["state"] == "done") & (runs["quantize"] == "none")]
    numbers = rows[["test_error", "n_train"]].apply(pd.to_numeric)
    return numbers.groupby([rows["width"], rows["data_fraction"], rows["init_from"]]).mean().unstack("init_from")


def test_a_transfer_sweep_gets_the_transfer_figure_section_and_table(transfer_study, transfer_report):
    report = transfer_report
    html = report.html
    figure, table = section_parts(report, "transfer", "Transfer learning")
    html = report.html
    # After the compression section, as the issue places it.
    ids = [s["id"] for s in report.sections]
    assert ids.index("transfer") == ids.index("compression") + 1, ids
    assert "D_T = D_E − D_F" in figure.caption and "fitted D_T = k·D_F^α·N^β" in figure.caption

    rows = {(row[0], row[1]): dict(zip(table["columns"], row)) for row in table["rows"]}
    means = _transfer_means(transfer_study.runs())
    assert len(rows) == len(means) == 3 * 4
    for (width, fraction), m in means.iterrows():
        row = rows[(f"width {width:g}", f"{fraction:g}")]
        assert row["D_F (target samples)"] == f"{round(m[('n_train', 'pretrain')]):,}"
        assert row["fine-tuned test_error"] == f"{100 * m[('test_error', 'pretrain')]:.3g}%"
        assert row["from-scratch test_error"] == f"{100 * m[('test_error', 'none')]:.3g}%"
        assert row["seeds"] == "2"
        assert re.fullmatch(r"−?[\d,]+ \[−?[\d,]+, (−?[\d,]+|∞)\]", row["D_T [80%]"]), row["D_T [80%]"]
    # The largest fraction's D_E lies beyond the largest run from scratch, and says so.
    assert {row["extrapolated"] for (_, fraction), row in rows.items() if fraction == "1"} <= {"yes"}
    # Each point's D_T is D_E − D_F, and near what the synthetic checkpoint was worth.
    from report_fixtures import transferred

    points = report.analysis.transfer.points
    assert len(points) == 12
    for p in points:
        assert p.d_t == pytest.approx(p.d_e - p.d_f)
        if p.d_f == min(q.d_f for q in points):
            truth = transferred(p.d_f, p.n_params)
            assert truth / 2 < p.d_t < truth * 2, (p, truth)
    # The one-line answer counts what the runs show: fine-tuned mean below the from-scratch one.
    beat = int((means[("test_error", "pretrain")] < means[("test_error", "none")]).sum())
    assert f"Fine-tuning beat training from scratch at {beat} of 12 target fractions" in html
    assert "at the smallest fraction (168 samples) it was worth D_T ≈ " in html
    fit = report.analysis.transfer.fit
    assert fit is not None and fit.beta is not None
    assert f"{fit.formula()} (N: parameters), with 80% intervals k = {fit.k:.3g} [" in html


def test_the_rest_of_a_transfer_report_uses_only_the_runs_from_scratch(transfer_report):
    report = transfer_report
    data = report.data
    assert data.transfer_keys == ["init_from"]
    assert "Laws, curves and frontiers use the runs trained from scratch (init_from = none)" in " ".join(data.notes)
    assert "Laws, curves and frontiers use the runs trained from scratch (init_from = none)" in report.html
    assert set(data.done["init_from"]) == {"none"} and len(data.done) == 3 * 4 * 2
    assert set(data.fairness_runs["init_from"]) == {"none"} and set(data.compression_runs["init_from"]) == {"none"}
    # One law per model over its 4 fractions x 2 seeds from scratch: the fine-tuned runs would double that.
    assert [r.law.n_points for r in report.analysis.laws] == [8, 8, 8]
    assert set(report.analysis.compression["seeds"]) == {2}
    # The transfer section sees both starts, unquantised.
    assert set(data.transfer_runs["init_from"]) == {"none", "pretrain"} and set(data.transfer_runs["quantize"]) == {"none"}
    assert len(data.transfer_runs) == 2 * 3 * 4 * 2
    # The figure's model labels are the report's: each law is one of the learning curves' models.
    assert list(report.analysis.transfer.laws) == sorted(set(data.done["model"]), key=lambda m: float(m.split()[-1]))


def test_transfer_points_off_a_log_axis_are_left_out_of_the_figure_and_said(transfer_report):
    """D_T ≤ 0 (the checkpoint hurt) and D_T = ∞ cannot be drawn on log axes."""
    from dataclasses import replace

    from scalelab.report import figures
    from scalelab.report.build import transfer_section

    result = transfer_report.analysis.transfer
    points = list(result.points)
    points[0] = replace(points[0], d_e=points[0].d_f / 2, d_t=-points[0].d_f / 2, d_t_lo=-points[0].d_f, d_t_hi=1.0)
    points[1] = replace(points[1], d_e=float("inf"), d_t=float("inf"), d_e_hi=float("inf"), d_t_hi=float("inf"))
    changed = replace(result, points=points)
    figure = figures.transfer_figure(transfer_report.data, changed)
    assert "2 of 12 points have D_T ≤ 0" in figure.caption and "left off the right panel" in figure.caption
    analysis = replace(transfer_report.analysis, transfer=changed)
    section = transfer_section(transfer_report.data, analysis, figure)
    assert any("2 of 12 points have D_T ≤ 0 or infinite" in n for n in section["notes"])
    cells = [row[6] for row in section["tables"][0]["rows"]]
    assert f"−{round(points[0].d_f / 2):,} [−{round(points[0].d_f):,}, 1]" in cells
    assert any(c.startswith("∞ [") and c.endswith(", ∞]") for c in cells)
    # Unchanged, every point is drawn and the caption says nothing is left out.
    assert "left off" not in next(f for f in transfer_report.figures if f.id == "fig-transfer").caption


def test_a_head_lr_sweep_splits_the_fine_tuned_runs_into_settings(tmp_path):
    grid = "width = [0.5, 1]\ndata_fraction = [0.25, 0.5, 1.0]\nseed = [0, 1]\ninit_from = [\"none\", \"pretrain\"]\nhead_lr = [0.01, 0.1]"
    report = build_report(fake_study(tmp_path / "head", grid=grid, name="head", extra=PRETRAIN), **FAST)
    assert report.data.transfer_keys == ["init_from", "head_lr"]
    # From scratch, the report reads one head_lr (the smallest: neither is the default).
    assert set(report.data.done["head_lr"]) == {0.01} and len(report.data.done) == 2 * 3 * 2
    assert "(init_from = none, head_lr = 0.01)" in " ".join(report.data.notes)
    models = {p.model for p in report.analysis.transfer.points}
    assert models == {f"width {w}, head_lr {h}" for w in ("0.5", "1") for h in ("0.01", "0.1")}
    assert list(report.analysis.transfer.laws) == ["width 0.5", "width 1"]
    assert "fig-transfer" in report.figure_ids
    rows = next(s for s in report.sections if s["id"] == "transfer")["tables"][0]["rows"]
    assert [row[0] for row in rows[:4]] == ["width 0.5, head_lr 0.01"] * 3 + ["width 0.5, head_lr 0.1"]


def test_a_transfer_study_without_fine_tuned_results_gets_a_note_not_a_failure(tmp_path):
    grid = "width = [0.5, 1]\ndata_fraction = [0.25, 0.5, 1.0]\nseed = [0, 1]\ninit_from = [\"none\", \"pretrain\"]"
    study = fake_study(tmp_path / "nothing", grid=grid, name="nothing", extra=PRETRAIN)
    failures = {i: ("failed", "pretraining failed") for i, c in enumerate(study.spec.cells) if c.params["init_from"] == "pretrain"}
    report = build_report(fake_study(tmp_path / "failed", grid=grid, name="failed", extra=PRETRAIN, failures=failures), **FAST)
    assert report.analysis.transfer is None
    assert "No transfer analysis: failed: no done fine-tuned runs" in " ".join(report.analysis.notes)
    section = next(s for s in report.sections if s["id"] == "transfer")
    assert section["empty"].startswith("No transfer analysis") and not section["tables"]
    assert "fig-transfer" not in report.figure_ids and len(report.analysis.laws) == 2


def test_a_study_without_init_from_has_no_transfer_section(plain_report):
    assert "fig-transfer" not in plain_report.figure_ids
    assert 'id="transfer"' not in plain_report.html and "Transfer learning" not in plain_report.html
    assert plain_report.data.transfer_keys == [] and plain_report.data.transfer_runs is None
    assert plain_report.analysis.transfer is None


def test_the_report_holds_summary_laws_backtest_plan_and_states(plain_report):
    html = plain_report.html
    headings = [t for t in parse(html).text if t.strip()]
    for heading in ("Summary", "Runs by state", "Learning curves", "Fitted laws", "Backtest", "Plan", "Failed and diverged cells"):
        assert heading in headings, heading
    assert 'id="laws-table"' in html and 'id="backtest-table"' in html and 'id="plan-table"' in html
    # One law per model size, each with parameter intervals and a forecast with an interval.
    laws = plain_report.analysis.laws
    assert len(laws) == 3 and all(r.law is not None and r.prediction is not None for r in laws)
    assert all(r.prediction["lo"] <= r.prediction["y"] <= r.prediction["hi"] for r in laws)
    assert "None: every finished cell trained cleanly." in html


def test_failed_and_diverged_cells_are_listed_with_their_reasons(tmp_path):
    reasons = {
        1: ("failed", "Traceback (most recent call last):\n  File \"<worker>\", line 1\nRuntimeError: out of memory on purpose"),
        4: ("diverged", "loss became nan at step 17"),
    }
    study = fake_study(tmp_path / "failing", grid=GRID, name="failing", failures=reasons)
    report = build_report(study, **FAST)
    rows = report.sections[-1]["tables"][0]["rows"]
    assert {row[0] for row in rows} == {study.spec.cells[i].cell_id for i in reasons}
    html = report.html
    assert 'id="failures-table"' in html
    assert "RuntimeError: out of memory on purpose" in html and "loss became nan at step 17" in html
    assert "File &#34;&lt;worker&gt;&#34;" in html or "File &quot;&lt;worker&gt;&quot;" in html
    assert "2 cells did not finish cleanly" in html
    assert "1 failed" in html and "1 diverged" in html  # the summary counts them too


# -- safety ----------------------------------------------------------------------------------
def test_user_strings_are_escaped_and_no_script_carries_them(tmp_path):
    name = "<script>alert(1)</script>"
    description = 'a "quoted" <img src=x onerror=alert(2)> & more'
    reason = "</pre><script>alert(3)</script>"
    study = fake_study(tmp_path / "evil", grid=GRID, name=name, description=description, failures={0: ("failed", reason)})
    html = build_report(study, **FAST).html
    page = parse(html)
    assert not [attrs for tag, attrs in page.tags if tag == "script"], "a script element made it into the page"
    assert not [attrs for tag, attrs in page.tags if any(a.startswith("on") for a in attrs)], "an event handler made it in"
    assert [attrs for tag, attrs in page.tags if tag == "img" and attrs.get("src") == "x"] == []
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;/pre&gt;&lt;script&gt;alert(3)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=alert(2)&gt;" in html
    assert name in "".join(page.text)  # shown as text, where a reader can see it
    assert "<script" not in html.lower()


def test_the_report_loads_nothing_from_the_network(plain_report, tmp_path):
    assert network_references(plain_report.html) == []
    assert 'http-equiv="Content-Security-Policy"' in plain_report.html
    csv = _chinchilla_like_csv(tmp_path / "runs.csv")
    assert network_references(build_report(csv, x=["N", "D"], y="loss", **FAST).html) == []


def test_network_check_catches_a_remote_reference():
    assert network_references('<img src="https://example.org/a.png">')
    assert network_references("<style>body{background:url(http://example.org/x)}</style>")
    assert not network_references('<p>see https://example.org in the text</p><a href="#plan">plan</a>')


# -- commands and API ------------------------------------------------------------------------
def _chinchilla_like_csv(path: Path) -> Path:
    rng = np.random.default_rng(0)
    N, D = np.meshgrid(np.geomspace(1e6, 1e8, 5), np.geomspace(1e8, 1e10, 5))
    N, D = N.ravel(), D.ravel()
    loss = (1.8 + 400 / N**0.34 + 2000 / D**0.37) * np.exp(rng.normal(0, 0.01, N.size))
    pd.DataFrame({"N": N, "D": D, "loss": loss}).to_csv(path, index=False)
    return path


def test_report_command_on_a_study_and_on_a_csv(plain_study, tmp_path):
    env = cli_env(tmp_path / "cache")
    out = tmp_path / "study-report.html"
    cli = run_cli("report", "plain", "--store", plain_study.store_path, "-o", out, "--bootstrap", "60", env=env, cwd=tmp_path)
    assert cli.returncode == EXIT_OK, cli.describe()
    assert out.is_file() and str(out) in cli.stdout
    assert "<h1>plain</h1>" in out.read_text(encoding="utf-8")

    csv = _chinchilla_like_csv(tmp_path / "runs.csv")
    out_csv = tmp_path / "csv-report.html"
    cli = run_cli("report", csv, "--x", "N", "--x", "D", "--y", "loss", "-o", out_csv, "--bootstrap", "60", env=env, cwd=tmp_path)
    assert cli.returncode == EXIT_OK, cli.describe()
    html = out_csv.read_text(encoding="utf-8")
    assert 'id="fig-laws"' in html and 'id="plan-table"' in html and "chinchilla" in html


@pytest.mark.parametrize(
    "args, message",
    [
        (["nope", "--store", "{store}"], "no study named 'nope'"),
        (["plain", "--store", "{store}", "--y", "no_such_metric"], "no_such_metric"),
        (["plain", "--store", "{store}", "--form", "cubic"], "unknown form 'cubic'"),
        (["plain", "--store", "{store}", "-o", "{tmp}/missing/r.html"], "does not exist"),
        (["{tmp}/runs.csv"], "give --x COL and --y COL"),
    ],
)
def test_report_command_bad_input_exits_2_and_writes_nothing(plain_study, tmp_path, args, message):
    _chinchilla_like_csv(tmp_path / "runs.csv")
    filled = [a.format(store=plain_study.store_path, tmp=tmp_path) for a in args]
    if "-o" not in filled:
        filled += ["-o", str(tmp_path / "r.html")]
    cli = run_cli("report", *filled, env=cli_env(tmp_path / "cache"), cwd=tmp_path)
    assert cli.returncode == EXIT_USAGE, cli.describe()
    lines = [line for line in cli.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], cli.stderr
    assert not list(tmp_path.rglob("*.html")), "a report was written after an input error"


def test_study_report_api_and_notebook_html(plain_study, tmp_path):
    path = plain_study.report(tmp_path / "api.html", n_boot=60)
    assert path == tmp_path / "api.html" and path.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    fragment = plain_study._repr_html_()
    assert "plain" in fragment and "done" in fragment and "<html" not in fragment

    from scalelab.laws import fit

    x = np.geomspace(100, 1e4, 8)
    law = fit(x, 0.05 + 2.0 * x**-0.5, form="saturating", y_name="<b>loss</b>", n_boot=60)
    html = law_html(law)
    assert "saturating" in html and "&lt;b&gt;loss&lt;/b&gt;" in html and "<b>loss" not in html
    assert 'src="data:image/png;base64,' in html
    # A notebook shows a fitted law, auto's averaged one included, through the same view.
    assert law._repr_html_() == html
    auto = fit(x, 0.05 + 2.0 * x**-0.5, form="auto", n_boot=60)
    assert "auto averaged" in auto._repr_html_()


def test_curves_that_fail_for_one_reason_are_one_row_naming_them(tmp_path):
    """A grid of many one-point curves (a federated study's settings, say) would be a row
    of dashes per curve; they become one row that names each, after the fitted laws."""
    n = np.array([100.0, 200, 400, 800, 1600, 3200])
    rows = [{"n": v, "loss": 2 * v**-0.3, "setting": "swept"} for v in n]
    rows += [{"n": 500.0, "loss": 0.3, "setting": f"lonely {i}"} for i in range(3)]
    path = tmp_path / "runs.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    html = build_report(path, x=["n"], y="loss", group="setting", **FAST).html
    laws = html[html.index('id="laws-table"') : html.index("</table>", html.index('id="laws-table"'))]
    assert laws.count("<tr>") == 1 + 2  # the header, the fitted law, one row for the rest
    assert "3 curves" in laws and "1 point is too few for any form" in laws
    assert all(f"lonely {i}" in laws for i in range(3))
    assert laws.index("swept") < laws.index("3 curves")
