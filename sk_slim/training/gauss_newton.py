"""The Gauss-Newton operator of the reduced least-squares problem, its
preconditioner, and the coordinates of the preconditioned inner solve.

The Gauss-Newton matrix ``J^T J`` of the reduced residual includes the head's
sensitivity ``dW`` (Golub and Pereyra's full variable-projection Jacobian, which GNvpro
uses: Newman et al. 2021); Kaufman's simplification, which drops
the residual's term from ``dW``, gives the preconditioner.

References
----------
Newman, Ruthotto, Hart, van Bloemen Waanders (2021), "Train Like a (Var)Pro:
Efficient Training of Neural Networks with Variable Projection", SIAM J. Math.
Data Sci. 3(4).

Kaufman (1975), "A variable projection method for solving separable nonlinear
least squares problems", BIT 15.
"""

import math
from dataclasses import dataclass

import torch

__all__ = ["ReusedKaufmanFactor", "kaufman_factor", "least_squares_gauss_newton"]

_DTYPE = torch.float64
# The Kaufman preconditioner is formed when its cost, n r P^2 multiply-adds for n
# rows, r head directions and P parameters, stays below this (about 20 ms on one
# CPU core), and P below _PRECONDITIONER_MAX_PARAMS (a P x P float64 factor).
_PRECONDITIONER_FLOPS = 2**29
_PRECONDITIONER_MAX_PARAMS = 4096
_JACOBIAN_CHUNK = 2**20  # entries of one chunk of per-row Jacobians
_JACOBIAN_MAX = 2**23  # entries of all of them (64 MiB in float64)
# The preconditioner is K + mu I with mu this fraction of K's mean diagonal. An
# almost undamped K lets steps run far along its near-null directions, where the
# model is poor (peaks: R^2 0.57 after 16 iterations at 1e-10); measured on the
# benchmark problems, 1e-2 to 3e-2 did best, 3e-2 on the noisy diabetes data.
_DAMPING = 3e-2
# Beyond the budget's rows, the factor of a row sample (ishigami at 20 000 rows:
# test error 6e-4 -> 1e-5 in fewer iterations) when the sample has this many
# residuals per parameter; cdr_8's 2.4 took 1.7x the fit time for 0.97x the
# error (both on the suite's tune half, tune_records/preconditioner_sampled.jsonl).
_SAMPLE_RESIDUALS_PER_PARAM = 4


