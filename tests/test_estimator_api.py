"""The public estimators against scikit-learn's API checks: parameter validation,
and one text for each parameter that estimators share."""

import inspect
import itertools
import warnings

import numpy as np
import pytest
import torch
from sklearn.utils._testing import assert_docstring_consistency
from sklearn.utils.estimator_checks import check_param_validation

from sk_slim import (
    GNvproClassifier,
    GNvproRegressor,
    SlimTrainClassifier,
    SlimTrainRegressor,
)

try:  # numpydoc is in the test extra; without it only the docstring checks skip
    from numpydoc.docscrape import NumpyDocString
except ImportError:
    NumpyDocString = None
needs_numpydoc = pytest.mark.skipif(NumpyDocString is None, reason="needs numpydoc")

ESTIMATORS = [
    SlimTrainRegressor,
    SlimTrainClassifier,
    GNvproRegressor,
    GNvproClassifier,
]


@pytest.mark.parametrize("Estimator", ESTIMATORS, ids=lambda E: E.__name__)
def test_param_validation(Estimator):
    # _parameter_constraints names exactly the constructor's parameters, and fit
    # (and partial_fit) reject a value of a wrong type or out of range with an
    # InvalidParameterError naming the parameter. The check fits nothing: every
    # call fails in validation, so the defaults cost nothing here.
    check_param_validation(Estimator.__name__, Estimator())


# Parameters whose descriptions differ on purpose, by group of estimators. Every
# other parameter documented by all the estimators of a group must read the same.
GROUPS = {
    "all": (
        ESTIMATORS,
        {
            "hidden_layer_sizes": "defaults: (64, 64); (16, 16) or 'auto' GNvpro",
            "init": "defaults: 'box', but 'glorot' for GNvproClassifier",
            "alpha": "scaled per mini-batch (slimTrain), per sample (GNvpro)",
            "head_alpha": "sampled GCV, GCV per iteration, or a logistic head",
            "batch_size": "a mini-batch (slimTrain), a sub-sample (GNvpro)",
            "max_iter": "epochs (default 200) against Gauss-Newton iterations (100)",
            "tol": "GNvpro also stops on the reduced gradient's norm",
            "n_iter_no_change": "defaults differ: 20 epochs against 10 iterations",
            "early_stopping": "the validation score differs: R^2, Brier or accuracy",
            "warm_start": "GNvpro also carries the trust radius over",
            "random_state": "shuffling against sub-sampling (checked below by pattern)",
            "verbose": "one line per epoch against one per iteration",
            "input_scaling": "defaults: 'robust-clip' (slimTrain), 'standard' (GNvpro)",
        },
    ),
    "slimTrain": (
        [SlimTrainRegressor, SlimTrainClassifier],
        {
            "head_alpha": "the classifier's head fits one-hot targets",
            "early_stopping": "validation R^2 against the Brier score and calibration",
            "tol": "defaults differ: 1e-6 for the regressor (noiseless R^2), 1e-4",
            "max_iter": "defaults differ: the regressor's 400 ran on with tol=1e-6",
            "n_iter_no_change": "the regressor's 'auto' waits longer on derivatives",
        },
    ),
    "GNvpro": (
        [GNvproRegressor, GNvproClassifier],
        {
            "hidden_layer_sizes": "defaults differ: 'auto' (16 wide) and (64, 64)",
            "init": "defaults differ: 'box' for the regressor, 'glorot'",
            "alpha": "each names its counterpart: MLPRegressor, MLPClassifier",
            "alpha_init": "defaults (100, 30) and measurements differ",
            "n_iter_no_change": "the regressor's 'auto' waits longer on derivatives",
            "head_alpha": "a GCV-chosen ridge against a logistic head's 1 / n_samples",
            "batch_size": "the classifier's logistic head is warm-started",
            "early_stopping": "validation R^2 against stratified accuracy",
            "tol": "defaults differ: 1e-6 for the regressor (noiseless R^2), 1e-4",
            "max_iter": "defaults differ: the regressor's 200 ran on with tol=1e-6",
        },
    ),
}


def _documented(Estimator):
    """Names in the Parameters section of a class docstring."""
    if NumpyDocString is None:
        return set()
    doc = NumpyDocString(inspect.getdoc(Estimator))
    return {parameter.name for parameter in doc["Parameters"]}


def _shared_parameters(estimators):
    return set.intersection(*(_documented(E) for E in estimators))


CASES = [
    pytest.param(estimators, name, id=f"{group}-{name}")
    for group, (estimators, excluded) in GROUPS.items()
    for name in sorted(_shared_parameters(estimators) - set(excluded))
]


@needs_numpydoc
@pytest.mark.parametrize("group", GROUPS)
def test_exclusions_name_shared_parameters(group):
    # A parameter renamed or no longer shared would leave a stale exclusion.
    estimators, excluded = GROUPS[group]
    assert set(excluded) <= _shared_parameters(estimators)


