"""``scalelab demo``: a real study on bundled data, runnable on a laptop in minutes."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from scalelab.errors import InputError
from scalelab.spec import load_spec
from scalelab.study import Study


def demo_study_text(*, quick: bool) -> str:
    """The bundled demo study file (``demo-quick.toml`` or ``demo.toml``)."""
    name = "demo-quick.toml" if quick else "demo.toml"
    return resources.files("scalelab").joinpath("studies", name).read_text(encoding="utf-8")


def prepare_demo(*, out_dir: Path, quick: bool) -> Study:
    """Write the demo study file into ``out_dir`` and return it bound to ``out_dir/scalelab.db``.

    The copy lets the user edit the grid and rerun it with ``scalelab run``. An existing
    copy is left alone, so rerunning the demo resumes it.
    """
    out_dir = Path(out_dir).expanduser()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"--out {out_dir}: cannot create the folder ({exc.strerror})") from None
    study_file = out_dir / ("demo-quick.toml" if quick else "demo.toml")
    if not study_file.exists():
        study_file.write_text(demo_study_text(quick=quick), encoding="utf-8")
    return Study(load_spec(study_file), store=out_dir / "scalelab.db")


def clean_runs(study: Study):
    """The study's done runs on clean data (label_noise 0 when the grid sweeps it)."""
    runs = study.runs()
    done = runs[runs["state"] == "done"]
    if "label_noise" in done.columns:
        done = done[done["label_noise"] == 0]
    return done.copy()


def error_table(study: Study):
    """Mean test error (over seeds) by family and width (rows) and data fraction (columns)."""
    done = clean_runs(study)
    return done.pivot_table(index=["family", "width"], columns="data_fraction", values="test_error", aggfunc="mean")


def print_label_noise(study: Study, console) -> None:
    """Mean test error at full data by family and label noise, when the grid sweeps it."""
    from rich.table import Table

    runs = study.runs()
    done = runs[(runs["state"] == "done")]
    if "label_noise" not in done.columns or done["label_noise"].nunique() < 2:
        return
    full = done[done["data_fraction"] == done["data_fraction"].max()]
    pivot = full.pivot_table(index="family", columns="label_noise", values="test_error", aggfunc="mean")
    table = Table(title="Data quality: test error (%) at full data, mean over widths and seeds", caption="columns: share of training labels flipped")
    table.add_column("family")
    for noise in pivot.columns:
        table.add_column(f"{noise:g}", justify="right")
    for family, row in pivot.iterrows():
        table.add_row(family, *[f"{100 * v:.1f}" for v in row])
    console.print(table)
    console.print("The width x data table and the laws use the runs with clean labels (label_noise = 0).")


def data_forecasts(study: Study, *, factor: float = 10.0, level: float = 0.8) -> list[dict]:
    """For each family at its largest width: a data law for test error, and what
    ``factor``× more training data would give, with a ``level`` interval."""
    from scalelab.laws import fit

    done = clean_runs(study)
    forecasts = []
    for family, rows in done.groupby("family", sort=True):
        widest = rows[rows["width"] == rows["width"].max()]
        law = fit(widest["n_train"], widest["test_error"], form="auto", x_names=("n_train",), y_name="test_error", error_rate=True)
        target = float(widest["n_train"].max()) * factor
        lo, hi = law.interval([target], level)
        forecasts.append(
            {"family": family, "width": float(widest["width"].iloc[0]), "law": law, "n_train": target,
             "y": float(law.predict([target])[0]), "lo": float(lo[0]), "hi": float(hi[0])}
        )  # fmt: skip
    return forecasts


def print_data_forecasts(study: Study, console, *, factor: float = 10.0, level: float = 0.8) -> None:
    """Print each family's fitted data law and its forecast for ``factor``× more data."""
    for f in data_forecasts(study, factor=factor, level=level):
        law = f["law"]
        params = ", ".join(f"{k}={v:.3g}" for k, v in law.params.items())
        console.print(
            f"[bold]{f['family']}[/] (width {f['width']:g}): test error ~ {law.form} law in n_train ({params}); "
            f"{factor:g}x more data (n_train {f['n_train']:,.0f}) -> test error {100 * f['y']:.1f}% "
            f"[{100 * f['lo']:.1f}, {100 * f['hi']:.1f}] ({level:.0%} interval)"
        )


