"""Hyperparameter search on a Dask cluster: every estimator in GridSearchCV under
``joblib.parallel_config(backend="dask")`` gives the search of the default backend,
also when a worker process dies during the search (Dask runs its tasks again).

Two worker processes with one thread each, on loopback; every wait is bounded.
"""

import os
import threading
import warnings
from functools import partial

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
dask = pytest.importorskip("dask")

TIMEOUT = 120  # seconds for the cluster to start, and for each search

ESTIMATORS = [
    (SlimTrainRegressor, {"max_iter": 5}, "regression"),
    (GNvproRegressor, {"max_iter": 3}, "regression"),
    (SlimTrainClassifier, {"max_iter": 5}, "classification"),
    (GNvproClassifier, {"max_iter": 3}, "classification"),
]
GRID = {"hidden_layer_sizes": [(8,), (16,)], "alpha": [1e-4, 1e-2]}


def _cluster():
    return distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        timeout=TIMEOUT,
    )


@pytest.fixture(scope="module")
def client():
    cluster = _cluster()
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


def _score_or_kill_the_worker(estimator, X, y, marker=None):
    """R^2; but the first time the (16,) network with alpha=1e-2 is scored (one
    of its two folds), kill the process it runs in instead: the fit is lost."""
    victim = estimator.hidden_layer_sizes == (16,) and estimator.alpha == 1e-2
    if marker is not None and victim:
        try:  # atomic: one fold of one search only, on whichever worker
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            pass
        else:
            os._exit(1)  # no cleanup, as a crash or the OOM killer
    return estimator.score(X, y)


def _within(timeout, function):
    """``function()`` in a daemon thread; fail when it has not returned in time
    (the cluster's shutdown then ends it)."""
    outcome = {}

    def run():
        try:
            outcome["result"] = function()
        except BaseException as error:
            outcome["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        pytest.fail(f"the search did not end within {timeout} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def _cluster_allowing(allowed_failures):
    """A cluster that runs a task again after up to ``allowed_failures`` deaths
    of the worker running it (read when the scheduler starts)."""
    config = {"distributed.scheduler.allowed-failures": allowed_failures}
    with dask.config.set(config):
        return _cluster()


def test_a_worker_killed_during_a_search_is_retried(tmp_path):
    # A worker process dies while it scores one fold; Dask runs that task again
    # on a live worker (the nanny restarts the dead one): the search is the
    # undisturbed one.
    X, y = _data("regression")
    estimator = SlimTrainRegressor(random_state=0, max_iter=5)
    expected = _search(estimator, X, y, scoring=_score_or_kill_the_worker)
    marker = tmp_path / "killed"
    scoring = partial(_score_or_kill_the_worker, marker=str(marker))

    def search():
        # scatter: a copy of the data on every worker. Else joblib sends it to
        # one, and the death of that one loses it: the search then fails
        # (FutureCancelledError, "lose scattered data, which can't be recovered").
        with parallel_config(
            backend="dask", scatter=[X, y], wait_for_workers_timeout=TIMEOUT
        ):
            return _search(estimator, X, y, n_jobs=-1, scoring=scoring)

    with (
        _cluster_allowing(1) as cluster,
        distributed.Client(cluster, timeout=TIMEOUT) as client,
    ):
        client.wait_for_workers(2, timeout=TIMEOUT)
        pids = set(client.run(os.getpid).values())
        on_dask = _within(TIMEOUT, search)
        assert marker.exists()  # a worker was killed: the nanny started another
        client.wait_for_workers(2, timeout=TIMEOUT)
        assert len(pids - set(client.run(os.getpid).values())) == 1
    np.testing.assert_array_equal(
        on_dask.cv_results_["mean_test_score"], expected.cv_results_["mean_test_score"]
    )
    assert on_dask.best_params_ == expected.best_params_
    np.testing.assert_array_equal(on_dask.predict(X), expected.predict(X))


def test_without_retries_the_killed_task_fails(tmp_path):
    # What the search above relies on: with allowed-failures=0 the task whose
    # worker died is not run again. (Inside a joblib search, joblib 1.6 does
    # not hear of that failure, and the search waits forever.)
    X, y = _data("regression")
    victim = SlimTrainRegressor(hidden_layer_sizes=(16,), alpha=1e-2, max_iter=2)
    with (
        _cluster_allowing(0) as cluster,
        distributed.Client(cluster, timeout=TIMEOUT) as client,
    ):
        client.wait_for_workers(2, timeout=TIMEOUT)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            victim.fit(X, y)
        marker = str(tmp_path / "killed")
        task = client.submit(_score_or_kill_the_worker, victim, X, y, marker=marker)
        with pytest.raises(distributed.KilledWorker):
            task.result(TIMEOUT)
