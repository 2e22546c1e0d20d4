"""Samples per second on a CUDA device: slimTrain epochs and GNvpro iterations against
a skorch Adam net and a plain torch loop, and the share of the device's GEMM rate.

Run from the repository root on a machine with CUDA::

    .venv/bin/python benchmarks/bench_gpu.py > benchmarks/gpu_results.md

Without CUDA it says so and exits 0 (``--device cpu`` with small ``--rows`` and
``--width`` runs the same code on the CPU, to check it). Defaults: n = 1e6 rows,
d = 8 inputs, one output, a (512, 512) tanh network, float32, mini-batches of 200 for
slimTrain, skorch and the torch loop (their defaults), all rows for GNvpro. Per epoch
(or iteration): (fit of 3 - fit of 1) / 2, median of 3 pairs, synchronized. The GEMM
rate is that of an (n, w) @ (w, w) product on the device; a network's rate is its
forward and backward GEMM flops (6 n (d w + w w + w) per epoch) over its time. skorch
is optional (the GPU image may lack it): its row is skipped if it cannot be imported.
"""

import argparse
import sys
import time
import warnings

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from torch import nn

from sk_slim import GNvproRegressor, SlimTrainRegressor
from sk_slim.networks import make_mlp

BATCH = 200


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def data(n_rows, n_in, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_rows, n_in)).astype(np.float32)
    return X, np.sin(X).sum(axis=1).astype(np.float32)


def epoch_seconds(make, X, y, device, pairs=3):
    """(fit of 3 epochs - fit of 1) / 2, the median of ``pairs`` pairs: the fixed
    cost of ``fit`` removed, after an untimed fit on a few rows (the first
    call's set-up)."""
    fit_seconds(make(1), X[:1000], y[:1000], device)
    differences = [
        fit_seconds(make(3), X, y, device) - fit_seconds(make(1), X, y, device)
        for _ in range(pairs)
    ]
    return float(np.median(differences)) / 2


def fit_seconds(model, X, y, device):
    synchronize(device)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, y)
    synchronize(device)
    return time.perf_counter() - start


def sk_slim_estimator(cls, width, device, **params):
    def make(n_epochs):
        return cls(
            hidden_layer_sizes=(width, width),
            max_iter=n_epochs,
            tol=0.0,
            early_stopping=False,
            dtype="float32",
            device=str(device),
            random_state=0,
            **params,
        )

    return make


def torch_loop_epoch_seconds(X, y, width, device):
    """One epoch of a plain loop: the same network and a linear head, Adam."""
    generator = torch.Generator().manual_seed(0)
    extractor = make_mlp(X.shape[1], (width, width), generator=generator)
    model = nn.Sequential(extractor, nn.Linear(width, 1)).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    X_t = torch.as_tensor(X, device=device)
    y_t = torch.as_tensor(y, device=device)[:, None]

    def epoch():
        for batch in torch.randperm(len(X_t), device=device).split(BATCH):
            loss = nn.functional.mse_loss(model(X_t[batch]), y_t[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    epoch()  # warm-up
    synchronize(device)
    start = time.perf_counter()
    epoch()
    synchronize(device)
    return time.perf_counter() - start


def skorch_epoch_seconds(X, y, width, device):
    try:
        from skorch import NeuralNetRegressor
    except ImportError:
        return None

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = make_mlp(X.shape[1], (width, width))
            self.head = nn.Linear(width, 1)

        def forward(self, X):
            return self.head(self.body(X))

    def make(n_epochs):
        return NeuralNetRegressor(
            Net,
            max_epochs=n_epochs,
            batch_size=BATCH,
            optimizer=torch.optim.Adam,
            lr=1e-3,
            train_split=None,
            device=str(device),
            verbose=0,
        )

    return epoch_seconds(make, X, y[:, None], device)


def gemm_rate(n_rows, width, device, repeats=10):
    A = torch.randn(n_rows, width, device=device)
    B = torch.randn(width, width, device=device)
    A @ B  # warm-up
    synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        A @ B
    synchronize(device)
    return 2 * n_rows * width * width * repeats / (time.perf_counter() - start)


def parse_arguments():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--rows", type=float, default=1e6)
    parser.add_argument("--width", type=int, default=512)
    return parser.parse_args()


def main():
    args = parse_arguments()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("No CUDA device on this machine: nothing to measure.")
        return 0
    n_rows, width = int(args.rows), args.width
    X, y = data(n_rows, 8)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"# GPU benchmark: {name}, torch {torch.__version__}\n")
    print(f"n = {n_rows:,}, d = 8, ({width}, {width}) tanh, float32.\n")
    flops = 6 * n_rows * (8 * width + width * width + width)
    rate = gemm_rate(n_rows, width, device)
    times = {
        "SlimTrainRegressor epoch": epoch_seconds(
            sk_slim_estimator(SlimTrainRegressor, width, device), X, y, device
        ),
        "GNvproRegressor iteration": epoch_seconds(
            sk_slim_estimator(GNvproRegressor, width, device), X, y, device
        ),
        "skorch Adam epoch": skorch_epoch_seconds(X, y, width, device),
        "torch loop epoch": torch_loop_epoch_seconds(X, y, width, device),
    }
    shape = f"({n_rows}, {width}) @ ({width}, {width})"
    print(f"GEMM rate, {shape}: {rate / 1e12:.2f} TF/s\n")
    print("| method | seconds | samples / s | share of the GEMM rate |")
    print("| --- | ---: | ---: | ---: |")
    for method, seconds in times.items():
        if seconds is None:
            print(f"| {method} | skipped (not importable) | | |")
            continue
        share = flops / seconds / rate if "GNvpro" not in method else float("nan")
        print(f"| {method} | {seconds:.3f} | {n_rows / seconds:,.0f} | {share:.1%} |")
    print(
        "\nGNvpro's iteration is not a forward and backward pass (its Gauss-Newton "
        "products and trial steps), so no share is given for it."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
