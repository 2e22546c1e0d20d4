"""Small noisy regression (100-300 training rows): which settings keep
GNvproRegressor and SlimTrainRegressor from interpolating the noise, measured
against RidgeCV and MLP lbfgs (64, 64).

Below 200 rows ``early_stopping='auto'`` holds out nothing, and a default fit can
reach a training R² of 1 and a test R² far below a linear model's. The target:
a default fit at 100-300 rows no more than 0.02 of test R² below RidgeCV's.

Data (nothing from the report half):

- tune-half regression problems (``problems.py``): diabetes and
  friedman3_heavy_noise as they are, borehole and otl_circuit_20d with relative
  Gaussian noise 0.5 and ishigami with 0.3 added to all their targets
  (training and test: the R² ceiling is ``1 / (1 + s²)``, 0.8 and 0.92); their
  training rows subsampled to n in 100, 150, 200, 300, tested on the
  problem's whole test part;
- synthetic problems generated for this benchmark: ``make_regression`` with 25
  inputs (10 informative) and relative noise 1, ``make_friedman1`` with 25
  inputs (5 used) and noise 3 (a pool of 300 rows to subsample, 1000 rows to
  test).

Each (problem, n) is drawn with 3 subsample seeds; X is standardized on the
subsample. Candidates (:data:`CANDIDATES`; all constructor parameters of the
estimators, ``random_state=0``) against ``RidgeCV(alphas=logspace(-3, 3, 13))``
and the suite's ``MLPRegressor-lbfgs`` ((64, 64) tanh, ``max_iter=500``,
standardized targets); ``gn:seeds5``/``st:seeds5`` are the mean prediction of
``N_SEEDS`` default fits with ``random_state`` 0, 1, ... (``VotingRegressor``).
Scores: test and training R² (uniform average over outputs), fit seconds. One
JSON line per fit, appended as it is done (a rerun skips what the file holds);
everything under ``_common.benchmark_conditions()``.

Run from the repository root::

    nice -n 10 .venv/bin/python benchmarks/bench_small_data.py
    .venv/bin/python benchmarks/bench_small_data.py --report   # markdown tables

``--methods`` runs some candidates only (with RidgeCV, into ``--out``), e.g. the
seed averages against the current defaults::

    nice -n 10 .venv/bin/python benchmarks/bench_small_data.py \
        --out benchmarks/small_data_seeds.jsonl \
        --methods gn:default st:default gn:seeds5 st:seeds5
"""

import argparse
import json
import time
import zlib
from functools import partial
from pathlib import Path

import numpy as np
import problems as registry
from _common import benchmark_conditions, mlp_regressor, warm_up
from problems import _add_noise, _regression
from sklearn.datasets import make_friedman1
from sklearn.ensemble import VotingRegressor
from sklearn.linear_model import RidgeCV
from sklearn.metrics import r2_score
from sklearn.preprocessing import StandardScaler

from sk_slim import GNvproRegressor, SlimTrainRegressor

HERE = Path(__file__).parent
DEFAULT_OUT = HERE / "small_data_results.jsonl"
SIZES = (100, 150, 200, 300)
SEEDS = (0, 1, 2)
TOLERANCE = 0.02  # the target: test R² at most this far below RidgeCV's
RIDGE, MLP = "RidgeCV", "MLP-lbfgs"

GN, ST = GNvproRegressor, SlimTrainRegressor
N_SEEDS = 5  # members of the seed averages


def seed_average(estimator, random_state=0, **params):
    """The mean prediction of ``N_SEEDS`` fits of ``estimator`` that differ only in
    their seed (``random_state`` to ``random_state + N_SEEDS - 1``): each member's
    own initialization and validation split."""
    members = [
        (f"seed{k}", estimator(random_state=random_state + k, **params))
        for k in range(N_SEEDS)
    ]
    return VotingRegressor(members)


CANDIDATES = {
    # GNvproRegressor
    "gn:default": (GN, {}),
    "gn:es0.1": (GN, {"early_stopping": True}),
    "gn:es0.2": (GN, {"early_stopping": True, "validation_fraction": 0.2}),
    "gn:alpha10": (GN, {"alpha": 10.0}),
    "gn:alpha100": (GN, {"alpha": 100.0}),
    "gn:w8": (GN, {"hidden_layer_sizes": (8, 8)}),
    "gn:es0.1+ai_none": (GN, {"early_stopping": True, "alpha_init": None}),
    "gn:es0.2+alpha10": (
        GN,
        {"early_stopping": True, "validation_fraction": 0.2, "alpha": 10.0},
    ),
    "gn:es0.2+alpha100": (
        GN,
        {"early_stopping": True, "validation_fraction": 0.2, "alpha": 100.0},
    ),
    "gn:seeds5": (partial(seed_average, GN), {}),
    # SlimTrainRegressor
    "st:default": (ST, {}),
    "st:es0.1": (ST, {"early_stopping": True}),
    "st:es0.2": (ST, {"early_stopping": True, "validation_fraction": 0.2}),
    "st:alpha10": (ST, {"alpha": 10.0}),
    "st:alpha100": (ST, {"alpha": 100.0}),
    "st:w16": (ST, {"hidden_layer_sizes": (16, 16)}),
    "st:es0.2+alpha10": (
        ST,
        {"early_stopping": True, "validation_fraction": 0.2, "alpha": 10.0},
    ),
    "st:es0.2+alpha100": (
        ST,
        {"early_stopping": True, "validation_fraction": 0.2, "alpha": 100.0},
    ),
    "st:seeds5": (partial(seed_average, ST), {}),
    "st:patience50": (ST, {"n_iter_no_change": 50}),
    "st:patience100": (ST, {"n_iter_no_change": 100}),
}


