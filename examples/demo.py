"""Demo: sk_slim against MLPRegressor on a PDE surrogate (``make demo``).

The problem is ``make_cdr_surrogate``: 55 parameters of a convection-diffusion-
reaction PDE in, 72 noisy sensor readings out (2500 samples, 500 held out for the
test). One ``GridSearchCV`` over a pipeline ``StandardScaler -> model``, with the
model as the searched parameter, cross-validates four candidates on the same folds:

- ``SlimTrainRegressor()`` and ``GNvproRegressor()`` with their defaults;
- ``MLPRegressor`` (Adam, same (64, 64) tanh network as slimTrain) with its default
  learning rate 1e-3, and with 1e-2, the best of 1e-3/1e-2/1e-1 on this problem
  (``benchmarks/README.md``). Both stop early on a 10% validation split, as the
  sk_slim estimators do by default, and learn standardized targets.

Each candidate is then refit on all 2000 training rows and scored on the test set.
The script prints the table and writes a PNG: validation R^2 against wall time
during the refit, and the head's ridge weight that sGCV/GCV chose along the way.

Usage: ``python examples/demo.py [--output PATH]`` (needs ``.[demo]``: matplotlib,
and rich for the progress bar). About a minute on two CPU cores.
"""

import argparse
import time
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.callback import ProgressBar
from sklearn.compose import TransformedTargetRegressor
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, KFold, train_test_split
from sklearn.neural_network import MLPRegressor
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from sk_slim import GNvproRegressor, SlimTrainRegressor
from sk_slim.datasets import make_cdr_surrogate

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = ROOT / "build" / "demo" / "sk_slim_demo.png"
N_SAMPLES, N_TEST, N_FOLDS = 2500, 500, 5


def candidates():
    """The models compared, by display name (unfitted)."""

    def mlp(learning_rate):
        network = MLPRegressor(
            hidden_layer_sizes=(64, 64),
            activation="tanh",
            learning_rate_init=learning_rate,
            early_stopping=True,
            random_state=0,
        )
        return TransformedTargetRegressor(network, transformer=StandardScaler())

    return {
        "SlimTrainRegressor()": SlimTrainRegressor(random_state=0),
        "GNvproRegressor()": GNvproRegressor(random_state=0),
        "MLPRegressor(lr=1e-3)": mlp(1e-3),
        "MLPRegressor(lr=1e-2)": mlp(1e-2),
    }


class EpochClock:
    """A scikit-learn callback that records the wall time at the end of each epoch.

    sk_slim's estimators report every epoch (GNvpro: every outer iteration) to
    ``sklearn.callback`` callbacks, so the validation scores they keep can be
    plotted against time.
    """

    def __init__(self):
        self.times = []

    def setup(self, estimator, context):
        self.start = time.perf_counter()
        self.times = []

    def on_fit_task_begin(self, estimator, context):
        pass

    def on_fit_task_end(self, estimator, context):
        if context.task_name == "epoch":
            self.times.append(time.perf_counter() - self.start)

    def teardown(self, estimator, context):
        pass


def cross_validate_all(X_train, y_train):
    """The long part: one GridSearchCV over the four models, with a progress bar."""
    models = list(candidates().values())
    pipeline = Pipeline([("scale", StandardScaler()), ("model", models[0])])
    search = GridSearchCV(
        pipeline,
        {"model": models},
        cv=KFold(N_FOLDS, shuffle=True, random_state=0),
        refit=False,
    )
    search.set_callbacks(ProgressBar())  # on the outermost estimator
    search.fit(X_train, y_train)
    return search.cv_results_


def refit_all(X_train, y_train, X_test, y_test):
    """Refit every model on all training rows; time it and keep its curves."""
    runs = {}
    for i, (name, model) in enumerate(candidates().items(), start=1):
        print(f"  refit {i}/4 {name:<24}", end="", flush=True)
        clock = EpochClock()
        network = getattr(model, "regressor", model)
        if hasattr(network, "set_callbacks"):  # the sk_slim estimators
            network.set_callbacks(clock)
        pipeline = Pipeline([("scale", StandardScaler()), ("model", model)])
        start = time.perf_counter()
        pipeline.fit(X_train, y_train)
        seconds = time.perf_counter() - start
        fitted = getattr(pipeline[-1], "regressor_", pipeline[-1])
        if clock.times:
            times = np.asarray(clock.times)
        else:  # MLPRegressor has no callbacks: assume epochs of equal duration
            times = seconds * np.arange(1, fitted.n_iter_ + 1) / fitted.n_iter_
        runs[name] = {
            "test": pipeline.score(X_test, y_test),
            "seconds": seconds,
            "n_iter": fitted.n_iter_,
            "times": times,
            "validation": np.asarray(fitted.validation_scores_),
            "head_alpha_curve": getattr(fitted, "head_alpha_curve_", None),
            "head_alpha": getattr(fitted, "head_alpha_", None),
            # GNvpro's alpha_init='auto': a run along the continuation, then one
            # without it; the iterate of best validation score is kept.
            "run": getattr(fitted, "run_curve_", None),
        }
        print(f" {seconds:6.1f} s, {fitted.n_iter_} iterations")
    return runs


