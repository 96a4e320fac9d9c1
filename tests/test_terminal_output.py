"""What the terminal shows: a misspelt key, study, form, column, dataset, family or
device is refused with one line that suggests the name it resembles (none when nothing
is close), and tables stay whole at 80 columns and when piped."""

from __future__ import annotations

import json
import re

import pytest
from cli_helpers import (
    assert_one_line_error,
    cpu_digits_mlp_study,
    run_in_process,
    write_study,
)

from scalelab.spec import load_spec


@pytest.fixture
def cli(tmp_path, monkeypatch, capfd):
    def run(*args, columns=250):
        return run_in_process(*args, cache_dir=tmp_path / "cache", cwd=tmp_path, monkeypatch=monkeypatch, capfd=capfd, columns=columns)

    return run


@pytest.mark.parametrize(
    ("section_line", "grid", "suggestion"),
    [
        ('[model]\nwidht = 8', "seed = [0]", "did you mean 'width'?"),
        ("[train]\nepoch = 1", "seed = [0]", "did you mean 'epochs'?"),
        ("", "data_fractoin = [0.5, 1.0]", "did you mean 'data_fraction'?"),
    ],
)
def test_a_misspelt_key_is_refused_with_the_key_it_resembles(tmp_path, cli, section_line, grid, suggestion):
    text = cpu_digits_mlp_study("s", grid=grid)
    if section_line:
        section, line = section_line.split("\n")
        text = text.replace(f"{section}\n", f"{section}\n{line}\n", 1)
    study = write_study(tmp_path / "s.toml", text)
    assert_one_line_error(cli("run", study, "--dry-run", "--store", tmp_path / "s.db"), str(study), suggestion)
    assert not (tmp_path / "s.db").exists()


@pytest.mark.parametrize(
    ("old", "new", "suggestion"),
    [('name = "digits"', 'name = "digit"', "did you mean 'digits'?"), ('family = "mlp"', 'family = "mpl"', "did you mean 'mlp'?")],
)
def test_a_misspelt_dataset_or_family_is_refused_with_the_one_it_resembles(tmp_path, cli, old, new, suggestion):
    study = write_study(tmp_path / "s.toml", cpu_digits_mlp_study("s", grid="seed = [0]").replace(old, new))
    assert_one_line_error(cli("run", study, "--dry-run", "--store", tmp_path / "s.db"), suggestion)


def test_a_name_like_nothing_known_gets_no_suggestion(tmp_path, cli):
    study = write_study(tmp_path / "s.toml", cpu_digits_mlp_study("s", grid="seed = [0]", model="zqxv = 8"))
    line = assert_one_line_error(cli("run", study, "--dry-run", "--store", tmp_path / "s.db"), "model.zqxv")
    assert "did you mean" not in line


def test_misspelt_study_form_column_and_device_name_what_they_resemble_and_tables_fit_80_columns(tmp_path, cli):
    study = write_study(tmp_path / "tiny.toml", cpu_digits_mlp_study("tiny-digits", grid="data_fraction = [0.5, 1.0]", train="epochs = 1"))
    store = tmp_path / "s.db"
    assert cli("run", study, "--store", store, "--quiet").returncode == 0
    assert_one_line_error(cli("status", "tiny-digit", "--store", store), "no study named 'tiny-digit'", "did you mean 'tiny-digits'?")
    assert_one_line_error(cli("fit", "tiny-digits", "--store", store, "--form", "saturatin"), "did you mean 'saturating'?")
    assert_one_line_error(cli("fit", "tiny-digits", "--store", store, "--y", "test_eror"), "'test_eror'", "did you mean 'test_error'?")
    assert_one_line_error(cli("plan", "tiny-digits", "--store", store, "--budget", "1e12", "--hardware", "h10"), "did you mean 'h100'?")

    # A pipe at 80 columns: rich would squeeze every column into "0.…"; whole columns are
    # left out instead, and named.
    ids = {r["cell_id"] for r in json.loads(cli("runs", "tiny-digits", "--store", store, "--format", "json").stdout)}
    for args in (("runs", "tiny-digits", "--store", store), ("runs", "tiny-digits", "--store", store, "--curves"),
                 ("run", study, "--store", store, "--dry-run")):  # fmt: skip
        shown = cli(*args, columns=80)
        assert shown.returncode == 0, shown.describe()
        lines = shown.stdout.splitlines()
        assert all(len(line) <= 80 for line in lines), shown.describe()
        assert "…" not in shown.stdout, shown.describe()
        assert ids <= set(re.findall(r"\b[0-9a-f]{16}\b", shown.stdout)), shown.describe()
    table = cli("runs", "tiny-digits", "--store", store, columns=80).stdout
    header = next(line for line in table.splitlines() if "cell_id" in line).split()
    assert header[:4] == ["cell_id", "state", "data_fraction", load_spec(study).target_metric], table
    assert "not shown at this width:" in " ".join(table.split()), table
