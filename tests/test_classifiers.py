"""SlimTrainClassifier and GNvproClassifier: scikit-learn conformance and
behaviour."""

import pickle
import warnings

import numpy as np
import pytest
from sklearn.calibration import CalibratedClassifierCV
from sklearn.callback import ScoringMonitor
from sklearn.datasets import load_breast_cancer, load_iris, make_classification
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, log_loss
from sklearn.model_selection import (
    GridSearchCV,
    cross_val_predict,
    train_test_split,
)
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from sk_slim import GNvproClassifier, SlimTrainClassifier

CLASSIFIERS = [SlimTrainClassifier, GNvproClassifier]
# Small, fast settings for behaviour tests.
FAST = {
    SlimTrainClassifier: {"hidden_layer_sizes": (16,), "max_iter": 30},
    GNvproClassifier: {"hidden_layer_sizes": (8,), "max_iter": 10},
}


def _fast(cls, **params):
    return cls(**{**FAST[cls], "random_state": 0, **params})


def _expected_failed_checks(estimator):
    # The same two as the regressors (tests/test_*_regressor.py), for the same
    # reasons; weights-as-repetitions is tested below at a tight tolerance.
    # (SlimTrainClassifier in float64: 1 of 960 outputs off by 5e-7 relative.)
    failed = {
        "check_sample_weight_equivalence_on_dense_data": (
            "exact in exact arithmetic (test_integer_weights_equal_repeated_rows); "
            "truncated-CG steps, Adam epochs or float32 rounding grow "
            "summation-order differences above the check's rtol=1e-7"
        )
    }
    if estimator.dtype == "float32":
        failed["check_methods_subset_invariance"] = (
            "float32 network: outputs carry float32 rounding (~3e-7 relative), "
            "above the check's 1e-7; float64 passes"
        )
    return failed


@parametrize_with_checks(
    [
        SlimTrainClassifier(),
        SlimTrainClassifier(dtype="float32"),
        GNvproClassifier(),
        GNvproClassifier(dtype="float32"),
    ],
    expected_failed_checks=_expected_failed_checks,
)
def test_sklearn_compatible(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)


# ---------------------------------------------------------------- behaviour


def _iris():
    X, y = load_iris(return_X_y=True)
    return StandardScaler().fit_transform(X), y


@pytest.mark.parametrize("cls", CLASSIFIERS)
def test_learns_a_multiclass_problem(cls):
    X, y = _iris()
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.3, random_state=0, stratify=y
    )
    model = _fast(cls).fit(X_train, y_train)
    assert model.score(X_test, y_test) >= 0.9
    proba = model.predict_proba(X_test)
    assert log_loss(y_test, proba) < 0.5 * np.log(3)  # far better than uniform
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(
        np.exp(model.predict_log_proba(X_test)), proba, rtol=1e-12
    )


@pytest.mark.parametrize("cls", CLASSIFIERS)
@pytest.mark.parametrize(
    "labels",
    [
        np.array(["setosa", "versicolor", "virginica"]),
        np.array([-3, 7, 42]),
    ],
    ids=["str", "int"],
)
def test_any_label_type(cls, labels):
    X, y = _iris()
    model = _fast(cls).fit(X, labels[y])
    np.testing.assert_array_equal(model.classes_, labels)
    predicted = model.predict(X)
    assert predicted.dtype == labels.dtype
    assert accuracy_score(labels[y], predicted) >= 0.9


