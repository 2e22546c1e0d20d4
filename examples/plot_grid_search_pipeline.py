"""
==============================================
Model selection with GridSearchCV and Pipeline
==============================================

The estimators are ordinary scikit-learn estimators, so the usual model
selection tools apply. One ``GridSearchCV`` here searches over *which* estimator
to use and, for each, over the few parameters worth searching: the network size
and the L2 penalty ``alpha`` on the feature extractor. Neither the head's
regularization (chosen by GCV) nor slimTrain's learning rate (insensitive) is in
the grid.

Set ``search.set_callbacks(sklearn.callback.ProgressBar())`` to watch a long
search (needs ``rich``); ``examples/demo.py`` does.
"""

# %%
import warnings

import matplotlib.pyplot as plt
import pandas as pd
import torch
from sklearn.datasets import make_friedman1
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, KFold, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from sk_slim import GNvproRegressor, SlimTrainRegressor

torch.set_num_threads(1)
threadpool_limits(1)
warnings.filterwarnings("ignore", category=ConvergenceWarning)

X, y = make_friedman1(n_samples=600, noise=1.0, random_state=0)
X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)

# %%
# The pipeline and the grid
# -------------------------
# The last step is itself a parameter (``"model"``), so one search compares
# estimators; a list of grids gives each estimator its own parameters.

pipeline = Pipeline(
    [("scale", StandardScaler()), ("model", SlimTrainRegressor(random_state=0))]
)
param_grid = [
    {
        "model": [SlimTrainRegressor(max_iter=100, random_state=0)],
        "model__hidden_layer_sizes": [(32,), (64, 64)],
        "model__alpha": [1e-4, 1e-1],
    },
    {
        "model": [GNvproRegressor(max_iter=30, random_state=0)],
        "model__hidden_layer_sizes": [(8,), (16, 16)],
        "model__alpha": [1e-4, 1e-1],
    },
]
search = GridSearchCV(pipeline, param_grid, cv=KFold(3, shuffle=True, random_state=0))
search.fit(X_train, y_train)

# %%
# The results
# -----------
# ``cv_results_`` as a table, best first. ``mean_fit_time`` is per fit of one
# fold.

results = pd.DataFrame(search.cv_results_)
results["estimator"] = [type(m).__name__ for m in results["param_model"]]
columns = [
    "estimator",
    "param_model__hidden_layer_sizes",
    "param_model__alpha",
    "mean_test_score",
    "std_test_score",
    "mean_fit_time",
]
table = results.sort_values("rank_test_score")[columns].reset_index(drop=True)
table.round(4)

# %%
# The best pipeline was refit on all training data; its held-out score:

print(search.best_params_)
print(f"test R^2 of the refit best pipeline: {search.score(X_test, y_test):.4f}")

# %%
# Score against cost
# ------------------
# Each point is one candidate: cross-validated :math:`R^2` (with its standard
# deviation over the folds) against the mean fit time. A fold trains on 300
# noisy rows: a small network, or a larger penalty ``alpha`` on a larger one,
# generalizes better there (the user guide's caveat on small noisy data).

fig, ax = plt.subplots(figsize=(7, 4))
for estimator, group in results.groupby("estimator"):
    ax.errorbar(
        group["mean_fit_time"],
        group["mean_test_score"],
        yerr=group["std_test_score"],
        fmt="o",
        capsize=3,
        label=estimator,
    )
    for _, row in group.iterrows():
        sizes, alpha = row["param_model__hidden_layer_sizes"], row["param_model__alpha"]
        label = f"{sizes}, alpha={alpha:g}"
        ax.annotate(
            label,
            (row["mean_fit_time"], row["mean_test_score"]),
            textcoords="offset points",
            xytext=(5, 4),
            fontsize=7,
        )
ax.set_xscale("log")
ax.set_xlabel("mean fit time per fold (s)")
ax.set_ylabel("cross-validated $R^2$")
ax.legend()
fig.tight_layout()
plt.show()
