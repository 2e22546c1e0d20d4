"""
==========================================================
Surrogate modelling of a PDE: sk_slim against MLPRegressor
==========================================================

A *surrogate* replaces an expensive simulation by a cheap learned map. Here the
simulation is a steady convection-diffusion-reaction (CDR) equation on the unit
square, :func:`~sk_slim.datasets.make_cdr_surrogate`: 55 parameters of the
reaction field go in, the solution read at 72 sensors comes out. This is the
surrogate problem of the slimTrain and GNvpro papers, with 72 outputs that share
one set of learned features. The simulation is deterministic, so the data are
noise-free.

We train :class:`~sk_slim.SlimTrainRegressor`, :class:`~sk_slim.GNvproRegressor`
and scikit-learn's :class:`~sklearn.neural_network.MLPRegressor` on the same
split. The sk_slim estimators run with their defaults; the MLP gets the learning
rate that suits this problem best (1e-2) and the same (64, 64) tanh network as
slimTrain.
"""

# %%
import time
import warnings

import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.compose import TransformedTargetRegressor
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from sk_slim import GNvproRegressor, SlimTrainRegressor
from sk_slim.datasets import make_cdr_surrogate

# One thread for torch and for numpy's BLAS (MLPRegressor), as in the benchmarks.
torch.set_num_threads(1)
threadpool_limits(1)
warnings.filterwarnings("ignore", category=ConvergenceWarning)

X, y = make_cdr_surrogate(n_samples=1500, random_state=0)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=500, random_state=0)
print(f"{X_train.shape[0]} training samples: {X.shape[1]} inputs -> {y.shape[1]}")

# %%
# Three models in the same pipeline
# ---------------------------------
# Inputs are standardized by a ``StandardScaler``. The sk_slim estimators
# standardize the targets themselves; the MLP gets a
# ``TransformedTargetRegressor`` to do the same.

mlp = MLPRegressor(
    hidden_layer_sizes=(64, 64),
    activation="tanh",
    learning_rate_init=1e-2,
    random_state=0,
)
models = {
    "SlimTrainRegressor": SlimTrainRegressor(random_state=0),
    "GNvproRegressor": GNvproRegressor(random_state=0),
    "MLPRegressor (lr 1e-2)": TransformedTargetRegressor(
        mlp, transformer=StandardScaler()
    ),
}
predictions = {}
print(f"{'model':<24}{'test R^2':>10}{'fit s':>8}")
for name, model in models.items():
    pipeline = make_pipeline(StandardScaler(), model)
    start = time.perf_counter()
    pipeline.fit(X_train, y_train)
    seconds = time.perf_counter() - start
    predictions[name] = pipeline.predict(X_test)
    print(f"{name:<24}{pipeline.score(X_test, y_test):>10.4f}{seconds:>8.2f}")

# %%
# Errors per test sample
# ----------------------
# The papers report the relative error of each example,
# :math:`\|f(x) - c\| / \|c\|`, over the 72 sensors. GNvpro's Gauss-Newton
# steps fit this smooth, noise-free map most accurately. slimTrain with its
# defaults stays below the learning-rate-tuned MLP at this data size; its
# strength is that it needs no such tuning (see
# :ref:`sphx_glr_auto_examples_plot_learning_rate_sensitivity.py`).

relative_errors = {
    name: np.linalg.norm(pred - y_test, axis=1) / np.linalg.norm(y_test, axis=1)
    for name, pred in predictions.items()
}
fig, ax = plt.subplots(figsize=(7, 3.5))
ax.boxplot(list(relative_errors.values()), showfliers=False)
ax.set_xticks(range(1, len(relative_errors) + 1), list(relative_errors))
ax.set_ylabel("relative error per test sample")
ax.set_title("CDR surrogate, 500 test samples")
for i, errors in enumerate(relative_errors.values(), start=1):
    ax.annotate(
        f"median {np.median(errors):.3f}",
        (i, np.percentile(errors, 75)),
        textcoords="offset points",
        xytext=(0, 12),
        ha="center",
        fontsize=8,
    )
fig.tight_layout()

# %%
# One test sample, sensor by sensor
# ---------------------------------
# The sensors sit on a 9 x 8 lattice over the domain. Below: the simulated
# readings of a typical test sample (the median error of the MLP) and each
# model's error on it, on a common color scale.

errors_mlp = relative_errors["MLPRegressor (lr 1e-2)"]
typical = int(np.argsort(errors_mlp)[len(errors_mlp) // 2])
fig, axes = plt.subplots(2, 2, figsize=(8, 6), layout="constrained")
axes = axes.ravel()
truth = y_test[typical].reshape(8, 9)
image = axes[0].imshow(truth, origin="lower", cmap="viridis")
axes[0].set_title("simulated readings")
fig.colorbar(image, ax=axes[0], shrink=0.9)
limit = max(
    np.abs(pred[typical] - y_test[typical]).max() for pred in predictions.values()
)
for ax, (name, pred) in zip(axes[1:], predictions.items(), strict=True):
    error = (pred[typical] - y_test[typical]).reshape(8, 9)
    image = ax.imshow(error, origin="lower", cmap="RdBu_r", vmin=-limit, vmax=limit)
    ax.set_title(f"error of {name.split(' ')[0]}")
    fig.colorbar(image, ax=ax, shrink=0.9)
for ax in axes:
    ax.set_xticks([])
    ax.set_yticks([])
plt.show()

# %%
# What the estimators chose
# -------------------------
# Neither sk_slim estimator was given a learning rate for the head or a ridge
# weight: both were chosen by generalized cross-validation.

for name in ("SlimTrainRegressor", "GNvproRegressor"):
    model = models[name]
    print(
        f"{name}: {model.n_iter_} iterations, head ridge weight "
        f"{model.head_alpha_:.2e}, best validation R^2 "
        f"{model.best_validation_score_:.4f}"
    )
