"""Files that cannot be what a study says they are: one line, exit 2, nothing written.

A CSV with a header and no rows, a CSV whose header repeats a column, an npz of complex
numbers, a text file or a plain pickle given as ``init_from``. Each goes through the real
``scalelab run`` and must leave no store behind.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from cli_helpers import assert_one_line_error, cli_env, run_cli, write_study

CSV_STUDY = 'name = "s"\n[data]\nname = "csv"\npath = "{path}"\ntarget = "label"\n[model]\nfamily = "mlp"\n[train]\nepochs = 1\n'
NPZ_STUDY = 'name = "s"\n[data]\nname = "npz"\npath = "{path}"\n[model]\nfamily = "mlp"\n[train]\nepochs = 1\n'
INIT_STUDY = 'name = "s"\n[data]\nname = "digits"\n[model]\nfamily = "mlp"\n[train]\nepochs = 1\ninit_from = "{path}"\n'


def refused(tmp_path, study_text: str, *needles: str) -> str:
    study = write_study(tmp_path / "s.toml", study_text)
    store = tmp_path / "s.db"
    cli = run_cli("run", study, "--store", store, "--quiet", env=cli_env(tmp_path / "cache"), cwd=tmp_path)
    line = assert_one_line_error(cli, *needles)
    assert not store.exists(), "a refused study created its store"
    return line


def test_a_csv_with_a_header_and_no_rows(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("a,b,label\n")
    refused(tmp_path, CSV_STUDY.format(path=path), "empty.csv", "no rows")


def test_a_csv_whose_header_repeats_a_column(tmp_path):
    path = tmp_path / "twice.csv"
    path.write_text("a,a,label\n" + "1,2,0\n3,4,1\n" * 10)
    refused(tmp_path, CSV_STUDY.format(path=path), "twice.csv", "'a'", "more than once")


def test_an_npz_of_complex_features(tmp_path):
    path = tmp_path / "complex.npz"
    np.savez(path, X=np.ones((20, 3)) * (1 + 1j), y=np.arange(20) % 2)
    refused(tmp_path, NPZ_STUDY.format(path=path), "complex.npz", "complex")


@pytest.mark.parametrize("kind", ["text", "plain-pickle"])
def test_init_from_a_file_that_is_not_a_checkpoint(tmp_path, kind):
    path = tmp_path / f"{kind}.pt"
    if kind == "text":
        path.write_text("these are not weights\n")
        needle = "not a torch checkpoint"
    else:
        path.write_bytes(pickle.dumps({"w": 1}, protocol=4))
        needle = "refused"
    line = refused(tmp_path, INIT_STUDY.format(path=path), f"{kind}.pt", needle)
    assert "weights_only=False" not in line and "weights_only` set to `False" not in line  # never the unsafe advice
