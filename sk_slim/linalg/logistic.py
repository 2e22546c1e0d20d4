"""The cross-entropy head: ridge-regularized multinomial logistic regression.

GNvpro's classification head ``W(theta)`` (Newman et al. 2021, the
cross-entropy case) solves

    min_W  f(W) = sum_i w_i CE(softmax(z_i W), y_i) + alpha/2 ||W||_F^2

with weights ``w_i`` summing to one (a weighted mean loss), by Newton's method
with a conjugate-gradient inner solve on the matrix-free Hessian, in float64 and
warm-started from the previous head. Also here: the calibration of scores by a
temperature (slimTrain's least-squares head is not a probability model).
"""

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ..rows import LOCAL_ROWS
from .krylov import cg

# Above this many entries n p c (rows times head entries), logistic_head's Newton
# systems are solved by CG preconditioned with the dense Hessian of an evenly
# strided row sample of about _SAMPLED_HESSIAN_ENTRIES / (p c) rows: on many
# rows plain CG took ~100 products a Newton step (1e5 rows, 4 classes: 8 ms
# each). Below, plain CG, whose few products cost less than the assembly.
_PRECONDITION_ABOVE = 2**24
_SAMPLED_HESSIAN_ENTRIES = 2**22

__all__ = [
    "LogisticResult",
    "fit_temperature",
    "logistic_head",
    "logistic_hessian",
    "logistic_hessian_dense",
    "logistic_loss",
    "softmax_jacobian_product",
]


@dataclass
class LogisticResult:
    """The solution of :func:`logistic_head` and how it was reached.

    Attributes
    ----------
    W : Tensor of shape (p, c)
        The head.
    P : Tensor of shape (n, c)
        Softmax probabilities at ``W``.
    value : float
        The objective ``f(W)``.
    grad_norm : float
        ``||grad f(W)||_F``.
    n_iter : int
        Newton iterations run.
    converged : bool
        Whether ``grad_norm <= tol``.
    """

    W: Tensor  # (p, c) the head
    P: Tensor  # (n, c) softmax probabilities at W
    value: float  # f(W)
    grad_norm: float  # ||grad f(W)||_F
    n_iter: int  # Newton iterations
    converged: bool


def _normalized(weight, n, like, rows=LOCAL_ROWS):
    """Weights summing to one (uniform when None), shape (n, 1); over all
    processes' rows when ``rows`` splits them."""
    total = float(n) if weight is None else weight.sum()
    if rows.distributed:
        total = rows.sum(torch.as_tensor(total, dtype=like.dtype, device=like.device))
    if weight is None:
        return like.new_ones(n, 1) / total
    return (weight.to(like) / total)[:, None]


def logistic_loss(Z, Y, W, alpha, sample_weight=None, rows=LOCAL_ROWS):
    """Value and gradient of the ridge-regularized multinomial logistic loss.

    Parameters
    ----------
    Z : Tensor of shape (n, p)
        Features (augment with a column of ones for a bias).
    Y : Tensor of shape (n, c)
        Targets: one-hot rows (or any rows on the probability simplex).
    W : Tensor of shape (p, c)
        The head.
    alpha : float
        Ridge weight on all of ``W``.
    sample_weight : Tensor of shape (n,), default=None
        Nonnegative weights, normalized to sum to one.
    rows : RowGroup, default=LOCAL_ROWS
        When the rows are split over processes
        (:mod:`sk_slim.rows`): ``Z`` and ``Y`` hold this
        process's, and the sums over rows are over all of them. ``LOCAL_ROWS``:
        all rows are here.

    Returns
    -------
    value : Tensor of shape ()
        ``sum_i w_i (logsumexp(z_i W) - y_i . z_i W) + alpha/2 ||W||^2``.
    grad : Tensor of shape (p, c)
        ``Z^T diag(w) (P - Y) + alpha W``.
    P : Tensor of shape (n, c)
        ``softmax(Z W)`` by rows.
    """
    omega = _normalized(sample_weight, Z.shape[0], Z, rows)
    S = Z @ W  # (n, c)
    log_P = torch.log_softmax(S, dim=1)
    P = log_P.exp()
    value, grad = -(omega * Y * log_P).sum(), Z.T @ (omega * (P - Y))
    if rows.distributed:
        value, grad = rows.sum(value, grad)
    return value + 0.5 * alpha * W.square().sum(), grad + alpha * W, P


