"""Full-data head solves for a separable network (the last step of every fit):
ridge with GCV for least squares, logistic regression for cross-entropy."""

import contextlib
from dataclasses import dataclass

import torch

from ..linalg import (
    logistic_head,
    logistic_loss,
    streamed_tikhonov_factor,
    tikhonov_factor,
)
from ..rows import LOCAL_ROWS
from .protocol import effective_samples

__all__ = [
    "HeadPosterior",
    "features_of",
    "head_posterior",
    "held_out_noise",
    "ridge_head",
    "ridge_head_factored",
    "solve_head",
    "solve_logistic_head",
    "validated_logistic_head",
]

# Ridge weights of validated_logistic_head, times the number of training samples:
# LogisticRegression's C from 100 down to 0.01 (n alpha = 1 / C), half a decade apart.
LOGISTIC_HEAD_PATH = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
# Above this many rows (on the process with the most) the least-squares head is
# factored block by block, from the triangular factor of [Z, C]: the features of
# all rows and their SVD (2 n p floats) never exist at once, and no U is formed,
# which from a thousand rows on is also faster (width 64: 1212 rows 3.4 -> 2.6
# ms, 18 000 rows 55 -> 27 ms; the same head and GCV choice to rounding). Below
# it the one-SVD path, unless the rows times the squared head width pass
# _STREAMED_HEAD_WORK (and at least twice the width): forming U then costs more
# than the factor of [Z, C] (width 64 from 130 rows: 383 rows 1.80 -> 1.49 ms, 675
# rows 2.36 -> 1.85; width 16 from about 900), a small slimTrain fit's
# validation head every epoch.
_STREAMED_HEAD_ROWS = 1024
_STREAMED_HEAD_WORK = 2**18
# Features per block of rows (1 MiB): blocks of several MiB, allocated and
# freed between the training steps' small tensors, fragment the heap (measured:
# SlimTrainRegressor's peak at 3e5 rows, width 64, +237 MiB at 16384 rows a
# block, +187 at 2048).
_HEAD_BLOCK_ENTRIES = 2**17


