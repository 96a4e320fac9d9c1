"""Study files: validation, defaults, grid expansion and stable cell ids (DESIGN.md, "Study file")."""

from __future__ import annotations

import copy
import datetime
import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scalelab.errors import InputError
from scalelab.spec import load_spec, parse_spec

SOURCE = "s.toml"


def study(**sections) -> dict:
    """A small valid study (digits + MLP) with some sections replaced or added."""
    raw = {"name": "s", "data": {"name": "digits"}, "model": {"family": "mlp"}, "train": {"epochs": 1}}
    raw.update(sections)
    return raw


def input_error(raw: dict) -> str:
    """The message of the InputError that parsing ``raw`` must raise, checked for the one-line shape."""
    with pytest.raises(InputError) as info:
        parse_spec(raw, source=SOURCE)
    message = str(info.value)
    assert "\n" not in message, f"not one line: {message!r}"
    assert message.startswith(f"{SOURCE}: "), message
    return message


def ids(raw: dict) -> list[str]:
    return [cell.cell_id for cell in parse_spec(raw, source=SOURCE).cells]


# ---------------------------------------------------------------------------------------------
# Bad study files: one line, starting with the file, naming the key.
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        pytest.param(study(colour="red"), "colour", id="top-level"),
        pytest.param(study(data={"name": "digits", "colour": "red"}), "data.colour", id="data"),
        pytest.param(study(data={"name": "synthetic", "colour": "red"}), "data.colour", id="data-with-options"),
        pytest.param(study(model={"family": "mlp", "colour": "red"}), "model.colour", id="model"),
        pytest.param(study(train={"colour": "red"}), "train.colour", id="train"),
        pytest.param(study(grid={"colour": [1, 2]}), "grid.colour", id="grid"),
        pytest.param(study(grid={"optim.lr": [1, 2]}), "optim", id="grid-unknown-section"),
        pytest.param(study(target={"metric": "test_loss", "colour": "red"}), "target.colour", id="target"),
        # An option of another dataset is not an option of this one.
        pytest.param(study(data={"name": "digits", "n_samples": 100}), "data.n_samples", id="option-of-other-dataset"),
        pytest.param(study(model={"family": "seed_cnn", "depth": 3}), "model.depth", id="knob-of-other-family"),
    ],
)
def test_unknown_key_is_an_error_naming_it(raw, key):
    message = input_error(raw)
    assert key in message
    assert "unknown" in message


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        pytest.param({**study(), "name": 5}, "name", id="name-int"),
        pytest.param(study(data=3), "data", id="section-not-table"),
        pytest.param(study(data={"name": "digits", "test_size": "big"}), "data.test_size", id="test_size-str"),
        pytest.param(study(data={"name": "digits", "data_fraction": [0.5]}), "data.data_fraction", id="fraction-list"),
        pytest.param(study(model={"family": "mlp", "width": "wide"}), "model.width", id="width-str"),
        pytest.param(study(model={"family": "mlp", "depth": 2.5}), "model.depth", id="depth-fractional"),
        pytest.param(study(train={"epochs": "ten"}), "train.epochs", id="epochs-str"),
        pytest.param(study(train={"optimizer": "lion"}), "train.optimizer", id="optimizer-unknown"),
        pytest.param(study(train={"device": "tpu"}), "train.device", id="device-unknown"),
        pytest.param(study(train={"lr": {"value": 1}}), "train.lr", id="lr-table"),
        pytest.param(study(grid={"lr": ["fast"]}), "grid.lr", id="grid-value-str"),
        pytest.param(study(grid=[1, 2]), "grid", id="grid-not-table"),
        pytest.param(study(target={"metric": 3}), "target.metric", id="target-int"),
    ],
)
def test_wrong_type_is_an_error_naming_the_key(raw, key):
    assert key in input_error(raw)


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        pytest.param({k: v for k, v in study().items() if k != "name"}, "name", id="name"),
        pytest.param({k: v for k, v in study().items() if k != "data"}, "data.name", id="data"),
        pytest.param({k: v for k, v in study().items() if k != "model"}, "model.family", id="model"),
    ],
)
def test_missing_required_key_is_named(raw, key):
    message = input_error(raw)
    assert key in message
    assert "missing" in message


