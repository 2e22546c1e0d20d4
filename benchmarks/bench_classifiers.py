"""Benchmark SlimTrainClassifier and GNvproClassifier against MLPClassifier and skorch.

Run from the repository root (needs the ``bench`` extra: skorch)::

    .venv/bin/python benchmarks/bench_classifiers.py > benchmarks/classifier_results.md

One process, fixed stratified splits, one torch thread and one BLAS thread for
every method. The Adam peers are tuned on the test set (the best of three
learning rates), which favours them. Peers use a (64, 64) tanh network, as
SlimTrainClassifier; GNvproClassifier its default (16, 16), and lbfgs runs on
both.
"""

import time

import numpy as np
import torch
from bench_slimtrain import (  # the same (64, 64) tanh network
    _MLP,
    HIDDEN,
    benchmark_conditions,
    warm_up,
)
from problems import split_and_scale
from sklearn.datasets import load_breast_cancer, load_digits, make_classification
from sklearn.metrics import accuracy_score, log_loss
from sklearn.neural_network import MLPClassifier
from skorch import NeuralNetClassifier
from skorch.callbacks import EarlyStopping
from skorch.dataset import ValidSplit
from torch import nn

from sk_slim import GNvproClassifier, SlimTrainClassifier
from sk_slim.datasets import make_peaks

PEER_LRS = (1e-3, 1e-2, 1e-1)
SENSITIVITY_LRS = (1e-4, 1e-3, 1e-2, 1e-1)
LADDER = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)


def load_problems():
    """``{name: (X_train, X_test, y_train, y_test)}``, X standardized."""
    raw = {
        "digits": load_digits(return_X_y=True),
        "breast_cancer": load_breast_cancer(return_X_y=True),
        "peaks5": make_peaks(n_samples=3000, noise=0.05, n_classes=5, random_state=0),
        "classification4": make_classification(
            n_samples=3000,
            n_features=20,
            n_informative=10,
            n_classes=4,
            random_state=0,
        ),
    }
    return {name: split_and_scale(X, y, stratify=True) for name, (X, y) in raw.items()}


class _SkorchAdapter:
    """float32 inputs and int64 class indices for skorch; labels back."""

    def __init__(self, n_in, n_classes, lr):
        torch.manual_seed(0)  # skorch initializes the output layer globally
        self.net = NeuralNetClassifier(
            _MLP,
            module__n_in=n_in,
            module__n_out=n_classes,
            criterion=nn.CrossEntropyLoss,
            optimizer=torch.optim.Adam,
            lr=lr,
            max_epochs=200,
            batch_size=200,
            callbacks=[EarlyStopping(patience=10)],
            train_split=ValidSplit(0.2, random_state=0),
            verbose=0,
        )

    def fit(self, X, y):
        self.classes_, indices = np.unique(y, return_inverse=True)
        self.net.fit(X.astype(np.float32), indices.astype(np.int64))
        return self

    def predict_proba(self, X):
        logits = self.net.forward(X.astype(np.float32)).numpy().astype(np.float64)
        logits -= logits.max(axis=1, keepdims=True)
        proba = np.exp(logits)
        return proba / proba.sum(axis=1, keepdims=True)

    @property
    def n_iter_(self):
        return len(self.net.history)


def mlp(lr=1e-3, hidden=HIDDEN, **params):
    return MLPClassifier(
        hidden_layer_sizes=hidden,
        activation="tanh",
        learning_rate_init=lr,
        random_state=0,
        **{"max_iter": 200, **params},
    )


def evaluate(model, X_train, X_test, y_train, y_test):
    """(accuracy, log-loss, fit seconds, epochs or iterations)."""
    start = time.perf_counter()
    model.fit(X_train, y_train)
    seconds = time.perf_counter() - start
    proba = np.clip(model.predict_proba(X_test), 1e-15, 1)
    classes = model.classes_
    accuracy = accuracy_score(y_test, classes[proba.argmax(axis=1)])
    loss = log_loss(y_test, proba, labels=classes)
    return accuracy, loss, seconds, model.n_iter_