def softmax_jacobian_product(P, A):
    """Row-wise products with the softmax Jacobian.

    Parameters
    ----------
    P : Tensor of shape (n, c)
        Softmax probabilities by rows.
    A : Tensor of shape (n, c)
        Directions.

    Returns
    -------
    Tensor of shape (n, c)
        Row ``i`` is ``(diag(p_i) - p_i p_i^T) a_i``.
    """
    return P * (A - (P * A).sum(dim=1, keepdim=True))


def logistic_hessian(Z, P, alpha, sample_weight=None, rows=LOCAL_ROWS):
    """The loss's Hessian at probabilities ``P`` as a matvec closure.

    Parameters
    ----------
    Z : Tensor of shape (n, p)
        Features.
    P : Tensor of shape (n, c)
        ``softmax(Z W)`` at the point of linearization.
    alpha : float
        Ridge weight.
    sample_weight : Tensor of shape (n,), default=None
        Nonnegative weights (normalized to sum to one).
    rows : RowGroup, default=LOCAL_ROWS
        As in :func:`logistic_loss`.

    Returns
    -------
    matvec : callable
        ``V (p, c) -> Z^T diag(w) [(diag(p_i) - p_i p_i^T) (Z V)_i]_i + alpha V``,
        in ``O(n p c)`` per product.
    """
    omega = _normalized(sample_weight, Z.shape[0], Z, rows)

    def matvec(V):
        product = Z.T @ (omega * softmax_jacobian_product(P, Z @ V))
        if rows.distributed:
            product = rows.sum(product)
        return product + alpha * V

    return matvec


def logistic_hessian_dense(
    Z, P, alpha, sample_weight=None, rows=LOCAL_ROWS, *, block_rows=None
):
    """The loss's Hessian at ``P`` as a dense (p c, p c) matrix.

    Row-major ``vec``: entry ``(a c + k, b c + l)`` is the second derivative in
    ``W[a, k]`` and ``W[b, l]``, so ``H @ V.reshape(-1)`` equals
    ``logistic_hessian(Z, P, alpha)(V).reshape(-1)``.

    Parameters
    ----------
    Z : Tensor of shape (n, p)
        Features.
    P : Tensor of shape (n, c)
        ``softmax(Z W)`` at the point of linearization.
    alpha : float
        Ridge weight.
    sample_weight : Tensor of shape (n,), default=None
        Nonnegative weights (normalized to sum to one).
    rows : RowGroup, default=LOCAL_ROWS
        As in :func:`logistic_loss`.
    block_rows : int, default=None
        Rows per block of the assembly, whose intermediates hold ``block_rows
        p c`` floats; None: all rows at once.

    Returns
    -------
    H : Tensor of shape (p c, p c)
        Symmetric positive definite for ``alpha > 0``.
    """
    n, p = Z.shape
    c = P.shape[1]
    omega = _normalized(sample_weight, n, Z, rows)
    step = max(1, n if block_rows is None else block_rows)
    diagonal = gram = None
    for start in range(0, n, step) or [0]:
        block = slice(start, start + step)
        Z_b, P_b, omega_b = Z[block], P[block], omega[block]
        # sum_i w_i (z_i z_i^T) kron diag(p_i): one (p, p) Gram per class.
        block_diagonal = torch.einsum("ia,ik,ib->akb", Z_b, omega_b * P_b, Z_b)
        # sum_i w_i (z_i kron p_i)(z_i kron p_i)^T
        M = (omega_b.sqrt() * Z_b)[:, :, None] * P_b[:, None, :]  # (rows, p, c)
        M = M.reshape(len(Z_b), p * c)
        if gram is None:
            diagonal, gram = block_diagonal, M.T @ M
        else:  # in place: (p c)^2 floats
            diagonal += block_diagonal
            gram.addmm_(M.T, M)
    H = torch.zeros(p, c, p, c, dtype=Z.dtype, device=Z.device)
    k = torch.arange(c, device=Z.device)
    H[:, k, :, k] = diagonal.permute(1, 0, 2)  # (p, c, p)
    H = H.reshape(p * c, p * c) - gram
    if rows.distributed:
        H = rows.sum(H)
    return H + alpha * torch.eye(p * c, dtype=Z.dtype, device=Z.device)


def _flat(matvec, p, c):
    """A matvec on (p, c) matrices as one on (p c,) vectors, for CG."""
    return lambda v: matvec(v.view(p, c)).reshape(-1)


