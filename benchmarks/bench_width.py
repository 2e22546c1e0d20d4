"""Width against the number of outputs: which ``hidden_layer_sizes='auto'`` rule
keeps GNvproRegressor and SlimTrainRegressor within MLP lbfgs (64, 64)'s error
from 8 to 100 outputs, and at what fit time.

Problems (regression, several outputs; X standardized on the training part as
the suite does, ``_common.split_and_scale``):

- the tune half's multi-output problems (``problems.py``): regression_5_outputs,
  cdr_8, random_features_40, cdr_72;
- generated for this benchmark, none of them a suite problem (the report half's
  cdr_32 and random_features_100 are not used): noiseless CDR surrogates
  (``sk_slim.datasets.make_cdr_surrogate``, grid 20, seeds 108-172, other
  parameter counts than the suite's) with 8, 16, 32 and 72 sensors, and
  random-feature maps (``problems._random_features``, other seeds and input
  counts) with 64 and 100 outputs; 2000 rows each, 1500 to train.

Methods, each with ``random_state`` = the seed: GNvproRegressor and
SlimTrainRegressor at ``hidden_layer_sizes=(w, w)`` for w in 16, 32, 64, 128 and
the widths the candidate rules (:data:`RULES`) give; the peer is the suite's
``MLPRegressor-lbfgs`` ((64, 64) tanh, ``max_iter=500``, standardized targets:
``_common.mlp_regressor``). Score: test 1 - R² (uniform average over outputs);
fit seconds. One JSON line per fit, appended as it is done (a rerun skips what
the file holds). Everything runs under ``_common.benchmark_conditions()`` after
an untimed warm-up.

Run from the repository root::

    nice -n 10 .venv/bin/python benchmarks/bench_width.py --seeds 0
    .venv/bin/python benchmarks/bench_width.py --report   # markdown tables
"""

import argparse
import json
import time
from functools import partial
from pathlib import Path

import numpy as np
import problems as registry
from _common import benchmark_conditions, mlp_regressor, split_and_scale, warm_up
from problems import _random_features
from sklearn.metrics import r2_score

from sk_slim import GNvproRegressor, SlimTrainRegressor
from sk_slim.datasets import make_cdr_surrogate

HERE = Path(__file__).parent
DEFAULT_OUT = HERE / "width_results.jsonl"
WIDTHS = (16, 32, 64, 128)
ESTIMATORS = {
    "GNvproRegressor": GNvproRegressor,
    "SlimTrainRegressor": SlimTrainRegressor,
}
PEER = "MLP-lbfgs"

# Candidate rules: the width of both hidden layers for c outputs.
RULES = {
    "max(16, c)": lambda c: max(16, c),  # GNvproRegressor's current rule
    "max(32, c)": lambda c: max(32, c),
    "clip(2c, 16, 128)": lambda c: int(np.clip(2 * c, 16, 128)),
    "clip(2c, 32, 128)": lambda c: int(np.clip(2 * c, 32, 128)),
    "max(64, c)": lambda c: max(64, c),  # SlimTrainRegressor's current rule
    "clip(2c, 64, 128)": lambda c: int(np.clip(2 * c, 64, 128)),
    "max(16, c, min(2c, 64))": lambda c: max(16, c, min(2 * c, 64)),
    "clip(4c, 64, 128)": lambda c: int(np.clip(4 * c, 64, 128)),
}
CURRENT = {"GNvproRegressor": "max(16, c)", "SlimTrainRegressor": "max(64, c)"}


def _cdr(n_parameters, n_sensors, seed):
    X, y = make_cdr_surrogate(
        2000, n_parameters, n_sensors, noise=0.0, grid_size=20, random_state=seed
    )
    return split_and_scale(X, y, train_size=1500)


def _features(n_features, n_outputs, seed):
    X, y = _random_features(
        2000, random_state=seed, n_features=n_features, n_outputs=n_outputs
    )
    return split_and_scale(X, y, train_size=1500)


def _tune(name):
    problem = registry.get(name)
    assert problem.half == "tune", name
    return problem.load()