def print_table(cv_results, runs):
    names = list(runs)
    mean, std = cv_results["mean_test_score"], cv_results["std_test_score"]
    fit_time = cv_results["mean_fit_time"]
    header = (
        f"{'model':<24}{f'CV R2 ({N_FOLDS} folds)':>19}{'CV fit s':>10}"
        f"{'test R2':>10}{'fit s':>8}{'iters':>7}"
    )
    print("\n" + header + "\n" + "-" * len(header))
    for k, name in enumerate(names):
        run = runs[name]
        cv = f"{mean[k]:.4f} ± {std[k]:.4f}"
        print(
            f"{name:<24}{cv:>19}{fit_time[k]:>10.2f}"
            f"{run['test']:>10.4f}{run['seconds']:>8.2f}{run['n_iter']:>7}"
        )
    best = max(names, key=lambda name: runs[name]["test"])
    print(
        f"\nBest test R2: {best}.\n'CV fit s': mean fit time of one fold "
        f"({(N_FOLDS - 1) / N_FOLDS:.0%} of the training rows). 'fit s', 'iters': "
        "the refit on all training rows;\niterations are epochs (GNvpro: "
        "Gauss-Newton iterations), stopped early on a 10% validation split."
    )
    for name, rule in (
        ("SlimTrainRegressor()", "weighted GCV"),
        ("GNvproRegressor()", "GCV"),
    ):
        print(
            f"{name} chose its head's ridge weight itself: "
            f"{runs[name]['head_alpha']:.2e} ({rule}, final full-data solve)."
        )
    run = runs["GNvproRegressor()"]["run"]
    print(
        f"GNvproRegressor() ran {run.count(0)} iterations along its continuation and "
        f"{run.count(1)} without it (alpha_init='auto'), and kept the best validated."
    )


def plot(runs, output):
    fig, (ax_score, ax_alpha) = plt.subplots(1, 2, figsize=(12, 4.5))
    for name, run in runs.items():
        lines = ax_score.plot(run["times"], run["validation"], marker=".", label=name)
        if run["run"] is not None and 1 in run["run"]:  # where the second run began
            second = run["times"][run["run"].index(1)]
            ax_score.axvline(second, color=lines[0].get_color(), linestyle=":")
    ax_score.set_xscale("log")
    ax_score.set_ylim(0.8, 1.0)
    ax_score.text(
        0.02,
        0.97,
        "MLPRegressor has no callbacks: its epochs are drawn equally long\n"
        "dotted line: GNvpro's second run begins (without the continuation)",
        transform=ax_score.transAxes,
        fontsize=8,
        va="top",
    )
    ax_score.set_xlabel("wall time of the refit (s, one thread)")
    ax_score.set_ylabel("validation $R^2$ (each model's early-stopping split)")
    ax_score.set_title("Validation score against wall time")
    ax_score.grid(alpha=0.3)
    ax_score.legend(loc="lower right")

    for name, color in (("SlimTrainRegressor()", "C0"), ("GNvproRegressor()", "C1")):
        run = runs[name]
        steps = np.arange(1, len(run["head_alpha_curve"]) + 1)
        ax_alpha.semilogy(steps, run["head_alpha_curve"], color=color, label=name)
        ax_alpha.axhline(run["head_alpha"], color=color, linestyle=":", linewidth=1)
    ax_alpha.set_xlabel("epoch (slimTrain) / Gauss-Newton iteration (GNvpro)")
    ax_alpha.set_ylabel("head ridge weight (mean-loss scale)")
    ax_alpha.set_title(
        "Head regularization chosen during training\n"
        "slimTrain: sGCV, $\\Lambda_k/(k+1)$; GNvpro: GCV; dotted: final head_alpha_",
        fontsize=10,
    )
    ax_alpha.grid(alpha=0.3)
    ax_alpha.legend()
    fig.suptitle(
        f"CDR surrogate: {N_SAMPLES - N_TEST} training samples, 55 -> 72 outputs"
    )
    fig.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=110)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args()
    # One thread for torch and for numpy's BLAS (MLPRegressor), as in the
    # benchmarks: on a small shared machine more threads only add contention.
    torch.set_num_threads(1)
    threadpool_limits(1)
    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    start = time.perf_counter()

    X, y = make_cdr_surrogate(n_samples=N_SAMPLES, noise=0.01, random_state=0)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=N_TEST, random_state=0
    )
    print(
        f"make_cdr_surrogate: {X.shape[1]} PDE parameters -> {y.shape[1]} sensors, "
        f"{len(X_train)} training and {len(X_test)} test samples "
        f"({time.perf_counter() - start:.1f} s)\n"
    )
    print(f"Cross-validating 4 models x {N_FOLDS} folds (GridSearchCV):")
    cv_results = cross_validate_all(X_train, y_train)
    print("\nRefitting each model on all training samples:")
    runs = refit_all(X_train, y_train, X_test, y_test)
    print_table(cv_results, runs)
    plot(runs, args.output)
    print(f"\nPlot written to {args.output.resolve()}")
    print(f"Total time: {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
