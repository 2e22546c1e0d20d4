"""Benchmark SlimTrainRegressor against MLPRegressor and a skorch Adam net.

Run from the repository root (needs the ``bench`` extra: skorch)::

    .venv/bin/python benchmarks/bench_slimtrain.py > benchmarks/slimtrain_results.md

Everything runs in one process on the same fixed splits (``_common.py``), with
one torch and one BLAS thread for every method. Peers are tuned on the test set
(the best of three learning rates), which favours them.
"""

import time
from dataclasses import dataclass

import numpy as np
import torch
from _common import (
    HIDDEN,
    REPEATS,
    Reach,
    RegressionResult,
    SkorchRegressor,
    benchmark_conditions,
    evaluate_regressor,
    load_regression_problems,
    mlp_regressor,
    n_outputs,
    r2,
    regression_peers,
    slimtrain_regressor,
    time_to_target,
    tune,
    warm_up,
)
from torch import nn

from sk_slim.networks import SeparableNet, make_mlp
from sk_slim.training import half_mse, make_slimtik, slimtrain_epoch

SENSITIVITY_LRS = (1e-4, 1e-3, 1e-2, 1e-1)
SENSITIVITY_EPOCHS = 20
MAX_EPOCHS = 128  # the longest run to the target


@dataclass(frozen=True)
class Comparison:
    """One problem: every method's fit, the tuned adam MLP's (the target), and
    when slimTrain reaches its test R² (None: not within MAX_EPOCHS)."""

    results: dict[str, RegressionResult]
    target: RegressionResult
    reach: Reach | None


def compare(problems):
    """Default slimTrain vs tuned peers: R^2, seconds, epochs, time to target."""
    return {name: _compare_one(split) for name, split in problems.items()}


def _compare_one(split):
    results = {
        "SlimTrainRegressor (defaults)": evaluate_regressor(
            slimtrain_regressor(), split
        )
    }
    tuned = tune(regression_peers(split), split, evaluate_regressor)
    results.update({peer.label: peer.result for peer in tuned})
    results["MLPRegressor lbfgs"] = evaluate_regressor(
        mlp_regressor(solver="lbfgs", max_iter=500), split
    )
    target = next(p for p in tuned if p.method == "MLPRegressor adam").result
    reach = time_to_target(slimtrain_regressor(), split, target.r2, r2, MAX_EPOCHS)
    return Comparison(results, target, reach)


def sensitivity(problems):
    """Test R^2 after at most SENSITIVITY_EPOCHS epochs for each learning rate.

    Each method keeps its own default stopping rule (slimTrain: early stopping
    from 200 samples; MLPRegressor: training-loss plateau; skorch: none).
    """
    table = {}
    for name, (X_train, X_test, y_train, y_test) in problems.items():
        for lr in SENSITIVITY_LRS:
            models = {
                "slimTrain": slimtrain_regressor(lr, max_iter=SENSITIVITY_EPOCHS),
                "MLP adam": mlp_regressor(lr, max_iter=SENSITIVITY_EPOCHS),
                "skorch Adam": SkorchRegressor(
                    X_train.shape[1],
                    n_outputs(y_train),
                    lr,
                    max_epochs=SENSITIVITY_EPOCHS,
                    early_stopping=False,
                ),
            }
            for method, model in models.items():
                model.fit(X_train, y_train)
                score = max(r2(model, X_test, y_test), -1.0)  # clip blow-ups at -1
                table[(name, method, lr)] = score
    return table


@dataclass(frozen=True)
class EpochCost:
    """Median seconds of one epoch."""

    slimtrain: float
    adam: float


def epoch_cost(problems, repeats=15):
    """Median seconds of one slimTrain epoch and one plain torch Adam epoch."""
    return {
        name: _epoch_cost_one(split.X_train, split.y_train, repeats)
        for name, split in problems.items()
    }


def _network(n_in, n_out):
    extractor = make_mlp(
        n_in, HIDDEN, generator=torch.Generator().manual_seed(0), dtype=torch.float64
    )
    return SeparableNet(extractor, HIDDEN[-1], n_out)