# name -> (loader, source); ordered by the number of outputs.
PROBLEMS = {
    "regression_5_outputs": (partial(_tune, "regression_5_outputs"), "tune half"),
    "cdr_8": (partial(_tune, "cdr_8"), "tune half"),
    "cdr_new_8": (partial(_cdr, 16, 8, 108), "new: 16 par., noiseless"),
    "cdr_new_16": (partial(_cdr, 24, 16, 116), "new: 24 par., noiseless"),
    "cdr_new_32": (partial(_cdr, 40, 32, 132), "new: 40 par., noiseless"),
    "random_features_40": (partial(_tune, "random_features_40"), "tune half"),
    "rf_new_64": (partial(_features, 8, 64, 64), "new: 8 inputs, seed 64"),
    "cdr_72": (partial(_tune, "cdr_72"), "tune half"),
    "cdr_new_72": (partial(_cdr, 48, 72, 172), "new: 48 par., noiseless"),
    "rf_new_100": (partial(_features, 10, 100, 100), "new: 10 inputs, seed 100"),
}


def widths_for(c):
    return sorted({*WIDTHS, *(rule(c) for rule in RULES.values())})


def fit_one(method, width, seed, split, extra=None):
    X_train, X_test, y_train, y_test = split
    if method == PEER:
        model = mlp_regressor(solver="lbfgs", max_iter=500)
        model.set_params(regressor__random_state=seed)
    else:
        model = ESTIMATORS[method.split("+")[0]](
            hidden_layer_sizes=(width, width), random_state=seed, **(extra or {})
        )
    start = time.perf_counter()
    model.fit(X_train, y_train)
    seconds = time.perf_counter() - start
    n_iter = getattr(model, "n_iter_", None)
    if n_iter is None:
        n_iter = model.regressor_.n_iter_
    error = 1.0 - r2_score(y_test, model.predict(X_test))
    return {"error": float(error), "seconds": seconds, "n_iter": int(n_iter)}


def run(seeds, out, only=None, widths=None, extra=None, tag=None):
    """Fit every job not in ``out``; with ``tag``, only the estimators at
    ``widths`` with the ``extra`` parameters, recorded as ``method+tag``."""
    done = set()
    if out.exists():
        done = {
            (r["problem"], r["method"], r["width"], r["seed"])
            for r in map(json.loads, out.open())
        }
    with benchmark_conditions():
        first = PROBLEMS["cdr_8"][0]()
        warm_up(
            [GNvproRegressor(max_iter=3), SlimTrainRegressor(max_iter=3)],
            first.X_train,
            first.y_train,
        )
        for seed in seeds:
            for name, (load, source) in PROBLEMS.items():
                if only and name not in only:
                    continue
                split = load()
                c = split.y_train.shape[1]
                if tag:
                    jobs = [(f"{m}+{tag}", w) for m in ESTIMATORS for w in widths]
                else:
                    jobs = [(PEER, 64)]
                    jobs += [(m, w) for m in ESTIMATORS for w in widths_for(c)]
                for method, width in jobs:
                    if (name, method, width, seed) in done:
                        continue
                    record = fit_one(method, width, seed, split, extra)
                    record.update(
                        problem=name,
                        source=source,
                        n_outputs=c,
                        n_train=len(split.X_train),
                        method=method,
                        width=width,
                        seed=seed,
                    )
                    with out.open("a") as file:
                        file.write(json.dumps(record) + "\n")
                    print(json.dumps(record), flush=True)


# ---------------------------------------------------------------------- report


def _load(path):
    """{(problem, method, width): [records over seeds]} and problem facts."""
    table, facts = {}, {}
    for r in map(json.loads, Path(path).open()):
        table.setdefault((r["problem"], r["method"], r["width"]), []).append(r)
        facts[r["problem"]] = (r["n_outputs"], r["source"])
    return table, facts


def _mean(records, key):
    return float(np.mean([r[key] for r in records]))


def _cell(records, peer_error):
    """Mean error (its ratio to the peer's, mean seconds)."""
    error = _mean(records, "error")
    return f"{error:.2e} ({error / peer_error:.2f}, {_mean(records, 'seconds'):.1f} s)"


