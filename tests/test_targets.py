"""The regressors' early-stopping score against scikit-learn's."""

import numpy as np
import pytest
from sklearn.metrics import r2_score

from sk_slim._targets import r2


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("n_outputs", [1, 3])
def test_r2_equals_sklearns(weighted, n_outputs):
    rng = np.random.default_rng(0)
    y = rng.normal(size=(40, n_outputs))
    scores = y + rng.normal(scale=0.5, size=y.shape)
    weight = rng.uniform(0.1, 2.0, size=40) if weighted else None
    expected = r2_score(y, scores, sample_weight=weight)
    assert r2(y, scores, weight) == pytest.approx(expected, rel=1e-12)


def test_r2_of_exact_and_constant_outputs_follows_sklearn():
    # Columns: fitted exactly; constant and fitted exactly (1); constant and
    # missed (0); an ordinary one.
    rng = np.random.default_rng(1)
    y = np.column_stack(
        [rng.normal(size=10), np.ones(10), np.ones(10), rng.normal(size=10)]
    )
    scores = y.copy()
    scores[:, 2] += 0.1
    scores[:, 3] = 0.0
    weight = rng.uniform(0.5, 1.5, size=10)
    for w in (None, weight):
        assert r2(y, scores, w) == pytest.approx(
            r2_score(y, scores, sample_weight=w), rel=1e-12
        )
