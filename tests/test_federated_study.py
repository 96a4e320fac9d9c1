"""A study with a ``[federated]`` section: its keys validated once (one line naming the
field), swept as grid keys, and run through ``scalelab run`` into the store with what a
federated run records."""

from __future__ import annotations

import json

import pytest
import tomllib
from spec_helpers import spec_refusal

from scalelab.spec import parse_spec
from scalelab.train.privacy import client_level_epsilon

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SOURCE = "f.toml"
BASE = """
name = "fed"
[data]
name = "digits"
[model]
family = "mlp"
width = 0.25
[train]
optimizer = "sgd"
lr = 0.1
batch_size = 32
"""


def spec_of(text: str):
    return parse_spec(tomllib.loads(BASE + text), source=SOURCE)


def refusal(text: str) -> str:
    return spec_refusal(BASE + text, source=SOURCE)


def test_federated_keys_are_grid_keys_and_each_setting_is_its_own_cell():
    spec = spec_of("[federated]\nclients = 8\nrounds = 2\n[grid]\nparticipation = [0.25, 1.0]\nfederated.local_epochs = [1, 2]\nalpha = [0.1]\npartition = ['dirichlet']\n")
    assert len(spec.cells) == 4 and len({c.cell_id for c in spec.cells}) == 4
    fed = spec.cells[0].config["federated"]
    assert fed["clients"] == 8 and fed["partition"] == "dirichlet" and fed["alpha"] == 0.1 and "noise_multiplier" not in fed
    assert spec.cells[0].params == {"participation": 0.25, "federated.local_epochs": 1, "alpha": 0.1, "partition": "dirichlet"}
    # A study without the section trains as before: no federated key in any cell.
    assert "federated" not in spec_of("").cells[0].config


@pytest.mark.parametrize("section, fragment", [
    ("clients = 8\nrounds = 2\nparticipation = 0", "federated.participation"),
    ("clients = 8\nrounds = 2\nparticipation = 1.5", "federated.participation"),
    ("clients = 8\nrounds = 2\npartition = 'dirichlet'\nalpha = 0", "federated.alpha"),
    ("clients = 8\nrounds = 2\npartition = 'dirichlet'\nalpha = -1.0", "federated.alpha"),
    ("clients = 8\nrounds = 2\npartition = 'dirichlet'", "needs federated.alpha"),
    ("clients = 8\nrounds = 2\nnoise_multiplier = 1.0", "federated.clip_norm is not set"),
    ("clients = 8\nrounds = 2\nclip_norm = 1.0", "federated.noise_multiplier is not set"),
    ("clients = 8\nrounds = 2\nmu = 0.1", 'aggregation = "fedprox"'),
    ("clients = 8\nrounds = 2\nservers = 2", "servers"),
    ("rounds = 2", "federated.clients"),
])  # fmt: skip
def test_bad_federated_settings_are_refused_naming_the_field(section, fragment):
    assert fragment in refusal(f"[federated]\n{section}\n")


def test_a_family_or_training_the_clients_cannot_use_is_refused():
    fed = "[federated]\nclients = 4\nrounds = 1\n"
    assert "model family 'tree' cannot train its clients" in parse_spec_error(BASE.replace('family = "mlp"\nwidth = 0.25', 'family = "tree"') + fed)
    assert "train.batch_seeds = true" in parse_spec_error(BASE.replace('optimizer = "sgd"', 'optimizer = "sgd"\nbatch_seeds = true') + fed)
    assert 'set train.optimizer = "sgd"' in parse_spec_error(BASE.replace('optimizer = "sgd"', 'optimizer = "adam"') + fed)


def parse_spec_error(text: str) -> str:
    return spec_refusal(text, source=SOURCE)


def write_study(folder, section: str, grid: str = "") -> str:
    path = folder / "fed.toml"
    path.write_text(BASE + "[federated]\n" + section + ("\n[grid]\n" + grid if grid else "") + "\n")
    return str(path)


def test_more_clients_than_samples_exits_2_before_anything_is_written(tmp_path, scalelab_main):
    study = write_study(tmp_path, "clients = 5000\nrounds = 1")
    cli = scalelab_main("run", study, "--store", tmp_path / "s.db", cwd=tmp_path)
    assert cli.returncode == 2
    assert cli.stderr.strip().count("\n") == 0 and "clients = 5000 is more than the 1437 training samples" in cli.stderr
    assert not (tmp_path / "s.db").exists()