# ----------------------------------------------------------------------- data


class Pool:
    """Rows to subsample from and a fixed test set (targets 2-D or 1-D)."""

    def __init__(self, X, y, X_test, y_test):
        self.X, self.y, self.X_test, self.y_test = X, y, X_test, y_test


def _tune(name, relative_noise=0.0):
    """A tune-half problem's training part as the pool, its test part to test;
    relative noise added to all targets if asked (seeded by the name's CRC)."""
    problem = registry.get(name)
    assert problem.half == "tune" and problem.task == "regression", name
    X_train, X_test, y_train, y_test = problem.load()
    if relative_noise:
        rng = np.random.default_rng([zlib.crc32(name.encode()), 7])
        y = np.concatenate([y_train, y_test])
        y = _add_noise(y, relative_noise, rng)
        y_train, y_test = y[: len(y_train)], y[len(y_train) :]
    return Pool(X_train, y_train, X_test, y_test)


def _synthetic(make):
    """300 rows to subsample, 1000 to test."""
    X, y = make(n_samples=1300)
    return Pool(X[:300], y[:300], X[300:], y[300:])


def _friedman1_wide(n_samples):
    return make_friedman1(n_samples, n_features=25, noise=3.0, random_state=11)


POOLS = {
    "diabetes": partial(_tune, "diabetes"),
    "friedman3_heavy_noise": partial(_tune, "friedman3_heavy_noise"),
    "borehole+noise0.5": partial(_tune, "borehole", 0.5),
    "otl_circuit_20d+noise0.5": partial(_tune, "otl_circuit_20d", 0.5),
    "ishigami+noise0.3": partial(_tune, "ishigami", 0.3),
    "linear_25d_noise1": partial(
        _synthetic,
        partial(
            _regression,
            random_state=21,
            n_features=25,
            n_informative=10,
            relative_noise=1.0,
        ),
    ),
    "friedman1_25d_noise3": partial(_synthetic, _friedman1_wide),
}


def subsample(pool, n, seed):
    """n rows of the pool (seeded), X standardized on them."""
    rows = np.random.default_rng([seed, n]).choice(len(pool.X), n, replace=False)
    scaler = StandardScaler().fit(pool.X[rows])
    return (
        scaler.transform(pool.X[rows]),
        scaler.transform(pool.X_test),
        pool.y[rows],
        pool.y_test,
    )


# ---------------------------------------------------------------------- runs


def make_model(method):
    if method == RIDGE:
        return RidgeCV(alphas=np.logspace(-3, 3, 13))
    if method == MLP:
        return mlp_regressor(solver="lbfgs", max_iter=500)
    estimator, params = CANDIDATES[method]
    return estimator(random_state=0, **params)


def fit_one(method, data):
    X_train, X_test, y_train, y_test = data
    model = make_model(method)
    start = time.perf_counter()
    model.fit(X_train, y_train)
    seconds = time.perf_counter() - start
    n_iter = getattr(model, "n_iter_", None)
    return {
        "r2": float(r2_score(y_test, model.predict(X_test))),
        "train_r2": float(r2_score(y_train, model.predict(X_train))),
        "seconds": seconds,
        "n_iter": None if n_iter is None else int(n_iter),
    }


def run(out, only=None, methods=None):
    done = set()
    if out.exists():
        done = {
            (r["problem"], r["n"], r["seed"], r["method"])
            for r in map(json.loads, out.open())
        }
    methods = [RIDGE, MLP, *CANDIDATES] if methods is None else [RIDGE, *methods]
    with benchmark_conditions():
        pool = POOLS["friedman3_heavy_noise"]()
        warm_up([GN(max_iter=3), ST(max_iter=3)], pool.X, pool.y)
        for name, load in POOLS.items():
            if only and name not in only:
                continue
            pool = load()
            for n in SIZES:
                if n > len(pool.X):
                    continue
                for seed in SEEDS:
                    data = subsample(pool, n, seed)
                    for method in methods:
                        if (name, n, seed, method) in done:
                            continue
                        record = fit_one(method, data)
                        record.update(problem=name, n=n, seed=seed, method=method)
                        with out.open("a") as file:
                            file.write(json.dumps(record) + "\n")
                    print(name, n, seed, flush=True)


