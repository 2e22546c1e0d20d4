"""Hyperparameter search on a Dask cluster: every estimator in GridSearchCV under
``joblib.parallel_config(backend="dask")`` gives the search of the default backend.

Two worker processes with one thread each, on loopback; every wait is bounded.
"""

import warnings

import numpy as np
import pytest
import torch
from joblib import parallel_config
from sklearn.datasets import make_classification, make_regression
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV

from sk_slim import (
    GNvproClassifier,
    GNvproRegressor,
    SlimTrainClassifier,
    SlimTrainRegressor,
)

distributed = pytest.importorskip("distributed")

TIMEOUT = 120  # seconds for the cluster to start, and for each search

ESTIMATORS = [
    (SlimTrainRegressor, {"max_iter": 5}, "regression"),
    (GNvproRegressor, {"max_iter": 3}, "regression"),
    (SlimTrainClassifier, {"max_iter": 5}, "classification"),
    (GNvproClassifier, {"max_iter": 3}, "classification"),
]
GRID = {"hidden_layer_sizes": [(8,), (16,)], "alpha": [1e-4, 1e-2]}


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        timeout=TIMEOUT,
    )
    client = distributed.Client(cluster, timeout=TIMEOUT)
    client.wait_for_workers(2, timeout=TIMEOUT)
    yield client
    client.close(timeout=TIMEOUT)
    cluster.close(timeout=TIMEOUT)


def _data(task):
    if task == "regression":
        return make_regression(120, 4, noise=0.1, random_state=0)
    return make_classification(120, 4, random_state=0)


def _search(estimator, X, y, **params):
    search = GridSearchCV(estimator, GRID, cv=2, **params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return search.fit(X, y)


@pytest.mark.parametrize("cls, params, task", ESTIMATORS)
def test_dask_search_equals_the_default_backend(client, cls, params, task):
    X, y = _data(task)
    estimator = cls(random_state=0, **params)
    expected = _search(estimator, X, y)
    with parallel_config(backend="dask", wait_for_workers_timeout=TIMEOUT):
        on_dask = _search(estimator, X, y, n_jobs=-1)
    # Seeded fits are deterministic, wherever they run.
    np.testing.assert_array_equal(
        on_dask.cv_results_["mean_test_score"], expected.cv_results_["mean_test_score"]
    )
    assert on_dask.best_params_ == expected.best_params_
    np.testing.assert_array_equal(on_dask.predict(X), expected.predict(X))


class _ThreadRecorder(torch.nn.Module):
    """A feature extractor that records torch's thread count during fit."""

    def __init__(self, n_features_in):
        super().__init__()
        self.linear = torch.nn.Linear(n_features_in, 8, dtype=torch.float64)
        self.threads = set()

    def forward(self, X):
        self.threads.add(torch.get_num_threads())
        return torch.tanh(self.linear(X))


def _threads_in_fit():
    X, y = make_regression(60, 4, random_state=0)
    model = SlimTrainRegressor(
        feature_extractor=_ThreadRecorder, max_iter=2, random_state=0
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, y)
    return sorted(model.module_.feature_extractor.threads), torch.get_num_threads()


def test_thread_policy_holds_inside_the_workers(client):
    # One thread per worker process: a small fit trains with one torch thread
    # and leaves the worker's setting as it found it.
    before = client.run(torch.get_num_threads)
    during, after = client.submit(_threads_in_fit, pure=False).result(TIMEOUT)
    assert during == [1]
    assert after in before.values()
