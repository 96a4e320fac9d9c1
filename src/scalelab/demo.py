"""``scalelab demo``: a real study on bundled data, runnable on a laptop in minutes."""

from __future__ import annotations

import shlex
import time
from importlib import resources
from pathlib import Path

from scalelab.errors import InputError
from scalelab.formatting import format_hours, format_metric_interval
from scalelab.spec import load_spec
from scalelab.study import Study


def demo_file_name(*, quick: bool, lm: bool = False) -> str:
    """``demo-lm.toml`` (the language-model demo), ``demo-quick.toml`` or ``demo.toml``."""
    return "demo-lm.toml" if lm else "demo-quick.toml" if quick else "demo.toml"


def demo_study_text(*, quick: bool, lm: bool = False) -> str:
    """The bundled demo study file (:func:`demo_file_name`)."""
    return resources.files("scalelab").joinpath("studies", demo_file_name(quick=quick, lm=lm)).read_text(encoding="utf-8")


def prepare_demo(*, out_dir: Path, quick: bool, lm: bool = False) -> Study:
    """Write the demo study file into ``out_dir`` and return it bound to ``out_dir/scalelab.db``.

    The copy lets the user edit the grid and rerun it with ``scalelab run``. An existing
    copy is left alone, so rerunning the demo resumes it.
    """
    out_dir = Path(out_dir).expanduser()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"--out {out_dir}: cannot create the folder ({exc.strerror})") from None
    study_file = out_dir / demo_file_name(quick=quick, lm=lm)
    if not study_file.exists():
        study_file.write_text(demo_study_text(quick=quick, lm=lm), encoding="utf-8")
    return Study(load_spec(study_file), store=out_dir / "scalelab.db")


class StageLog:
    """Prints each stage of a long analysis as it ends, with the seconds it took, so a
    minute of fitting is not a minute of silence; on a terminal a spinner names the
    stage under way."""

    def __init__(self, console):
        self.console = console
        self.stage: str | None = None
        self.started = 0.0
        self.total_started = time.perf_counter()
        self.status = console.status("", spinner="dots") if console.is_terminal else None

    def __enter__(self) -> StageLog:
        if self.status is not None:
            self.status.start()
        return self

    def __call__(self, stage: str) -> None:
        self._finish()
        self.stage, self.started = stage, time.perf_counter()
        if self.status is not None:
            self.status.update(f"{stage} ...")

    def _finish(self) -> None:
        if self.stage is not None:
            self.console.print(f"  {self.stage}: {time.perf_counter() - self.started:.1f} s")

    def __exit__(self, exc_type, *_exc) -> None:
        if self.status is not None:
            self.status.stop()
        if exc_type is None:
            self._finish()
            self.console.print(f"  analysis done in {time.perf_counter() - self.total_started:.1f} s")


def print_demo_results(study: Study, console, *, out_dir: Path) -> Path:
    """Build the demo's report, print its numbers (the same ones the page shows: one
    analysis feeds both), write ``out_dir/report.html`` and return its path.

    ``console`` is a rich Console with markup off: names and notes print as written."""
    from scalelab.report import build_report

    console.print("Fitting laws, backtests and plans for the report:")
    with StageLog(console) as stage:
        report = build_report(study, progress=stage)
    data, analysis = report.data, report.analysis
    print_error_table(data, console)
    print_label_noise(data, console)
    print_forecasts(data, analysis, console)
    print_backtest(data, analysis, console)
    print_plans(data, analysis, console)
    path = report.write(Path(out_dir).expanduser() / "report.html")
    console.print(f"Study file: {study.spec.source}   store: {study.store_path}")
    console.print(f"Every run: scalelab runs {shlex.quote(study.name)} --store {shlex.quote(str(study.store_path))} --format csv")
    return path


