"""Many rows: one default fit of a regressor on friedman1, its time, test R² and
peak memory.

Run from the repository root; one fit per process, so that the peak resident
memory (``ru_maxrss``) is that fit's::

    for n in 100000 1000000; do
        for m in GNvproRegressor SlimTrainRegressor MLP-adam HGB; do
            .venv/bin/python benchmarks/bench_large_n.py $m $n
        done
    done
    .venv/bin/python benchmarks/bench_large_n.py SlimTrainRegressor 1000000 --warm

friedman1 with noise 1.0: n training rows and 10 000 test rows, one torch and
BLAS thread (``benchmark_conditions``). ``MLP-adam`` is ``MLPRegressor`` (64, 64)
with early stopping and standardized targets, ``MLP-lbfgs`` the same with
lbfgs, ``HGB`` ``HistGradientBoostingRegressor``. Prints one JSON line:
seconds, test R², iterations, the peak resident memory and the memory before
the fit (imported torch and sklearn), in MiB, and the data's size.

``--warm`` first fits the same model (``max_iter=2``) on 2000 of the rows, so
that the memory before the measured fit already holds what any fit loads once
and keeps (library code, allocator pools, the kernels torch and numpy page in
on first use): the peak above it is what the fit adds for its data.
"""

import argparse
import json
import resource
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


def main(method, n, warm=False):
    X, y = make_friedman1(n + 10_000, noise=1.0, random_state=0)
    X_train, X_test, y_train, y_test = X[:n], X[n:], y[:n], y[n:]
    model = MODELS[method]()
    with benchmark_conditions(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if warm:
            warm_up = MODELS[method]()
            key = "regressor__max_iter" if hasattr(warm_up, "regressor") else "max_iter"
            warm_up.set_params(**{key: 2}).fit(X_train[:2000], y_train[:2000])
        before = peak_mib()
        start = time.perf_counter()
        model.fit(X_train, y_train)
        seconds = time.perf_counter() - start
    fitted = getattr(model, "regressor_", model)
    record = {
        "method": method,
        "n": n,
        "warm": warm,
        "seconds": round(seconds, 2),
        "r2": round(float(model.score(X_test, y_test)), 5),
        "n_iter": getattr(fitted, "n_iter_", None),
        "peak_rss_mib": round(peak_mib()),
        "rss_before_fit_mib": round(before),
        "data_mib": round((X_train.nbytes + y_train.nbytes) / 2**20, 1),
    }
    print(json.dumps(record), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("method", choices=MODELS)
    parser.add_argument("n", type=int)
    parser.add_argument("--warm", action="store_true")
    args = parser.parse_args()
    main(args.method, args.n, args.warm)
