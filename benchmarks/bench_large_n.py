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
    .venv/bin/python benchmarks/bench_large_n.py GNvproRegressor 100000 \\
        --target-of MLP-adam

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

``--target-of PEER`` measures time to target instead: ``PEER``'s default fit
first, timed, its test R² the target; then ``_common.time_to_target`` (as the
suite's ``--measure time-to-target``, one repeat): the first iteration at which
the method, without early stopping, reaches that R², and the seconds of a fit
stopped there.
"""

import argparse
import json
import resource
import time
import warnings

from _common import Split, benchmark_conditions, mlp_regressor, r2, time_to_target
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


def main_to_target(method, n, peer):
    X, y = make_friedman1(n + 10_000, noise=1.0, random_state=0)
    split = Split(X[:n], X[n:], y[:n], y[n:])
    with benchmark_conditions(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        target_model = MODELS[peer]()
        start = time.perf_counter()
        target_model.fit(split.X_train, split.y_train)
        target_seconds = time.perf_counter() - start
        target = r2(target_model, split.X_test, split.y_test)
        model = MODELS[method]()
        reach = time_to_target(model, split, target, r2, model.max_iter, repeats=1)
    record = {
        "method": method,
        "n": n,
        "target_of": peer,
        "target_r2": round(target, 5),
        "target_seconds": round(target_seconds, 2),
        "reached": reach is not None,
    }
    if reach is not None:
        record.update(iterations=reach.iterations, seconds=round(reach.seconds, 2))
    print(json.dumps(record), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("method", choices=MODELS)
    parser.add_argument("n", type=int)
    parser.add_argument("--warm", action="store_true")
    parser.add_argument("--target-of", choices=MODELS)
    args = parser.parse_args()
    if args.target_of:
        main_to_target(args.method, args.n, args.target_of)
    else:
        main(args.method, args.n, args.warm)
