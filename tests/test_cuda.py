"""Every estimator on a CUDA device: fit, predict, and a pickle that predicts on a
machine without CUDA. Skipped where there is no CUDA device."""

import pickle
import warnings

import numpy as np
import pytest
import torch
from sklearn.datasets import make_classification, make_regression
from sklearn.exceptions import ConvergenceWarning

from sk_slim import (
    GNvproClassifier,
    GNvproRegressor,
    SlimTrainClassifier,
    SlimTrainRegressor,
)

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")

ESTIMATORS = [
    SlimTrainRegressor,
    GNvproRegressor,
    SlimTrainClassifier,
    GNvproClassifier,
]


def _data(cls):
    if cls in (SlimTrainRegressor, GNvproRegressor):
        return make_regression(200, 5, noise=0.1, random_state=0)
    return make_classification(200, 5, random_state=0)


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_cuda_fit_predicts_on_cpu_after_pickling(cls, monkeypatch):
    X, y = _data(cls)
    model = cls(device="cuda", max_iter=3, hidden_layer_sizes=(16,), random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, y)
    assert model.device_.startswith("cuda") and model.module_.W.is_cuda
    # predict_proba's probabilities where there are, else the predictions.
    method = "predict_proba" if hasattr(model, "predict_proba") else "predict"
    expected = getattr(model, method)(X)
    assert expected.dtype == np.float64
    restored = pickle.loads(pickle.dumps(model))
    assert not restored.module_.W.is_cuda
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    np.testing.assert_allclose(getattr(restored, method)(X), expected, rtol=1e-5)