@pytest.mark.parametrize("fraction", [0, 0.0, 1.5, -0.1, math.nan, 1.0000001])
@pytest.mark.parametrize("where", ["data", "grid"])
def test_data_fraction_outside_unit_interval_is_rejected(fraction, where):
    if where == "data":
        raw = study(data={"name": "digits", "data_fraction": fraction})
    else:
        raw = study(grid={"data_fraction": [0.5, fraction]})
    message = input_error(raw)
    assert "data_fraction" in message
    assert "(0, 1]" in message


@pytest.mark.parametrize("family", ["mlp", "seed_cnn"])
@pytest.mark.parametrize("width", [-1, -0.5, 0])
def test_non_positive_width_is_rejected(family, width):
    assert "model.width" in input_error(study(model={"family": family, "width": width}))
    assert "grid.width" in input_error(study(model={"family": family}, grid={"width": [1, width]}))


def test_unknown_family_is_rejected_and_known_ones_listed():
    message = input_error(study(model={"family": "transformer"}))
    assert "model.family" in message
    assert "'transformer'" in message
    assert "mlp" in message and "seed_cnn" in message


def test_unknown_dataset_is_rejected_and_known_ones_listed():
    message = input_error(study(data={"name": "imagenet"}))
    assert "data.name" in message
    assert "'imagenet'" in message
    assert "digits" in message


def test_unknown_family_in_grid_names_the_grid_key():
    assert "grid.family" in input_error(study(model={}, grid={"family": ["mlp", "transformer"]}))


def test_empty_grid_table_is_rejected():
    assert "[grid] is empty" in input_error(study(grid={}))


@pytest.mark.parametrize("key", ["width", "lr", "data_fraction", "train.seed"])
def test_empty_grid_list_is_rejected(key):
    message = input_error(study(grid={key: []}))
    assert f"grid.{key}" in message
    assert "empty" in message


@pytest.mark.parametrize(
    ("section", "key"),
    [("train", "lr"), ("data", "data_fraction"), ("model", "width"), ("train", "seed")],
)
def test_key_in_both_its_section_and_the_grid_is_rejected(section, key):
    raw = study(grid={key: [0.5, 1.0]})
    raw[section] = {**raw[section], key: 0.25}
    message = input_error(raw)
    assert repr(key) in message
    assert f"[{section}]" in message and "[grid]" in message


def test_grid_key_may_name_its_section_explicitly():
    """``train.lr`` routes like ``lr``, and gives the same cells."""
    assert ids(study(grid={"train.lr": [0.1, 0.2]})) == ids(study(grid={"lr": [0.1, 0.2]}))
    assert len(ids(study(grid={"data.data_fraction": [0.5, 1.0]}))) == 2


def test_grid_that_repeats_a_value_is_rejected():
    """``width = [1, 1.0]`` names one configuration twice; the cells would collide."""
    assert "repeats" in input_error(study(grid={"width": [1, 1.0]}))


def test_invalid_toml_names_the_file(tmp_path: Path):
    path = tmp_path / "broken.toml"
    path.write_text('name = "s"\n[data\nname = "digits"\n', encoding="utf-8")
    with pytest.raises(InputError) as info:
        load_spec(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    assert "TOML" in message


def test_missing_file_names_the_file(tmp_path: Path):
    path = tmp_path / "absent.toml"
    with pytest.raises(InputError) as info:
        load_spec(path)
    assert str(info.value).startswith(f"{path}: ")
    assert "not found" in str(info.value)


def test_load_spec_errors_start_with_the_path(tmp_path: Path):
    path = tmp_path / "study.toml"
    path.write_text('name = "s"\n[data]\nname = "digits"\n[model]\nfamily = "mlp"\nwidht = 2\n', encoding="utf-8")
    with pytest.raises(InputError) as info:
        load_spec(path)
    assert str(info.value).startswith(f"{path}: model.widht")


# ---------------------------------------------------------------------------------------------
# Regression guards for validation gaps found earlier (each once crashed or was silently accepted).
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["lr", "weight_decay"])
def test_infinite_float_is_an_input_error(key):
    assert f"train.{key}" in input_error(study(train={key: math.inf}))