@pytest.mark.parametrize("cls", CLASSIFIERS)
def test_boolean_labels_binary(cls):
    X, y = load_breast_cancer(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    y = y.astype(bool)
    model = _fast(cls).fit(X, y)
    np.testing.assert_array_equal(model.classes_, [False, True])
    assert model.predict(X).dtype == bool
    assert model.score(X, y) >= 0.95
    # Binary decision_function: the log-odds of classes_[1], shape (n,).
    decision = model.decision_function(X)
    assert decision.shape == (len(X),)
    proba = model.predict_proba(X)
    np.testing.assert_allclose(proba[:, 1], 1 / (1 + np.exp(-decision)), rtol=1e-10)
    np.testing.assert_array_equal(model.predict(X), decision > 0)


@pytest.mark.parametrize("cls", CLASSIFIERS)
def test_single_class_fails_with_sklearns_message(cls):
    X, _ = _iris()
    with pytest.raises(ValueError, match="only one class"):
        _fast(cls).fit(X, np.zeros(len(X)))


@pytest.mark.parametrize("cls", CLASSIFIERS)
def test_probabilities_are_finite_for_extreme_inputs(cls):
    X, y = _iris()
    model = _fast(cls).fit(X, y)
    extreme = 1e6 * X[:10]
    proba = model.predict_proba(extreme)
    assert np.isfinite(proba).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    assert np.isfinite(model.predict_log_proba(extreme)).all()


def test_gnvpro_head_equals_logistic_regression_on_its_features():
    # The final head is the ridge-regularized multinomial logistic regression on
    # the learned features: LogisticRegression(C = 1 / (n alpha)) on [Z, 1]
    # without an intercept (ours penalizes the bias like the other weights).
    X, y = _iris()
    model = _fast(GNvproClassifier).fit(X, y)
    Z = np.hstack([model.transform(X), np.ones((len(X), 1))])
    assert model.head_alpha_ == pytest.approx(1 / len(X))  # 'auto': C = 1
    reference = LogisticRegression(
        C=1 / (len(X) * model.head_alpha_),
        fit_intercept=False,
        tol=1e-12,
        max_iter=10_000,
    ).fit(Z, y)
    head = np.vstack([model.coef_, model.intercept_])
    # sklearn's lbfgs stops at a gradient norm of ~5e-8 here, ours at 1e-10.
    np.testing.assert_allclose(head, reference.coef_.T, atol=1e-5)
    np.testing.assert_allclose(
        model.predict_proba(X), reference.predict_proba(Z), atol=1e-6
    )


def test_slimtrain_temperature_minimizes_the_smoothed_training_log_loss():
    X, y = _iris()  # 150 rows: no validation split, calibrated on training data
    model = _fast(SlimTrainClassifier, final_head="least_squares").fit(X, y)
    scores = model.transform(X) @ model.coef_ + model.intercept_
    # Smoothed targets: (n + 1) / (n + 2) on the true class (n = 150 here).
    targets = np.full((len(y), 3), 1 / 152 / 2)
    targets[np.arange(len(y)), y] = 151 / 152

    def loss(temperature):
        logits = scores / temperature
        logits -= logits.max(axis=1, keepdims=True)
        log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        return -(targets * log_p).sum(axis=1).mean()

    T = model.temperature_
    assert 0 < T < np.inf
    np.testing.assert_allclose(
        model.predict_proba(X), np.exp(-loss_terms(scores, T)), rtol=1e-10
    )
    assert loss(T) < min(loss(1.0), loss(0.99 * T), loss(1.01 * T))


def loss_terms(scores, temperature):
    """Oracle: -log softmax(scores / T) by rows."""
    logits = scores / temperature
    logits = logits - logits.max(axis=1, keepdims=True)
    return -(logits - np.log(np.exp(logits).sum(axis=1, keepdims=True)))


def test_slimtrain_partial_fit_streams_with_classes():
    X, y = _iris()
    model = SlimTrainClassifier(hidden_layer_sizes=(16,), random_state=0)
    with pytest.raises(ValueError, match="classes must be passed"):
        model.partial_fit(X[:20], y[:20])
    first = y < 2  # the first chunk misses class 2
    model.partial_fit(X[first], y[first], classes=[0, 1, 2])
    np.testing.assert_array_equal(model.classes_, [0, 1, 2])
    for _ in range(20):
        model.partial_fit(X, y)
    assert model.score(X, y) >= 0.85
    with pytest.raises(ValueError, match="unseen labels"):
        model.partial_fit(X[:5], np.full(5, 7))
    with pytest.raises(ValueError, match="not the same as on the first call"):
        model.partial_fit(X, y, classes=[0, 1, 2, 3])
    with pytest.raises(ValueError, match="'balanced' is not supported"):
        SlimTrainClassifier(class_weight="balanced").partial_fit(
            X, y, classes=[0, 1, 2]
        )


@pytest.mark.parametrize("cls", CLASSIFIERS)
def test_class_weight_shifts_predictions(cls):
    # Overlapping classes, more rows than features: weighting class 0 up makes
    # the model predict it more often.
    X, y = make_classification(
        n_samples=300,
        n_features=4,
        n_informative=3,
        n_redundant=0,
        n_classes=3,
        class_sep=0.5,
        random_state=0,
    )
    plain = _fast(cls, early_stopping=False).fit(X, y)
    weighted = _fast(cls, early_stopping=False, class_weight={0: 10.0}).fit(X, y)
    assert np.mean(weighted.predict(X) == 0) > np.mean(plain.predict(X) == 0) + 0.1
    # 'balanced' equals the explicit weights n / (n_classes * count).
    balanced = _fast(cls, early_stopping=False, class_weight="balanced").fit(X, y)
    weights = {k: len(y) / (3 * np.sum(y == k)) for k in range(3)}
    explicit = _fast(cls, early_stopping=False, class_weight=weights).fit(X, y)
    np.testing.assert_allclose(
        balanced.predict_proba(X), explicit.predict_proba(X), rtol=1e-10
    )


def test_integer_weights_equal_repeated_rows():
    # GNvproClassifier: at the reduced problem's level (test_gnvpro_logistic.py);
    # over outer iterations truncated CG amplifies rounding differences.
    X, y = _iris()
    counts = np.random.RandomState(0).randint(1, 4, len(X))
    # The same batches in both: one batch holds everything.
    params = {
        "max_iter": 3,
        "shuffle": False,
        "batch_size": int(counts.sum()),
        "early_stopping": False,  # 'auto' would split only the repeated data
    }
    weighted = _fast(SlimTrainClassifier, **params).fit(X, y, sample_weight=counts)
    repeated = _fast(SlimTrainClassifier, **params).fit(
        np.repeat(X, counts, axis=0), np.repeat(y, counts)
    )
    np.testing.assert_allclose(
        weighted.predict_proba(X), repeated.predict_proba(X), rtol=1e-8, atol=1e-10
    )


def test_works_in_model_selection_tools():
    X, y = _iris()
    pipe = make_pipeline(StandardScaler(), _fast(SlimTrainClassifier, max_iter=10))
    search = GridSearchCV(
        pipe,
        {"slimtrainclassifier__learning_rate_init": [1e-3, 1e-2]},
        scoring="neg_log_loss",
        cv=3,
    ).fit(X, y)
    assert search.best_score_ > -0.5 * np.log(3)  # far better than uniform
    proba = cross_val_predict(
        _fast(GNvproClassifier, max_iter=5), X, y, cv=3, method="predict_proba"
    )
    assert proba.shape == (len(X), 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    calibrated = CalibratedClassifierCV(
        _fast(SlimTrainClassifier, max_iter=10), cv=3
    ).fit(X, y)
    assert calibrated.score(X, y) >= 0.85


@pytest.mark.parametrize("cls", CLASSIFIERS)
def test_scoring_monitor_scores_every_epoch(cls):
    X, y = _iris()
    monitor = ScoringMonitor(scoring="accuracy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        _fast(cls, max_iter=3, tol=0.0).set_callbacks(monitor).fit(X, y)
    scores = [row["accuracy"] for row in monitor.get_logs().data if "accuracy" in row]
    assert len(scores) == 3 and all(0 <= score <= 1 for score in scores)


@pytest.mark.parametrize("cls", CLASSIFIERS)
def test_pickle_round_trip(cls):
    X, y = _iris()
    model = _fast(cls).fit(X, y)
    restored = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(restored.predict_proba(X), model.predict_proba(X))


def test_gnvpro_classifier_objective_never_increases():
    X, y = _iris()
    model = _fast(GNvproClassifier, early_stopping=False, max_iter=15, alpha=1e-4).fit(
        X, y
    )
    assert np.all(np.diff(model.loss_curve_) <= 1e-12)
    assert model.loss_curve_[-1] < 0.5 * model.loss_curve_[0]


@pytest.mark.parametrize(
    "params",
    [{"batch_size": 64}, {"globalization": "armijo"}, {"head_alpha": 1e-2}],
    ids=["sub-sampled", "armijo", "fixed-head-alpha"],
)
def test_gnvpro_classifier_modes_learn(params):
    X, y = _iris()
    model = _fast(GNvproClassifier, **params).fit(X, y)
    assert model.score(X, y) >= 0.9
    if "head_alpha" in params:
        assert model.head_alpha_ == params["head_alpha"]


def test_gnvpro_classifier_rejects_a_zero_head_alpha():
    # The logistic head needs a ridge (softmax is shift-invariant): sklearn's
    # parameter validation says so before any work.
    X, y = _iris()
    with pytest.raises(ValueError, match="head_alpha"):
        GNvproClassifier(head_alpha=0.0).fit(X, y)


def test_calibration_reads_relative_weights_on_the_validation_split_too():
    # Weights summing below the row count are relative: any such scale gives the
    # unweighted model, its temperature fitted on the validation split included.
    X, y = make_classification(
        n_samples=300, n_features=5, n_informative=3, n_classes=3, random_state=0
    )
    params = {"max_iter": 5, "early_stopping": True}
    plain = _fast(SlimTrainClassifier, **params).fit(X, y)
    for scale in (0.5, 2.0**-10):  # powers of two: rescaled back to exactly 1
        weighted = _fast(SlimTrainClassifier, **params).fit(
            X, y, sample_weight=np.full(len(y), scale)
        )
        assert weighted.temperature_ == pytest.approx(plain.temperature_, rel=1e-12)
        np.testing.assert_allclose(
            weighted.predict_proba(X), plain.predict_proba(X), rtol=1e-12
        )


def test_infinite_temperature_gives_uniform_probabilities_and_keeps_predict(
    monkeypatch,
):
    import sk_slim._slimtrain_classifier as module

    X, y = _iris()
    calibrated = _fast(SlimTrainClassifier, final_head="least_squares").fit(X, y)
    monkeypatch.setattr(module, "fit_temperature", lambda *args, **kwargs: 0.0)
    flat = _fast(SlimTrainClassifier, final_head="least_squares").fit(X, y)
    assert flat.temperature_ == np.inf
    np.testing.assert_allclose(flat.predict_proba(X), 1 / 3)
    np.testing.assert_array_equal(flat.predict(X), calibrated.predict(X))


@pytest.mark.parametrize("cls", CLASSIFIERS)
def test_class_weight_keys_must_be_classes(cls):
    X, y = _iris()
    with pytest.raises(ValueError, match="not classes"):
        _fast(cls, class_weight={0: 2.0, 5: 10.0}).fit(X, y)
