"""
=====================================
A custom torch feature extractor
=====================================

The estimators build a tanh MLP by default, but ``feature_extractor`` accepts any
torch module: an ``nn.Module`` *class* (or any callable) that is called as
``feature_extractor(n_features_in, **feature_extractor_kwargs)`` and returns a
module mapping ``(n, n_features_in)`` to ``(n, n_features_out)``. The estimator
adds the solved linear head on top, and moves the module to its ``device`` and
``dtype``.

We fit MATLAB's ``peaks`` surface three ways with
:class:`~sk_slim.SlimTrainRegressor`: the default MLP, a module with random
Fourier features written here, and a residual network from
:mod:`sk_slim.networks`.
"""

# %%
import math
import warnings

import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits
from torch import nn

from sk_slim import SlimTrainRegressor
from sk_slim.datasets import make_peaks
from sk_slim.networks import make_resnet

torch.set_num_threads(1)
threadpool_limits(1)
warnings.filterwarnings("ignore", category=ConvergenceWarning)

X, y = make_peaks(n_samples=1500, noise=0.05, random_state=0)
X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)

# %%
# A module class
# --------------
# The first argument is the number of input features; the rest come from
# ``feature_extractor_kwargs``. Here: fixed random Fourier features
# :math:`[\sin(2\pi x B), \cos(2\pi x B)]` (a buffer, not trained), then one
# trained tanh layer. Any parameter is trained by slimTrain's Adam steps; the
# linear head on top is solved by slimTik, so the module has no output layer.


class FourierFeatures(nn.Module):
    """Random Fourier features followed by a trained tanh layer."""

    def __init__(self, n_features_in, n_frequencies=32, scale=0.5, width=32):
        super().__init__()
        # torch's global RNG: the estimator seeds it (in a fork) from random_state.
        B = scale * torch.randn(n_features_in, n_frequencies)
        self.register_buffer("B", B)
        self.hidden = nn.Linear(2 * n_frequencies, width)

    def forward(self, x):
        projected = 2 * math.pi * x @ self.B  # (n, n_frequencies)
        fourier = torch.cat([projected.sin(), projected.cos()], dim=1)
        return torch.tanh(self.hidden(fourier))  # (n, width)


# %%
# A builder function
# ------------------
# :func:`~sk_slim.networks.make_resnet` builds the forward-Euler residual
# networks of the papers. sk_slim's builders take an explicit
# ``torch.Generator`` (they never touch the global RNG), so the wrapper draws
# the generator's seed from torch's global RNG, which the estimator has seeded:
# the fit stays reproducible with ``random_state``.


def resnet(n_features_in, width=32, depth=4):
    seed = int(torch.randint(2**31 - 1, ()))
    generator = torch.Generator().manual_seed(seed)
    return make_resnet(n_features_in, width, depth, generator=generator)


models = {
    "default MLP (64, 64)": SlimTrainRegressor(random_state=0),
    "FourierFeatures": SlimTrainRegressor(
        feature_extractor=FourierFeatures,
        feature_extractor_kwargs={"n_frequencies": 32, "scale": 0.5},
        random_state=0,
    ),
    "make_resnet (width 32, depth 4)": SlimTrainRegressor(
        feature_extractor=resnet, random_state=0
    ),
}
pipelines = {}
for name, model in models.items():
    pipelines[name] = make_pipeline(StandardScaler(), model).fit(X_train, y_train)
    print(
        f"{name:<32} test R^2 {pipelines[name].score(X_test, y_test):.4f}, "
        f"{model.n_iter_} epochs, {model.module_.W.shape[0]} learned features"
    )

# %%
# The fitted surfaces
# -------------------
# ``module_`` is the fitted :class:`~sk_slim.networks.SeparableNet`: the module
# built here plus the solved head. Predictions on a grid, and the truth:


def peaks(x, y):
    """MATLAB's peaks function, as documented in make_peaks."""
    return (
        3 * (1 - x) ** 2 * np.exp(-(x**2) - (y + 1) ** 2)
        - 10 * (x / 5 - x**3 - y**5) * np.exp(-(x**2) - y**2)
        - np.exp(-((x + 1) ** 2) - y**2) / 3
    )


grid = np.linspace(-3, 3, 121)
gx, gy = np.meshgrid(grid, grid)
X_grid = np.column_stack([gx.ravel(), gy.ravel()])
truth = peaks(gx, gy)

fig, axes = plt.subplots(1, 4, figsize=(13, 3.2), sharey=True)
panels = {"peaks (noiseless)": truth}
for name, pipeline in pipelines.items():
    panels[name] = pipeline.predict(X_grid).reshape(gx.shape)
for ax, (name, surface) in zip(axes, panels.items(), strict=True):
    ax.contourf(gx, gy, surface, levels=20, cmap="viridis", vmin=-7, vmax=8)
    ax.set_title(name, fontsize=9)
    ax.set_aspect("equal")
plt.show()
