"""Split conformal intervals (MAPIE) around ``predict(X, return_std=True)``.

MAPIE's ``conformity_score="std_normalized"`` (``StdConformityScore``) scores a
calibration row by ``|y - y_mean| / y_std``, with both from the estimator's
``predict(X, return_std=True)``, and returns ``y_mean +- q y_std`` with ``q`` the
conformal quantile of the scores.
"""

import math
import warnings

import numpy as np
import pytest
from sklearn.datasets import make_friedman1
from sklearn.exceptions import ConvergenceWarning

from sk_slim import GNvproRegressor, SlimTrainRegressor

pytest.importorskip("mapie", minversion="1.0")
from mapie.conformity_scores import ResidualNormalisedScore  # noqa: E402
from mapie.regression import SplitConformalRegressor  # noqa: E402

REGRESSORS = {
    SlimTrainRegressor: {"hidden_layer_sizes": (16,), "max_iter": 20},
    GNvproRegressor: {"hidden_layer_sizes": (16,), "max_iter": 20},
}
CONFIDENCE = 0.9
N_TRAIN, N_CAL, N_TEST = 500, 500, 2000


def _fit(Estimator, X, y, **params):
    params = {**REGRESSORS[Estimator], "random_state": 0, **params}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return Estimator(**params).fit(X, y)


def _split(X, y):
    """Train, calibration and test rows (the generators draw them i.i.d.)."""
    cuts = [N_TRAIN, N_TRAIN + N_CAL]
    (X_train, X_cal, X_test), (y_train, y_cal, y_test) = (
        np.split(X, cuts),
        np.split(y, cuts),
    )
    return X_train, y_train, X_cal, y_cal, X_test, y_test


def _conformalize(model, X_cal, y_cal, score="std_normalized"):
    conformal = SplitConformalRegressor(
        model, confidence_level=CONFIDENCE, conformity_score=score, prefit=True
    )
    return conformal.conformalize(X_cal, y_cal)


def _interval(conformal, X):
    y_pred, intervals = conformal.predict_interval(X)  # (n, 2, n_confidence_levels)
    return y_pred, intervals[:, 0, 0], intervals[:, 1, 0]


def _heteroscedastic(n_samples, random_state):
    """1-D inputs in [-3, 3]; the noise std grows linearly from 0.05 to 0.95."""
    rng = np.random.RandomState(random_state)
    X = rng.uniform(-3, 3, size=(n_samples, 1))
    noise_std = 0.05 + 0.15 * (X[:, 0] + 3)
    y = 2 * np.sin(X[:, 0]) + 0.3 * X[:, 0] + noise_std * rng.normal(size=n_samples)
    return X, y


@pytest.mark.parametrize("Estimator", REGRESSORS, ids=lambda e: e.__name__)
def test_std_normalized_split_conformal_covers(Estimator):
    X, y = make_friedman1(n_samples=N_TRAIN + N_CAL + N_TEST, noise=1.0, random_state=0)
    X_train, y_train, X_cal, y_cal, X_test, y_test = _split(X, y)
    model = _fit(Estimator, X_train, y_train)
    conformal = _conformalize(model, X_cal, y_cal)

    # The scores are the calibration residuals over the estimator's std.
    mean_cal, std_cal = model.predict(X_cal, return_std=True)
    scores = conformal.conformity_scores
    np.testing.assert_allclose(scores, np.abs(y_cal - mean_cal) / std_cal)

    # The interval is mean +- q std, q the k-th smallest score with
    # k = ceil((n_cal + 1)(1 - alpha)): the split conformal quantile (Vovk et al.
    # 2005; Lei et al. 2018). MAPIE 1.6 takes the upper side's q there, and the
    # lower side's one rank below (its reversed "lower" quantile), so each side
    # is checked to be a constant multiple of std between those two scores.
    y_pred, lower, upper = _interval(conformal, X_test)
    mean, std = model.predict(X_test, return_std=True)
    np.testing.assert_array_equal(y_pred, mean)
    k = math.ceil((N_CAL + 1) * CONFIDENCE)
    q_low, q_high = np.sort(scores)[[k - 2, k - 1]]
    for half_width in (upper - y_pred, y_pred - lower):
        q = half_width / std
        np.testing.assert_allclose(q, q[0], rtol=1e-10)
        assert q_low * (1 - 1e-10) <= q[0] <= q_high * (1 + 1e-10)
    assert np.all(lower < y_pred) and np.all(y_pred < upper)

    # With continuous scores, the coverage given the calibration set is
    # Beta(k, n_cal + 1 - k), k = ceil((n_cal + 1)(1 - alpha)) (Vovk 2012;
    # Angelopoulos & Bates 2021, sec. 3.2): n_cal = 500 gives Beta(451, 50), mean
    # 0.900, sd 0.013. Counting it on n_test = 2000 test rows adds a binomial sd
    # sqrt(0.9 * 0.1 / 2000) = 0.007, so the empirical coverage has sd ~0.015 and
    # +-0.05 is 3.3 sd: a miss has probability ~1e-3 (seeds 0-9 of the data and
    # the model land in [0.868, 0.922]).
    coverage = np.mean((lower <= y_test) & (y_test <= upper))
    assert coverage == pytest.approx(CONFIDENCE, abs=0.05)