def _block_rows(net):
    """Rows per block of the head's features ``[phi(x), 1]``."""
    return max(1, _HEAD_BLOCK_ENTRIES // (net.W.shape[0] + 1))


@torch.no_grad()
def features_of(net, X, chunk_size=16384):
    """Compute the features ``phi(X)`` of a whole data set, in eval mode, in chunks.

    Eval mode: no dropout, and BatchNorm uses (and does not update) its running
    statistics; the network's mode is restored afterwards.

    Parameters
    ----------
    net : SeparableNet
        The network whose feature extractor is applied.
    X : Tensor of shape (n, ...)
        Inputs.
    chunk_size : int, default=16384
        Rows per forward pass (bounds the memory of activations).

    Returns
    -------
    Z : Tensor of shape (n, m)
        The features, without the column of ones.
    """
    Z, start = None, 0
    with _eval_mode(net):
        # Into one preallocated output: a list of the chunks' features, then
        # their concatenation, would hold them twice.
        for chunk in X.split(chunk_size):
            features = net.features(chunk)
            if Z is None:
                Z = features.new_empty((len(X), *features.shape[1:]))
            Z[start : start + len(features)] = features
            start += len(features)
    return Z


@contextlib.contextmanager
def _eval_mode(net):
    """``net`` in eval mode inside, its own mode restored afterwards."""
    training = net.training
    net.eval()
    try:
        yield net
    finally:
        net.train(training)


def _finite_augmented_features(net, X, rows=LOCAL_ROWS, derivatives=None):
    """``[phi(X), 1]`` in eval mode (derivative rows below, if any);
    FloatingPointError (on every rank) if not finite."""
    if derivatives is None:
        Z = net.augment(features_of(net, X))
    else:
        with _eval_mode(net):
            Z = derivatives.augmented_features(net, X)
    if not rows.all(torch.isfinite(Z).all()):
        raise FloatingPointError("The learned features are not finite.")
    return Z


def _head_rows(net, X, C, sample_weight, rows, derivatives):
    """The head's design matrix, targets and weights: the value rows, with the
    derivative rows stacked below when there are any."""
    Z = _finite_augmented_features(net, X, rows, derivatives)
    if derivatives is None:
        return Z, C, sample_weight
    weight = derivatives.stack_weights(sample_weight, len(X)).to(torch.float64)
    return Z, derivatives.stack_targets(C), weight


def solve_head(
    net,
    X,
    C,
    sample_weight=None,
    alpha="gcv",
    rows=LOCAL_ROWS,
    derivatives=None,
    gcv_weight=1.0,
):
    """Solve the head of ``net`` on all of ``(X, C)`` and store it in its buffers.

    Solves ``min_W sum_i w_i ||[phi(x_i), 1] W - c_i||^2 / sum_i w_i + alpha ||W||^2``
    (a weighted mean loss, so ``alpha`` does not grow with the data) by one thin
    SVD of the features, in float64.

    Parameters
    ----------
    net : SeparableNet
        The network; its head buffers receive the solution.
    X : Tensor of shape (n, ...)
        Inputs.
    C : Tensor of shape (n, c)
        Targets.
    sample_weight : Tensor of shape (n,), default=None
        Positive weights, read as repetitions.
    alpha : 'gcv' or float, default='gcv'
        The ridge weight, or ``'gcv'`` to choose it by generalized
        cross-validation.
    rows : RowGroup, default=LOCAL_ROWS
        Where the rows are (:mod:`sk_slim.rows`): here all of
        them, or this process's share of a data-parallel fit.
    derivatives : DerivativeData, default=None
        Derivative targets of the same rows: their rows are stacked below the
        values' (``derivative_data.py``), and the mean runs over all of them.
    gcv_weight : float, default=1.0
        With ``alpha='gcv'``: the weight of the GCV function
        (:meth:`~sk_slim.linalg.TikhonovSVD.gcv`; 1 is GCV).

    Returns
    -------
    alpha : float
        The ridge weight used (on the mean-loss scale).

    Raises
    ------
    FloatingPointError
        If the features are not finite.
    """
    if _streams(net, X, rows, derivatives):
        factors = _streamed_factors(net, X, C, sample_weight, rows)
        W, alpha = _ridge_solution(factors, alpha, gcv_weight)
    else:
        Z, C, sample_weight = _head_rows(net, X, C, sample_weight, rows, derivatives)
        W, alpha = ridge_head(
            Z, C, sample_weight, alpha, rows=rows, gcv_weight=gcv_weight
        )
    net.set_head(W)
    return alpha


def _streams(net, X, rows, derivatives):
    """Whether the head of these rows is factored block by block."""
    n_rows, width = rows.max_int(len(X)), net.W.shape[0] + 1
    work = n_rows * width**2
    large = n_rows > _STREAMED_HEAD_ROWS or (
        n_rows >= 2 * width and work > _STREAMED_HEAD_WORK
    )
    return derivatives is None and large


def _streamed_factors(net, X, C, sample_weight, rows):
    """:func:`~sk_slim.linalg.streamed_tikhonov_factor` of ``[phi(X), 1]``,
    the features computed a block at a time; FloatingPointError (on every
    rank) if any is not finite."""
    finite = [True]
    n_samples = float(len(X)) if sample_weight is None else float(sample_weight.sum())
    blocks = _weighted_blocks(net, X, C, sample_weight, finite)
    factors = streamed_tikhonov_factor(blocks, n_samples, rows=rows)
    if not rows.all(finite[0]):
        raise FloatingPointError("The learned features are not finite.")
    return factors


@torch.no_grad()
def _weighted_blocks(net, X, C, sample_weight, finite):
    """``sqrt(w) [phi(X), 1]`` and ``sqrt(w) C`` by blocks of rows, float64;
    a block that is not finite is zeroed and flagged in ``finite[0]``."""
    block_rows = _block_rows(net)
    for start in range(0, len(X), block_rows):
        rows = slice(start, start + block_rows)
        Z = net.augment(features_of(net, X[rows])).to(torch.float64)
        C_block = C[rows].to(torch.float64)
        if not torch.isfinite(Z).all():
            finite[0] = False
            Z = torch.zeros_like(Z)
        if sample_weight is not None:
            root = sample_weight[rows].to(torch.float64).sqrt()[:, None]
            Z, C_block = root * Z, root * C_block
        yield Z, C_block


def ridge_head(
    Z, C, sample_weight=None, alpha="gcv", *, rows=LOCAL_ROWS, gcv_weight=1.0
):
    """Solve ``min_W sum_i w_i ||z_i W - c_i||^2 / sum_i w_i + alpha ||W||^2``.

    Parameters
    ----------
    Z : Tensor of shape (n, p)
        Augmented features ``[phi(X), 1]``.
    C : Tensor of shape (n, c)
        Targets.
    sample_weight : Tensor of shape (n,), default=None
        Positive weights, read as repetitions.
    alpha : 'gcv' or float, default='gcv'
        The ridge weight (mean-loss scale), or ``'gcv'`` to choose it by
        generalized cross-validation (:func:`sk_slim.linalg.gcv`'s range).
    rows : RowGroup, default=LOCAL_ROWS
        As in :func:`solve_head`.
    gcv_weight : float, default=1.0
        As in :func:`solve_head`.

    Returns
    -------
    W : Tensor of shape (p, c), or (p,) for 1-D ``C``
        The head, computed in float64, in the result dtype of ``Z`` and ``C``.
    alpha : float
        The ridge weight used.
    """
    factors = tikhonov_factor(Z, C, sample_weight, rows=rows)
    W, alpha = _ridge_solution(factors, alpha, gcv_weight)
    W = W.to(torch.result_type(Z, C))
    return (W.reshape(-1) if C.ndim == 1 else W), alpha


def _ridge_solution(factors, alpha, gcv_weight=1.0):
    """The float64 ridge head and its weight (mean-loss scale) from factors of
    unnormalized weighted rows: ``lam = alpha * n_eff`` (weights read as
    repetitions)."""
    n_eff = factors.n_samples
    if alpha == "gcv":
        lam = factors.minimize_gcv(weight=gcv_weight)[0]
        alpha = lam / n_eff
    else:
        lam = alpha * n_eff
    return factors.solve(lam), float(alpha)


def ridge_head_factored(factors, alpha="gcv"):
    """:func:`ridge_head` from a factorization of already scaled features.

    Parameters
    ----------
    factors : TikhonovSVD
        The thin SVD of ``sqrt(w / sum(w)) * [phi(X), 1]`` with targets scaled
        alike and ``n_samples = sum(w)``: the weighted mean loss as a plain sum
        of squares, so its ridge weight is ``alpha`` itself.
    alpha : 'gcv' or float, default='gcv'
        As in :func:`ridge_head` (GCV over the same relative range).

    Returns
    -------
    W : Tensor of shape (p, c)
        The head, float64; equal to :func:`ridge_head`'s up to rounding.
    alpha : float
        The ridge weight used.
    """
    if alpha == "gcv":
        alpha = factors.minimize_gcv()[0]
    return factors.solve(alpha), float(alpha)


def solve_logistic_head(
    net, X, Y, sample_weight=None, alpha=1e-3, tol=1e-10, rows=LOCAL_ROWS
):
    """Solve the cross-entropy head of ``net`` on all of ``(X, Y)`` and store it.

    Solves the ridge-regularized multinomial logistic regression
    ``min_W sum_i w_i CE(softmax([phi(x_i), 1] W), y_i) / sum_i w_i
    + alpha/2 ||W||^2`` by Newton-Krylov in float64, warm-started from the
    network's current head.

    Parameters
    ----------
    net : SeparableNet
        The network; its head buffers receive the solution.
    X : Tensor of shape (n, ...)
        Inputs.
    Y : Tensor of shape (n, c)
        One-hot targets.
    sample_weight : Tensor of shape (n,), default=None
        Nonnegative weights.
    alpha : float, default=1e-3
        The ridge weight, > 0.
    tol : float, default=1e-10
        Gradient-norm tolerance of the Newton iteration.
    rows : RowGroup, default=LOCAL_ROWS
        As in :func:`solve_head`.

    Returns
    -------
    alpha : float
        The ridge weight used.

    Raises
    ------
    FloatingPointError
        If the features or the solution are not finite.
    """
    Z = _finite_augmented_features(net, X, rows)  # (n, m + 1)
    W0 = net.augmented_head.detach()
    result = logistic_head(Z, Y, alpha, sample_weight, W0, tol=tol, rows=rows)
    if not torch.isfinite(result.W).all():
        raise FloatingPointError("The logistic head is not finite.")
    net.set_head(result.W)
    return float(alpha)


def validated_logistic_head(
    net,
    X,
    Y,
    sample_weight,
    X_val,
    Y_val,
    weight_val=None,
    path=LOGISTIC_HEAD_PATH,
    rows=LOCAL_ROWS,
):
    """Solve the cross-entropy head along a ridge path, keeping the best held out.

    The kept head is the one whose log-loss on the held-out rows is least. The
    head of each ridge weight ``alpha`` solves the problem of
    :func:`solve_logistic_head` on ``(X, Y)``; the path runs from the
    strongest weight down, each solve warm-started from the previous one, and
    stops after two solves in a row that do not lower the least held-out loss
    so far.

    Parameters
    ----------
    net : SeparableNet
        The network; its head buffers receive the chosen solution.
    X : Tensor of shape (n, ...)
        Training inputs.
    Y : Tensor of shape (n, c)
        Their one-hot targets.
    sample_weight : Tensor of shape (n,) or None
        Nonnegative weights of the training rows.
    X_val : Tensor of shape (n_val, ...)
        Held-out inputs.
    Y_val : Tensor of shape (n_val, c)
        Their one-hot targets.
    weight_val : Tensor of shape (n_val,), default=None
        Weights of the held-out rows.
    path : sequence of float, default=LOGISTIC_HEAD_PATH
        The ridge weights tried, times the number of training samples (the sum
        of ``sample_weight``: weights count as repetitions; all processes' rows
        in a data-parallel fit).
    rows : RowGroup, default=LOCAL_ROWS
        As in :func:`solve_head`; the held-out log-loss is summed over all
        processes' held-out rows too.

    Returns
    -------
    alpha : float
        The chosen ridge weight (on the mean cross-entropy).

    Raises
    ------
    FloatingPointError
        If the features or the chosen solution are not finite.
    """
    Z = _finite_augmented_features(net, X, rows)  # (n, m + 1)
    Z_val = _finite_augmented_features(net, X_val, rows).to(torch.float64)
    n_samples = effective_samples(Z, sample_weight, rows)
    W, best, rises = None, (float("inf"), None, None), 0
    for scaled in sorted(path, reverse=True):
        alpha = scaled / n_samples
        W = logistic_head(Z, Y, alpha, sample_weight, W, rows=rows).W
        held_out = float(logistic_loss(Z_val, Y_val, W, 0.0, weight_val, rows)[0])
        if held_out < best[0]:
            best, rises = (held_out, alpha, W), 0
        else:
            rises += 1
            if rises == 2:  # past the minimum: weaker ridges overfit more
                break
    _, alpha, W = best
    if W is None or not torch.isfinite(W).all():
        raise FloatingPointError("The logistic head is not finite.")
    net.set_head(W)
    return float(alpha)


@dataclass(frozen=True)
class HeadPosterior:
    """The Bayesian reading of a ridge head, given the learned features.

    With ``c_k = z^T w_k + eps``, ``eps ~ N(0, sigma_k^2)`` and the prior
    ``w_k ~ N(0, sigma_k^2 / lam I)``, the posterior of ``w_k`` is Gaussian with
    the ridge solution as its mean and covariance ``sigma_k^2 Sigma``; the
    predictive variance at features ``z`` is ``sigma_k^2 (1 + z^T Sigma z)``.

    Attributes
    ----------
    covariance : Tensor of shape (p, p)
        ``Sigma = (Z^T diag(w) Z + lam I)^{-1}`` (float64, augmented features).
    noise_variance : Tensor of shape (c,)
        ``sigma_k^2 = sum_i w_i r_ik^2 / (n - tr H)``: each output's weighted
        residual over the residual degrees of freedom (nan if there are none).
    """

    covariance: torch.Tensor
    noise_variance: torch.Tensor

    def predictive_variance(self, Z):
        """Compute the predictive variance at augmented features.

        Parameters
        ----------
        Z : Tensor of shape (n, p)
            ``[phi(x), 1]`` per row.

        Returns
        -------
        Tensor of shape (n, c)
            ``sigma_k^2 (1 + z_i^T Sigma z_i)``, float64.
        """
        leverage = self.leverage(Z)  # (n,)
        return self.noise_variance[None, :] * (1.0 + leverage[:, None])

    def leverage(self, Z):
        """Compute ``z_i^T Sigma z_i`` per row.

        Parameters
        ----------
        Z : Tensor of shape (n, p)
            ``[phi(x), 1]`` per row.

        Returns
        -------
        Tensor of shape (n,)
            Float64.
        """
        Z = Z.to(self.covariance)
        return ((Z @ self.covariance) * Z).sum(dim=1)


def head_posterior(
    net, X, C, sample_weight=None, alpha=0.0, rows=LOCAL_ROWS, derivatives=None
):
    """The posterior of ``net``'s ridge head, solved on ``(X, C)`` with ``alpha``.

    Parameters
    ----------
    net : SeparableNet
        The network, its head the ridge solution on these rows (as
        :func:`solve_head` leaves it).
    X : Tensor of shape (n, ...)
        Inputs.
    C : Tensor of shape (n, c)
        Targets.
    sample_weight : Tensor of shape (n,), default=None
        Positive weights, read as repetitions.
    alpha : float, default=0.0
        The head's ridge weight on the mean-loss scale (``lam = alpha n``).
    rows : RowGroup, default=LOCAL_ROWS
        As in :func:`solve_head`.
    derivatives : DerivativeData, default=None
        As in :func:`solve_head`: the posterior of the stacked problem, its
        noise variance from the residuals of all the rows.

    Returns
    -------
    HeadPosterior
        Ignores the uncertainty in the features (``theta`` is taken as exact).
    """
    if _streams(net, X, rows, derivatives):
        factors = _streamed_factors(net, X, C, sample_weight, rows)
        blocks = _weighted_blocks(net, X, C, sample_weight, [True])
        squared = sum(_head_residual(net, Z, C).square().sum(dim=0) for Z, C in blocks)
    else:
        Z, C, sample_weight = _head_rows(net, X, C, sample_weight, rows, derivatives)
        factors = tikhonov_factor(Z, C, sample_weight, rows=rows)
        if sample_weight is not None:
            root = sample_weight.to(torch.float64).sqrt()[:, None]
            Z, C = root * Z.to(torch.float64), root * C.to(torch.float64)
        squared = _head_residual(net, Z, C).square().sum(dim=0)
    lam = float(alpha) * factors.n_samples
    dof = factors.residual_dof(lam)
    squared = rows.sum(squared)
    noise = squared / dof if dof > 0 else torch.full_like(squared, torch.nan)
    return HeadPosterior(factors.covariance(lam), noise)


def held_out_noise(posterior, net, X, C, sample_weight=None, rows=LOCAL_ROWS):
    """The posterior with its noise variance estimated on held-out rows.

    The in-sample estimate ``sum_i w_i r_ik^2 / (n - tr H)`` counts the head's
    degrees of freedom but not those of ``theta``, which was fitted to the same
    rows, so it is optimistic for a network that fits its training data
    closely. On rows the fit never saw, a residual of output ``k`` has variance
    ``sigma_k^2 (1 + z^T Sigma z)`` under the model, so

        sigma_k^2 = sum_i w_i r_ik^2 / (1 + z_i^T Sigma z_i) / sum_i w_i

    is unbiased for it.

    Parameters
    ----------
    posterior : HeadPosterior
        From :func:`head_posterior` on the training rows.
    net : SeparableNet
        The network, with the head the posterior is of.
    X : Tensor of shape (m, ...)
        Held-out inputs (e.g. the early-stopping split).
    C : Tensor of shape (m, c)
        Their targets, on the scale the head was solved on.
    sample_weight : Tensor of shape (m,), default=None
        Their weights.
    rows : RowGroup, default=LOCAL_ROWS
        As in :func:`solve_head`: the held-out rows may be split too.

    Returns
    -------
    HeadPosterior
        The same covariance, the held-out noise variance.
    """
    total = posterior.covariance.new_zeros(C.shape[1])
    mass, finite = total.new_zeros(()), True
    block_rows = _block_rows(net)
    for start in range(0, len(X), block_rows):  # many rows: a block at a time
        block = slice(start, start + block_rows)
        Z = net.augment(features_of(net, X[block]))  # (rows, p)
        finite = finite and bool(torch.isfinite(Z).all())
        R = _head_residual(net, Z, C[block])  # (rows, c)
        leverage = posterior.leverage(Z)  # (rows,)
        scaled = R.to(leverage).square() / (1.0 + leverage[:, None])
        if sample_weight is None:  # in place: no small tensor per block
            total += scaled.sum(dim=0)
            mass += len(scaled)
        else:
            w = sample_weight[block].to(scaled)[:, None]
            total += (w * scaled).sum(dim=0)
            mass += w.sum()
    if not rows.all(finite):
        raise FloatingPointError("The learned features are not finite.")
    total, mass = rows.sum(total, mass)
    return HeadPosterior(posterior.covariance, total / mass)


def _head_residual(net, Z, C):
    """``Z [W; b] - C`` in float64 for augmented features ``Z`` (n, p)."""
    Z, C = Z.to(torch.float64), C.to(torch.float64)
    return Z @ net.augmented_head.to(torch.float64) - C
