"""A grid search of 20 candidates x 5 folds: ``n_jobs=1`` against a Dask cluster of
two single-threaded worker processes on this machine.

Run from the repository root (needs the ``dask`` extra)::

    .venv/bin/python benchmarks/bench_dask.py > benchmarks/dask_results.md

The estimator is GNvproRegressor on ``make_friedman1`` (1500 rows, noise 1); the grid
crosses 4 widths with 5 penalties. Both searches run in this process's conditions (one
torch and one BLAS thread here; the workers start with ``OMP_NUM_THREADS=1``); the
cluster's start-up is timed apart. The two searches must give the same scores.

Separate from the suite (``suite.py``): it measures the speed-up of a search, on
data generated here.
"""

import platform
import time
import warnings

import dask
import numpy as np
import sklearn
import torch
from _common import benchmark_conditions
from _common import warm_up as warm_up_models
from distributed import Client, LocalCluster
from joblib import parallel_config
from sklearn.datasets import make_friedman1
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV

from sk_slim import GNvproRegressor

GRID = {
    "hidden_layer_sizes": [(8, 8), (16, 16), (24, 24), (32, 32)],
    "alpha": [1e-5, 1e-4, 1e-3, 1e-2, 1e-1],
}
FOLDS = 5
WORKERS = 2
MMAP_THRESHOLD = 2**25  # glibc's largest: blocks below it are reused, not mmapped


def warm_up():
    """One small fit: torch's and sk_slim's one-time set-up, kept out of the timed
    searches (in this process and in each worker)."""
    X, y = make_friedman1(n_samples=100, random_state=0)
    warm_up_models([GNvproRegressor(max_iter=2, random_state=0)], X, y, n_rows=100)


def search(**params):
    """The grid search, fitted on the benchmark's data; returns it and its seconds."""
    X, y = make_friedman1(n_samples=1500, noise=1.0, random_state=0)
    grid_search = GridSearchCV(
        GNvproRegressor(max_iter=30, random_state=0), GRID, cv=FOLDS, **params
    )
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        grid_search.fit(X, y)
    return grid_search, time.perf_counter() - start


def dask_search(mmap_threshold):
    """The search on a fresh cluster of WORKERS processes; with ``mmap_threshold``,
    the workers start with that glibc ``MALLOC_MMAP_THRESHOLD_`` (see the user
    guide: Dask's default ``MALLOC_TRIM_THRESHOLD_`` pins it at 128 KiB)."""
    environ = "distributed.nanny.pre-spawn-environ.MALLOC_MMAP_THRESHOLD_"
    settings = {} if mmap_threshold is None else {environ: mmap_threshold}
    start = time.perf_counter()
    with dask.config.set(settings):
        cluster = LocalCluster(
            n_workers=WORKERS,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        )
    client = Client(cluster)
    try:
        client.wait_for_workers(WORKERS, timeout=120)
        client.run(warm_up)
        startup = time.perf_counter() - start
        with parallel_config(backend="dask"):
            fitted, seconds = search(n_jobs=-1)
    finally:
        client.close()
        cluster.close()
    return fitted, seconds, startup


def main():
    n_candidates = int(np.prod([len(v) for v in GRID.values()]))
    print("# Grid search on Dask (`bench_dask.py`)\n")
    print(
        f"- {n_candidates} candidates x {FOLDS} folds = {n_candidates * FOLDS} fits "
        "of GNvproRegressor(max_iter=30) on make_friedman1 (1500 rows)"
    )
    print(
        f"- Python {platform.python_version()}, torch {torch.__version__}, "
        f"scikit-learn {sklearn.__version__}, {platform.machine()}\n"
    )
    with benchmark_conditions():
        warm_up()
        serial, serial_seconds = search(n_jobs=1)
        _, loky_seconds = search(n_jobs=WORKERS)  # joblib's own processes
        on_dask, dask_seconds, startup = dask_search(mmap_threshold=None)
        _, tuned_seconds, _ = dask_search(mmap_threshold=MMAP_THRESHOLD)
    same = np.array_equal(
        serial.cv_results_["mean_test_score"], on_dask.cv_results_["mean_test_score"]
    )
    print("| search | seconds | speed-up |")
    print("| --- | ---: | ---: |")
    print(f"| n_jobs=1 | {serial_seconds:.1f} | 1.00 |")
    print(
        f"| n_jobs={WORKERS}, joblib's loky processes | {loky_seconds:.1f} | "
        f"{serial_seconds / loky_seconds:.2f} |"
    )
    print(
        f"| Dask, {WORKERS} workers x 1 thread | {dask_seconds:.1f} | "
        f"{serial_seconds / dask_seconds:.2f} |"
    )
    print(
        f"| the same, workers with MALLOC_MMAP_THRESHOLD_={MMAP_THRESHOLD} | "
        f"{tuned_seconds:.1f} | {serial_seconds / tuned_seconds:.2f} |"
    )
    print(
        f"\nCluster start-up and the workers' warm-up (not in the search's time): "
        f"{startup:.1f} s."
    )
    print(f"Scores identical to n_jobs=1: {same}; best: {on_dask.best_params_}.")


if __name__ == "__main__":
    main()
