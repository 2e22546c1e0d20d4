"""Many rows: one default fit of a regressor on friedman1, its time, test R² and
peak memory.

Run from the repository root; one fit per process, so that the peak resident
memory (``ru_maxrss``) is that fit's::

    for n in 100000 1000000; do
        for m in GNvproRegressor SlimTrainRegressor MLP-adam HGB; do
            .venv/bin/python benchmarks/bench_large_n.py $m $n
        done
    done

friedman1 with noise 1.0: n training rows and 10 000 test rows, one torch and
BLAS thread (``benchmark_conditions``). ``MLP-adam`` is ``MLPRegressor`` (64, 64)
with early stopping and standardized targets, ``MLP-lbfgs`` the same with
lbfgs, ``HGB`` ``HistGradientBoostingRegressor``. Prints one JSON line:
seconds, test R², iterations, the peak resident memory and the memory before
the fit (imported torch and sklearn), in MiB, and the data's size.
"""

import json
import resource
import sys
import time
import warnings

from _common import benchmark_conditions, mlp_regressor
from sklearn.datasets import make_friedman1
from sklearn.ensemble import HistGradientBoostingRegressor

import sk_slim

MODELS = {
    "GNvproRegressor": lambda: sk_slim.GNvproRegressor(random_state=0),
    "SlimTrainRegressor": lambda: sk_slim.SlimTrainRegressor(random_state=0),
    "MLP-adam": lambda: mlp_regressor(early_stopping=True),
    "MLP-lbfgs": lambda: mlp_regressor(solver="lbfgs", max_iter=500),
    "HGB": lambda: HistGradientBoostingRegressor(random_state=0),
}


def peak_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(method, n):
    X, y = make_friedman1(n + 10_000, noise=1.0, random_state=0)
    X_train, X_test, y_train, y_test = X[:n], X[n:], y[:n], y[n:]
    before = peak_mib()
    model = MODELS[method]()
    with benchmark_conditions(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        model.fit(X_train, y_train)
        seconds = time.perf_counter() - start
    fitted = getattr(model, "regressor_", model)
    record = {
        "method": method,
        "n": n,
        "seconds": round(seconds, 2),
        "r2": round(float(model.score(X_test, y_test)), 5),
        "n_iter": getattr(fitted, "n_iter_", None),
        "peak_rss_mib": round(peak_mib()),
        "rss_before_fit_mib": round(before),
        "data_mib": round((X_train.nbytes + y_train.nbytes) / 2**20, 1),
    }
    print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
