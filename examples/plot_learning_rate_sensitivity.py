"""
====================================================
Learning-rate sensitivity: slimTrain against Adam
====================================================

With its head solved by slimTik, slimTrain's gradient steps only have to move the
feature extractor, and the final head is a least-squares solve. So the learning
rate matters much less than for an MLP trained end to end by Adam.

We train :class:`~sk_slim.SlimTrainRegressor` and
:class:`~sklearn.neural_network.MLPRegressor` (Adam) with the same (64, 64) tanh
network for 20 epochs at four learning rates on three problems, and compare test
:math:`R^2`. The benchmark suite measures the same with each estimator's own
stopping rule (``python benchmarks/suite.py --measure lr-sensitivity``, see
``benchmarks/README.md``).
"""

# %%
import warnings

import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.compose import TransformedTargetRegressor
from sklearn.datasets import make_friedman1
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from sk_slim import SlimTrainRegressor
from sk_slim.datasets import make_cdr_surrogate, make_peaks

torch.set_num_threads(1)
threadpool_limits(1)
warnings.filterwarnings("ignore", category=ConvergenceWarning)

problems = {
    "CDR surrogate": make_cdr_surrogate(n_samples=1000, noise=0.01, random_state=0),
    "peaks": make_peaks(n_samples=1000, noise=0.05, random_state=0),
    "friedman1": make_friedman1(n_samples=1000, noise=1.0, random_state=0),
}
learning_rates = [1e-4, 1e-3, 1e-2, 1e-1]
EPOCHS = 20


def make_model(method, learning_rate):
    """The same (64, 64) tanh network, trained for EPOCHS epochs."""
    if method == "slimTrain":
        model = SlimTrainRegressor(
            learning_rate_init=learning_rate, max_iter=EPOCHS, random_state=0
        )
    else:
        mlp = MLPRegressor(
            hidden_layer_sizes=(64, 64),
            activation="tanh",
            learning_rate_init=learning_rate,
            max_iter=EPOCHS,
            random_state=0,
        )
        model = TransformedTargetRegressor(mlp, transformer=StandardScaler())
    return make_pipeline(StandardScaler(), model)


methods = ["slimTrain", "MLPRegressor (Adam)"]
scores = np.zeros((len(methods), len(problems), len(learning_rates)))
for j, (X, y) in enumerate(problems.values()):
    X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)
    for i, method in enumerate(methods):
        for k, learning_rate in enumerate(learning_rates):
            model = make_model(method, learning_rate).fit(X_train, y_train)
            scores[i, j, k] = model.score(X_test, y_test)

# %%
# Test :math:`R^2` after 20 epochs
# --------------------------------
# Each cell is one fit; rows are problems, columns learning rates. Scores below
# zero are shown as zero.

fig, axes = plt.subplots(1, 2, figsize=(10, 3.4), sharey=True)
for ax, method, table in zip(axes, methods, scores, strict=True):
    image = ax.imshow(np.clip(table, 0, 1), cmap="viridis", vmin=0, vmax=1)
    for (row, col), value in np.ndenumerate(table):
        color = "black" if value > 0.6 else "white"
        ax.text(col, row, f"{value:.2f}", ha="center", va="center", color=color)
    ax.set_xticks(range(len(learning_rates)), [f"{lr:g}" for lr in learning_rates])
    ax.set_yticks(range(len(problems)), list(problems))
    ax.set_xlabel("learning_rate_init")
    ax.set_title(method)
fig.colorbar(image, ax=axes, shrink=0.85, label="test $R^2$")
plt.show()

# %%
# Spread over the learning rates
# ------------------------------
# The best minus the worst score per problem: how much a wrong learning rate
# costs.

spread = scores.max(axis=2) - scores.min(axis=2)
for method, row in zip(methods, spread, strict=True):
    cells = ", ".join(f"{p} {s:.3f}" for p, s in zip(problems, row, strict=True))
    print(f"{method:<20} {cells}; mean {row.mean():.3f}")
