"""A study whose [[grid]] is a list of tables: the union of their Cartesian products.

A dense sweep (lr x batch at each size) and a second axis beside it (repeated data at
one setting) belong to one study, so the laws, plans and report see every run together.
"""

from __future__ import annotations

import tomllib
from spec_helpers import spec_refusal

from scalelab.spec import parse_spec

SOURCE = "s.toml"
BASE = """
name = "s"
[data]
name = "digits"
[model]
family = "mlp"
[train]
epochs = 1
"""


def spec_of(text: str):
    return parse_spec(tomllib.loads(BASE + text), source=SOURCE)


def refusal(text: str) -> str:
    return spec_refusal(BASE + text, source=SOURCE)


def test_cells_are_the_union_of_the_tables_products_with_shared_cells_once():
    spec = spec_of("""
[[grid]]
lr = [1e-3, 3e-3]
width = [0.5, 1.0]
[[grid]]
data_fraction = [0.5, 1.0]
lr = 1e-3
width = 1.0
""")
    # 2 x 2 from the first table; the second adds data_fraction 0.5 (its 1.0 cell is the first's).
    assert len(spec.cells) == 5
    assert spec.grid_keys == ("lr", "width", "data_fraction")
    combos = {(c.params["lr"], c.params["width"], c.params["data_fraction"]) for c in spec.cells}
    assert combos == {(1e-3, 0.5, 1.0), (1e-3, 1.0, 1.0), (3e-3, 0.5, 1.0), (3e-3, 1.0, 1.0), (1e-3, 1.0, 0.5)}
    assert len({c.cell_id for c in spec.cells}) == 5


def test_a_cell_keeps_its_id_whichever_table_it_comes_from():
    single = spec_of("[grid]\nlr = [1e-3, 3e-3]\nwidth = [0.5, 1.0]\n")
    both = spec_of("[[grid]]\nlr = [1e-3, 3e-3]\nwidth = [0.5, 1.0]\n[[grid]]\ndata_fraction = [0.5]\nlr = 1e-3\n")
    assert {c.cell_id for c in single.cells} < {c.cell_id for c in both.cells}


def test_one_table_repeating_a_value_is_still_refused():
    assert "repeats a value" in refusal("[[grid]]\nlr = [1e-3, 1e-3]\n[[grid]]\nwidth = [0.5]\n")


def test_messages_name_the_table_at_fault():
    assert "grid[2].lr is an empty list" in refusal("[[grid]]\nwidth = [0.5]\n[[grid]]\nlr = []\n")
    assert "grid[2] is empty" in refusal("[[grid]]\nwidth = [0.5]\n[[grid]]\n")
    assert "grid[1].train.lr and grid[1].lr set the same field" in refusal('[[grid]]\nlr = [1e-3]\n"train.lr" = [3e-3]\n')


def test_a_key_set_in_its_section_and_a_table_is_refused():
    message = refusal("[[grid]]\nepochs = [1, 2]\n")
    assert "'epochs' is set in both [train] and [grid[1]]" in message


def test_a_bad_value_in_the_second_table_is_named():
    assert "grid.width" in refusal("[[grid]]\nwidth = [0.5]\n[[grid]]\nwidth = [-1.0]\n")
