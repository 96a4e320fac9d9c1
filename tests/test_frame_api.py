"""The DataFrame face of the laws: ``laws.fit(df, x=, y=, by=)`` gives a LawSet.

A synthetic frame with two ``by`` columns and two seeds per point has known exponents;
the laws recover them, answer predictions and intervals as frames with the ``by``
columns first, list one row per group (an error row for a group that cannot be fitted),
and refuse a misspelt column or form with a suggestion.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scalelab import InputError, laws
from scalelab.laws import FittedLaw, LawSet

N = np.geomspace(200, 2e4, 6)
EXPONENTS = {("mlp", 1): 0.3, ("mlp", 2): 0.4, ("cnn", 1): 0.5, ("cnn", 2): 0.6}


def synthetic(noise: float = 0.01) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for (family, width), beta in EXPONENTS.items():
        for seed in (0, 1):
            loss = 4.0 * N**-beta * np.exp(rng.normal(0, noise, len(N)))
            rows.append(pd.DataFrame({"family": family, "width": width, "seed": seed, "n_train": N, "loss": loss}))
    return pd.concat(rows, ignore_index=True)


@pytest.fixture(scope="module")
def fitted() -> LawSet:
    return laws.fit(synthetic(), x="n_train", y="loss", by=["family", "width"], form="power", n_boot=50)


def test_laws_recover_each_groups_exponent(fitted):
    assert len(fitted) == 4 and set(fitted.keys()) == set(EXPONENTS)
    for key, beta in EXPONENTS.items():
        assert isinstance(fitted[key], FittedLaw)
        assert fitted[key].params["beta"] == pytest.approx(beta, abs=0.03)
        assert fitted[key].n_points == 12  # both seeds of every point
    assert list(fitted) == list(EXPONENTS)  # first-seen order
    assert "LawSet(4 laws of loss against n_train by family, width" in repr(fitted)


def test_predict_and_interval_are_frames_per_group(fitted):
    predicted = fitted.predict([1e5, 1e6])
    assert list(predicted.columns) == ["family", "width", "n_train", "prediction"]
    assert len(predicted) == 8
    row = predicted[(predicted.family == "cnn") & (predicted.width == 2) & (predicted.n_train == 1e5)]
    assert float(row.prediction.iloc[0]) == pytest.approx(4.0 * 1e5**-0.6, rel=0.2)
    band = fitted.interval(1e5, level=0.8)
    assert list(band.columns) == ["family", "width", "n_train", "prediction", "lo", "hi"]
    assert len(band) == 4
    assert ((band.lo <= band.prediction) & (band.prediction <= band.hi)).all()


def test_a_frame_with_the_by_columns_asks_each_row_of_its_own_group(fitted):
    asked = pd.DataFrame({"family": ["cnn", "mlp"], "width": [1, 2], "n_train": [1e5, 1e6]})
    predicted = fitted.predict(asked)
    assert predicted[["family", "width", "n_train"]].values.tolist() == asked.values.tolist()
    assert float(predicted.prediction.iloc[0]) == pytest.approx(float(fitted["cnn", 1].predict([1e5])[0]))
    across = fitted.predict(pd.DataFrame({"n_train": [1e5]}))  # no by columns: every group
    assert len(across) == 4


def test_to_frame_has_a_row_per_group_with_its_parameters(fitted):
    table = fitted.to_frame()
    assert list(table.columns) == ["family", "width", "form", "B", "beta", "at_bound", "n_points", "error"]
    assert table[["family", "width"]].apply(tuple, axis=1).tolist() == list(EXPONENTS)
    assert (table.form == "power").all() and (table.n_points == 12).all() and (table.error == "").all()


def test_a_group_with_too_few_points_is_an_error_row_not_a_crash():
    df = pd.concat([synthetic(), pd.DataFrame({"family": "tiny", "width": 1, "seed": 0, "n_train": [100.0], "loss": [1.0]})])
    with pytest.warns(UserWarning, match="1 of 5 groups could not be fitted"):
        fitted = laws.fit(df, x="n_train", y="loss", by=["family", "width"], form="power", n_boot=50)
    assert len(fitted) == 4 and ("tiny", 1) not in fitted
    assert fitted.errors[("tiny", 1)]
    row = fitted.to_frame().iloc[-1]
    assert (row.family, row.width) == ("tiny", 1) and row.error
    with pytest.raises(KeyError, match="could not be fitted"):
        fitted["tiny", 1]
    assert len(fitted.predict(1e5)) == 4  # the fitted groups still answer


def test_an_error_rate_is_fitted_below_the_chance_level():
    df = pd.DataFrame({"n_train": np.r_[N, N], "n_classes": 10})
    df["test_error"] = 0.05 + 3.0 * df.n_train**-0.5
    law = laws.fit(df, x="n_train", y="test_error", form="saturating", n_boot=50)[None]
    assert law.data.ceiling == pytest.approx(0.9)


def test_two_x_columns_take_pairs():
    rng = np.random.default_rng(1)
    n_params, tokens = rng.uniform(1e6, 1e8, 40), rng.uniform(1e8, 1e10, 40)
    df = pd.DataFrame({"N": n_params, "D": tokens, "loss": 1.7 + 400 * n_params**-0.34 + 410 * tokens**-0.28})
    fitted = laws.fit(df, x=["N", "D"], y="loss", form="chinchilla", n_boot=50)
    predicted = fitted.predict([[1e9, 2e10], [1e7, 1e9]])
    assert list(predicted.columns) == ["N", "D", "prediction"] and len(predicted) == 2
    with pytest.raises(InputError, match="pairs"):
        fitted.predict([1e9, 2e10, 3e10])


def test_the_array_form_still_gives_one_law():
    law = laws.fit(N, 4.0 * N**-0.3, form="power")
    assert isinstance(law, FittedLaw) and law.params["beta"] == pytest.approx(0.3, abs=1e-3)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"x": "n_trian", "y": "loss"}, r"no column 'n_trian' \(columns: .*\); did you mean 'n_train'\?"),
        ({"x": "n_train", "y": "loss", "by": ["famly"]}, "did you mean 'family'"),
        ({"x": "n_train", "y": "loss", "form": "saturatin"}, "did you mean 'saturating'"),
        ({"x": ["n_train", "seed", "width"], "y": "loss"}, "one x, or two"),
    ],
)
def test_bad_inputs_are_refused_with_a_suggestion(kwargs, message):
    with pytest.raises(InputError, match=message):
        laws.fit(synthetic(), **kwargs)


def test_a_non_numeric_column_is_named():
    df = synthetic().astype({"loss": object})
    df.loc[3, "loss"] = "n/a"
    with pytest.raises(InputError, match="column 'loss' holds a non-numeric value 'n/a'"):
        laws.fit(df, x="n_train", y="loss", by="family")