def print_lm_results(study: Study, console, *, out_dir: Path) -> Path:
    """The language-model demo's numbers: each budget's runs, the isoFLOP optima and their
    exponents with intervals, the tokens per parameter at the optimum, and the run at
    10x the largest budget on one H100; the same analysis as the report it writes."""
    from rich.table import Table

    from scalelab import plan
    from scalelab.report import build_report

    console.print("Fitting isoFLOP profiles, laws and plans for the report:")
    with StageLog(console) as stage:
        report = build_report(study, progress=stage)
    data, analysis = report.data, report.analysis
    runs = data.done.sort_values(["flops_budget", "n_params"])
    table = Table(title=f"{data.title}: {data.y_col} (nats per token) and bits per byte on held-out files")
    for name in ("budget (FLOPs)", "parameters", "tokens", "tokens/param", data.y_col, "val_bpb"):
        table.add_column(name, justify="right")
    for _, r in runs.iterrows():
        table.add_row(f"{r['flops_budget']:.3g}", f"{r['n_params']:,.0f}", f"{r['tokens']:,.0f}", f"{r['tokens'] / r['n_params']:.3g}",
                      f"{r[data.y_col]:.3f}", f"{r['val_bpb']:.3f}" if "val_bpb" in r else "")  # fmt: skip
    console.print(table)
    for result in analysis.isoflops:
        fit = result["isoflop"]
        lvl = f"{analysis.level:.0%}"
        for p in fit["profiles"]:
            if p["n_params_opt"] is None:
                console.print(f"Budget {p['flops']:.3g} FLOPs: no floor ({p['why']}).")
                continue
            lo, hi = p["n_params_opt_range"]
            edge = "" if p["interior"] else " (outside the sizes run: an extrapolation)"
            console.print(f"Budget {p['flops']:.3g} FLOPs: optimum N* = {p['n_params_opt']:,.0f} [{lo:,.0f}, {hi:,.0f}]{edge}, "
                          f"D* = {p['tokens_opt']:,.0f} tokens, {p['tokens_opt'] / p['n_params_opt']:.3g} tokens per parameter.")  # fmt: skip
        console.print(f"{result['label']}: N*(C) ∝ C^a, a = {fit['a']:.3f} [{fit['a_range'][0]:.3f}, {fit['a_range'][1]:.3f}]; "
                      f"D*(C) ∝ C^b, b = {fit['b']:.3f} [{fit['b_range'][0]:.3f}, {fit['b_range'][1]:.3f}] ({lvl} intervals; "
                      "Chinchilla: a ≈ b ≈ 0.5, about 20 tokens per parameter).")  # fmt: skip
        budget = 10 * float(runs["flops_budget"].max())
        at = result["_law"].laws.allocation(budget)
        h = plan.hardware_estimate(budget, hardware="h100", runs=runs, store=str(study.store_path))
        console.print(f"At 10x the largest budget ({budget:.3g} FLOPs): N* = {at['n_params']:,.0f} [{at['n_params_range'][0]:,.0f}, "
                      f"{at['n_params_range'][1]:,.0f}] on {at['tokens']:,.0f} tokens; on one H100 ({h['precision']}) about "
                      f"{format_hours(h['hours'])} at {h['mfu']:.0%} MFU ({h['mfu_source']}).")  # fmt: skip
    for note in analysis.notes:
        console.print(note)
    path = report.write(Path(out_dir).expanduser() / "report.html")
    console.print(f"Study file: {study.spec.source}   store: {study.store_path}")
    console.print(f"The plan on its own: scalelab plan {shlex.quote(study.name)} --store {shlex.quote(str(study.store_path))} --approach isoflop")
    return path


def print_error_table(data, console) -> None:
    """Mean test error over seeds by family and width (rows) and data fraction (columns), on the runs the laws use."""
    from rich.table import Table

    pivot = data.done.pivot_table(index=["family", "width"], columns="data_fraction", values=data.y_col, aggfunc="mean")
    table = Table(title=f"{data.title}: {data.y_col} (%), mean over seeds", caption="rows: model family and width; columns: share of the training data")
    table.add_column("family")
    table.add_column("width", justify="right")
    for fraction in pivot.columns:
        table.add_column(f"{fraction:g}", justify="right")
    for (family, width), row in pivot.iterrows():
        table.add_row(str(family), f"{width:g}", *[("" if v != v else f"{100 * v:.1f}") for v in row])
    console.print(table)
    for note in data.notes:
        console.print(note)


