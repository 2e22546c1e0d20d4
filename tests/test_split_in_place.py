"""The validation split that reorders the encoded inputs in place: the same
parts as ``train_test_split``, with no second copy of the rows."""

import numpy as np
import pytest
from sklearn.model_selection import train_test_split

import sk_slim._split as split_module
from sk_slim import GNvproClassifier, SlimTrainRegressor
from sk_slim._split import permute_rows_, split_in_place


@pytest.mark.parametrize("n", [1, 2, 5, 64, 1000])
@pytest.mark.parametrize("move_rows", [1, 3, 16384])
def test_permute_rows_equals_fancy_indexing(monkeypatch, n, move_rows):
    # Moves of 1 and 3 rows cut every cycle into many steps.
    monkeypatch.setattr(split_module, "_MOVE_ROWS", move_rows)
    rng = np.random.default_rng(n)
    X = rng.standard_normal((n, 3))
    for order in (rng.permutation(n), np.arange(n), np.arange(n)[::-1].copy()):
        expected = X[order]
        assert permute_rows_(X, order) is X
        np.testing.assert_array_equal(X, expected)


@pytest.mark.parametrize("stratify", [False, True])
def test_split_in_place_equals_train_test_split(monkeypatch, stratify):
    monkeypatch.setattr(split_module, "_MOVE_ROWS", 4)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((103, 4))
    y, w = rng.integers(0, 3, 103), rng.random(103)
    options = {"test_size": 11, "stratify": y if stratify else None}
    expected = train_test_split(
        X, y, w, random_state=np.random.RandomState(7), **options
    )
    own = X.copy()
    parts = split_in_place(own, y, w, random_state=np.random.RandomState(7), **options)
    for got, want in zip(parts, expected, strict=True):
        np.testing.assert_array_equal(got, want)
    assert np.shares_memory(parts[0], own) and np.shares_memory(parts[1], own)


@pytest.mark.parametrize("Estimator", [SlimTrainRegressor, GNvproClassifier])
def test_fit_leaves_the_users_inputs_as_they_were(Estimator):
    # The encoded copy is reordered, never the array the user passed.
    rng = np.random.default_rng(1)
    X = rng.standard_normal((120, 3))
    y = X[:, 0] > 0 if Estimator is GNvproClassifier else X[:, 0]
    given = X.copy()
    Estimator(early_stopping=True, max_iter=3, random_state=0).fit(X, y)
    np.testing.assert_array_equal(X, given)
