"""Variants of one estimator's parameters on the suite's tune half: where a default
is chosen (``problems.py``: never on the report half).

Run from the repository root (needs the ``bench`` extra)::

    .venv/bin/python benchmarks/tune_variants.py GNvproRegressor \\
        '{"defaults": {}, "w32": {"hidden_layer_sizes": [32, 32]}}' \\
        --out benchmarks/tune_records/gnvpro_width.jsonl
    .venv/bin/python benchmarks/tune_variants.py --show \\
        benchmarks/tune_records/gnvpro_width.jsonl

Every variant is the estimator with ``random_state=0`` (unless the variant sets it)
and the variant's parameters, fitted on each tune-half problem of its task under
``benchmark_conditions()``; one
JSON line per (problem, variant) with the test score (R² or accuracy) and the fit
seconds, written as it is done (a rerun skips the pairs already in the file).
``--show`` prints them as a table: score (seconds, iterations).

A variant's ``"constants"`` entry sets module constants for its fits, for
defaults that are not parameters, e.g.
``'{"every3": {"constants": {"sk_slim.training.gnvpro._PRECONDITIONER_EVERY": 3}}}'``.
"""

import argparse
import contextlib
import importlib
import json
import time
import warnings
from collections import defaultdict
from pathlib import Path

import problems as registry
from _common import benchmark_conditions
from sklearn.exceptions import ConvergenceWarning

import sk_slim


def run(estimator_name, variants, out, only=None):
    estimator = getattr(sk_slim, estimator_name)
    task = "regression" if estimator_name.endswith("Regressor") else "classification"
    done = set()
    if out.exists():
        done = {(r["problem"], r["variant"]) for r in map(json.loads, out.open())}
    with benchmark_conditions():
        for problem in registry.problems(task=task, half="tune"):
            if only and problem.name not in only:
                continue
            split = None
            for name, params in variants.items():
                if (problem.name, name) in done:
                    continue
                split = split or problem.load()
                fit_params = {k: v for k, v in params.items() if k != "constants"}
                with constants_set(params.get("constants", {})):
                    record = fit_one(estimator, fit_params, split)
                record.update(problem=problem.name, variant=name, params=params)
                with out.open("a") as file:
                    file.write(json.dumps(record) + "\n")
                print(record, flush=True)


@contextlib.contextmanager
def constants_set(constants):
    """Set ``{"package.module.NAME": value}`` for the block, then restore them."""
    saved = []
    try:
        for path, value in constants.items():
            module_name, name = path.rsplit(".", 1)
            module = importlib.import_module(module_name)
            saved.append((module, name, getattr(module, name)))
            setattr(module, name, value)
        yield
    finally:
        for module, name, value in reversed(saved):
            setattr(module, name, value)


def fit_one(estimator, params, split):
    X_train, X_test, y_train, y_test = split
    model = estimator(**{"random_state": 0, **params})  # a variant may set the seed
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X_train, y_train)
    seconds = time.perf_counter() - start
    return {
        "score": float(model.score(X_test, y_test)),
        "seconds": seconds,
        "n_iter": model.n_iter_,
    }


def show(path):
    table, variants = defaultdict(dict), []
    for record in map(json.loads, Path(path).open()):
        table[record["problem"]][record["variant"]] = record
        if record["variant"] not in variants:
            variants.append(record["variant"])
    print("| problem | " + " | ".join(variants) + " |")
    print("| --- | " + " | ".join("---:" for _ in variants) + " |")
    for problem, cells in table.items():
        shown = [
            f"{c['score']:.4f} ({c['seconds']:.2f} s, {c['n_iter']})" if c else ""
            for c in (cells.get(v) for v in variants)
        ]
        print(f"| {problem} | " + " | ".join(shown) + " |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("estimator", nargs="?")
    parser.add_argument("variants", nargs="?", help="JSON: {name: parameters}")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--show", metavar="RECORDS")
    parser.add_argument("--problems", nargs="+", help="only these tune problems")
    args = parser.parse_args()
    if args.show:
        show(args.show)
    else:
        run(args.estimator, json.loads(args.variants), args.out, args.problems)


if __name__ == "__main__":
    main()