def print_backtest(study: Study, console, *, gap: float = 4.0) -> None:
    """A backtest of each form against auto on the widest CNN's learning curve."""
    from rich.table import Table

    from scalelab.fitting import backtest_groups
    from scalelab.laws.core import ONE_X_AUTO

    done = clean_runs(study)
    family = "seed_cnn" if "seed_cnn" in set(done["family"]) else str(done["family"].iloc[0])
    rows = done[(done["family"] == family) & (done["width"] == done[done["family"] == family]["width"].max())]
    result = backtest_groups(rows, label=study.name, x_cols=["n_train"], y_col="test_error", forms=[*ONE_X_AUTO, "auto"], gap=gap)
    table = Table(title=f"Backtest: {family} at its largest width, fitted on n_train ≤ 1/{gap:g} of the largest, predicting the largest")
    for name in ("form", "abs. error", "rel. error", "80% interval covers"):
        table.add_column(name, justify="left" if name == "form" else "right")
    for r in sorted(result[0]["rows"], key=lambda r: (r.error is not None, r.abs_error)):
        if r.error:
            table.add_row(r.form, "", "", r.error)
        else:
            name = f"auto ({r.chosen})" if r.chosen else r.form
            table.add_row(name, f"{100 * r.abs_error:.2f} pts", f"{r.rel_error:.0%}", f"{r.coverage:.0%}")
    console.print(table)


def print_plan(study: Study, console, *, factor: float = 10.0) -> None:
    """One plan: the compute-optimal size and data for 10× the largest run's compute, per family."""
    from scalelab.fitting import plan_table

    done = clean_runs(study)
    done["samples"] = done["flops"] / done["flops_per_sample"]
    for family, rows in done.groupby("family", sort=True):
        budget = float(rows["flops"].max()) * factor
        result = plan_table(rows.reset_index(drop=True), label=study.name, x_cols=["n_params", "samples"], y_col="test_error",
                            flops_col="flops", budget=budget, n_boot=300)  # fmt: skip
        b, near = result["budget"], result["nearest_run"]
        console.print(
            f"[bold]Plan[/] for {family} at {budget:.3g} FLOPs ({factor:g}x the largest run): {b['n_params']:,.0f} parameters "
            f"[{b['n_params_range'][0]:,.0f}, {b['n_params_range'][1]:,.0f}] trained on {b['samples']:,.0f} samples; "
            f"predicted test error {100 * b['predicted']:.1f}% [{100 * b['lo']:.1f}, {100 * b['hi']:.1f}]. "
            f"Nearest grid point: width {near['width']:g}, data_fraction {near['data_fraction']:g}."
        )


def write_demo_report(study: Study, out_dir: Path) -> Path:
    """The demo's HTML report, ``out_dir/report.html``."""
    return study.report(Path(out_dir).expanduser() / "report.html")


def print_demo_results(study: Study, console) -> None:
    """Print the test-error table and where the study's files are."""
    from rich.table import Table

    pivot = error_table(study)
    table = Table(title=f"{study.name}: test error (%), mean over seeds", caption="rows: model family and width; columns: share of the training data")
    table.add_column("family")
    table.add_column("width", justify="right")
    for fraction in pivot.columns:
        table.add_column(f"{fraction:g}", justify="right")
    for (family, width), row in pivot.iterrows():
        table.add_row(family, f"{width:g}", *[("" if v != v else f"{100 * v:.1f}") for v in row])
    console.print(table)
    print_label_noise(study, console)
    print_data_forecasts(study, console)
    print_backtest(study, console)
    print_plan(study, console)
    console.print(f"Study file: {study.spec.source}   store: {study.store_path}")
    console.print(f"Every run: scalelab runs {study.name} --store {study.store_path} --format csv")