def test_toml_date_in_grid_is_an_input_error():
    assert "grid.lr" in input_error(study(grid={"lr": [datetime.date(1979, 5, 27)]}))


@pytest.mark.parametrize(
    "data",
    [
        pytest.param({"name": "digits", "split_seed": -1}, id="split_seed-negative"),
        pytest.param({"name": "digits", "split_seed": 2**40}, id="split_seed-too-large"),
        pytest.param({"name": "digits", "subsample_seed": -1}, id="subsample_seed-negative"),
        pytest.param({"name": "synthetic", "generator_seed": -1}, id="generator_seed-negative"),
    ],
)
def test_seed_out_of_generator_range_is_rejected(data):
    key = next(k for k in data if k.endswith("seed"))
    assert f"data.{key}" in input_error(study(data=data))


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        pytest.param(study(train={"epochs": "10"}), "train.epochs", id="epochs-numeric-string"),
        pytest.param(study(data={"name": "digits", "data_fraction": "0.5"}), "data.data_fraction", id="fraction-string"),
        pytest.param(study(model={"family": "mlp", "width": True}), "model.width", id="width-bool"),
    ],
)
def test_coercible_wrong_type_is_still_rejected(raw, key):
    assert key in input_error(raw)


def test_same_field_twice_in_grid_is_rejected():
    input_error(study(grid={"lr": [0.1], "train.lr": [0.3]}))


# ---------------------------------------------------------------------------------------------
# Properties: no input crashes the parser; every valid fraction is accepted.
# ---------------------------------------------------------------------------------------------

_KNOWN_KEYS = [
    "name", "test_size", "split_seed", "data_fraction", "subsample_seed", "n_samples", "n_classes", "n_features",
    "shape", "noise", "generator_seed", "family", "width", "depth", "epochs", "min_steps", "batch_size", "lr",
    "optimizer", "momentum", "weight_decay", "seed", "precision", "device", "metric", "description",
    "train.lr", "data.name", "model.width", "data.options",
]  # fmt: skip
_keys = st.one_of(st.sampled_from(_KNOWN_KEYS), st.text("abcdefgh_.", min_size=0, max_size=8))
# TOML's scalar types. Infinite floats and dates are covered by the regression tests above.
_scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_infinity=False),
    st.text(max_size=12),
    st.sampled_from(["digits", "mnist1d", "synthetic", "mlp", "seed_cnn", "sgd", "cpu", "bf16"]),
)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_keys, inner, max_size=3),
    max_leaves=6,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    edits=st.lists(
        st.tuples(st.sampled_from([None, "data", "model", "train", "grid", "target"]), _keys, _values),
        min_size=1,
        max_size=4,
    ),
    base_dataset=st.sampled_from(["digits", "mnist1d", "synthetic"]),
)
def test_arbitrary_edits_raise_only_input_error(edits, base_dataset):
    """Whatever a user writes, parsing either succeeds or raises one line of InputError."""
    raw = study(data={"name": base_dataset}, grid={"seed": [0, 1]}, target={"metric": "test_loss"})
    raw = copy.deepcopy(raw)
    for section, key, value in edits:
        if section is None:
            raw[key] = value
        elif isinstance(raw.get(section), dict):
            raw[section][key] = value
        else:
            raw[section] = {key: value}
    try:
        spec = parse_spec(raw, source=SOURCE)
    except InputError as exc:
        message = str(exc)
        assert message.startswith(f"{SOURCE}: ")
        assert "\n" not in message, message
    else:
        assert spec.cells
        assert len({cell.cell_id for cell in spec.cells}) == len(spec.cells)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=6), _values, max_size=5))