def logistic_head(
    Z,
    Y,
    alpha,
    sample_weight=None,
    W0=None,
    *,
    tol=1e-10,
    max_iter=100,
    krylov_max_iter=None,
    rows=LOCAL_ROWS,
):
    """Solve the ridge-regularized multinomial logistic regression on ``Z``.

    Minimizes ``sum_i w_i CE(softmax(z_i W), y_i) + alpha/2 ||W||_F^2`` (weights
    normalized to sum to one) by Newton's method: each step solves the Newton
    system by conjugate gradients on the matrix-free Hessian (on many rows
    preconditioned by the Hessian of a row sample), with a forcing tolerance
    that tightens as the gradient shrinks, then backtracks (Armijo) from the
    full step. Computed in float64.

    Parameters
    ----------
    Z : Tensor of shape (n, p)
        Features (augment with a column of ones for a bias).
    Y : Tensor of shape (n, c)
        One-hot targets (rows on the probability simplex).
    alpha : float
        Ridge weight, > 0 (it makes the minimizer unique: softmax is invariant
        to adding a vector to every class's weights).
    sample_weight : Tensor of shape (n,), default=None
        Nonnegative weights (normalized to sum to one).
    W0 : Tensor of shape (p, c), default=None
        Starting point, e.g. the previous head (warm start); zero by default.
    tol : float, default=1e-10
        Stop when ``||grad f(W)||_F <= tol``.
    max_iter : int, default=100
        Maximum Newton iterations.
    krylov_max_iter : int, default=None
        Maximum CG iterations per Newton step; ``p c`` by default.
    rows : RowGroup, default=LOCAL_ROWS
        As in :func:`logistic_loss`: every process then takes the same steps.

    Returns
    -------
    LogisticResult
        The head ``W``, its probabilities, and the convergence record.

    Notes
    -----
    For ``alpha > 0`` the loss is strictly convex with a Lipschitz Hessian, so
    Newton's method with Armijo backtracking converges globally and, with the
    forcing tolerance ``min(0.5, sqrt(||g||)) ||g||``, superlinearly.

    ``LogisticRegression(C=1 / (n alpha), fit_intercept=False)`` of
    scikit-learn on the same (augmented) features solves the same problem for
    three or more classes, up to its stopping tolerance.
    """
    if alpha <= 0:
        raise ValueError(f"alpha must be > 0, got {alpha}.")
    Z, Y = Z.to(torch.float64), Y.to(torch.float64)
    p, c = Z.shape[1], Y.shape[1]
    W = Z.new_zeros(p, c) if W0 is None else W0.to(Z).clone()
    krylov_max_iter = p * c if krylov_max_iter is None else krylov_max_iter
    value, grad, P = logistic_loss(Z, Y, W, alpha, sample_weight, rows)
    grad_norm = float(torch.linalg.vector_norm(grad))
    stride = _preconditioner_stride(rows.max_int(len(Z)), p * c)
    n_iter = 0
    while grad_norm > tol and n_iter < max_iter:
        n_iter += 1
        forcing = min(0.5, math.sqrt(grad_norm))
        step = cg(
            _flat(logistic_hessian(Z, P, alpha, sample_weight, rows), p, c),
            -grad.reshape(-1),
            rtol=forcing,
            max_iter=krylov_max_iter,
            preconditioner=_sampled_hessian_solve(
                Z, P, alpha, sample_weight, rows, stride
            ),
        ).x.view(p, c)
        slope = float((grad * step).sum())
        if slope >= 0:  # an inexact solve lost descent: fall back on -grad
            step, slope = -grad, -(grad_norm**2)
        t = 1.0
        for _ in range(50):
            trial = logistic_loss(Z, Y, W + t * step, alpha, sample_weight, rows)
            if trial[0] <= value + 1e-4 * t * slope:
                break
            t *= 0.5
        else:  # no decrease at machine precision: W is as good as it gets
            break
        W = W + t * step
        value, grad, P = trial
        grad_norm = float(torch.linalg.vector_norm(grad))
    return LogisticResult(
        W=W,
        P=P,
        value=float(value),
        grad_norm=grad_norm,
        n_iter=n_iter,
        converged=grad_norm <= tol,
    )


