"""Benchmark SlimTrainRegressor against MLPRegressor and a skorch Adam net.

Run from the repository root (needs the ``bench`` extra: skorch)::

    .venv/bin/python benchmarks/bench_slimtrain.py > benchmarks/slimtrain_results.md

Everything runs in one process on the same fixed splits (``problems.py``), with
one torch thread and one BLAS thread for every method. Peers are tuned on the
test set (the best of three learning rates), which favours them.
"""

import contextlib
import time
import warnings
from functools import partial

import numpy as np
import torch
from problems import load_problems
from sklearn.compose import TransformedTargetRegressor
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import r2_score
from sklearn.neural_network import MLPRegressor
from sklearn.preprocessing import StandardScaler
from skorch import NeuralNetRegressor
from skorch.callbacks import EarlyStopping
from skorch.dataset import ValidSplit
from threadpoolctl import threadpool_limits
from torch import nn

from sk_slim import SlimTrainRegressor
from sk_slim.linalg import SlimTik
from sk_slim.networks import SeparableNet, make_mlp
from sk_slim.training import half_mse, slimtrain_epoch

HIDDEN = (64, 64)
PEER_LRS = (1e-3, 1e-2, 1e-1)
SENSITIVITY_LRS = (1e-4, 1e-3, 1e-2, 1e-1)
SENSITIVITY_EPOCHS = 20
LADDER = (1, 2, 4, 8, 16, 32, 64, 128)


class _MLP(nn.Module):
    """The same (64, 64) tanh MLP plus a linear output layer, for skorch."""

    def __init__(self, n_in, n_out):
        super().__init__()
        self.body = make_mlp(
            n_in, HIDDEN, "tanh", generator=torch.Generator().manual_seed(0)
        )
        self.out = nn.Linear(HIDDEN[-1], n_out)

    def forward(self, x):
        return self.out(self.body(x))


def slim(lr=1e-2, **params):
    return SlimTrainRegressor(HIDDEN, learning_rate_init=lr, random_state=0, **params)


def mlp(lr=1e-3, hidden=HIDDEN, **params):
    params = {"max_iter": 200, **params}
    model = MLPRegressor(
        hidden_layer_sizes=hidden,
        activation="tanh",
        learning_rate_init=lr,
        random_state=0,
        **params,
    )
    return TransformedTargetRegressor(model, transformer=StandardScaler())


def skorch_net(n_in, n_out, lr=1e-2, max_epochs=200, early_stopping=True):
    """skorch's Adam net on the same MLP; EarlyStopping on a 20% split if asked."""
    torch.manual_seed(0)  # skorch initializes the output layer from the global RNG
    net = NeuralNetRegressor(
        _MLP,
        module__n_in=n_in,
        module__n_out=n_out,
        optimizer=torch.optim.Adam,
        lr=lr,
        max_epochs=max_epochs,
        batch_size=200,
        callbacks=[EarlyStopping(patience=10)] if early_stopping else [],
        train_split=ValidSplit(0.2, random_state=0) if early_stopping else None,
        verbose=0,
    )
    return _SkorchAdapter(net)


class _SkorchAdapter:
    """float32 inputs and standardized 2-D targets for skorch; y's shape back."""

    def __init__(self, net):
        self.net = net

    def fit(self, X, y):
        self._1d = y.ndim == 1
        y2d = y.reshape(len(y), -1)
        self.scaler = StandardScaler().fit(y2d)
        self.net.fit(
            X.astype(np.float32), self.scaler.transform(y2d).astype(np.float32)
        )
        return self

    def predict(self, X):
        out = self.scaler.inverse_transform(self.net.predict(X.astype(np.float32)))
        return out.ravel() if self._1d else out

    @property
    def n_epochs(self):
        return len(self.net.history)


def r2(model, X, y):
    return r2_score(y, model.predict(X))


@contextlib.contextmanager
def benchmark_conditions():
    """What every benchmark runs under: one torch and one BLAS thread, and no
    convergence or user warnings (stopped-early fits are expected here)."""
    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    warnings.filterwarnings("ignore", category=UserWarning)
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield


