"""Krylov solvers on matvec closures: CG, Steihaug-Toint truncated CG and LSQR.

The operators are never formed: every solver takes closures (``matvec``, and
``rmatvec`` for LSQR) so that the Gauss-Newton matrix of a network can be applied
through ``torch.func.jvp``/``vjp`` without materialising a Jacobian. ``cg`` and
``lsqr`` solve ``k`` right-hand sides in lockstep, with per-column scalars; a
column that has converged stops changing while the others go on.
"""

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["KrylovResult", "cg", "lsqr", "steihaug_cg"]

MatVec = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class KrylovResult:
    """Outcome of a Krylov solve.

    Attributes
    ----------
    x : Tensor of shape (n,) or (n, k)
        The approximate solution, with the shape, dtype and device of ``b``
        (``(n,)``/``(n, k)`` for ``lsqr``, where ``b`` has ``m`` rows).
    n_iter : int
        Iterations performed: products with ``A`` for ``cg``/``steihaug_cg``, pairs of
        products with ``A`` and ``A^T`` for ``lsqr``.
    reason : {'converged', 'max_iter', 'negative_curvature', 'boundary'}
        Why the iteration stopped.
    residual_norm : Tensor of shape () or (k,)
        Final residual norm per right-hand side: ``||b - A x||`` as updated by the
        recurrence (``cg``, ``steihaug_cg``), or the LSQR estimate of the (damped)
        least-squares residual ``sqrt(||b - A x||^2 + damp^2 ||x||^2)``.
    predicted_reduction : float or None
        ``steihaug_cg`` only: the decrease ``b^T x - 1/2 x^T A x`` of the quadratic
        model from ``x = 0``.
    """

    x: Tensor
    n_iter: int
    reason: str
    residual_norm: Tensor
    predicted_reduction: float | None = None


def _check_rhs(b: Tensor) -> bool:
    """Validate a right-hand side and return whether it is a single vector."""
    if not torch.is_floating_point(b):
        raise TypeError(f"b must be a floating tensor, got {b.dtype}.")
    if b.ndim not in (1, 2):
        raise ValueError(f"b must have shape (n,) or (n, k), got {tuple(b.shape)}.")
    return b.ndim == 1


def _columnwise(op: MatVec, vector: bool) -> MatVec:
    """Wrap ``op`` so the solvers always work on (n, k) blocks."""
    if not vector:
        return op
    return lambda P: op(P.squeeze(-1)).unsqueeze(-1)


def _nonzero(t: Tensor) -> Tensor:
    """Replace exact zeros by one, for divisions whose numerator is then zero too."""
    return torch.where(t == 0, torch.ones_like(t), t)


def _colnorm(P: Tensor) -> Tensor:
    return torch.linalg.vector_norm(P, dim=0)  # (k,)