@pytest.mark.parametrize("Estimator", REGRESSORS, ids=lambda e: e.__name__)
def test_std_normalized_intervals_adapt_to_leverage_not_to_noise(Estimator):
    # return_std is sigma_k sqrt(1 + leverage): ONE noise level sigma_k per output
    # (the head's residual), scaled up where the learned features are far from
    # the training rows'. So the std-normalized intervals widen away from the
    # data, which the absolute score's constant width cannot, but they do not
    # follow a noise level that varies with x inside the data: that takes a
    # model of the residual's scale, MAPIE's "residual_normalized" score (the
    # locally weighted conformal of Lei et al. 2018, sec. 5.2).
    X, y = _heteroscedastic(N_TRAIN + N_CAL + N_TEST, random_state=0)
    X_train, y_train, X_cal, y_cal, X_test, y_test = _split(X, y)
    # No input scaling: the smooth clipping of 'robust-clip' maps inputs far
    # outside the data close to its edge, and with them their leverage.
    model = _fit(Estimator, X_train, y_train, input_scaling=None)
    quiet, noisy = X_test[:, 0] < -1.5, X_test[:, 0] > 1.5  # noise std < 0.28, > 0.73
    outside = np.array([[-6.0], [6.0]])  # the training inputs are in [-3, 3]

    scores = {
        "absolute": "absolute",
        "std_normalized": "std_normalized",
        "residual_normalized": ResidualNormalisedScore(random_state=0),
    }
    width, covered, width_outside = {}, {}, {}
    for name, score in scores.items():
        conformal = _conformalize(model, X_cal, y_cal, score)
        y_pred, lower, upper = _interval(conformal, X_test)
        assert np.all(lower <= y_pred) and np.all(y_pred <= upper)
        width[name] = upper - lower
        covered[name] = (lower <= y_test) & (y_test <= upper)
        # Marginal coverage holds for every score (tolerance as above).
        assert covered[name].mean() == pytest.approx(CONFIDENCE, abs=0.05)
        if name != "residual_normalized":
            _, lower, upper = _interval(conformal, outside)
            width_outside[name] = upper - lower

    # Away from the data: the std-normalized interval widens, the absolute one
    # keeps its width.
    std_width = width["std_normalized"]
    assert np.all(width_outside["std_normalized"] > 1.1 * np.median(std_width))
    np.testing.assert_allclose(width_outside["absolute"], width["absolute"][0])
    # Inside the data: the same width where the noise is small as where it is
    # large, so it over-covers the quiet rows and under-covers the noisy ones ...
    ratio = std_width[noisy].mean() / std_width[quiet].mean()
    assert ratio == pytest.approx(1, abs=0.05)
    assert covered["std_normalized"][quiet].mean() > 0.95
    assert covered["std_normalized"][noisy].mean() < 0.85
    # ... while a fitted residual scale narrows the interval where the noise is
    # small.
    residual_width = width["residual_normalized"]
    assert residual_width[quiet].mean() < 0.5 * residual_width[noisy].mean()
