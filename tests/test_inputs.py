"""Inputs as users hold them: units, missing values, categorical columns.

InputEncoder against scikit-learn's transformers (StandardScaler, RobustScaler,
SimpleImputer, OneHotEncoder) as the reference; the estimators on dataframes
with category and NaN columns, in physical units, from pandas and polars; the
encoding folded into to_torch (and ONNX) and stored by sk_slim.save.
"""

import warnings

import numpy as np
import pytest
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.impute import SimpleImputer
from sklearn.metrics import r2_score
from sklearn.preprocessing import OneHotEncoder, RobustScaler, StandardScaler

import sk_slim
from sk_slim import (
    GNvproClassifier,
    GNvproRegressor,
    SlimTrainClassifier,
    SlimTrainRegressor,
)
from sk_slim.preprocessing import InputEncoder

pd = pytest.importorskip("pandas")

REGRESSORS = [GNvproRegressor, SlimTrainRegressor]
ESTIMATORS = REGRESSORS + [GNvproClassifier, SlimTrainClassifier]
QUICK = {"random_state": 0, "max_iter": 5, "hidden_layer_sizes": (8, 8)}


def _frame(n=120, seed=0):
    """Numeric columns in physical units (one with NaN), a category column
    with NaN, and a regression target."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "pressure": rng.uniform(6.3e4, 1.16e5, n),
            "radius": rng.lognormal(-2.0, 0.5, n),
            "grade": pd.Categorical(rng.choice(["low", "mid", "high"], n)),
        }
    )
    frame.loc[::9, "radius"] = np.nan
    frame.loc[::13, "grade"] = np.nan
    y = (frame["pressure"] - 9e4) / 1.5e4 + np.log(frame["radius"].fillna(0.1))
    y = y + frame["grade"].cat.codes.to_numpy() * 0.5
    return frame, y.to_numpy()


def _fit(Estimator, X, y, **params):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return Estimator(**{**QUICK, **params}).fit(X, y)


def _labels(y):
    return np.where(y > np.median(y), "yes", "no")


# ---------------------------------------------------------------- InputEncoder


def test_standard_scaling_is_standard_scaler():
    X = np.random.default_rng(0).normal(3, 7, size=(50, 4))
    out = InputEncoder(scaling="standard").fit_transform(X)
    np.testing.assert_allclose(out, StandardScaler().fit_transform(X), atol=1e-12)


def test_robust_scaling_is_robust_scaler():
    # 401 rows: the quartiles fall on rows, where the weighted (inverted-CDF)
    # and RobustScaler's (linear) quantiles agree.
    X = np.random.default_rng(0).lognormal(size=(401, 3))
    out = InputEncoder(scaling="robust").fit_transform(X)
    np.testing.assert_allclose(out, RobustScaler().fit_transform(X), atol=1e-12)
    clipped = InputEncoder(scaling="robust-clip").fit_transform(X)
    np.testing.assert_allclose(clipped, out / np.sqrt(1 + (out / 3) ** 2), atol=1e-12)
    assert np.abs(clipped).max() < 3


def test_missing_values_are_simple_imputer_with_indicator():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(401, 3))
    # 40 NaN in columns 0 and 2, none in 1: 361 observed values, where the
    # weighted and RobustScaler's quantiles agree.
    X[rng.choice(401, 40, replace=False), 0] = np.nan
    X[rng.choice(401, 40, replace=False), 2] = np.nan
    imputer = SimpleImputer(strategy="median", add_indicator=True).fit(X)
    expected = imputer.transform(X)
    expected[:, :3] = RobustScaler().fit(X).transform(expected[:, :3])
    encoder = InputEncoder(scaling="robust").fit(X)
    np.testing.assert_allclose(encoder.transform(X), expected, atol=1e-12)
    assert list(encoder.get_feature_names_out()) == [
        "x0",
        "x1",
        "x2",
        "missingindicator_x0",
        "missingindicator_x2",
    ]
    # A NaN at predict in a column that had none at fit: imputed, no new column.
    X_new = np.array([[0.0, np.nan, 0.0]])
    out = encoder.transform(X_new)
    assert out.shape == (1, 5) and np.isfinite(out).all()
    assert out[0, 1] == 0.0  # the median, centered


@pytest.mark.parametrize("max_categories", [20, 3])
def test_one_hot_is_one_hot_encoder(max_categories):
    rng = np.random.default_rng(2)
    X = rng.choice(
        ["a", "b", "c", "d", "e"], p=[0.4, 0.3, 0.15, 0.1, 0.05], size=(300, 2)
    )
    X = X.astype(object)
    encoder = InputEncoder(categorical_features=[0, 1], max_categories=max_categories)
    reference = OneHotEncoder(
        handle_unknown="ignore", max_categories=max_categories, sparse_output=False
    )
    np.testing.assert_array_equal(encoder.fit_transform(X), reference.fit_transform(X))
    unseen = np.array([["z", "a"]], dtype=object)
    np.testing.assert_array_equal(
        encoder.transform(unseen), reference.transform(unseen)
    )


def test_integer_weights_act_as_repeated_rows():
    rng = np.random.default_rng(3)
    X = rng.lognormal(size=(40, 3))
    X[::7, 0] = np.nan
    weight = rng.integers(0, 4, size=40)
    repeated = np.repeat(X, weight, axis=0)
    for scaling in ["standard", "robust", "robust-clip", None]:
        weighted = InputEncoder(scaling=scaling).fit(X, sample_weight=weight)
        plain = InputEncoder(scaling=scaling).fit(repeated)
        np.testing.assert_allclose(
            weighted.transform(X), plain.transform(X), atol=1e-12
        )


def test_no_scaling_imputes_and_leaves_values():
    X = np.array([[1.0, 5.0], [np.nan, 7.0], [3.0, 9.0]])
    out = InputEncoder(scaling=None).fit_transform(X)
    np.testing.assert_array_equal(out[:, :2], [[1.0, 5.0], [1.0, 7.0], [3.0, 9.0]])
    np.testing.assert_array_equal(out[:, 2], [0.0, 1.0, 0.0])


# -------------------------------------------------------------- the estimators


def _borehole(n, seed):
    """The borehole function (Harper and Gupta 1983) in its units."""
    rng = np.random.default_rng(seed)
    bounds = np.array(
        [
            [0.05, 0.15],  # rw, m
            [100.0, 50_000.0],  # r, m
            [63_070.0, 115_600.0],  # Tu, m^2/yr
            [990.0, 1110.0],  # Hu, m
            [63.1, 116.0],  # Tl, m^2/yr
            [700.0, 820.0],  # Hl, m
            [1120.0, 1680.0],  # L, m
            [9855.0, 12_045.0],  # Kw, m/yr
        ]
    )
    X = bounds[:, 0] + rng.random((n, 8)) * (bounds[:, 1] - bounds[:, 0])
    rw, r, Tu, Hu, Tl, Hl, L, Kw = X.T
    log_ratio = np.log(r / rw)
    y = 2 * np.pi * Tu * (Hu - Hl)
    y /= log_ratio * (1 + 2 * L * Tu / (log_ratio * rw**2 * Kw) + Tu / Tl)
    return X, y


@pytest.mark.parametrize("Estimator", REGRESSORS)
def test_physical_units_fit_as_well_as_standardized_inputs(Estimator):
    # Issue "Data as users hold it": in its units (0.05 ... 50 000) borehole
    # gave test R^2 -0.006 (SlimTrain) and 0.14 (GNvpro); standardized 0.9999.
    X, y = _borehole(700, seed=0)
    X_test, y_test = _borehole(500, seed=1)
    scaler = StandardScaler().fit(X)
    params = {"random_state": 0, "max_iter": 60}
    raw = _fit(Estimator, X, y, **params)
    standardized = _fit(Estimator, scaler.transform(X), y, **params)
    r2_raw = r2_score(y_test, raw.predict(X_test))
    r2_standardized = r2_score(y_test, standardized.predict(scaler.transform(X_test)))
    assert r2_raw > 0.99
    # The same fit up to rounding, which GNvpro's steps amplify: over
    # random_state 0-4 its error ratio was 0.90-1.59 (before units: 1e5).
    assert 1 - r2_raw < 2.0 * (1 - r2_standardized)


@pytest.mark.parametrize("Estimator", ESTIMATORS)
def test_category_and_nan_columns_fit_and_predict(Estimator):
    # The errors: "could not convert string to float: 'N'" and
    # "Input X contains NaN".
    X, y = _frame()
    target = y if Estimator in REGRESSORS else _labels(y)
    model = _fit(Estimator, X, target, max_iter=20)
    assert model.n_features_in_ == 3
    assert list(model.feature_names_in_) == ["pressure", "radius", "grade"]
    assert list(model.input_encoder_.get_feature_names_out()) == [
        "pressure",
        "radius",
        "missingindicator_radius",
        "grade_high",
        "grade_low",
        "grade_mid",
        "grade_nan",
    ]
    X_new, _ = _frame(n=30, seed=5)
    X_new.loc[0, "pressure"] = np.nan  # no NaN in this column at fit
    X_new["grade"] = X_new["grade"].cat.add_categories(["unseen"])
    X_new.loc[1, "grade"] = "unseen"
    assert np.isfinite(
        model.predict(X_new).astype(float) if Estimator in REGRESSORS else 1
    ).all()
    assert model.transform(X_new).shape == (30, model._n_features_out)


@pytest.mark.parametrize("Estimator", ESTIMATORS)
def test_dataframe_equals_its_encoding(Estimator):
    # The network sees exactly the encoder's output: an estimator without
    # scaling on the encoded matrix fits the same model.
    X, y = _frame()
    target = y if Estimator in REGRESSORS else _labels(y)
    model = _fit(Estimator, X, target)
    encoded = model.input_encoder_.transform(X)
    plain = _fit(Estimator, encoded, target, input_scaling=None)
    np.testing.assert_allclose(
        model.transform(X), plain.transform(encoded), rtol=1e-10, atol=1e-12
    )


def test_polars_input_equals_pandas():
    pl = pytest.importorskip("polars")
    X, y = _frame()
    grade = [None if g != g else g for g in X["grade"].astype(object)]
    frame = pl.DataFrame(
        {
            "pressure": X["pressure"].to_numpy(),
            "radius": pl.Series(X["radius"].to_numpy()).fill_nan(None),  # nulls
            "grade": pl.Series(grade, dtype=pl.Categorical),
        }
    )
    from_pandas = _fit(GNvproRegressor, X, y)
    from_polars = _fit(GNvproRegressor, frame, y)
    np.testing.assert_allclose(from_polars.predict(frame), from_pandas.predict(X))
    assert list(from_polars.feature_names_in_) == ["pressure", "radius", "grade"]


def test_set_output_pandas_names_the_learned_features():
    X, y = _frame()
    model = _fit(SlimTrainRegressor, X, y).set_output(transform="pandas")
    Z = model.transform(X)
    assert isinstance(Z, pd.DataFrame)
    assert list(Z.columns) == [f"slimtrainregressor{i}" for i in range(8)]


@pytest.mark.parametrize("Estimator", ESTIMATORS)
def test_to_torch_takes_raw_values_and_codes(Estimator):
    X, y = _frame()
    target = y if Estimator in REGRESSORS else _labels(y)
    model = _fit(Estimator, X, target)
    codes = model.input_encoder_.to_codes(X)
    assert np.isnan(codes[:, 1]).sum() == X["radius"].isna().sum()
    with torch.no_grad():
        out = model.to_torch()(torch.as_tensor(codes)).numpy()
    expected = (
        model.predict(X) if Estimator in REGRESSORS else model.decision_function(X)
    )
    if expected.ndim == 1 and out.ndim == 2:  # binary: one logit column per class
        out = out[:, 1] - out[:, 0]
    np.testing.assert_allclose(out, expected, rtol=1e-10, atol=1e-10)


def test_onnx_export_takes_nan_and_codes(tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    X, y = _frame()
    model = _fit(GNvproRegressor, X, y)
    codes = model.input_encoder_.to_codes(X)
    module = model.to_torch()
    batch = torch.export.Dim("batch", min=1)
    path = tmp_path / "model.onnx"
    torch.onnx.export(
        module,
        (torch.as_tensor(codes[:4]),),
        str(path),
        input_names=["x"],
        dynamic_shapes={"x": {0: batch}},
    )
    session = onnxruntime.InferenceSession(str(path))
    (out,) = session.run(None, {"x": codes})
    np.testing.assert_allclose(out, model.predict(X), rtol=1e-9, atol=1e-9)


def test_saved_model_keeps_its_encoding(tmp_path):
    pytest.importorskip("safetensors")
    X, y = _frame()
    model = _fit(SlimTrainClassifier, X, _labels(y))
    path = tmp_path / "model.skslim"
    sk_slim.save(model, path)
    loaded = sk_slim.load(path)
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    np.testing.assert_array_equal(
        loaded.input_encoder_.categories_[0], model.input_encoder_.categories_[0]
    )


def test_categorical_features_by_name_mask_and_index():
    X, y = _frame()
    X["grade"] = X["grade"].astype(object)  # strings: categorical only if declared
    with pytest.raises(
        ValueError, match="'grade' is not numeric.*categorical_features"
    ):
        _fit(GNvproRegressor, X, y)
    by = [["grade"], [False, False, True], [2]]
    models = [_fit(GNvproRegressor, X, y, categorical_features=c) for c in by]
    for model in models[1:]:
        np.testing.assert_array_equal(model.predict(X), models[0].predict(X))


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize("Estimator", REGRESSORS)
def test_bad_inputs_get_clear_errors(Estimator):
    X, y = _frame()
    infinite = X.copy()
    infinite.loc[3, "pressure"] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        _fit(Estimator, infinite, y)
    empty_category = X.copy()
    empty_category["grade"] = pd.Categorical([np.nan] * len(X), categories=["a"])
    with pytest.raises(ValueError, match="'grade' has only missing values"):
        _fit(Estimator, empty_category, y)
    empty_numeric = X.assign(radius=np.nan)
    with pytest.raises(ValueError, match="'radius' has only missing values"):
        _fit(Estimator, empty_numeric, y)

    model = _fit(Estimator, X, y)
    before = model.predict(X)
    with pytest.raises(ValueError, match="infinity"):
        model.predict(infinite)
    with pytest.raises(ValueError, match="feature names"):
        model.predict(X.rename(columns={"radius": "diameter"}))
    with pytest.raises(ValueError, match="X has 2 features"):
        model.predict(X[["pressure", "radius"]].to_numpy())
    np.testing.assert_array_equal(model.predict(X), before)


@pytest.mark.parametrize("Estimator", REGRESSORS)
def test_a_failed_refit_on_bad_input_leaves_the_encoding(Estimator):
    X, y = _frame()
    model = _fit(Estimator, X, y)
    before = model.predict(X)
    center = model.input_encoder_.center_.copy()
    with pytest.raises(ValueError, match="infinity"):
        model.fit(X.assign(pressure=np.inf, radius=1.0), y)
    np.testing.assert_array_equal(model.input_encoder_.center_, center)
    assert model.input_encoder_.missing_indicator_.any()
    np.testing.assert_array_equal(model.predict(X), before)


# ------------------------------------------------------------------ small data


@pytest.mark.parametrize("Estimator", REGRESSORS)
def test_150_noisy_rows_do_not_end_far_below_a_linear_model(Estimator):
    # Issue "Data as users hold it": below 200 rows nothing stopped theta from
    # interpolating noise (a real 197-row set: GNvpro test R^2 -1.49, RidgeCV
    # 0.56). Here, before early stopping at every size: GNvpro -1.3 to -2.0,
    # SlimTrain -0.36 to -0.65, RidgeCV 0.42 to 0.48 (diabetes, 150 rows).
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import RidgeCV
    from sklearn.model_selection import train_test_split

    X, y = load_diabetes(return_X_y=True)
    gaps = []
    for seed in range(3):
        split = train_test_split(X, y, train_size=150, random_state=seed)
        X_train, X_test, y_train, y_test = split
        ridge = RidgeCV(alphas=np.logspace(-3, 3, 13)).fit(X_train, y_train)
        model = _fit(
            Estimator, X_train, y_train, max_iter=200, hidden_layer_sizes="auto"
        )
        assert model.validation_scores_ is not None  # early stopping is on
        gaps.append(model.score(X_test, y_test) - ridge.score(X_test, y_test))
    assert min(gaps) > -0.15 and np.mean(gaps) > -0.08, gaps