def test_arbitrary_top_level_dicts_raise_only_input_error(raw):
    with pytest.raises(InputError):
        parse_spec(raw, source=SOURCE)  # no name, data or model: never valid


@settings(max_examples=200, deadline=None)
@given(fraction=st.floats(min_value=0.0, max_value=1.0, exclude_min=True))
def test_every_fraction_in_unit_interval_is_accepted(fraction):
    (cell,) = parse_spec(study(data={"name": "digits", "data_fraction": fraction}), source=SOURCE).cells
    assert cell.config["data"]["data_fraction"] == fraction


# ---------------------------------------------------------------------------------------------
# Resolution and cell ids.
# ---------------------------------------------------------------------------------------------


def test_defaults_are_filled_in():
    (cell,) = parse_spec({"name": "s", "data": {"name": "digits"}, "model": {"family": "mlp"}}, source=SOURCE).cells
    config = cell.config
    assert config["train"]["batch_size"] == 64
    assert config["train"]["epochs"] == 10
    assert config["train"]["optimizer"] == "adam"
    assert config["train"]["lr"] == 1e-3
    assert config["train"]["seed"] == 0
    assert config["data"]["test_size"] == 0.2
    assert config["data"]["data_fraction"] == 1.0
    assert config["model"] == {"family": "mlp", "knobs": {"width": 1.0, "depth": 2}}


def test_subsample_seed_defaults_to_train_seed():
    spec = parse_spec(study(grid={"seed": [3, 7]}), source=SOURCE)
    assert [c.config["data"]["subsample_seed"] for c in spec.cells] == [3, 7]


def test_dataset_options_are_resolved_with_defaults():
    (cell,) = parse_spec(study(data={"name": "synthetic", "n_samples": 600}), source=SOURCE).cells
    assert cell.config["data"]["options"]["n_samples"] == 600
    assert cell.config["data"]["options"]["n_classes"] == 10
    assert cell.config["data"]["options"]["shape"] is None


def test_cell_id_is_the_same_across_calls():
    assert ids(study(grid={"width": [0.5, 1, 2]})) == ids(study(grid={"width": [0.5, 1, 2]}))


def test_integer_and_float_spellings_give_the_same_id():
    assert ids(study(model={"family": "mlp", "width": 1})) == ids(study(model={"family": "mlp", "width": 1.0}))
    assert ids(study(train={"epochs": 1, "lr": 1})) == ids(study(train={"epochs": 1, "lr": 1.0}))


def test_value_in_grid_or_section_gives_the_same_id():
    """Identity is the resolved configuration, not where the user wrote the value."""
    assert ids(study(train={"epochs": 1, "lr": 0.1})) == ids(study(grid={"lr": [0.1]}))


def test_cell_id_does_not_depend_on_the_study_name():
    assert ids({**study(), "name": "a", "description": "x"}) == ids({**study(), "name": "b"})


def test_default_written_out_gives_the_same_id():
    assert ids(study()) == ids(study(train={"epochs": 1, "batch_size": 64, "optimizer": "adam"}))


def test_key_order_in_the_file_does_not_matter(tmp_path: Path):
    one = tmp_path / "one.toml"
    one.write_text(
        'name = "s"\n'
        '[data]\nname = "digits"\ntest_size = 0.25\n'
        '[model]\nfamily = "mlp"\nwidth = 1\ndepth = 3\n'
        "[train]\nlr = 0.01\nepochs = 2\n"
        "[grid]\nseed = [0, 1]\ndata_fraction = [0.5, 1]\n",
        encoding="utf-8",
    )
    two = tmp_path / "two.toml"  # TOML needs top-level keys first; everything else is reordered
    two.write_text(
        'name = "s"\n'
        "[train]\nepochs = 2\nlr = 0.01\n"
        "[grid]\ndata_fraction = [0.5, 1.0]\nseed = [0, 1]\n"
        '[model]\ndepth = 3\nwidth = 1.0\nfamily = "mlp"\n'
        '[data]\ntest_size = 0.25\nname = "digits"\n',
        encoding="utf-8",
    )
    a, b = load_spec(one), load_spec(two)
    assert len(a.cells) == 4
    assert sorted(c.cell_id for c in a.cells) == sorted(c.cell_id for c in b.cells)