def warm_up(models, X, y, n_rows=200):
    """Fit each model once on a few rows, untimed.

    torch's one-time set-up (lazy imports, the first ``torch.func`` and autograd
    calls: 1-2 s here) would otherwise be charged to whichever timed fit runs first.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for model in models:
            model.fit(X[:n_rows], y[:n_rows])


def timed_fit(model, X, y):
    start = time.perf_counter()
    model.fit(X, y)
    return time.perf_counter() - start


def epochs_of(model):
    if isinstance(model, _SkorchAdapter):
        return model.n_epochs
    if isinstance(model, TransformedTargetRegressor):
        return model.regressor_.n_iter_
    return model.n_iter_


def tuned_peers(X_train, X_test, y_train, y_test):
    """The Adam peers at their best learning rate (on the test set).

    Returns ``{label: (test R^2, seconds, epochs)}``.
    """
    n_out = 1 if y_train.ndim == 1 else y_train.shape[1]
    peers = {
        "MLPRegressor adam": mlp,
        "skorch Adam + EarlyStopping": partial(skorch_net, X_train.shape[1], n_out),
    }
    results = {}
    for label, make in peers.items():
        best = None
        for lr in PEER_LRS:
            peer = make(lr)
            seconds = timed_fit(peer, X_train, y_train)
            entry = (r2(peer, X_test, y_test), seconds, epochs_of(peer), lr)
            best = entry if best is None or entry[0] > best[0] else best
        results[f"{label} (lr {best[3]:g})"] = best[:3]
    return results


def compare(problems):
    """Default slimTrain vs tuned peers: R^2, seconds, epochs, time to target."""
    return [(name, *_compare_one(*data)) for name, data in problems.items()]


def _compare_one(X_train, X_test, y_train, y_test):
    results = {}
    model = slim()
    seconds = timed_fit(model, X_train, y_train)
    results["SlimTrainRegressor (defaults)"] = (
        r2(model, X_test, y_test),
        seconds,
        epochs_of(model),
    )
    for label, entry in tuned_peers(X_train, X_test, y_train, y_test).items():
        results[label] = entry[:3]
    lbfgs = mlp(solver="lbfgs", max_iter=500)
    seconds = timed_fit(lbfgs, X_train, y_train)
    results["MLPRegressor lbfgs"] = (
        r2(lbfgs, X_test, y_test),
        seconds,
        epochs_of(lbfgs),
    )
    # Time for slimTrain to reach the tuned adam MLP's test R^2: the fastest of a
    # ladder of real fits (max_iter = 1, 2, 4, ...; no early stopping).
    adam_key = next(k for k in results if k.startswith("MLPRegressor adam"))
    target_r2, target_seconds = results[adam_key][:2]
    reach = None
    for max_iter in LADDER:
        model = slim(max_iter=max_iter, early_stopping=False)
        seconds = timed_fit(model, X_train, y_train)
        if r2(model, X_test, y_test) >= target_r2:
            reach = (max_iter, seconds)
            break
    return results, target_r2, target_seconds, reach


def sensitivity(problems):
    """Test R^2 after at most SENSITIVITY_EPOCHS epochs for each learning rate.

    Each method keeps its own default stopping rule (slimTrain: early stopping
    from 200 samples; MLPRegressor: training-loss plateau; skorch: none).
    """
    table = {}
    for name, (X_train, X_test, y_train, y_test) in problems.items():
        n_out = 1 if y_train.ndim == 1 else y_train.shape[1]
        for lr in SENSITIVITY_LRS:
            models = {
                "slimTrain": slim(lr, max_iter=SENSITIVITY_EPOCHS),
                "MLP adam": mlp(lr, max_iter=SENSITIVITY_EPOCHS),
                "skorch Adam": skorch_net(
                    X_train.shape[1],
                    n_out,
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


def epoch_cost(problems, repeats=15):
    """Median seconds of one slimTrain epoch and one plain torch Adam epoch."""
    return {
        name: _epoch_cost_one(X_train, y_train, repeats)
        for name, (X_train, _, y_train, _) in problems.items()
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
    slimtik = SlimTik(HIDDEN[-1] + 1, C.shape[1], lower_bound=1e-3, lam_init=1e-3)
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
    for label, epoch in (("slim", slim_epoch), ("adam", adam_epoch)):
        epoch()  # warm-up
        samples = []
        for _ in range(repeats):
            start = time.perf_counter()
            epoch()
            samples.append(time.perf_counter() - start)
        times[label] = float(np.median(samples))
    return times


def main():
    problems = load_problems()
    with benchmark_conditions():
        X, _, y, _ = problems["cdr"]
        warm_up(
            [slim(max_iter=2), skorch_net(X.shape[1], y.shape[1], max_epochs=2)], X, y
        )
        rows = compare(problems)
        table = sensitivity(problems)
        costs = epoch_cost(problems)

    print("## Final test R² (default stopping), fit seconds, epochs\n")
    print("| problem | method | test R² | seconds | epochs |")
    print("| --- | --- | ---: | ---: | ---: |")
    for name, results, *_ in rows:
        for method, (score, seconds, epochs) in results.items():
            print(f"| {name} | {method} | {score:.4f} | {seconds:.2f} | {epochs} |")

    print("\n## Time for slimTrain to reach the tuned adam MLPRegressor's test R²\n")
    print(
        "| problem | target R² | MLP adam seconds | slimTrain epochs "
        "| slimTrain seconds | ratio |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, _, target_r2, target_seconds, reach in rows:
        if reach is None:
            print(
                f"| {name} | {target_r2:.4f} | {target_seconds:.2f} "
                f"| not reached in {LADDER[-1]} | — | — |"
            )
        else:
            print(
                f"| {name} | {target_r2:.4f} | {target_seconds:.2f} | {reach[0]} | "
                f"{reach[1]:.2f} | {reach[1] / target_seconds:.2f} |"
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
    for name, t in costs.items():
        print(
            f"| {name} | {t['slim'] * 1e3:.1f} | {t['adam'] * 1e3:.1f} | "
            f"{t['slim'] / t['adam']:.2f} |"
        )


if __name__ == "__main__":
    main()
