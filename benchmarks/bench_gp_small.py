"""GNvproRegressor and SlimTrainRegressor against a Gaussian process at <= 1000
training rows on smooth, noiseless engineering functions (``uqtestfuns``).

Target under test: "With <= 1000 rows: GNvproRegressor within 2x the GP's error
on >= 80% of smooth functions at <= 1/4 of its fit time, and no fit below R² 0.99
where the GP reaches 0.9999 (over 5 draws of the rows)."

- Functions: the ``uqtestfuns`` functions of ``problems.py``, noiseless, inputs
  drawn from each function's ``prob_input`` as ``problems._test_function`` does.
- Rows: for draw ``s`` the training rows come from ``default_rng(s)``; one fixed
  test set of :data:`N_TEST` rows from ``default_rng(TEST_SEED)``; X standardized
  on the training rows (as ``_common.split_and_scale``).
- Methods: sk_slim's defaults with ``random_state=s``; the suite's GP peer
  (``suite.gaussian_process``: constant x Matern 5/2 with one length scale per
  input + white noise, ``normalize_y``), built here from the same parts.
- One record per (function, n, draw, method) appended to
  ``gp_small_results.jsonl`` (records already there are skipped: rerunning
  resumes); ``--report`` prints the tables of ``gp_small_results.md``.

Run (one process, one thread, low priority):

    nice -n 15 .venv/bin/python benchmarks/bench_gp_small.py
    .venv/bin/python benchmarks/bench_gp_small.py --report
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import uqtestfuns
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel
from sklearn.metrics import r2_score
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, str(Path(__file__).parent))
from _common import benchmark_conditions, timed_fit, warm_up  # noqa: E402

from sk_slim import GNvproRegressor, SlimTrainRegressor  # noqa: E402

RESULTS = Path(__file__).with_name("gp_small_results.jsonl")
N_TEST = 2000
TEST_SEED = 12345
# name in problems.py -> (uqtestfuns class, parameters)
FUNCTIONS = {
    "borehole": ("Borehole", {}),
    "piston": ("Piston", {}),
    "ishigami": ("Ishigami", {}),
    "wing_weight": ("WingWeight", {}),
    "otl_circuit_20d": ("OTLCircuit20D", {}),
    "damped_oscillator": ("DampedOscillator", {}),
    "welch_20d": ("Welch20D", {}),
    "sobol_g": ("SobolG", {"input_dimension": 8}),  # kinks: not smooth
}
NOT_SMOOTH = {"sobol_g"}
METHODS = ("GP", "GNvproRegressor", "SlimTrainRegressor")


def sample(name, n, seed):
    cls, params = FUNCTIONS[name]
    function = getattr(uqtestfuns, cls)(**params)
    X = function.prob_input.get_sample(n, rng=np.random.default_rng(seed))
    return X, function(X)


def make(method, n_features, seed):
    if method == "GP":  # suite.gaussian_process
        kernel = (
            ConstantKernel() * Matern(length_scale=np.ones(n_features), nu=2.5)
            + WhiteKernel()
        )
        return GaussianProcessRegressor(
            kernel, normalize_y=True, n_restarts_optimizer=0, random_state=seed
        )
    cls = {"GNvproRegressor": GNvproRegressor, "SlimTrainRegressor": SlimTrainRegressor}
    return cls[method](random_state=seed)


def done_keys():
    if not RESULTS.exists():
        return set()
    keys = set()
    for line in RESULTS.read_text().splitlines():
        r = json.loads(line)
        keys.add((r["function"], r["n_train"], r["draw"], r["method"]))
    return keys


def run(functions, sizes, draws, methods):
    done = done_keys()
    with benchmark_conditions():
        X0, y0 = sample("borehole", 300, 99)
        X0 = StandardScaler().fit_transform(X0)
        warm_up([make(m, X0.shape[1], 0) for m in methods if m != "GP"], X0, y0)
        for name in functions:
            X_test_raw, y_test = sample(name, N_TEST, TEST_SEED)
            for n in sizes:
                for draw in draws:
                    X_raw, y = sample(name, n, draw)
                    scaler = StandardScaler().fit(X_raw)
                    X, X_test = scaler.transform(X_raw), scaler.transform(X_test_raw)
                    for method in methods:
                        if (name, n, draw, method) in done:
                            continue
                        model = make(method, X.shape[1], draw)
                        seconds = timed_fit(model, X, y)
                        r2 = float(r2_score(y_test, model.predict(X_test)))
                        record = {
                            "function": name,
                            "n_train": n,
                            "draw": draw,
                            "method": method,
                            "r2": r2,
                            "error": 1.0 - r2,
                            "seconds": seconds,
                        }
                        print(json.dumps(record), flush=True)
                        with RESULTS.open("a") as f:
                            f.write(json.dumps(record) + "\n")


def report():
    records = [json.loads(line) for line in RESULTS.read_text().splitlines()]
    by = {(r["function"], r["n_train"], r["draw"], r["method"]): r for r in records}
    cells = sorted({(r["function"], r["n_train"]) for r in records})
    order = list(FUNCTIONS)
    cells.sort(key=lambda c: (order.index(c[0]), c[1]))
    print(
        "| function | n | draws | GP 1−R² | GNvpro 1−R² | SlimTrain 1−R² "
        "| GNvpro/GP error | SlimTrain/GP error | GP s | GNvpro/GP time "
        "| SlimTrain/GP time | GNvpro min R² | GNvpro ≤2× at ≤¼ time (draws) |"
    )
    print("|" + "---|" * 13)
    hits = total = gp_high = 0
    bad = []
    for name, n in cells:
        draws = sorted(
            d
            for (f, m, d, meth) in by
            if f == name
            and m == n
            and meth == "GP"
            and all((f, m, d, x) in by for x in METHODS)
        )
        if not draws:
            continue

        def med(method, key, draws=draws, name=name, n=n):
            return float(np.median([by[name, n, d, method][key] for d in draws]))

        def ratio(method, key, draws=draws, name=name, n=n):
            return float(
                np.median(
                    [
                        by[name, n, d, method][key] / by[name, n, d, "GP"][key]
                        for d in draws
                    ]
                )
            )

        e_g = ratio("GNvproRegressor", "error")
        e_s = ratio("SlimTrainRegressor", "error")
        t_g = ratio("GNvproRegressor", "seconds")
        t_s = ratio("SlimTrainRegressor", "seconds")
        hit = e_g <= 2 and t_g <= 0.25
        draw_hits = sum(
            by[name, n, d, "GNvproRegressor"]["error"]
            <= 2 * by[name, n, d, "GP"]["error"]
            and by[name, n, d, "GNvproRegressor"]["seconds"]
            <= 0.25 * by[name, n, d, "GP"]["seconds"]
            for d in draws
        )
        min_r2 = min(by[name, n, d, "GNvproRegressor"]["r2"] for d in draws)
        smooth = name not in NOT_SMOOTH
        if smooth:
            hits += hit
            total += 1
        print(
            f"| {name}{'' if smooth else ' (kinks)'} | {n} | {len(draws)} "
            f"| {med('GP', 'error'):.2e} | {med('GNvproRegressor', 'error'):.2e} "
            f"| {med('SlimTrainRegressor', 'error'):.2e} | {e_g:.2f} | {e_s:.2f} "
            f"| {med('GP', 'seconds'):.1f} | {t_g:.2f} | {t_s:.2f} "
            f"| {min_r2:.5f} | {'yes' if hit else 'no'} ({draw_hits}/{len(draws)}) |"
        )
        for d in draws:
            if by[name, n, d, "GP"]["r2"] >= 0.9999:
                gp_high += 1
                for method in METHODS[1:]:
                    if by[name, n, d, method]["r2"] < 0.99:
                        bad.append((name, n, d, method, by[name, n, d, method]["r2"]))
    print()
    print(f"GNvpro within 2x the GP's error at <= 1/4 of its time: {hits}/{total}")
    print(
        f"fits below R² 0.99 where the GP reached >= 0.9999 ({gp_high} draws): "
        f"{len(bad)}"
    )
    for item in bad:
        print("  ", item)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--report", action="store_true")
    parser.add_argument("--functions", nargs="+", default=list(FUNCTIONS))
    parser.add_argument("--sizes", nargs="+", type=int, default=[250, 1000])
    parser.add_argument("--draws", type=int, default=5)
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    args = parser.parse_args()
    if args.report:
        report()
    else:
        run(args.functions, args.sizes, range(args.draws), args.methods)


if __name__ == "__main__":
    main()