def _preconditioner_stride(n_rows, head_entries):
    """The stride of the row sample whose Hessian preconditions the Newton
    systems, or None (no preconditioner) up to ``_PRECONDITION_ABOVE`` entries;
    from the process with the most rows, so that all decide alike."""
    if n_rows * head_entries <= _PRECONDITION_ABOVE:
        return None
    return -(-n_rows // max(1, _SAMPLED_HESSIAN_ENTRIES // head_entries))  # ceil


def _sampled_hessian_solve(Z, P, alpha, sample_weight, rows, stride):
    """``v -> H_s^{-1} v`` with ``H_s`` the Hessian on every ``stride``-th row
    (a Cholesky factor); None without a stride or where it cannot be factored."""
    if stride is None:
        return None
    sample = slice(None, None, stride)
    weight = None if sample_weight is None else sample_weight[sample]
    H = logistic_hessian_dense(Z[sample], P[sample], alpha, weight, rows)
    L, info = torch.linalg.cholesky_ex(H)
    if int(info):
        return None
    return lambda v: torch.cholesky_solve(v[:, None], L)[:, 0]


def _smoothed_targets(labels, c, n):
    """Soft targets: ``(n + 1) / (n + 2)`` on the true class of each row of
    ``n`` (weights as repetitions), the rest shared by the other classes."""
    T = torch.full(
        (len(labels), c),
        1.0 / ((c - 1) * (n + 2)),
        dtype=torch.float64,
        device=labels.device,
    )
    return T.scatter(1, labels[:, None], (n + 1) / (n + 2))


def fit_temperature(
    S, labels, sample_weight=None, *, max_logit_range=30.0, rows=LOCAL_ROWS
):
    """The inverse temperature that calibrates scores into probabilities.

    Minimizes the weighted mean cross-entropy of ``softmax(beta S)`` against
    smoothed targets over ``beta >= 0``: each of ``n`` rows counts as
    ``(n + 1) / (n + 2)`` of its class (Laplace's rule of succession for the
    probability that a prediction is right, in the spirit of Platt's targets;
    weights read as repetitions). Without that smoothing, scores that separate a
    small calibration set perfectly drive ``beta`` to infinity and the
    probabilities to 0 and 1. Platt's per-class form, ``(N_k + 1) / (N_k + 2)``,
    was measured too: it made ten-class digits underconfident (test log-loss
    0.152 against 0.090). The loss is convex in ``beta`` (its second
    derivative is the weighted variance of the scores under the softmax), so
    the minimizer is the root of the derivative, found by bisection on
    ``log beta``.

    Parameters
    ----------
    S : Tensor of shape (n, c)
        Scores, e.g. a least-squares head's outputs on one-hot targets.
    labels : Tensor of shape (n,)
        Class indices in ``[0, c)``.
    sample_weight : Tensor of shape (n,), default=None
        Nonnegative weights of the rows, read as repetitions.
    max_logit_range : float, default=30.0
        A safeguard: ``beta`` stays below ``max_logit_range`` over the widest
        row's score range.
    rows : RowGroup, default=LOCAL_ROWS
        When the rows are split over processes
        (:mod:`sk_slim.rows`): these are this process's, and
        the loss is over all of them. ``LOCAL_ROWS``: all rows are here.

    Returns
    -------
    beta : float
        The inverse temperature, in ``[0, max_logit_range / max_i range(S_i)]``.

    References
    ----------
    J. Platt, "Probabilistic outputs for support vector machines and comparisons
    to regularized likelihood methods", Advances in Large Margin Classifiers,
    1999 (smoothed targets for calibration).
    """
    S = S.to(torch.float64)
    S = S - S.mean(dim=1, keepdim=True)
    n = float(len(S) if sample_weight is None else sample_weight.sum())
    widest = float((S.amax(dim=1) - S.amin(dim=1)).max()) if len(S) else 0.0
    if rows.distributed:  # over all processes' rows
        n = rows.sum_floats(n)
        widest = max(rows.gather_objects(widest))
    omega = (S.new_ones(len(S)) if sample_weight is None else sample_weight.to(S)) / n
    labels = labels.long()
    targets = _smoothed_targets(labels, S.shape[1], n)
    target_score = (targets * S).sum(dim=1)

    def slope(beta):  # d/dbeta of the mean cross-entropy: E_softmax[s] - E_t[s]
        P = torch.softmax(beta * S, dim=1)
        local = float((omega * ((P * S).sum(dim=1) - target_score)).sum())
        return rows.sum_floats(local)

    if slope(0.0) >= 0:  # the scores carry no signal: uniform probabilities
        return 0.0
    max_beta = max_logit_range / widest
    low, high = math.log(1e-9 * max_beta), math.log(max_beta)
    if slope(max_beta) <= 0:
        return max_beta
    for _ in range(100):
        mid = 0.5 * (low + high)
        if slope(math.exp(mid)) < 0:
            low = mid
        else:
            high = mid
        if high - low < 1e-10:
            break
    return math.exp(0.5 * (low + high))