def report(path):
    table, facts = _load(path)
    names = [p for p in PROBLEMS if p in facts]
    lines = []
    for method in ESTIMATORS:
        lines.append(f"\n### {method}: test 1 − R² by width (ratio to MLP lbfgs)\n")
        header = "| problem | c | MLP lbfgs (64, 64) | " + " | ".join(
            f"w={w}" for w in (*WIDTHS,)
        )
        lines.append(header + " | other widths |")
        lines.append("| --- | ---: | ---: |" + " ---: |" * len(WIDTHS) + " --- |")
        for name in names:
            c, _ = facts[name]
            peer = table.get((name, PEER, 64))
            if not peer:
                continue
            peer_err = _mean(peer, "error")
            cells = []
            for w in WIDTHS:
                recs = table.get((name, method, w))
                cells.append(_cell(recs, peer_err) if recs else "")
            others = []
            for w in widths_for(c):
                recs = table.get((name, method, w))
                if w in WIDTHS or not recs:
                    continue
                others.append(f"w={w}: {_cell(recs, peer_err)}")
            lines.append(
                f"| {name} | {c} | {peer_err:.2e} ({_mean(peer, 'seconds'):.1f} s) | "
                + " | ".join(cells)
                + " | "
                + "; ".join(others)
                + " |"
            )
        lines.append(f"\n### {method}: rules (error ratio to MLP lbfgs; width)\n")
        rules = list(RULES)
        lines.append("| problem | c | " + " | ".join(rules) + " |")
        lines.append("| --- | ---: |" + " ---: |" * len(rules))
        ratios = {rule: [] for rule in rules}
        seconds = {rule: [] for rule in rules}
        for name in names:
            c, _ = facts[name]
            peer = table.get((name, PEER, 64))
            cells = []
            for rule in rules:
                w = RULES[rule](c)
                recs = table.get((name, method, w))
                if not recs or not peer:
                    cells.append("")
                    continue
                ratio = _mean(recs, "error") / _mean(peer, "error")
                ratios[rule].append(ratio)
                seconds[rule].append(_mean(recs, "seconds"))
                cells.append(f"{ratio:.2f} ({w})")
            lines.append(f"| {name} | {c} | " + " | ".join(cells) + " |")
        current = CURRENT[method]
        summary = []
        for rule in rules:
            r, s = np.array(ratios[rule]), np.array(seconds[rule])
            if len(r) == 0 or len(s) != len(seconds[current]):
                summary.append("")
                continue
            summary.append(
                f"max {r.max():.2f}, geo-mean {np.exp(np.log(r).mean()):.2f}, "
                f"≤ 1.0 on {int((r <= 1.0).sum())}/{len(r)}; "
                f"time ×{s.sum() / np.sum(seconds[current]):.2f} "
                f"({s.sum():.0f} s)"
            )
        lines.append("| **summary** | | " + " | ".join(summary) + " |")
    variants = sorted({key for key in table if "+" in key[1]})
    if variants:
        lines.append(
            "\n### Variants (error ratio to MLP lbfgs; against the plain fit)\n"
        )
        lines.append("| problem | method | width | 1 − R² | ratio | plain ratio | s |")
        lines.append("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
        for name, method, width in variants:
            recs = table[(name, method, width)]
            peer = _mean(table[(name, PEER, 64)], "error")
            plain = table.get((name, method.split("+")[0], width))
            plain_ratio = f"{_mean(plain, 'error') / peer:.2f}" if plain else ""
            lines.append(
                f"| {name} | {method} | {width} | {_mean(recs, 'error'):.2e} | "
                f"{_mean(recs, 'error') / peer:.2f} | {plain_ratio} | "
                f"{_mean(recs, 'seconds'):.1f} |"
            )
    seeds = sorted({r["seed"] for recs in table.values() for r in recs})
    lines.append(
        f"\nSeeds: {seeds} (errors and seconds are means over them; "
        "time × is the summed fit seconds over the problems relative to the "
        f"current rule's: {CURRENT})."
    )
    print("\n".join(lines))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--problems", nargs="+", help="a subset of PROBLEMS")
    parser.add_argument("--report", action="store_true")
    parser.add_argument(
        "--tag", help="run only the estimators with --extra, recorded as method+tag"
    )
    parser.add_argument("--extra", type=json.loads, help="JSON: more parameters")
    parser.add_argument("--widths", type=int, nargs="+", default=list(WIDTHS))
    args = parser.parse_args()
    if args.report:
        report(args.out)
    else:
        run(args.seeds, args.out, args.problems, args.widths, args.extra, args.tag)


if __name__ == "__main__":
    main()