@needs_numpydoc
@pytest.mark.parametrize("estimators, name", CASES)
def test_shared_parameter_has_one_description(estimators, name):
    # Type, default and description are the same text (up to white space).
    assert_docstring_consistency(estimators, include_params=[name])


@needs_numpydoc
def test_random_state_differs_only_in_what_it_draws():
    # slimTrain shuffles, GNvpro sub-samples; all four seed through a
    # torch.Generator and leave the global RNGs alone (_BaseSeparable does both).
    pattern = (
        r"^Seeds initialization, (shuffling|sub-sampling) and the validation "
        r"split through a ``torch\.Generator``; torch's and numpy's global RNGs are "
        r"left untouched\.$"
    )
    assert_docstring_consistency(
        ESTIMATORS, include_params=["random_state"], descr_regex_pattern=pattern
    )


def _fit_quietly(Estimator, X, y, **params):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Estimator(random_state=0, max_iter=1, **params).fit(X, y)


def _first_layer(model):
    linear = model.module_.feature_extractor[0]
    return linear.weight.detach(), linear.bias.detach()


@pytest.mark.parametrize("Estimator", ESTIMATORS, ids=lambda e: e.__name__)
def test_box_init_draws_the_first_layer_through_the_inputs_own_box(Estimator):
    # Inputs far from [0, 1] and on very different scales: box init reads their
    # own bounding box, so every first-layer hyperplane cuts it and peaks at 1
    # at its far corner. slimTrain with a learning rate of 1e-300 keeps the
    # initialization; GNvpro's first step moves it, so there the check is that
    # the option reaches the (shared) builder, reproducibly. No input scaling:
    # the network sees X as given.
    rng = np.random.RandomState(0)
    X = rng.uniform([-500.0, 10.0], [500.0, 10.001], size=(120, 2))
    y = np.arange(120) % 2 if "Classifier" in Estimator.__name__ else X[:, 0]
    params = {"activation": "relu", "input_scaling": None}
    if "SlimTrain" in Estimator.__name__:
        params["learning_rate_init"] = 1e-300
    box = _fit_quietly(Estimator, X, y, init="box", **params)
    again = _fit_quietly(Estimator, X, y, init="box", **params)
    glorot = _fit_quietly(Estimator, X, y, init="glorot", **params)
    W, b = _first_layer(box)
    torch.testing.assert_close(W, _first_layer(again)[0], rtol=0, atol=0)
    assert not torch.allclose(W, _first_layer(glorot)[0])
    if "SlimTrain" in Estimator.__name__:
        lo, hi = X.min(axis=0), X.max(axis=0)
        corners = torch.as_tensor(list(itertools.product(*zip(lo, hi, strict=True))))
        pre = corners @ W.T + b  # (4, width)
        torch.testing.assert_close(
            pre.max(dim=0).values, torch.ones(W.shape[0]).double()
        )
        assert (pre.min(dim=0).values < 0).all()


class _LastModel:
    """A fit callback that keeps the predictions of the model it is shown after
    every epoch (sklearn's reconstruction of the estimator mid-fit)."""

    def __init__(self, X):
        self.X, self.predictions = X, []

    def setup(self, estimator, context):
        pass

    def teardown(self, estimator, context):
        pass

    def on_fit_task_begin(self, estimator, context):
        pass

    def on_fit_task_end(self, estimator, context, *, fitted_estimator=None):
        if context.task_name == "epoch" and fitted_estimator is not None:
            self.predictions.append(
                fitted_estimator.decision_function(self.X)
                if hasattr(fitted_estimator, "classes_")
                else fitted_estimator.predict(self.X)
            )
        return False


@pytest.mark.parametrize("Estimator", ESTIMATORS, ids=lambda e: e.__name__)
def test_callbacks_see_the_model_fit_would_return(Estimator):
    # After each epoch a callback gets the model that fit returns if stopped
    # there: these features with the final (full-data) head, not the head the
    # algorithm trains against (slimTik's streamed head, GNvpro's last step).
    rng = np.random.RandomState(0)
    X = rng.normal(size=(150, 3))
    y = (X[:, 0] > 0).astype(int) if "Classifier" in Estimator.__name__ else X[:, 0]
    model = Estimator(max_iter=3, early_stopping=False, random_state=0)
    monitor = _LastModel(X)
    model.set_callbacks(monitor)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(X, y)
    # GNvpro may restart without its continuation (a second run, each up to
    # max_iter): one callback epoch per iteration either way.
    assert len(monitor.predictions) == model.n_iter_ >= 3
    returned = (
        model.decision_function(X)
        if "Classifier" in Estimator.__name__
        else (model.predict(X))
    )
    np.testing.assert_allclose(
        monitor.predictions[-1], returned, rtol=1e-10, atol=1e-12
    )