def test_a_federated_grid_runs_and_records_clients_communication_and_privacy(tmp_path, scalelab_main):
    study = write_study(tmp_path, "clients = 12\nparticipation = 0.5\npartition = 'dirichlet'\nalpha = 0.3\ndelta = 1e-4",
                        "rounds = [1, 3]\nnoise_multiplier = [0.5]\nclip_norm = [5.0]")  # fmt: skip
    store = tmp_path / "s.db"
    assert scalelab_main("run", study, "--store", store, "--quiet", cwd=tmp_path).returncode == 0
    runs = json.loads(scalelab_main("runs", study, "--store", store, "--format", "json", cwd=tmp_path).stdout)
    assert sorted(r["rounds"] for r in runs) == [1, 3] and all(r["state"] == "done" for r in runs)
    for run in runs:
        assert run["clients"] == 12 and run["clients_per_round"] == 6 and len(run["client_error"]) == 12
        assert run["bytes_up"] == run["bytes_down"] == run["rounds"] * 6 * run["n_params"] * 4
        assert run["worst_client_error"] == max(run["client_error"]) and run["client_error_gap"] >= 0
        assert run["best_client_error"] <= run["worst_client_error"]
        assert run["epsilon"] == pytest.approx(client_level_epsilon(noise_multiplier=0.5, sample_rate=0.5, rounds=run["rounds"], delta=1e-4))
        assert run["delta"] == 1e-4 and run["label_skew"] > 0.2
        assert run["flops"] == pytest.approx(run["flops_per_sample"] * run["samples"])
    one, three = sorted(runs, key=lambda r: r["rounds"])
    assert one["epsilon"] < three["epsilon"] and one["samples"] < three["samples"]


def test_curves_split_by_client_setting_and_leave_private_runs_out_unless_grouped(tmp_path, scalelab_main):
    path = tmp_path / "fed.toml"
    path.write_text(BASE + "[federated]\nclients = 6\n\n[[grid]]\nrounds = [1, 2, 4]\nalpha = [0.5, 50.0]\npartition = ['dirichlet']\n"
                    "data_fraction = [0.5, 1.0]\n\n"
                    "[[grid]]\nrounds = [1, 4]\nalpha = [50.0]\npartition = ['dirichlet']\nnoise_multiplier = [0.3]\nclip_norm = [5.0]\n")  # fmt: skip
    store = tmp_path / "s.db"
    assert scalelab_main("run", path, "--store", store, "--quiet", cwd=tmp_path).returncode == 0
    fit = scalelab_main("fit", path, "--store", store, "--x", "rounds", "--y", "test_error", "--format", "json", cwd=tmp_path)
    assert fit.returncode == 0, fit.stderr
    answer = json.loads(fit.stdout)
    # One curve per alpha and data fraction along rounds; the two private runs stand on none of them.
    assert sorted(g["n_points"] for g in answer["groups"]) == [3, 3, 3, 3]
    assert answer["curves"]["held"]["noise_multiplier"] == "none (no privacy)"
    assert sum("private" in r["reason"] for r in answer["curves"]["left_out"]) == 2
    grouped = scalelab_main("fit", path, "--store", store, "--x", "rounds", "--y", "test_error", "--group", "noise_multiplier",
                            "--format", "json", cwd=tmp_path)  # fmt: skip
    assert grouped.returncode == 0, grouped.stderr
    assert sorted(g["n_points"] for g in json.loads(grouped.stdout)["groups"]) == [2, 3, 3, 3, 3]

    # The report's federated section compares rounds with data and the private runs with
    # the same setting without privacy.
    assert scalelab_main("report", path, "--store", store, "-o", tmp_path / "r.html", cwd=tmp_path).returncode == 0
    html = (tmp_path / "r.html").read_text()
    assert 'id="federated"' in html and 'id="fig-federated"' in html
    assert 'id="federated-law-table"' in html and 'id="federated-privacy-table"' in html
    privacy = html[html.index('id="federated-privacy-table"'):]
    privacy = privacy[: privacy.index("</table>")]
    assert privacy.count("<tr") - 1 == 2  # a header, then one row per private run


@pytest.mark.parametrize("section, fragment", [
    ("clients = 8\nrounds = 2\nparticipation = 1.5", "federated.participation"),
    ("clients = 8\nrounds = 2\npartition = 'dirichlet'\nalpha = 0", "federated.alpha"),
    ("clients = 8\nrounds = 2\nnoise_multiplier = 1.0", "federated.clip_norm is not set"),
])  # fmt: skip
def test_bad_federated_settings_exit_2_with_one_line_from_the_command(tmp_path, scalelab_main, section, fragment):
    cli = scalelab_main("run", write_study(tmp_path, section), "--store", tmp_path / "s.db", cwd=tmp_path)
    assert cli.returncode == 2 and fragment in cli.stderr and cli.stderr.strip().count("\n") == 0, cli.stderr
    assert not (tmp_path / "s.db").exists()
