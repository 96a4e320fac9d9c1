"""The report in a real browser: headless Chromium (Debian's ``chromium``, installed by
``.ci/run``, driven by Playwright) loads a real study's report over ``file://`` and the test asserts that

* every image has loaded (``naturalWidth > 0``),
* the console shows no error (nor the Content-Security-Policy any violation),
* the key headings are there,
* it prints (a PDF comes out),

and saves a full-page screenshot as an artifact: under ``$SCALELAB_TEST_ARTIFACTS`` when
set, else in the test's temporary folder; the path is printed (``pytest -s`` shows it).

The study is real but tiny: an MLP on bundled digits, 2 widths x 3 data fractions x 2
class-imbalance levels x 1 seed, one epoch each, each trained from scratch and fine-tuned
from a checkpoint pretrained for one epoch on noisier digits (``init_from``), then pruned
(0 or half its weights) and quantised (none or int8), trained by ``scalelab run`` and
reported by ``scalelab report``. Its runs record per-class results, as every
classification run does, and the imbalance axis adds the data-quality figure: one page
has the fairness figure, with its imbalance levels, the compression figure and the
transfer figure beside the others.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cli_helpers import cli_env, run_cli, write_study
from headless_chromium import find_chromium, open_page

pytestmark = pytest.mark.skipif(
    find_chromium() is None, reason="needs Chromium (Debian package 'chromium'; .ci/run installs it)"
)

STUDY = """\
name = "browser-check"
description = "A tiny real study for the browser test: <b>this stays text</b>."

[data]
name = "digits"
test_size = 0.25

[model]
family = "mlp"

[train]
epochs = 1
batch_size = 64

[pretrain.data]
name = "digits"
test_size = 0.25
feature_noise = 0.5

[pretrain.train]
epochs = 1
batch_size = 64

[grid]
width = [0.25, 1]
data_fraction = [0.25, 0.5, 1.0]
class_imbalance = [1, 10]
seed = [0]
prune = [0, 0.5]
quantize = ["none", "int8"]
init_from = ["none", "pretrain"]

[target]
metric = "test_error"
"""

KEY_HEADINGS = ("Summary", "Runs by state", "Learning curves", "Compute frontier", "Data quality", "Fairness across classes",
                "Compression", "Transfer learning", "Fitted laws", "Backtest", "Plan", "Failed and diverged cells")  # fmt: skip
KEY_FIGURES = {"fig-learning-curves", "fig-data-quality", "fig-fairness", "fig-compression", "fig-transfer", "fig-laws", "fig-backtest"}


def artifact_dir(tmp_path: Path) -> Path:
    folder = os.environ.get("SCALELAB_TEST_ARTIFACTS")
    if not folder:
        return tmp_path
    path = Path(folder).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def report_file(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("browser-study")
    env = cli_env(folder / "cache")
    study = write_study(folder / "browser-check.toml", STUDY)
    store = folder / "scalelab.db"
    ran = run_cli("run", study, "--store", store, "--workers", "2", "--quiet", env=env, cwd=folder)
    assert ran.returncode == 0, ran.describe()
    out = folder / "report.html"
    made = run_cli("report", "browser-check", "--store", store, "-o", out, "--bootstrap", "100", env=env, cwd=folder)
    assert made.returncode == 0, made.describe()
    return out


def test_report_loads_in_headless_chromium_with_every_image_and_no_console_error(report_file, tmp_path):
    with open_page(report_file.resolve().as_uri()) as (page, errors):
        page.evaluate("document.fonts.ready.then(() => true)")
        images = page.evaluate(
            "Array.from(document.images).map(i => ({id: (i.closest('figure') || {}).id, w: i.naturalWidth, done: i.complete}))"
        )
        headings = page.evaluate("Array.from(document.querySelectorAll('h1, h2')).map(h => h.textContent.trim())")
        title = page.title()
        scripts = page.evaluate("document.scripts.length")
        shot = artifact_dir(tmp_path) / "report-screenshot.png"
        page.screenshot(path=shot, full_page=True)
        pdf = page.pdf(print_background=True)
    print(f"\nreport screenshot: {shot}")

    assert len(images) >= 6, images
    assert all(image["done"] and image["w"] > 0 for image in images), images
    assert KEY_FIGURES <= {image["id"] for image in images}, images
    for heading in KEY_HEADINGS:
        assert heading in headings, (heading, headings)
    assert headings[0] == "browser-check" and title.startswith("browser-check")
    assert scripts == 0
    assert errors == [], errors
    assert shot.stat().st_size > 10_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert pdf[:5] == b"%PDF-"


def test_the_error_check_sees_csp_violations_exceptions_console_errors_and_failed_loads(tmp_path):
    # The report's "no error" assertion is only worth something if errors do reach it.
    page_file = tmp_path / "broken.html"
    page_file.write_text(
        "<!doctype html><html><head><meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; "
        "script-src 'unsafe-inline'\"><title>broken</title></head><body>"
        "<img src='blocked.png'><script>console.error('logged'); null.field;</script></body></html>"
    )
    with open_page(page_file.as_uri()) as (page, errors):
        assert page.title() == "broken"
    joined = "\n".join(errors)
    assert "Content Security Policy" in joined, errors  # the blocked image
    assert "request failed" in joined and "blocked.png" in joined, errors
    assert "console error: logged" in joined, errors
    assert "exception:" in joined, errors
