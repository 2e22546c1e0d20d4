"""Benchmark SlimTrainClassifier and GNvproClassifier against MLPClassifier and skorch.

Run from the repository root (needs the ``bench`` extra: skorch)::

    .venv/bin/python benchmarks/bench_classifiers.py > benchmarks/classifier_results.md

One process, fixed stratified splits (``_common.py``), one torch thread and one
BLAS thread for every method. The Adam peers are tuned on the test set (the best
of three learning rates), which favours them. Peers use a (64, 64) tanh network, as
SlimTrainClassifier; GNvproClassifier its default (16, 16), and lbfgs runs on
both.
"""

from dataclasses import dataclass

import numpy as np
from _common import (
    HIDDEN,
    REPEATS,
    ClassificationResult,
    Reach,
    SkorchClassifier,
    accuracy,
    benchmark_conditions,
    classification_peers,
    evaluate_classifier,
    load_classification_problems,
    mlp_classifier,
    time_to_target,
    tune,
    warm_up,
)

from sk_slim import GNvproClassifier, SlimTrainClassifier

SENSITIVITY_LRS = (1e-4, 1e-3, 1e-2, 1e-1)
MAX_ITER = 64  # the longest run to the target


@dataclass(frozen=True)
class Comparison:
    """One problem: every method's fit, the best peer (the target), and when
    GNvproClassifier reaches its test accuracy (None: not within MAX_ITER)."""

    results: dict[str, ClassificationResult]
    best_peer: str
    reach: Reach | None

    @property
    def target(self):
        return self.results[self.best_peer]


def compare_one(split):
    results = {
        "GNvproClassifier (defaults)": evaluate_classifier(
            GNvproClassifier(random_state=0), split
        ),
        "SlimTrainClassifier (defaults)": evaluate_classifier(
            SlimTrainClassifier(random_state=0), split
        ),
    }
    for hidden in (HIDDEN, (16, 16)):
        results[f"MLPClassifier lbfgs {hidden}"] = evaluate_classifier(
            mlp_classifier(solver="lbfgs", hidden=hidden, max_iter=500), split
        )
    tuned = tune(classification_peers(split), split, evaluate_classifier)
    results.update({peer.label: peer.result for peer in tuned})
    return results


def sensitivity(problems):
    """Test accuracy over learning rates with default stopping."""
    table = {}
    for name, split in problems.items():
        for lr in SENSITIVITY_LRS:
            models = {
                "SlimTrainClassifier": SlimTrainClassifier(
                    learning_rate_init=lr, random_state=0
                ),
                "MLPClassifier adam": mlp_classifier(lr, early_stopping=True),
            }
            for method, model in models.items():
                table[(name, method, lr)] = evaluate_classifier(model, split).accuracy
    return table


def main():
    problems = load_classification_problems()
    with benchmark_conditions():
        X, _, y, _ = problems["digits"]
        warm_up(
            [
                GNvproClassifier(max_iter=2, random_state=0),
                SlimTrainClassifier(max_iter=2, random_state=0),
                SkorchClassifier(X.shape[1], len(np.unique(y)), 1e-2),
            ],
            X,
            y,
        )
        results = {name: compare_one(split) for name, split in problems.items()}
        comparisons = {}
        for name, split in problems.items():
            # The peers: everything but our two estimators.
            peers = {k: v for k, v in results[name].items() if "(defaults)" not in k}
            best = max(peers, key=lambda k: peers[k].accuracy)
            reach = time_to_target(
                GNvproClassifier(random_state=0),
                split,
                peers[best].accuracy,
                accuracy,
                MAX_ITER,
            )
            comparisons[name] = Comparison(results[name], best, reach)
        table = sensitivity(problems)

    print("## Test accuracy, log-loss, fit seconds, epochs (iterations)\n")
    print("| problem | method | accuracy | log-loss | seconds | epochs |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for name, comparison in comparisons.items():
        for method, result in comparison.results.items():
            print(
                f"| {name} | {method} | {result.accuracy:.4f} | "
                f"{result.log_loss:.4f} | {result.seconds:.2f} | {result.n_iter} |"
            )

    print(
        "\n## Time for GNvproClassifier to reach the best peer's test accuracy: "
        f"the first iteration that reaches it (of {MAX_ITER}; median seconds of "
        f"{REPEATS} runs of a fit stopped there)\n"
    )
    print(
        "| problem | best peer | target accuracy | peer seconds | GNvpro its "
        "| GNvpro seconds | ratio |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for name, comparison in comparisons.items():
        target, reach = comparison.target, comparison.reach
        head = (
            f"| {name} | {comparison.best_peer} | {target.accuracy:.4f} | "
            f"{target.seconds:.2f} |"
        )
        if reach is None:
            print(f"{head} not reached in {MAX_ITER} | — | — |")
        else:
            print(
                f"{head} {reach.iterations} | {reach.seconds:.2f} | "
                f"{reach.seconds / target.seconds:.2f} |"
            )

    print("\n## Learning-rate sensitivity: test accuracy (default stopping)\n")
    print(
        "| problem | method | "
        + " | ".join(f"lr {lr:g}" for lr in SENSITIVITY_LRS)
        + " | worst / best |"
    )
    print("| --- | --- | " + " | ".join("---:" for _ in SENSITIVITY_LRS) + " | ---: |")
    for name in problems:
        for method in ("SlimTrainClassifier", "MLPClassifier adam"):
            scores = [table[(name, method, lr)] for lr in SENSITIVITY_LRS]
            print(
                f"| {name} | {method} | "
                + " | ".join(f"{s:.4f}" for s in scores)
                + f" | {min(scores) / max(scores):.3f} |"
            )


if __name__ == "__main__":
    main()
