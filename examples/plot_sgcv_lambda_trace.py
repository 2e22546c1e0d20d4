"""
==================================================
How sampled GCV chooses the head's regularization
==================================================

:class:`~sk_slim.SlimTrainRegressor` never asks for the head's ridge weight.
Per mini-batch, slimTik adds an increment :math:`\\lambda_k` (possibly negative)
to the running regularization :math:`\\Lambda_k = \\Lambda_{k-1} + \\lambda_k`,
chosen by *sampled* GCV on that batch; at the end of ``fit``, the head is solved
once on all the data with the weight chosen by ordinary GCV.

This example follows both choices on the CDR surrogate for three memory depths
``r``: ``head_alpha_curve_``, the effective weight :math:`\\Lambda_k / (k + 1)`
after every epoch, and the GCV function of the final solve with its minimizer
``head_alpha_``. The :ref:`user guide <notation>` has the formulas.
"""

# %%
import math
import warnings

import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from sk_slim import SlimTrainRegressor
from sk_slim.datasets import make_cdr_surrogate
from sk_slim.linalg import gcv

torch.set_num_threads(1)
threadpool_limits(1)
warnings.filterwarnings("ignore", category=ConvergenceWarning)

X, y = make_cdr_surrogate(n_samples=1000, noise=0.01, random_state=0)
X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)
scaler = StandardScaler().fit(X_train)
X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)

# %%
# The per-batch choice over training
# ----------------------------------
# ``memory_depth`` is the number ``r`` of previous batches whose features slimTik
# remembers. With ``r = 0`` every step is a ridge fit to one batch of 200 rows.
# Early stopping is off, so that all rows train and every epoch has the same
# number of batches; the running sum :math:`\Lambda_k` is then
# ``head_alpha_curve_`` times :math:`k + 1`, with :math:`k` the batches so far.
# sk_slim keeps :math:`\Lambda_k \ge 10^{-3}` (dashed).

batches_per_epoch = math.ceil(len(X_train) / 200)  # batch_size='auto': 200
models = {}
for r in (0, 5, 20):
    models[r] = SlimTrainRegressor(
        memory_depth=r, max_iter=60, early_stopping=False, random_state=0
    ).fit(X_train, y_train)

fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
for r, model in models.items():
    epochs = np.arange(1, model.n_iter_ + 1)
    alpha = np.asarray(model.head_alpha_curve_)
    Lambda = alpha * (batches_per_epoch * epochs + 1)
    (line,) = axes[0].semilogy(epochs, Lambda, label=f"r = {r}")
    axes[1].semilogy(epochs, alpha, color=line.get_color(), label=f"r = {r}")
    axes[1].axhline(model.head_alpha_, color=line.get_color(), linestyle=":")
axes[0].axhline(1e-3, color="gray", linestyle="--", linewidth=1)
axes[0].set_ylabel(r"$\Lambda_k$ (running sum)")
axes[0].set_title("what sGCV chose, per batch")
axes[1].set_ylabel(r"$\Lambda_k / (k + 1)$")
axes[1].set_title("head_alpha_curve_ (dotted: final head_alpha_)")
for ax in axes:
    ax.set_xlabel("epoch")
    ax.legend()
fig.tight_layout()

for r, model in models.items():
    print(
        f"r = {r:>2}: test R^2 {model.score(X_test, y_test):.4f} after "
        f"{model.n_iter_} epochs; final GCV weight {model.head_alpha_:.2e}"
    )

# %%
# With ``r = 0`` each step fits one batch of 200 rows (a 65-column
# feature matrix against 72 outputs) and sGCV keeps a substantial
# :math:`\Lambda`. With a deeper memory each step sees more rows and needs less
# regularization; with ``r = 20`` the memory spans five epochs of stale
# features and sGCV keeps returning to the floor. ``head_alpha_curve_`` divides
# by the growing number of batches, so it decays even where :math:`\Lambda_k`
# is steady. The final full-data GCV choices (dotted) agree within a factor 3:
# the head that ``predict`` uses does not depend on ``r`` directly, only through
# the features that training produced. On this problem the shallow memory gave
# the best test score; the benchmarks use the paper's default ``r = 5``.

# %%
# The GCV function of the final solve
# -----------------------------------
# After training, the head is the ridge solution on all training rows with the
# weight that minimizes
# :math:`G(\lambda) = \|(I - H_\lambda) C\|^2 / (c\,(n - \mathrm{tr}\,H_\lambda))^2`.
# We recompute it from the learned features ``transform(X)`` with
# :func:`sk_slim.linalg.gcv`. The estimator standardizes the targets and solves
# for the bias together with ``W``, so we do the same; ``gcv`` works on the
# sum-of-squares scale, :math:`\lambda = n \cdot` ``head_alpha``.

model = models[5]
Z = torch.from_numpy(model.transform(X_train))
Z = torch.cat([Z, torch.ones(len(Z), 1, dtype=Z.dtype)], dim=1)  # (n, p)
C = torch.from_numpy((y_train - y_train.mean(axis=0)) / y_train.std(axis=0))
result = gcv(Z, C)  # one SVD of Z for every trial lambda
n = len(Z)
print(f"gcv(Z, C): lam / n = {result.lam / n:.4e}")
print(f"model.head_alpha_  = {model.head_alpha_:.4e}")

fig, ax = plt.subplots(figsize=(6, 3.6))
ax.loglog(result.lams / n, result.scores, label="GCV function $G$")
ax.axvline(model.head_alpha_, color="C3", linestyle="--", label="head_alpha_")
ax.set_xlabel("head ridge weight (mean-loss scale)")
ax.set_ylabel("G")
ax.set_title("Full-data GCV of the final head (r = 5)")
ax.legend()
fig.tight_layout()
plt.show()