def print_label_noise(data, console) -> None:
    """Mean test error at full data by family and label noise, when the grid sweeps it."""
    from rich.table import Table

    runs = data.quality_runs
    if runs is None or "label_noise" not in runs.columns or runs["label_noise"].nunique() < 2:
        return
    full = runs[runs["data_fraction"] == runs["data_fraction"].max()]
    pivot = full.pivot_table(index="family", columns="label_noise", values=data.y_col, aggfunc="mean")
    table = Table(title="Data quality: test error (%) at full data, mean over widths and seeds", caption="columns: share of training labels flipped")
    table.add_column("family")
    for noise in pivot.columns:
        table.add_column(f"{noise:g}", justify="right")
    for family, row in pivot.iterrows():
        table.add_row(str(family), *[f"{100 * v:.1f}" for v in row])
    console.print(table)


def print_forecasts(data, analysis, console, *, level: float = 0.8) -> None:
    """Each family's widest model: its law and the report's forecast at 10x its largest training set."""
    by_label = {str(r.group): r for r in analysis.laws}
    for family, rows in data.done.groupby("family", sort=True):
        widest = rows[rows["width"] == rows["width"].max()]
        result = by_label.get(str(widest["model"].iloc[0])) if "model" in widest.columns else (analysis.laws[0] if analysis.laws else None)
        if result is None or result.law is None or result.prediction is None:
            console.print(f"{family}: no law ({result.error if result is not None else 'not fitted'})")
            continue
        law, p = result.law, result.prediction
        params = ", ".join(f"{k}={v:.3g}" for k, v in law.params.items())
        console.print(
            f"{family} (width {widest['width'].iloc[0]:g}): test error ~ {law.form} law in n_train ({params}); "
            f"10x more data (n_train {float(p['x'][0]):,.0f}) -> test error {format_metric_interval(p['y'], p['lo'], p['hi'], percent=True)} "
            f"({level:.0%} interval)"
        )


def print_backtest(data, analysis, console) -> None:
    """The report's backtest of each form against auto on the widest CNN's learning curve."""
    from rich.table import Table

    if not analysis.backtests:
        return
    families = set(data.done["family"])
    family = "seed_cnn" if "seed_cnn" in families else sorted(families)[0]
    rows = data.done[data.done["family"] == family]
    label = str(rows[rows["width"] == rows["width"].max()]["model"].iloc[0]) if "model" in rows.columns else None
    chosen = next((g for g in analysis.backtests if label is None or str(g["group"]) == label), analysis.backtests[0])
    table = Table(title=f"Backtest: {label or data.title}, fitted below its largest n_train, predicting the largest")
    for name in ("form", "abs. error", "rel. error", f"{analysis.level:.0%} interval covers"):
        table.add_column(name, justify="left" if name == "form" else "right")
    for r in sorted(chosen["rows"], key=lambda r: (r.error is not None, r.abs_error)):
        if r.error:
            table.add_row(r.form, "", "", r.error)
        else:
            name = f"auto ({r.chosen})" if r.chosen else r.form
            table.add_row(name, f"{100 * r.abs_error:.2f} pts", f"{r.rel_error:.0%}", f"{r.coverage:.0%}")
    console.print(table)


def print_plans(data, analysis, console) -> None:
    """The report's plan per family: the compute-optimal split of 10x the largest run, whether
    more data or a bigger model pays more at the best run, and the hours on an H100."""
    for p in analysis.plans:
        a = p.allocation
        console.print(
            f"Plan for {p.label} at {a.flops:.3g} FLOPs (10x the largest run): {a.n_params:,.0f} parameters "
            f"[{a.n_params_range[0]:,.0f}, {a.n_params_range[1]:,.0f}] trained on {a.samples:,.0f} samples; "
            f"predicted test error {format_metric_interval(a.predicted, a.lo, a.hi, percent=True)}."
        )
        if p.verdict:
            console.print(p.verdict)
        if p.hardware:
            h = p.hardware
            console.print(f"On one {h['name'].upper()} ({h['precision']}): about {format_hours(h['hours'])} "
                          f"[{format_hours(h['hours_range'][0])}, {format_hours(h['hours_range'][1])}] at {h['mfu']:.0%} MFU "
                          f"({h['mfu_source']}).",
                          highlight=False)  # fmt: skip
    for note in analysis.notes:
        console.print(note)