def _epoch_cost_one(X_train, y_train, repeats):
    X = torch.as_tensor(X_train)
    C = torch.as_tensor(y_train.reshape(len(y_train), -1))
    generator = torch.Generator().manual_seed(0)
    net = _network(X.shape[1], C.shape[1])
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    slimtik = make_slimtik(
        net.augmented_head.detach(), memory_depth=5, head_alpha="auto"
    )
    plain = _network(X.shape[1], C.shape[1])
    head = nn.Linear(HIDDEN[-1], C.shape[1], dtype=torch.float64)
    plain_optimizer = torch.optim.Adam([*plain.parameters(), *head.parameters()])

    def slim_epoch():
        slimtrain_epoch(
            net, optimizer, slimtik, X, C, batch_size=200, generator=generator
        )

    def adam_epoch():
        for batch in torch.randperm(len(X), generator=generator).split(200):
            loss = half_mse(head(plain.features(X[batch])) - C[batch])
            plain_optimizer.zero_grad(set_to_none=True)
            loss.backward()
            plain_optimizer.step()

    times = {}
    for label, epoch in (("slimtrain", slim_epoch), ("adam", adam_epoch)):
        epoch()  # warm-up
        samples = []
        for _ in range(repeats):
            start = time.perf_counter()
            epoch()
            samples.append(time.perf_counter() - start)
        times[label] = float(np.median(samples))
    return EpochCost(**times)


def main():
    problems = load_regression_problems()
    with benchmark_conditions():
        X, _, y, _ = problems["cdr"]
        warm_up(
            [
                slimtrain_regressor(max_iter=2),
                SkorchRegressor(X.shape[1], y.shape[1], max_epochs=2),
            ],
            X,
            y,
        )
        comparisons = compare(problems)
        table = sensitivity(problems)
        costs = epoch_cost(problems)

    print("## Final test R² (default stopping), fit seconds, epochs\n")
    print("| problem | method | test R² | seconds | epochs |")
    print("| --- | --- | ---: | ---: | ---: |")
    for name, comparison in comparisons.items():
        for method, result in comparison.results.items():
            print(
                f"| {name} | {method} | {result.r2:.4f} | {result.seconds:.2f} | "
                f"{result.n_iter} |"
            )

    print(
        "\n## Time for slimTrain to reach the tuned adam MLPRegressor's test R²: "
        f"the first epoch that reaches it (of {MAX_EPOCHS}; median seconds of "
        f"{REPEATS} runs of a fit stopped there)\n"
    )
    print(
        "| problem | target R² | MLP adam seconds | slimTrain epochs "
        "| slimTrain seconds | ratio |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, comparison in comparisons.items():
        target, reach = comparison.target, comparison.reach
        head = f"| {name} | {target.r2:.4f} | {target.seconds:.2f} |"
        if reach is None:
            print(f"{head} not reached in {MAX_EPOCHS} | — | — |")
        else:
            print(
                f"{head} {reach.iterations} | {reach.seconds:.2f} | "
                f"{reach.seconds / target.seconds:.2f} |"
            )

    print(
        f"\n## Learning-rate sensitivity: test R² after {SENSITIVITY_EPOCHS} epochs "
        "(clipped at -1)\n"
    )
    methods = ("slimTrain", "MLP adam", "skorch Adam")
    print(
        "| problem | method | "
        + " | ".join(f"lr {lr:g}" for lr in SENSITIVITY_LRS)
        + " | spread |"
    )
    print("| --- | --- | " + " | ".join("---:" for _ in SENSITIVITY_LRS) + " | ---: |")
    spreads = {m: [] for m in methods}
    for name in problems:
        for method in methods:
            scores = [table[(name, method, lr)] for lr in SENSITIVITY_LRS]
            spread = max(scores) - min(scores)
            spreads[method].append(spread)
            print(
                f"| {name} | {method} | "
                + " | ".join(f"{s:.3f}" for s in scores)
                + f" | {spread:.3f} |"
            )
    print(
        "\nMean spread (best − worst R² over the learning rates): "
        + ", ".join(f"{m} {np.mean(v):.3f}" for m, v in spreads.items())
    )

    print(
        "\n## Per-epoch cost: slimTrain epoch / plain torch Adam epoch "
        "(same network, batch 200, float64, 1 thread, median of 15)\n"
    )
    print("| problem | slimTrain ms | Adam ms | ratio |")
    print("| --- | ---: | ---: | ---: |")
    for name, cost in costs.items():
        print(
            f"| {name} | {cost.slimtrain * 1e3:.1f} | {cost.adam * 1e3:.1f} | "
            f"{cost.slimtrain / cost.adam:.2f} |"
        )


if __name__ == "__main__":
    main()