def cg(
    matvec: MatVec,
    b: Tensor,
    x0: Tensor | None = None,
    *,
    rtol: float = 1e-5,
    atol: float = 0.0,
    max_iter: int | None = None,
    preconditioner: MatVec | None = None,
) -> KrylovResult:
    """Solve ``A x = b`` for symmetric positive definite ``A`` by conjugate gradients.

    Parameters
    ----------
    matvec : callable
        ``P -> A P``; maps a tensor of shape (n,) to (n,) when ``b`` is 1-D and
        (n, k) to (n, k) when ``b`` is 2-D (each column independently).
    b : Tensor of shape (n,) or (n, k)
        Right-hand side(s); the ``k`` columns are solved at once.
    x0 : Tensor of shape like ``b``, optional
        Starting point; zero by default.
    rtol, atol : float, default=1e-5, 0.0
        Column ``j`` has converged when ``||r_j|| <= max(rtol ||b_j||, atol)``.
    max_iter : int, optional
        Maximum number of iterations; ``10 n`` by default (``n`` would suffice in
        exact arithmetic, rounding delays convergence on ill-conditioned systems).
    preconditioner : callable, optional
        ``R -> M^{-1} R`` for a symmetric positive definite ``M`` close to
        ``A`` (preconditioned CG: the same iterates on ``M^{-1/2} A M^{-1/2}``);
        convergence is still judged on ``||b - A x||``.

    Returns
    -------
    KrylovResult
        ``reason`` is ``'converged'`` when every column converged,
        ``'negative_curvature'`` when ``p^T A p <= 0`` for some active column (``A``
        is not SPD; the iterate before that step is returned), else ``'max_iter'``.

    Notes
    -----
    With ``r_0 = b - A x_0`` and ``p_0 = r_0``, each column iterates

    .. math::

        \\alpha_i = r_i^T r_i / p_i^T A p_i, \\quad
        x_{i+1} = x_i + \\alpha_i p_i, \\quad r_{i+1} = r_i - \\alpha_i A p_i,

        \\beta_i = r_{i+1}^T r_{i+1} / r_i^T r_i, \\quad
        p_{i+1} = r_{i+1} + \\beta_i p_i,

    which minimises the ``A``-norm of the error over the Krylov space
    ``span{r_0, A r_0, ..., A^i r_0}``. A column with ``b_j = 0`` returns
    ``x_j = 0`` (the exact solution) without iterating. ``residual_norm`` is the
    recursively updated residual, equal to ``||b - A x||`` in exact arithmetic.

    References
    ----------
    .. [1] M. R. Hestenes and E. Stiefel, "Methods of conjugate gradients for solving
       linear systems", J. Res. Nat. Bur. Standards 49(6), 409-436, 1952.
    """
    vector = _check_rhs(b)
    A = _columnwise(matvec, vector)
    B = b.unsqueeze(-1) if vector else b  # (n, k)
    n = B.shape[0]
    max_iter = 10 * n if max_iter is None else max_iter

    bnorm = _colnorm(B)  # (k,)
    tol = torch.clamp(rtol * bnorm, min=atol)  # (k,)
    if x0 is None:
        X = torch.zeros_like(B)
        R = B.clone()
    else:
        X = (x0.unsqueeze(-1) if vector else x0).to(B).clone()  # (n, k)
        # A zero right-hand side has the exact solution zero, whatever x0 says.
        X = torch.where(bnorm == 0, torch.zeros_like(X), X)
        R = B - A(X)
    M = None if preconditioner is None else _columnwise(preconditioner, vector)
    Zr = R if M is None else M(R)  # the preconditioned residual
    rs = (R * Zr).sum(0)  # (k,): r^T M^{-1} r
    rr = rs if M is None else (R * R).sum(0)
    active = (rr.sqrt() > tol) & (bnorm > 0)
    P = Zr.clone()

    reason, n_iter = "max_iter", 0
    while n_iter < max_iter and bool(active.any()):
        AP = A(P)  # (n, k)
        pAp = (P * AP).sum(0)  # (k,)
        if bool(((pAp <= 0) & active).any()):
            reason = "negative_curvature"
            break
        n_iter += 1
        alpha = torch.where(active, rs / _nonzero(pAp), torch.zeros_like(rs))  # (k,)
        X = X + alpha * P
        R = R - alpha * AP
        Zr = R if M is None else M(R)
        rs_new = (R * Zr).sum(0)
        beta = rs_new / _nonzero(rs)
        # Frozen columns keep their direction: alpha = 0 leaves x and r untouched.
        P = torch.where(active, Zr + beta * P, P)
        rs = torch.where(active, rs_new, rs)
        rr = rs if M is None else torch.where(active, (R * R).sum(0), rr)
        active = active & (rr.sqrt() > tol)
    if reason != "negative_curvature" and not bool(active.any()):
        reason = "converged"

    rnorm = rr.sqrt()
    return KrylovResult(
        x=X.squeeze(-1) if vector else X,
        n_iter=n_iter,
        reason=reason,
        residual_norm=rnorm.squeeze(0) if vector else rnorm,
    )


def _to_boundary(x: Tensor, p: Tensor, radius: Tensor) -> Tensor:
    """The root ``tau >= 0`` of ``||x + tau p|| = radius``, for ``||x|| <= radius``."""
    xp, pp, xx = x @ p, p @ p, x @ x
    gap = torch.clamp(radius**2 - xx, min=0)
    sq = torch.sqrt(xp**2 + pp * gap)
    # Two forms of the same root; pick the one without cancellation.
    return torch.where(xp > 0, gap / _nonzero(xp + sq), (sq - xp) / _nonzero(pp))


