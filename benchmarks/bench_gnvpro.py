"""Benchmark GNvproRegressor against full-batch and mini-batch peers.

Run from the repository root (needs the ``bench`` extra: skorch)::

    .venv/bin/python benchmarks/bench_gnvpro.py > benchmarks/gnvpro_results.md

Same problems, peers and threads as ``bench_slimtrain.py`` (``_common.py``). The
peers use the (64, 64) tanh network; GNvpro its default (16, 16), and lbfgs runs on
both. Work units count passes over the training data (a forward, a backward, or a
forward-mode pass), as the GNvpro paper does; for ``MLPRegressor(lbfgs)`` the
count is a lower bound, ``2 n_iter_`` (line searches add more).
"""

from dataclasses import dataclass

import numpy as np
from _common import (
    REPEATS,
    Reach,
    RegressionResult,
    SkorchRegressor,
    benchmark_conditions,
    evaluate_regressor,
    load_regression_problems,
    mlp_regressor,
    r2,
    regression_peers,
    slimtrain_regressor,
    time_to_target,
    timed_fit,
    tune,
    warm_up,
)
from sklearn.kernel_approximation import RBFSampler
from sklearn.linear_model import RidgeCV
from sklearn.pipeline import make_pipeline

from sk_slim import GNvproRegressor

MAX_ITER = 64  # the longest run to the target
# Time to target with the defaults, and without the alpha_init path, as the
# docstring advises for short runs (the path needs ~40 iterations to come down).
VARIANTS = {"defaults": {}, "alpha_init=None": {"alpha_init": None}}


def gnvpro(**params):
    return GNvproRegressor(random_state=0, **params)  # default network: (16, 16)


def random_features(n_in):
    gamma = 1.0 / n_in  # inputs are standardized
    return make_pipeline(
        RBFSampler(gamma=gamma, n_components=1000, random_state=0),
        RidgeCV(alphas=np.logspace(-6, 3, 19)),
    )


@dataclass(frozen=True)
class Comparison:
    """One problem: every method's fit, the stronger lbfgs fit (the target), and
    when GNvpro reaches its test R² for each of :data:`VARIANTS`."""

    results: dict[str, RegressionResult]
    target: RegressionResult
    reach: dict[str, Reach | None]


def compare_one(split):
    results = {"GNvproRegressor (defaults)": evaluate_regressor(gnvpro(), split)}
    for hidden in ((64, 64), (16, 16)):  # also on GNvpro's own network
        results[f"MLPRegressor lbfgs {hidden}"] = evaluate_regressor(
            mlp_regressor(solver="lbfgs", max_iter=500, hidden=hidden), split
        )
    tuned = tune(regression_peers(split), split, evaluate_regressor)
    results.update({peer.label: peer.result for peer in tuned})
    features = random_features(split.X_train.shape[1])
    seconds = timed_fit(features, split.X_train, split.y_train)
    results["random Fourier features + RidgeCV"] = RegressionResult(
        r2(features, split.X_test, split.y_test), seconds, n_iter=0, passes=1
    )
    results["SlimTrainRegressor (defaults)"] = evaluate_regressor(
        slimtrain_regressor(), split
    )
    # The stronger of the two lbfgs networks is the target.
    target = max(
        (result for label, result in results.items() if "lbfgs" in label),
        key=lambda result: result.r2,
    )
    reach = {
        label: time_to_target(gnvpro(**params), split, target.r2, r2, MAX_ITER)
        for label, params in VARIANTS.items()
    }
    return Comparison(results, target, reach)


def main():
    problems = load_regression_problems()
    with benchmark_conditions():
        X, _, y, _ = problems["cdr"]
        skorch = SkorchRegressor(X.shape[1], y.shape[1], max_epochs=2)
        warm_up([gnvpro(max_iter=2), slimtrain_regressor(max_iter=2), skorch], X, y)
        comparisons = {name: compare_one(split) for name, split in problems.items()}

    print("## Test R², fit seconds, iterations or epochs, passes over the data\n")
    print("| problem | method | test R² | seconds | iterations | passes |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for name, comparison in comparisons.items():
        best = max(result.r2 for result in comparison.results.values())
        for method, result in comparison.results.items():
            mark = " **best**" if result.r2 == best else ""
            print(
                f"| {name} | {method}{mark} | {result.r2:.4f} | "
                f"{result.seconds:.2f} | {result.n_iter} | {result.passes:.0f} |"
            )

    print(
        "\n## GNvpro to lbfgs's test R²: the first iteration that reaches it "
        f"(of {MAX_ITER}; median seconds of {REPEATS} runs of a fit stopped there)\n"
    )
    print(
        "| problem | GNvpro | lbfgs R² | lbfgs s | lbfgs passes (≥) | GNvpro its "
        "| GNvpro s | time ratio | GNvpro passes | passes ratio |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, comparison in comparisons.items():
        target = comparison.target
        for label, reach in comparison.reach.items():
            head = (
                f"| {name} | {label} | {target.r2:.4f} | {target.seconds:.2f} | "
                f"{target.passes:.0f} |"
            )
            if reach is None:
                print(f"{head} not in {MAX_ITER} | — | — | — | — |")
                continue
            print(
                f"{head} {reach.iterations} | {reach.seconds:.2f} | "
                f"{reach.seconds / target.seconds:.2f} | {reach.passes:.0f} | "
                f"{reach.passes / target.passes:.2f} |"
            )

    print("\n## Default GNvpro against the best peer\n")
    print("| problem | GNvpro R² | best peer | best peer R² | gap |")
    print("| --- | ---: | --- | ---: | ---: |")
    for name, comparison in comparisons.items():
        results = comparison.results
        gn = results["GNvproRegressor (defaults)"].r2
        peer, score = max(
            ((m, r.r2) for m, r in results.items() if not m.startswith("GNvpro")),
            key=lambda item: item[1],
        )
        print(f"| {name} | {gn:.4f} | {peer} | {score:.4f} | {gn - score:+.4f} |")


if __name__ == "__main__":
    main()
