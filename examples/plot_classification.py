"""
=======================================
Classification with probabilities
=======================================

Both methods classify. :class:`~sk_slim.SlimTrainClassifier` trains its head
on one-hot targets by least squares (as in the slimTrain paper); for three or
more classes the head it returns is then a logistic regression on the learned
features (least squares can mask a class between two others), for two it keeps
least squares and turns the scores into probabilities with a temperature fitted
on held-out data. :class:`~sk_slim.GNvproClassifier` solves a logistic
(cross-entropy) head exactly at every step. Both logistic heads have their
ridge weight chosen on the validation split, and their probabilities are the
softmax of that head.

This example trains both next to ``MLPClassifier`` on the ``peaks`` surface
binned into five classes, compares accuracy and log-loss, draws the predicted
classes over the plane, and checks calibration with a reliability diagram.
"""

# %%
import warnings

import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.calibration import calibration_curve
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, log_loss
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from threadpoolctl import threadpool_limits

from sk_slim import GNvproClassifier, SlimTrainClassifier
from sk_slim.datasets import make_peaks

torch.set_num_threads(1)
threadpool_limits(1)
warnings.filterwarnings("ignore", category=ConvergenceWarning)

# Inputs on [-3, 3]^2 are already on a unit scale: no scaler needed.
X, y = make_peaks(n_samples=2000, noise=0.05, n_classes=5, random_state=0)
X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=0.25, random_state=0, stratify=y
)

# %%
# Three classifiers with their defaults
# -------------------------------------
# ``MLPClassifier`` gets the same (64, 64) tanh network as slimTrain, with early
# stopping on a validation split as both sk_slim estimators use by default from
# 200 samples on. GNvpro's default network is the same size.

models = {
    "SlimTrainClassifier": SlimTrainClassifier(random_state=0),
    "GNvproClassifier": GNvproClassifier(random_state=0),
    "MLPClassifier (adam)": MLPClassifier(
        hidden_layer_sizes=(64, 64),
        activation="tanh",
        early_stopping=True,
        random_state=0,
    ),
}
probabilities = {}
for name, model in models.items():
    model.fit(X_train, y_train)
    proba = model.predict_proba(X_test)
    probabilities[name] = proba
    print(
        f"{name:22s} accuracy {accuracy_score(y_test, proba.argmax(axis=1)):.3f}  "
        f"log-loss {log_loss(y_test, proba):.3f}"
    )
slimtrain = models["SlimTrainClassifier"]
print(
    f"slimTrain's final head: {slimtrain.final_head_}, ridge weight "
    f"{slimtrain.head_alpha_:.2e} (n = {len(X_train)})"
)

# %%
# Predicted classes over the plane
# --------------------------------
# The classes are level sets of the ``peaks`` surface; the panels show where
# each model predicts which class (colour) and how sure it is (brightness: the
# largest class probability).

grid = np.linspace(-3, 3, 121)
G = np.stack(np.meshgrid(grid, grid), axis=-1).reshape(-1, 2)
fig, axes = plt.subplots(1, len(models), figsize=(12, 3.8), sharey=True)
for ax, (name, model) in zip(axes, models.items(), strict=True):
    proba = model.predict_proba(G)
    ax.imshow(
        proba.argmax(axis=1).reshape(len(grid), len(grid)),
        extent=(-3, 3, -3, 3),
        origin="lower",
        cmap="viridis",
        alpha=0.35 + 0.65 * (proba.max(axis=1).reshape(len(grid), len(grid)) - 0.2),
    )
    ax.set_title(name)
    ax.set_xlabel("$x_1$")
axes[0].set_ylabel("$x_2$")
fig.tight_layout()

# %%
# Reliability diagram
# -------------------
# For each model, the predicted probability of the predicted class against how
# often that prediction is right, in ten bins. A calibrated model follows the
# diagonal. Logistic heads whose ridge is chosen by the validation log-loss
# aim at it (as does slimTrain's fitted temperature for two classes).

fig, ax = plt.subplots(figsize=(4.8, 4.2))
ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1)
for name, proba in probabilities.items():
    confidence = proba.max(axis=1)
    correct = (proba.argmax(axis=1) == y_test).astype(int)
    frac_correct, mean_confidence = calibration_curve(
        correct, confidence, n_bins=10, strategy="quantile"
    )
    ax.plot(mean_confidence, frac_correct, marker="o", label=name)
ax.set_xlabel("confidence (largest class probability)")
ax.set_ylabel("fraction correct")
ax.legend(loc="lower right")
fig.tight_layout()
plt.show()