def compare_one(X_train, X_test, y_train, y_test):
    data = (X_train, X_test, y_train, y_test)
    n_in, n_classes = X_train.shape[1], len(np.unique(y_train))
    rows = {
        "GNvproClassifier (defaults)": evaluate(
            GNvproClassifier(random_state=0), *data
        ),
        "SlimTrainClassifier (defaults)": evaluate(
            SlimTrainClassifier(random_state=0), *data
        ),
    }
    for hidden in (HIDDEN, (16, 16)):
        rows[f"MLPClassifier lbfgs {hidden}"] = evaluate(
            mlp(solver="lbfgs", hidden=hidden, max_iter=500), *data
        )
    peers = {
        "MLPClassifier adam": lambda lr: mlp(lr, early_stopping=True),
        "skorch Adam + EarlyStopping": lambda lr: _SkorchAdapter(n_in, n_classes, lr),
    }
    for label, make in peers.items():
        best = None
        for lr in PEER_LRS:
            entry = (*evaluate(make(lr), *data), lr)
            best = entry if best is None or entry[0] > best[0] else best
        rows[f"{label} (lr {best[-1]:g})"] = best[:-1]
    return rows


def time_to_target(data, target_accuracy):
    """GNvproClassifier's first iteration budget that reaches the target."""
    for max_iter in LADDER:
        accuracy, loss, seconds, n_iter = evaluate(
            GNvproClassifier(random_state=0, max_iter=max_iter), *data
        )
        if accuracy >= target_accuracy:
            return max_iter, seconds, n_iter
    return None


def sensitivity(problems):
    """Test accuracy over learning rates with default stopping."""
    table = {}
    for name, data in problems.items():
        for lr in SENSITIVITY_LRS:
            models = {
                "SlimTrainClassifier": SlimTrainClassifier(
                    learning_rate_init=lr, random_state=0
                ),
                "MLPClassifier adam": mlp(lr, early_stopping=True),
            }
            for method, model in models.items():
                table[(name, method, lr)] = evaluate(model, *data)[0]
    return table


def main():
    problems = load_problems()
    with benchmark_conditions():
        X, _, y, _ = problems["digits"]
        warm_up(
            [
                GNvproClassifier(max_iter=2, random_state=0),
                SlimTrainClassifier(max_iter=2, random_state=0),
                _SkorchAdapter(X.shape[1], len(np.unique(y)), 1e-2),
            ],
            X,
            y,
        )
        rows = {name: compare_one(*data) for name, data in problems.items()}
        reach = {}
        for name, data in problems.items():
            # The peers: everything but our two estimators.
            peers = {k: v for k, v in rows[name].items() if "(defaults)" not in k}
            best_label = max(peers, key=lambda k: peers[k][0])
            reach[name] = (
                best_label,
                peers[best_label],
                time_to_target(data, peers[best_label][0]),
            )
        table = sensitivity(problems)

    print("## Test accuracy, log-loss, fit seconds, epochs (iterations)\n")
    print("| problem | method | accuracy | log-loss | seconds | epochs |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for name, results in rows.items():
        for method, (accuracy, loss, seconds, epochs) in results.items():
            print(
                f"| {name} | {method} | {accuracy:.4f} | {loss:.4f} | "
                f"{seconds:.2f} | {epochs} |"
            )

    print("\n## Time for GNvproClassifier to reach the best peer's test accuracy\n")
    print(
        "| problem | best peer | target accuracy | peer seconds | GNvpro max_iter "
        "| GNvpro seconds | ratio |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for name, (label, peer, hit) in reach.items():
        if hit is None:
            print(
                f"| {name} | {label} | {peer[0]:.4f} | {peer[2]:.2f} | "
                f"not reached in {LADDER[-1]} | — | — |"
            )
        else:
            print(
                f"| {name} | {label} | {peer[0]:.4f} | {peer[2]:.2f} | {hit[0]} "
                f"| {hit[1]:.2f} | {hit[1] / peer[2]:.2f} |"
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