def kaufman_factor(problem, lin, head=None):
    """Cholesky factor of Kaufman's Gauss-Newton matrix, to precondition CG.

    Kaufman's approximation drops the residual's term from the head's
    sensitivity, ``dW ~ -G^{-1} Z^T dZ W``; its matrix differs from the
    exact one (:func:`least_squares_gauss_newton`) by terms of the order of the residual
    ``R``, and equals it where ``R = 0``. With ``A_k`` the Jacobian of
    ``Z (Q S)[:, k]`` (``W = Q S P^T``: the head's rank-r directions,
    scaled) and ``H = Z G^{-1} Z^T``,

        K = sum_k (||(I - H) A_k||^2 + alpha_W ||G^{-1} Z^T A_k||^2)
            + alpha_theta D,

    written as sums of squares (the Schur-complement form
    ``A^T A - F^T G^{-1} F`` cancels catastrophically at small ``alpha_W``).
    The per-row Jacobians cost r backward passes and one forward pass.

    Parameters
    ----------
    problem : ReducedProblem
        The reduced least-squares problem.
    lin : _Linearization
        It, at the current ``theta``.
    head : Tensor of shape (p, c), default=None
        The head whose directions ``Q S`` enter ``K``; None: ``lin.W``.

    Returns
    -------
    L : Tensor of shape (P, P) or None
        Lower Cholesky factor of ``K + mu I`` (float64, ``mu`` =
        ``_DAMPING`` times the mean diagonal). Where all rows would cost more
        than ``_PRECONDITIONER_FLOPS`` multiply-adds or ``_JACOBIAN_MAX``
        stored entries, ``K`` is that of an evenly strided sample of the rows
        within that budget. None where the head has rank 0, with more than
        ``_PRECONDITIONER_MAX_PARAMS`` parameters, where that sample gives
        fewer than ``_SAMPLE_RESIDUALS_PER_PARAM`` residuals per parameter
        (or non-finite features), or where it cannot be factored.
    """
    theta, rows = lin.theta, problem.rows
    n_params, n_rows = theta.numel(), problem.n_rows
    head = lin.W if head is None else head
    Q, q, _ = torch.linalg.svd(head[:-1], full_matrices=False)  # features only
    rank = int((q > 1e-6 * q[0]).sum()) if q.numel() and q[0] > 0 else 0
    # The cost of one process (rows split over several: the one with the most),
    # so that all decide alike.
    n_rows = rows.max_int(n_rows)
    if not rank or n_params > _PRECONDITIONER_MAX_PARAMS:
        return None
    budget = min(
        _JACOBIAN_MAX // (rank * n_params),
        _PRECONDITIONER_FLOPS // (rank * n_params**2),
    )
    if n_rows > budget:
        return _sampled_kaufman_factor(problem, lin, n_rows, budget, rank)
    directions = Q[:, :rank] * q[:rank]  # (p - 1, r)
    chunk = max(1, _JACOBIAN_CHUNK // (rank * n_params))
    maps = problem.derivative_maps(lin)
    local_rows = problem.n_rows
    A = lin.Z.new_empty(local_rows, rank, n_params, dtype=_DTYPE)  # no cat of chunks
    for start in range(0, local_rows, chunk):
        rows_chunk = slice(start, start + chunk)
        A[rows_chunk] = maps.row_jacobians(directions, rows_chunk)
    problem.work_units += 1 + rank
    A *= problem.scale[:, :, None]  # in place, as the projection: A is large
    s2 = lin.s**2 + lin.head_alpha
    UtA = rows.sum(torch.einsum("nq,nrj->rqj", lin.U, A))  # (r, q, P)
    projected = A.sub_(
        torch.einsum("nq,rqj->nrj", lin.U, (lin.s**2 / s2)[:, None] * UtA)
    )
    head = (lin.s / s2)[:, None] * UtA  # G^{-1} Z^T A in the basis V
    projected = projected.reshape(-1, n_params)
    head = head.reshape(-1, n_params)
    K = rows.sum(projected.T @ projected) + lin.head_alpha * (head.T @ head)
    K += torch.diag(problem.alpha * problem.penalized.to(_DTYPE))
    return _damped_cholesky(K)


class ReusedKaufmanFactor:
    """Kaufman's factor (:func:`kaufman_factor`), kept while ``theta`` moves little.

    Any symmetric positive definite matrix preconditions CG correctly; one
    formed where ``theta`` was close still clusters the spectrum, at a
    fraction of the cost of forming it (``n r P^2`` multiply-adds, the largest
    share of an iteration at a few thousand rows). Far from where it was
    formed it does not: CG then needs more products, and its rounding grows.
    It is formed afresh once the steps since it was formed add up to
    ``max_travel`` in its own norm (``||J dtheta||``, the change of the
    features' fit, on the mean loss of standardized targets), after ``every``
    uses, after an iteration that accepted no step, and after :meth:`reset`.

    Parameters
    ----------
    every : int
        Outer iterations one factor serves at most.
    max_travel : float
        Summed step length (the preconditioner's norm) it serves at most.
    """

    def __init__(self, every, max_travel):
        self.every, self.max_travel = every, max_travel
        self.reset()

    def reset(self):
        """Form the factor afresh at the next call (a restarted run)."""
        self._factor, self._uses, self._travel = None, self.every, 0.0

    def get_state(self):
        """Where the factor stands, for :meth:`set_state`.

        Returns
        -------
        state : tuple
            The factor (never changed in place), its uses and travel.
        """
        return self._factor, self._uses, self._travel

    def set_state(self, state):
        """Return to a :meth:`get_state`.

        Parameters
        ----------
        state : tuple
            From :meth:`get_state`.
        """
        self._factor, self._uses, self._travel = state

    def __call__(self, problem, lin, step_norm):
        """The factor for this iteration.

        Parameters
        ----------
        problem : ReducedProblem
            The (curvature) problem of this iteration.
        lin : _Linearization
            It, at the current ``theta``.
        step_norm : float
            The previous iteration's step length in the factor's norm (0: no
            step accepted).

        Returns
        -------
        L : Tensor of shape (P, P) or None
            As :func:`kaufman_factor`.
        """
        self._travel += step_norm
        stale = self._uses >= self.every or self._travel > self.max_travel
        if stale or step_norm == 0:
            self._factor, self._uses, self._travel = problem.kaufman_factor(lin), 0, 0.0
        self._uses += 1
        return self._factor


def least_squares_gauss_newton(problem, lin):
    """The Gauss-Newton matrix ``J^T J + alpha_theta D`` as a matvec closure.

    ``J`` is the Jacobian of the residual
    ``r(theta) = [Z W(theta) - C; sqrt(alpha_W) W(theta)]`` including the head's
    sensitivity ``dW`` (Golub-Pereyra, not Kaufman's simplification).

    Parameters
    ----------
    problem : ReducedProblem
        The reduced least-squares problem.
    lin : _Linearization
        It, at the current ``theta``, from its ``linearize`` with
        ``differentiable=True``.

    Returns
    -------
    matvec : callable
        ``matvec(v)`` maps a direction ``v`` of shape (P,) to ``(J^T J + alpha_theta
        D) v``; each call costs one jvp and one vjp pass over the data.

    Notes
    -----
    With ``G = Z^T Z + alpha_W I``, ``H = Z G^{-1} Z^T`` and ``dZ = J_Z v``,
    eliminating ``dW`` from ``J_Z^T L^T L J_Z`` (``L``: the map from ``dZ`` to
    the residual's change) leaves

        J^T J v = J_Z^T [(I - H) dZ W W^T + R (G^{-1} dZ^T R)^T],

    evaluated as rank-``c`` products, ``((I - H) (dZ W)) W^T`` with
    ``I - H = I - U diag(s^2 / (s^2 + alpha_W)) U^T`` from the SVD: ``O(n p c)``
    besides the tangent and adjoint passes, not ``O(n p^2)``. The dense-Jacobian
    test checks it.
    """
    maps = problem.derivative_maps(lin)
    scale = problem.scale  # (n, 1)
    W = lin.W[:-1]  # (m, c): the ones column of Z has no derivative
    R = scale * lin.R  # (n, c)
    # H = Us Us^T in the SVD's basis, and G^{-1} restricted to the features (the
    # ones column of dZ is zero): both formed once, so a product is a few GEMMs.
    Us = lin.U * (lin.s / (lin.s**2 + lin.head_alpha).sqrt())  # (n, q)
    eye = torch.eye(lin.W.shape[0], dtype=_DTYPE, device=W.device)
    G_inv = problem.solve_gram(lin, eye)[:-1, :-1]  # (m, m)
    cotangent = lin.Z.new_empty(lin.Z.shape[0], W.shape[0])

    rows = problem.rows

    def matvec(v):  # (P,) -> (P,)
        dphi = maps.tangent(v).to(_DTYPE)  # (n, m); dZ = scale [dphi, 0]
        Y = scale * (dphi @ W)  # dZ W, (n, c)
        # Both sums over rows at once (one all-reduce when the rows are split).
        UtY, dZtR = rows.sum(Us.T @ Y, dphi.T @ R)
        Y = torch.addmm(Y, Us, UtY, alpha=-1.0)  # (I - H) dZ W
        S = G_inv @ dZtR  # G^{-1} dZ^T R without the ones row, (m, c)
        # The cotangent of phi, (n, m), in one buffer for all products (fresh
        # blocks this size were page-faulted in anew on every product).
        M = torch.mm(scale * Y, W.T, out=cotangent).addmm_(R, S.T)
        problem.work_units += 2
        return rows.sum(maps.adjoint(M.to(lin.theta.dtype))) + (
            problem.alpha * problem.penalized * v
        )

    return matvec


def _sampled_kaufman_factor(problem, lin, n_rows, budget, rank):
    """Kaufman's factor of the problem on an evenly strided sample of its rows.

    Its mean loss over the sample estimates the mean over all rows, so its
    matrix estimates the full one, at a cost within the budget; None when the
    sample (of the process with the most rows) gives fewer than
    ``_SAMPLE_RESIDUALS_PER_PARAM`` residuals per parameter, or its features
    are not finite.
    """
    n_params = lin.theta.numel()
    stride = -(-n_rows // budget) if budget else 0  # the same on every process
    if (
        not stride
        or -(-n_rows // stride) * rank < _SAMPLE_RESIDUALS_PER_PARAM * n_params
    ):
        return None
    X = problem.X
    sample = problem.on_rows(torch.arange(0, X.shape[0], stride, device=X.device))
    sample_lin = sample.linearize(lin.theta, lin.head_alpha, differentiable=True)
    if sample_lin is None:
        return None
    # All rows' head: the sample's own is poorly determined where the features
    # are nearly collinear (its directions were 65% off on a third of the rows).
    factor = kaufman_factor(sample, sample_lin, head=lin.W)
    problem.work_units += sample.work_units / stride
    return factor


def _damped_cholesky(K, tries=4):
    """Cholesky factor of ``K + mu I``, with ``mu`` from ``_DAMPING`` times the mean
    diagonal, raised 1000-fold until the factorization succeeds; None if it never
    does."""
    K = 0.5 * (K + K.T)
    scale = float(K.diagonal().mean())
    if not math.isfinite(scale) or scale <= 0:
        return None
    eye = torch.eye(K.shape[0], dtype=K.dtype, device=K.device)
    for k in range(tries):
        L, info = torch.linalg.cholesky_ex(K + scale * _DAMPING * 10.0 ** (3 * k) * eye)
        if int(info) == 0:
            return L
    return None


@dataclass
class _StepSpace:
    """Coordinates of the inner solve: ``y = L^T x`` for a preconditioner
    ``K = L L^T``, so CG on ``L^{-1} A L^{-T}`` is preconditioned CG on ``A`` and
    the trust region is the ellipsoid ``||x||_K <= radius``."""

    matvec: object  # y -> L^{-1} A L^{-T} y
    rhs: torch.Tensor  # L^{-1} (-g)
    to_theta: object  # y -> x = L^{-T} y

    @classmethod
    def of(cls, matvec, g, factor):
        if factor is None:
            return cls(matvec, -g, lambda y: y)
        dtype = g.dtype

        def solve_lower(x):
            x = x.to(factor.dtype)[:, None]
            return torch.linalg.solve_triangular(factor, x, upper=False)[:, 0]

        def to_theta(y):
            y = y.to(factor.dtype)[:, None]
            return torch.linalg.solve_triangular(factor.T, y, upper=True)[:, 0].to(
                dtype
            )

        def scaled(y):
            return solve_lower(matvec(to_theta(y))).to(dtype)

        return cls(scaled, solve_lower(-g).to(dtype), to_theta)