@pytest.mark.parametrize(
    "change",
    [
        {"train": {"epochs": 1, "lr": 0.002}},
        {"train": {"epochs": 2}},
        {"train": {"epochs": 1, "seed": 1}},
        {"data": {"name": "digits", "data_fraction": 0.5}},
        {"data": {"name": "digits", "test_size": 0.3}},
        {"data": {"name": "digits", "split_seed": 1}},
        {"model": {"family": "mlp", "width": 2}},
        {"model": {"family": "mlp", "depth": 3}},
        {"model": {"family": "seed_cnn"}},
        {"train": {"epochs": 1, "optimizer": "sgd"}},
        {"train": {"epochs": 1, "precision": "bf16"}},
    ],
    ids=lambda change: next(iter(change.values())).__repr__(),
)
def test_changing_one_value_changes_the_id(change):
    assert ids(study()) != ids(study(**change))


def test_grid_expands_to_the_product_of_its_lists():
    spec = parse_spec(
        study(grid={"width": [0.5, 1, 2], "seed": [0, 1], "data_fraction": [0.25, 0.5, 1], "lr": [0.1, 0.01]}),
        source=SOURCE,
    )
    assert len(spec.cells) == 3 * 2 * 3 * 2
    assert len({c.cell_id for c in spec.cells}) == len(spec.cells)
    assert spec.grid_keys == ("width", "seed", "data_fraction", "lr")
    assert {(c.params["width"], c.params["seed"]) for c in spec.cells} == {
        (w, s) for w in (0.5, 1.0, 2.0) for s in (0, 1)
    }
    for cell in spec.cells:
        assert cell.config["model"]["knobs"]["width"] == cell.params["width"]
        assert cell.config["train"]["seed"] == cell.params["seed"]
        assert cell.config["data"]["data_fraction"] == cell.params["data_fraction"]
        assert cell.config["train"]["lr"] == cell.params["lr"]


@settings(max_examples=50, deadline=None)
@given(
    widths=st.lists(st.integers(1, 64), min_size=1, max_size=4, unique=True),
    seeds=st.lists(st.integers(0, 1000), min_size=1, max_size=4, unique=True),
    fractions=st.lists(st.sampled_from([0.125, 0.25, 0.5, 1.0]), min_size=1, max_size=4, unique=True),
)
def test_grid_size_property(widths, seeds, fractions):
    spec = parse_spec(study(grid={"width": widths, "seed": seeds, "data_fraction": fractions}), source=SOURCE)
    assert len(spec.cells) == len(widths) * len(seeds) * len(fractions)
    assert len({c.cell_id for c in spec.cells}) == len(spec.cells)


def test_family_in_grid_resolves_each_family_knobs():
    spec = parse_spec(study(model={}, grid={"family": ["mlp", "seed_cnn"], "width": [1, 2]}), source=SOURCE)
    knobs = {(c.config["model"]["family"], c.config["model"]["knobs"]["width"]): c.config["model"]["knobs"] for c in spec.cells}
    assert knobs[("mlp", 1.0)] == {"width": 1.0, "depth": 2}
    assert knobs[("seed_cnn", 2.0)] == {"width": 2.0}


def test_pinned_cell_id_regression_guard():
    """The hash of this fixed tiny config, computed once and hard-coded.

    Changing it (new default, renamed field, different canonical JSON) changes every cell id,
    which silently orphans every finished result in every user's store. If this fails, the
    change needs a store migration, not a new constant.
    """
    spec = parse_spec(
        {"name": "pin", "data": {"name": "digits"}, "model": {"family": "mlp", "width": 1}, "train": {"epochs": 1}},
        source=SOURCE,
    )
    assert spec.cells[0].cell_id == "87a3db7619893a23"
