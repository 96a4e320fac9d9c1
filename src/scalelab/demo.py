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


def error_table(study: Study):
    """Mean test error (over seeds) by family and width (rows) and data fraction (columns)."""
    runs = study.runs()
    done = runs[runs["state"] == "done"]
    return done.pivot_table(index=["family", "width"], columns="data_fraction", values="test_error", aggfunc="mean")


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
    console.print(f"Study file: {study.spec.source}   store: {study.store_path}")
    console.print(f"Every run: scalelab runs {study.name} --store {study.store_path} --format csv")