# -------------------------------------------------------------------- report


def report(path):
    records = list(map(json.loads, Path(path).open()))
    by = {(r["problem"], r["n"], r["seed"], r["method"]): r for r in records}
    cases = sorted(
        {(r["problem"], r["n"], r["seed"]) for r in records},
        key=lambda k: (list(POOLS).index(k[0]), k[1], k[2]),
    )
    methods = [m for m in (MLP, *CANDIDATES) if any(r["method"] == m for r in records)]
    lines = [
        "### Gap to RidgeCV over all fits (test R² − RidgeCV's; R² clipped at −1 "
        "in the gaps)\n",
        "| method | mean gap | median gap | worst test R² | > 0.02 below | "
        + " | ".join(f"> 0.02 below at n={n}" for n in SIZES)
        + " | (problem, n) means > 0.02 below | mean train R² | mean s |",
        "| --- | ---: | ---: | ---: | ---: |"
        + " ---: |" * len(SIZES)
        + " ---: | ---: | ---: |",
    ]
    for method in methods:
        gaps, worst, train, secs = [], [], [], []
        fail_n = {n: [0, 0] for n in SIZES}
        cell_gaps = {}  # (problem, n) -> gaps over seeds
        for case in cases:
            r, ridge = by.get((*case, method)), by.get((*case, RIDGE))
            if r is None or ridge is None:
                continue
            gap = max(r["r2"], -1.0) - ridge["r2"]  # R² clipped at -1 (as suite.py)
            gaps.append(gap)
            worst.append(r["r2"])
            cell_gaps.setdefault(case[:2], []).append(gap)
            train.append(r["train_r2"])
            secs.append(r["seconds"])
            fail_n[case[1]][0] += gap < -TOLERANCE
            fail_n[case[1]][1] += 1
        if not gaps:
            continue
        gaps = np.array(gaps)
        cell_fails = sum(np.mean(g) < -TOLERANCE for g in cell_gaps.values())
        lines.append(
            f"| {method} | {gaps.mean():+.3f} | {np.median(gaps):+.3f} | "
            f"{min(worst):.3g} | {int((gaps < -TOLERANCE).sum())}/{len(gaps)} | "
            + " | ".join(f"{f}/{t}" for f, t in fail_n.values())
            + f" | {cell_fails}/{len(cell_gaps)}"
            + f" | {np.mean(train):.3f} | {np.mean(secs):.2f} |"
        )
    # Per problem and n: mean over seeds.
    shown = [
        MLP,
        "gn:default",
        "gn:es0.1",
        "gn:es0.2",
        "gn:alpha10",
        "gn:alpha100",
        "gn:es0.2+alpha10",
        "st:default",
        "st:es0.1",
        "st:es0.2",
        "st:alpha10",
        "st:alpha100",
        "st:es0.2+alpha10",
        "gn:seeds5",
        "st:seeds5",
    ]
    shown = [method for method in shown if method in methods]
    lines += [
        "\n### Per problem and n: RidgeCV's test R², the others' gap to it "
        "(mean over seeds; worst seed in brackets)\n",
        "| problem | n | RidgeCV | " + " | ".join(shown) + " |",
        "| --- | ---: | ---: |" + " ---: |" * len(shown),
    ]
    keys = sorted(
        {(p, n) for p, n, _ in cases}, key=lambda k: (list(POOLS).index(k[0]), k[1])
    )
    for problem, n in keys:
        seeds = [s for p, m, s in cases if (p, m) == (problem, n)]
        ridge = [by[(problem, n, s, RIDGE)]["r2"] for s in seeds]
        cells = []
        for method in shown:
            gaps = [
                max(by[(problem, n, s, method)]["r2"], -1.0)
                - by[(problem, n, s, RIDGE)]["r2"]
                for s in seeds
                if (problem, n, s, method) in by
            ]
            cells.append(f"{np.mean(gaps):+.3f} ({min(gaps):+.2f})" if gaps else "")
        lines.append(
            f"| {problem} | {n} | {np.mean(ridge):.3f} | " + " | ".join(cells) + " |"
        )
    print("\n".join(lines))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--problems", nargs="+", help="a subset of POOLS")
    parser.add_argument(
        "--methods", nargs="+", choices=[MLP, *CANDIDATES], help="only these"
    )
    parser.add_argument("--report", action="store_true")
    args = parser.parse_args()
    if args.report:
        report(args.out)
    else:
        run(args.out, args.problems, args.methods)


if __name__ == "__main__":
    main()