def steihaug_cg(
    matvec: MatVec,
    b: Tensor,
    radius: float | Tensor,
    *,
    rtol: float = 1e-2,
    atol: float = 0.0,
    max_iter: int | None = None,
) -> KrylovResult:
    """Approximately solve the trust-region subproblem by truncated CG.

    Minimises the quadratic model ``m(x) = -b^T x + 1/2 x^T A x`` subject to
    ``||x|| <= radius``, for symmetric ``A`` (not necessarily definite). With
    ``b = -g`` (minus the gradient) and ``A`` the (Gauss-)Newton matrix, ``x`` is
    the trust-region step.

    Parameters
    ----------
    matvec : callable
        ``p -> A p``, mapping shape (n,) to (n,).
    b : Tensor of shape (n,)
        Right-hand side (the negative gradient); one right-hand side only.
    radius : float or Tensor of shape ()
        Trust-region radius, positive.
    rtol, atol : float, default=1e-2, 0.0
        Interior convergence when ``||b - A x|| <= max(rtol ||b||, atol)``.
    max_iter : int, optional
        Maximum number of products with ``A``; ``10 n`` by default.

    Returns
    -------
    KrylovResult
        ``x`` with ``||x|| <= radius`` (up to rounding); ``reason`` is
        ``'negative_curvature'``, ``'boundary'``, ``'converged'`` or ``'max_iter'``;
        ``predicted_reduction = -m(x) = b^T x - 1/2 x^T A x >= 0``.

    Notes
    -----
    This is CG on ``A x = b`` from ``x_0 = 0`` (see :func:`cg`), with two exits
    onto the sphere ``||x|| = radius`` along the current direction ``p_i``, at
    ``x_i + tau p_i`` with ``tau >= 0`` the positive root of
    ``||x_i + tau p_i||^2 = radius^2``:

    - ``p_i^T A p_i <= 0``: the model is unbounded below along ``p_i``
      (``'negative_curvature'``);
    - ``||x_i + alpha_i p_i|| >= radius``: the CG step would leave the ball
      (``'boundary'``).

    The iterates grow in norm and decrease the model monotonically [2]_, so the
    model value of the result is non-increasing in the radius. The residual is
    updated through the boundary step too, ``r = b - A x``, so that
    ``predicted_reduction = (b^T x + r^T x) / 2`` costs no extra product with ``A``.

    References
    ----------
    .. [1] M. R. Hestenes and E. Stiefel, "Methods of conjugate gradients for solving
       linear systems", J. Res. Nat. Bur. Standards 49(6), 409-436, 1952.
    .. [2] T. Steihaug, "The conjugate gradient method and trust regions in large
       scale optimization", SIAM J. Numer. Anal. 20(3), 626-637, 1983.
    """
    if not _check_rhs(b):
        raise ValueError(f"b must have shape (n,), got {tuple(b.shape)}.")
    radius = torch.as_tensor(radius, dtype=b.dtype, device=b.device)
    if bool(radius <= 0):
        raise ValueError(f"radius must be positive, got {radius.item()}.")
    max_iter = 10 * b.shape[0] if max_iter is None else max_iter

    tol = max(rtol * float(torch.linalg.vector_norm(b)), atol)
    x = torch.zeros_like(b)  # (n,)
    r = b.clone()  # (n,) = b - A x
    p = r.clone()
    rs = r @ r
    reason, n_iter = "max_iter", 0
    if float(rs.sqrt()) <= tol:
        reason = "converged"
    while reason == "max_iter" and n_iter < max_iter:
        Ap = matvec(p)  # (n,)
        n_iter += 1
        pAp = p @ Ap
        alpha = rs / _nonzero(pAp)
        if bool(pAp <= 0):
            reason, step = "negative_curvature", _to_boundary(x, p, radius)
        elif bool(torch.linalg.vector_norm(x + alpha * p) >= radius):
            reason, step = "boundary", _to_boundary(x, p, radius)
        else:
            step = alpha
        x = x + step * p
        r = r - step * Ap
        rs_new = r @ r
        if reason == "max_iter" and float(rs_new.sqrt()) <= tol:
            reason = "converged"
        p = r + (rs_new / rs) * p
        rs = rs_new

    predicted = 0.5 * (b @ x + r @ x)
    return KrylovResult(
        x=x,
        n_iter=n_iter,
        reason=reason,
        residual_norm=rs.sqrt(),
        predicted_reduction=float(predicted),
    )


