"""Starting cells from a checkpoint (``init_from``), freezing the backbone, the head's own
learning rate, and refusing checkpoints that are not plain weights."""

from __future__ import annotations

import os

import pytest
import torch

from cli_helpers import assert_one_line_error, cli_env, run_cli, write_study
from scalelab.data import load_dataset
from scalelab.errors import InputError
from scalelab.models import build_model
from scalelab.spec import parse_spec
from scalelab.train.cell import run_cell


def config(checkpoint=None, *, data=None, model=None, **train) -> dict:
    raw = {
        "name": "ft",
        "data": data or {"name": "digits"},
        "model": model or {"family": "mlp", "width": 0.5},
        "train": {"epochs": 1, "device": "cpu", **({"init_from": str(checkpoint)} if checkpoint else {}), **train},
    }
    (cell,) = parse_spec(raw, source="ft.toml").cells
    return cell.config


@pytest.fixture(scope="module")
def digits():
    return load_dataset(config()["data"])


@pytest.fixture(scope="module")
def trained_checkpoint(tmp_path_factory, digits):
    """An MLP (width 0.5) trained on digits for a few epochs, saved as a state_dict."""
    torch.manual_seed(0)
    model = build_model({"family": "mlp", "knobs": {"width": 0.5}}, digits.input_shape, digits.n_classes, seed=0)
    X, y = torch.from_numpy(digits.X_train).float(), torch.from_numpy(digits.y_train)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(30):
        for start in range(0, len(y), 64):
            loss = torch.nn.functional.cross_entropy(model(X[start : start + 64]), y[start : start + 64])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    path = tmp_path_factory.mktemp("ckpt") / "mlp.pt"
    torch.save(model.state_dict(), path)
    return path


def test_a_cell_started_from_trained_weights_keeps_what_they_learned(digits, trained_checkpoint):
    # One epoch at a negligible learning rate: from scratch that is chance; from the checkpoint, its accuracy.
    scratch = run_cell(config(lr=1e-7), digits).metrics
    tuned = run_cell(config(trained_checkpoint, lr=1e-7), digits).metrics
    assert scratch["test_error"] > 0.7
    assert tuned["test_error"] < 0.15
    assert tuned["fresh_weights"] == [] and tuned["init_from_sha256"] == config(trained_checkpoint)["train"]["init_from_sha256"]


def test_freezing_the_backbone_trains_only_the_head(digits, trained_checkpoint):
    m = run_cell(config(trained_checkpoint, freeze="backbone", head_lr=1e-2), digits).metrics
    head = 32 * 10 + 10  # the last Linear of a width-0.5 MLP: 32 hidden units to 10 classes
    assert m["n_params"] == head and m["n_params_total"] > head and m["freeze"] == "backbone"
    assert m["test_error"] < 0.15


def test_a_head_for_other_classes_starts_fresh_and_the_rest_is_loaded(trained_checkpoint):
    data = {"name": "synthetic", "n_samples": 600, "n_features": 64, "n_classes": 3}
    cfg = config(trained_checkpoint, data=data)
    m = run_cell(cfg, load_dataset(cfg["data"])).metrics
    assert sorted(m["fresh_weights"]) == ["5.bias", "5.weight"]


def test_the_checkpoint_content_is_part_of_the_cell_id(tmp_path, trained_checkpoint):
    copy = tmp_path / "copy.pt"
    copy.write_bytes(trained_checkpoint.read_bytes())
    first = config(copy)
    state = torch.load(copy, weights_only=True)
    state["5.bias"] += 1
    torch.save(state, copy)
    assert config(copy)["train"]["init_from_sha256"] != first["train"]["init_from_sha256"]


@pytest.mark.parametrize(
    ("train", "message"),
    [
        pytest.param({"freeze": "backbone"}, 'train.freeze = "backbone" needs train.init_from', id="freeze-without-init"),
        pytest.param({"init_from": "missing.pt"}, "train.init_from = 'missing.pt': checkpoint file not found", id="missing"),
    ],
)
def test_bad_initialisation_settings_are_clear_errors(train, message):
    with pytest.raises(InputError) as caught:
        config(**train)
    assert message in str(caught.value)


def _study(tmp_path, checkpoint, width=0.5) -> os.PathLike:
    return write_study(
        tmp_path / "ft.toml",
        f'name = "ft"\n[data]\nname = "digits"\n[model]\nfamily = "mlp"\nwidth = {width}\n'
        f'[train]\nepochs = 1\ninit_from = "{checkpoint}"\n[grid]\nseed = [0]\n',
    )


@pytest.mark.slow
def test_a_checkpoint_of_another_architecture_is_a_usage_error(tmp_path, trained_checkpoint):
    cli = run_cli("run", _study(tmp_path, trained_checkpoint, width=1), "--store", tmp_path / "s.db", env=cli_env(tmp_path / "c"), cwd=tmp_path)
    assert_one_line_error(cli, "train.init_from", "checkpoint of another architecture", "'1.weight' has shape (32, 64), the model's is (64, 64)")
    assert not (tmp_path / "s.db").exists()


class _RunsACommand:
    """Pickles to a call of os.system: what a malicious checkpoint file holds."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.slow
def test_a_checkpoint_that_would_run_code_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"0.weight": _RunsACommand(marker)}, evil)
    cli = run_cli("run", _study(tmp_path, evil), "--store", tmp_path / "s.db", env=cli_env(tmp_path / "c"), cwd=tmp_path)
    assert_one_line_error(cli, "evil.pt", "refused: the checkpoint holds objects other than weights")
    assert not marker.exists()


def _registered(tmp_path, checkpoint):
    """A one-cell study starting from ``checkpoint``, registered in a fresh store, and the
    coordinator's view of what its cells start from."""
    from scalelab.execute.pretraining import PretrainStage
    from scalelab.spec import load_spec
    from scalelab.store import RunStore

    spec = load_spec(_study(tmp_path, checkpoint))
    store = RunStore.open(tmp_path / "s.db")
    store.register_study(spec)
    return spec.cells[0], PretrainStage(spec, store)


def test_the_task_carries_the_checkpoint_so_a_worker_never_reads_the_file(tmp_path, digits, trained_checkpoint):
    own = tmp_path / "own.pt"
    own.write_bytes(trained_checkpoint.read_bytes())
    cell, stage = _registered(tmp_path, own)
    task = stage.prepared(cell.config)
    own.unlink()  # as on a Ray worker that cannot see the coordinator's files
    m = run_cell({**task, "train": {**task["train"], "lr": 1e-7}}, digits).metrics
    assert m["test_error"] < 0.15 and m["init_from_sha256"] == cell.config["train"]["init_from_sha256"]


def test_a_checkpoint_file_changed_after_the_study_was_read_is_refused(tmp_path, trained_checkpoint):
    own = tmp_path / "own.pt"
    own.write_bytes(trained_checkpoint.read_bytes())
    cell, stage = _registered(tmp_path, own)
    state = torch.load(own, weights_only=True)
    state["5.bias"] += 1
    torch.save(state, own)
    with pytest.raises(InputError, match="the file changed after the study was read"):
        stage.prepared(cell.config)