def lsqr(
    matvec: MatVec,
    rmatvec: MatVec,
    b: Tensor,
    *,
    damp: float = 0.0,
    atol: float = 1e-8,
    btol: float = 1e-8,
    max_iter: int | None = None,
) -> KrylovResult:
    """Solve ``min_x ||A x - b||^2 + damp^2 ||x||^2`` by LSQR.

    Parameters
    ----------
    matvec : callable
        ``V -> A V``, mapping (n,) to (m,), or (n, k) to (m, k) when ``b`` is 2-D.
    rmatvec : callable
        ``U -> A^T U``, mapping (m,) to (n,), or (m, k) to (n, k).
    b : Tensor of shape (m,) or (m, k)
        Right-hand side(s), solved in lockstep; ``n`` is read off ``rmatvec(b)``.
    damp : float, default=0.0
        Tikhonov damping.
    atol, btol : float, default=1e-8
        Stopping tolerances, see Notes.
    max_iter : int, optional
        Maximum number of iterations; ``10 n`` by default.

    Returns
    -------
    KrylovResult
        ``x`` of shape (n,) or (n, k); ``reason`` is ``'converged'`` when every
        column met a stopping test, else ``'max_iter'``.

    Notes
    -----
    Golub-Kahan bidiagonalisation of ``A`` started from ``b``,

    .. math::

        \\beta_1 u_1 = b, \\quad \\alpha_1 v_1 = A^T u_1, \\quad
        \\beta_{i+1} u_{i+1} = A v_i - \\alpha_i u_i, \\quad
        \\alpha_{i+1} v_{i+1} = A^T u_{i+1} - \\beta_{i+1} v_i,

    reduces the problem to a lower-bidiagonal least-squares problem, solved by
    Givens rotations (a first one per step eliminates ``damp``), with ``x`` updated
    by short recurrences. Running estimates of ``||A||`` (Frobenius norm of the
    bidiagonal matrix, including ``damp``), of the residual ``||r||`` (damped) and of
    ``||A^T r||`` stop column ``j`` as soon as

    - ``||r|| <= btol ||b|| + atol ||A|| ||x||`` (compatible system), or
    - ``||A^T r|| <= atol ||A|| ||r||`` (least squares).

    ``||x||`` is computed exactly (one norm per column is cheap next to a
    product). The condition-number test of [1]_ is not implemented. From
    ``x_0 = 0`` the iterates lie in ``range(A^T)``, so an underdetermined
    consistent system yields its minimum-norm solution. Columns with ``b_j = 0``
    or ``A^T b_j = 0`` return ``x_j = 0`` at once.

    References
    ----------
    .. [1] C. C. Paige and M. A. Saunders, "LSQR: An algorithm for sparse linear
       equations and sparse least squares", ACM Trans. Math. Softw. 8(1), 43-71,
       1982.
    """
    vector = _check_rhs(b)
    A = _columnwise(matvec, vector)
    At = _columnwise(rmatvec, vector)
    B = b.unsqueeze(-1) if vector else b  # (m, k)

    beta = _colnorm(B)  # (k,)
    bnorm = beta
    U = B / _nonzero(beta)  # (m, k)
    V = At(U)  # (n, k)
    alpha = _colnorm(V)
    V = V / _nonzero(alpha)
    max_iter = 10 * V.shape[0] if max_iter is None else max_iter

    X = torch.zeros_like(V)  # (n, k)
    W = V.clone()  # (n, k)
    phibar, rhobar = beta.clone(), alpha.clone()
    rnorm = beta.clone()
    zero = torch.zeros_like(beta)
    anorm2, res2 = zero.clone(), zero.clone()
    damp2 = damp**2
    active = (beta > 0) & (alpha > 0)

    n_iter = 0
    while n_iter < max_iter and bool(active.any()):
        # Frozen columns run on zero vectors: finite, cheap, and their x is kept.
        U, V = U * active, V * active
        n_iter += 1
        U = A(V) - alpha * U  # (m, k)
        beta = _colnorm(U)
        U = U / _nonzero(beta)
        V = At(U) - beta * V  # (n, k)
        alpha_next = _colnorm(V)
        V = V / _nonzero(alpha_next)
        anorm2 = anorm2 + alpha**2 + beta**2 + damp2

        # Rotation eliminating damp (identity when damp = 0).
        rhobar1 = torch.sqrt(rhobar**2 + damp2)
        c1, s1 = rhobar / _nonzero(rhobar1), damp / _nonzero(rhobar1)
        psi, phibar = s1 * phibar, c1 * phibar
        # Rotation eliminating beta_{i+1} below the diagonal.
        rho = torch.sqrt(rhobar1**2 + beta**2)
        c, s = rhobar1 / _nonzero(rho), beta / _nonzero(rho)
        theta, rhobar = s * alpha_next, -c * alpha_next
        phi, phibar = c * phibar, s * phibar

        X = torch.where(active, X + (phi / _nonzero(rho)) * W, X)
        W = V - (theta / _nonzero(rho)) * W
        alpha = alpha_next

        res2 = torch.where(active, res2 + psi**2, res2)
        rnorm = torch.where(active, torch.sqrt(phibar**2 + res2), rnorm)
        arnorm = (phibar * alpha * c).abs()  # phibar changes sign with rhobar
        anorm = anorm2.sqrt()
        xnorm = _colnorm(X)
        compatible = rnorm <= btol * bnorm + atol * anorm * xnorm
        least_squares = arnorm <= atol * anorm * rnorm
        active = active & ~(compatible | least_squares)

    reason = "max_iter" if bool(active.any()) else "converged"
    return KrylovResult(
        x=X.squeeze(-1) if vector else X,
        n_iter=n_iter,
        reason=reason,
        residual_norm=rnorm.squeeze(0) if vector else rnorm,
    )
