"""Full-batch Tikhonov (ridge) head solves and GCV, from one thin SVD.

Samples are in rows, as everywhere in sk_slim: features ``Z`` (n, p), targets
``C`` (n, c), head ``W`` (p, c) with ``C ≈ Z W`` (the papers write the transpose).
Every function here factors ``Z`` once and then evaluates any number of
regularization parameters ``lam`` cheaply (as scikit-learn's ``_RidgeGCV``
decomposes once per fit).
"""

import math
from dataclasses import dataclass
from functools import cached_property

import torch
from torch import Tensor

from ..rows import LOCAL_ROWS

__all__ = [
    "GCVResult",
    "TikhonovSVD",
    "gcv",
    "streamed_tikhonov_factor",
    "tikhonov_factor",
    "tikhonov_svd",
]

# Head algebra runs in float64 whatever the network's dtype: the SVD route copes
# with the tiny ridge weights of near noise-free surrogates, float32 does not.
_DTYPE = torch.float64


@dataclass(frozen=True)
class TikhonovSVD:
    """Thin SVD of the (row-weighted) features, ready to solve for any ``lam``.

    Built by :func:`tikhonov_factor`; all tensors are float64.

    Attributes
    ----------
    U : Tensor of shape (n, q) or None
        Left singular vectors of ``sqrt(w) * Z`` with non-negligible singular
        values; None when the rows were streamed
        (:func:`streamed_tikhonov_factor`).
    s : Tensor of shape (q,)
        The kept singular values, descending.
    Vh : Tensor of shape (q, p)
        Right singular vectors (rows).
    UtC : Tensor of shape (q, c)
        ``U.T @ (sqrt(w) * C)``: the targets in the singular basis.
    C : Tensor of shape (n, c) or None
        The row-weighted targets ``sqrt(w) * C``; None when streamed.
    n_samples : float
        Effective number of samples: ``n``, or ``sum(sample_weight)``.
    perp : Tensor of shape () or None
        :attr:`residual_perp`, when the factorization computed it (rows split
        over processes: ``U`` and ``C`` then hold this process's rows only).
    """

    U: Tensor
    s: Tensor
    Vh: Tensor
    UtC: Tensor
    C: Tensor
    n_samples: float
    perp: Tensor | None = None

    @cached_property
    def residual_perp(self):
        """``||(I - U U^T) sqrt(w) C||_F^2``, the part of the targets no W fits.

        Computed on first use (only GCV needs it); formed directly rather than
        as ``||C||^2 - ||U^T C||^2``, which cancels when the fit is good.
        """
        if self.perp is not None:
            return self.perp
        return ((self.C - self.U @ self.UtC) ** 2).sum()

    @property
    def n_targets(self):
        """Number of target columns ``c``."""
        return self.UtC.shape[1]

    def solve(self, lam):
        """Tikhonov solution ``W(lam) = V diag(s / (s^2 + lam)) U^T C``.

        Parameters
        ----------
        lam : float
            Regularization parameter, ``lam >= 0``. With ``lam = 0`` this is the
            minimum-norm least-squares solution.

        Returns
        -------
        W : Tensor of shape (p, c)
            The regularized head (float64).
        """
        filt = self.s / (self.s**2 + lam)  # (q,)
        return self.Vh.T @ (filt[:, None] * self.UtC)  # (p, c)

    def covariance(self, lam):
        """Return ``(Z^T diag(w) Z + lam I)^{-1}``, the posterior covariance.

        The ridge solution's posterior covariance per unit noise variance,
        under the Gaussian prior ``N(0, sigma^2 / lam I)``.

        Parameters
        ----------
        lam : float
            Regularization parameter, ``lam >= 0``. With ``lam = 0`` the
            pseudo-inverse: the directions the features do not span get none.

        Returns
        -------
        Tensor of shape (p, p)
            Symmetric, float64: ``V diag(1 / (s^2 + lam)) V^T`` plus
            ``(I - V V^T) / lam`` on the complement of the kept directions.
        """
        V = self.Vh.T  # (p, q)
        cov = (V / (self.s**2 + lam)) @ V.T
        if lam > 0:
            eye = torch.eye(V.shape[0], dtype=_DTYPE, device=V.device)
            cov = cov + (eye - V @ V.T) / lam
        return 0.5 * (cov + cov.T)

    def residual_dof(self, lam):
        """Return the residual degrees of freedom ``n - tr H(lam)``.

        ``n`` is the number of samples the weights stand for; the sum is taken
        from positive terms (no cancellation at small ``lam``).

        Parameters
        ----------
        lam : float
            Regularization parameter, ``lam >= 0``.

        Returns
        -------
        float
            ``n - sum_j s_j^2 / (s_j^2 + lam)``.
        """
        shrink = float((lam / (self.s**2 + lam)).sum()) if lam > 0 else 0.0
        return (self.n_samples - self.s.numel()) + shrink

    def residual(self, lams):
        """Squared residual ``rho(lam) = ||sqrt(w) (Z W(lam) - C)||_F^2``.

        Parameters
        ----------
        lams : Tensor of shape (T,)
            Regularization parameters, each ``> 0``.

        Returns
        -------
        rho : Tensor of shape (T,)
            The squared residual at each ``lam``.
        """
        return self._residual(self._shrink(lams))

    def gcv(self, lams, weight=1.0):
        """GCV function ``G(lam) = rho(lam) / (c (n - weight tr H(lam)))^2``.

        ``H(lam) = Z (Z^T Z + lam I)^{-1} Z^T`` is the hat matrix; ``c (n - tr H)``
        is the residual count of the vectorized problem, since every target
        column shares the same hat matrix.

        Parameters
        ----------
        lams : Tensor of shape (T,)
            Regularization parameters, each ``> 0``.
        weight : float, default=1.0
            1 gives GCV. Above 1, the weighted GCV of Chung, Nagy and O'Leary
            (ETNA 28, 2008), ``n rho / trace(I - weight H)^2``: each fitted
            degree of freedom costs more, which moves ``lam`` up where the
            fitted directions are a large share of the samples and hardly at
            all where they are few.

        Returns
        -------
        G : Tensor of shape (T,)
            ``inf`` where the residual degrees of freedom are not positive.
        """
        shrink = self._shrink(lams)  # (T, q)
        # n - w tr H = (n - w q) + w sum(shrink), positive terms for w = 1: no
        # cancellation at tiny lam.
        fitted = weight * self.s.numel()
        residual_dof = (self.n_samples - fitted) + weight * shrink.sum(dim=1)
        score = self._residual(shrink) / (self.n_targets * residual_dof) ** 2
        return torch.where(residual_dof > 0, score, torch.inf)

    def minimize_gcv(self, lam_range=None, *, n_grid=50, n_refine=2, weight=1.0):
        """Minimize :meth:`gcv` on a log-spaced grid, then refine around the best.

        Parameters
        ----------
        lam_range : tuple of float, default=None
            ``(lam_min, lam_max)``; ``(1e-12, 1e2) * s_max^2`` by default.
        n_grid : int, default=50
            Points of the grid and of each refinement.
        n_refine : int, default=2
            Rounds of refinement between the grid neighbours of the best point.
        weight : float, default=1.0
            The weight of :meth:`gcv` (1: GCV).

        Returns
        -------
        lam : float
            The minimiser.
        score : float
            The GCV value at ``lam``.
        grid, grid_scores : Tensor of shape (n_grid,)
            The coarse grid and its GCV values (on the CPU).

        Raises
        ------
        ValueError
            If ``n - tr H(lam) <= 0`` on the whole grid.
        """
        s_max2 = float(self.s[0] ** 2) if self.s.numel() else 1.0
        lo, hi = lam_range if lam_range is not None else (1e-12 * s_max2, 1e2 * s_max2)
        grid = torch.logspace(math.log10(lo), math.log10(hi), n_grid, dtype=_DTYPE)
        grid_scores = self.gcv(grid, weight).cpu()
        if not torch.isfinite(grid_scores).any():
            raise ValueError(
                f"GCV is undefined: the {self.n_samples:g} samples (sum of the "
                f"weights) leave no residual degrees of freedom for {self.s.numel()} "
                "fitted directions."
            )
        lams, scores = grid, grid_scores
        for _ in range(n_refine):
            best = int(torch.argmin(scores))
            left, right = max(best - 1, 0), min(best + 1, n_grid - 1)
            lams = torch.logspace(
                math.log10(lams[left]), math.log10(lams[right]), n_grid, dtype=_DTYPE
            )
            scores = self.gcv(lams, weight).cpu()
        best = int(torch.argmin(scores))
        return float(lams[best]), float(scores[best]), grid, grid_scores

    def _shrink(self, lams):
        """``lam / (s^2 + lam)``: the share of each singular direction left unfit."""
        lams = torch.as_tensor(lams, dtype=_DTYPE, device=self.s.device).reshape(-1)
        return lams[:, None] / (self.s**2 + lams[:, None])  # (T, q)

    def _residual(self, shrink):
        return self.residual_perp + (shrink**2) @ (self.UtC**2).sum(dim=1)


@dataclass(frozen=True)
class GCVResult:
    """Outcome of :func:`gcv`.

    Attributes
    ----------
    lam : float
        The GCV minimiser.
    W : Tensor of shape (p, c) or (p,)
        The Tikhonov solution at ``lam``, in the input's dtype.
    score : float
        The GCV value at ``lam``.
    lams, scores : Tensor of shape (n_grid,)
        The coarse log-spaced grid and its GCV values, for plotting.
    """

    lam: float
    W: Tensor
    score: float
    lams: Tensor
    scores: Tensor


def tikhonov_factor(Z, C, sample_weight=None, *, rcond=None, rows=LOCAL_ROWS):
    """Factor the features once for Tikhonov solves at many ``lam``.

    Parameters
    ----------
    Z : Tensor of shape (n, p)
        Features (one sample per row).
    C : Tensor of shape (n, c) or (n,)
        Targets.
    sample_weight : Tensor of shape (n,), default=None
        Non-negative weights; row ``i`` enters the loss as ``w_i ||z_i W - c_i||^2``.
    rcond : float, default=None
        Singular values below ``rcond * s_max`` are dropped (they would only be
        amplified by ``lam = 0``). Defaults to ``eps * max(n, p)``, as
        ``torch.linalg.pinv`` does.
    rows : RowGroup, default=LOCAL_ROWS
        When the rows are split over processes
        (:mod:`sk_slim.rows`): ``Z``, ``C`` and the weights
        are this process's rows, and the factorization is of all of them, by
        a tall-skinny QR. ``LOCAL_ROWS``: all rows are here.

    Returns
    -------
    factors : TikhonovSVD
        The thin SVD and the projected targets; call its ``solve(lam)``. With
        split rows, ``U`` and ``C`` are this process's rows.
    """
    Z = Z.to(_DTYPE)
    C = C.to(_DTYPE).reshape(Z.shape[0], -1)
    n_samples = float(Z.shape[0])
    if sample_weight is not None:
        weight = torch.as_tensor(sample_weight, dtype=_DTYPE, device=Z.device)
        root = weight.sqrt()[:, None]  # (n, 1)
        Z, C = root * Z, root * C
        n_samples = float(weight.sum())
    if rows.distributed:
        return _tsqr_factor(Z, C, n_samples, rcond, rows)
    U, s, Vh = torch.linalg.svd(Z, full_matrices=False)
    if rcond is None:
        rcond = torch.finfo(_DTYPE).eps * max(Z.shape)
    keep = s > rcond * s[0] if s.numel() else s > 0
    if not keep.all():  # drop negligible directions (copies only when needed)
        U, s, Vh = U[:, keep], s[keep], Vh[keep]
    return TikhonovSVD(U, s, Vh, U.T @ C, C, n_samples)


def _tsqr_factor(Z, C, n_samples, rcond, rows):
    """:func:`tikhonov_factor` of rows split over processes (weights applied).

    Tall-skinny QR (Demmel, Grigori, Hoemmen, Langou 2012): each process
    factors its rows, ``Z_k = Q_k R_k``; the stacked ``R_k`` (and ``Q_k^T C_k``)
    of all processes are gathered and their SVD, ``[R_1; ...] = U' s V^T``, is
    that of ``Z``, with this process's rows of ``U`` equal to ``Q_k U'_k``.
    Squaring ``Z`` into its Gram would lose the small singular values the
    papers' tiny ridge weights resolve.
    """
    n, p = Z.shape
    Q, R = torch.linalg.qr(Z)  # (n, k), (k, p) with k = min(n, p)
    if R.shape[0] < p:  # fewer rows here than features: pad the factor to (p, p)
        R = torch.cat([R, R.new_zeros(p - R.shape[0], p)])
        Q = torch.cat([Q, Q.new_zeros(n, p - Q.shape[1])], dim=1)
    blocks = torch.cat(rows.gather(torch.cat([R, Q.T @ C], dim=1)))  # (K p, p + c)
    U_stack, s, Vh = torch.linalg.svd(blocks[:, :p], full_matrices=False)
    n_total, n_samples = rows.sum_floats(n, n_samples)
    if rcond is None:
        rcond = torch.finfo(_DTYPE).eps * max(n_total, p)
    keep = s > rcond * s[0] if s.numel() else s > 0
    U_stack, s, Vh = U_stack[:, keep], s[keep], Vh[keep]
    UtC = U_stack.T @ blocks[:, p:]  # (q, c)
    U = Q @ U_stack[rows.rank * p : (rows.rank + 1) * p]  # this process's rows
    perp = rows.sum(((C - U @ UtC) ** 2).sum())
    return TikhonovSVD(U, s, Vh, UtC, C, n_samples, perp)


def streamed_tikhonov_factor(blocks, n_samples, *, rcond=None, rows=LOCAL_ROWS):
    """:func:`tikhonov_factor` of rows that arrive in blocks, in bounded memory.

    The features of many rows need not exist at once: each block ``[Z_k, C_k]``
    is folded into the triangular factor of the augmented matrix ``[Z, C]``
    (a sequential tall-skinny QR; Demmel, Grigori, Hoemmen, Langou 2012), whose
    blocks are ``R`` (the features' factor), ``Q^T C`` and ``T``, the factor of
    the targets' part outside the features' span, so that
    ``||(I - U U^T) C||_F^2 = ||T||_F^2`` without cancellation. The SVD of ``R``
    is then that of ``Z``: the same singular values, right vectors and
    projected targets as :func:`tikhonov_factor`, in ``O((p + c)^2)`` memory
    beyond one block.

    Parameters
    ----------
    blocks : iterable of (Tensor of shape (m, p), Tensor of shape (m, c))
        The row-weighted features ``sqrt(w) * Z`` and targets ``sqrt(w) * C``
        of successive blocks of rows (float64).
    n_samples : float
        Effective number of samples of this process's rows: ``n``, or the sum
        of their weights.
    rcond : float, default=None
        As in :func:`tikhonov_factor`; the default counts all processes' rows.
    rows : RowGroup, default=LOCAL_ROWS
        When the rows are split over processes, each folds its own blocks and
        the factors of all are combined by one more QR.

    Returns
    -------
    factors : TikhonovSVD
        Without ``U`` and ``C`` (None): everything but the per-row quantities.
    """
    factor, n_rows = None, 0
    for Z, C in blocks:
        n_rows += Z.shape[0]
        block = torch.cat([Z, C.reshape(Z.shape[0], -1)], dim=1).to(_DTYPE)
        if factor is None:
            factor = _square_r(block)
        else:  # in place: a new small tensor per block would fragment the heap
            factor.copy_(_square_r(torch.cat([factor, block])))
    if factor is None:
        raise ValueError("streamed_tikhonov_factor needs at least one block.")
    if rows.distributed:
        factor = _square_r(torch.cat(rows.gather(factor)))
    p = Z.shape[1]
    U_r, s, Vh = torch.linalg.svd(factor[:p, :p])
    n_total, n_samples = rows.sum_floats(n_rows, n_samples)
    if rcond is None:
        rcond = torch.finfo(_DTYPE).eps * max(n_total, p)
    keep = s > rcond * s[0] if s.numel() else s > 0
    projected = U_r.T @ factor[:p, p:]  # (p, c): Q^T C in the singular basis
    # The dropped directions' share of the targets is residual, as with the SVD.
    perp = factor[p:, p:].square().sum() + projected[~keep].square().sum()
    return TikhonovSVD(None, s[keep], Vh[keep], projected[keep], None, n_samples, perp)


def _square_r(A):
    """The (k, k) triangular factor of ``A`` (m, k), zero-padded when m < k."""
    R = torch.linalg.qr(A, mode="r")[1]
    k = A.shape[1]
    if R.shape[0] < k:
        R = torch.cat([R, R.new_zeros(k - R.shape[0], k)])
    return R


def tikhonov_svd(Z, C, lam, sample_weight=None):
    """Solve ``min_W ||Z W - C||_F^2 + lam ||W||_F^2`` by the thin SVD of ``Z``.

    Parameters
    ----------
    Z : Tensor of shape (n, p)
        Features (one sample per row).
    C : Tensor of shape (n, c) or (n,)
        Targets.
    lam : float
        Regularization parameter, ``lam >= 0`` (``0``: minimum-norm least squares).
    sample_weight : Tensor of shape (n,), default=None
        Non-negative weights: the data term becomes ``sum_i w_i ||z_i W - c_i||^2``.

    Returns
    -------
    W : Tensor of shape (p, c), or (p,) for 1-D ``C``
        In the result dtype of ``Z`` and ``C``; computed in float64.

    Notes
    -----
    With ``Z = U diag(s) V^T``, ``W = V diag(s / (s^2 + lam)) U^T C``. The SVD
    copes with the tiny ``lam`` of the papers' experiments, where the normal
    equations ``(Z^T Z + lam I) W = Z^T C`` lose half the digits.

    References
    ----------
    Newman, Ruthotto, Hart, van Bloemen Waanders (2021), "Train like a (Var)Pro".
    """
    W = tikhonov_factor(Z, C, sample_weight).solve(lam)
    return _like_targets(W, Z, C)


def gcv(Z, C, sample_weight=None, *, lam_range=None, n_grid=50, n_refine=2):
    """Choose ``lam`` by generalized cross-validation and solve for ``W``.

    Parameters
    ----------
    Z : Tensor of shape (n, p)
        Features (one sample per row).
    C : Tensor of shape (n, c) or (n,)
        Targets.
    sample_weight : Tensor of shape (n,), default=None
        Non-negative weights, read as repetitions: ``n`` becomes ``sum(w)``.
    lam_range : tuple of float, default=None
        ``(lam_min, lam_max)`` of the search. Defaults to
        ``(1e-12, 1e2) * s_max^2``, which is invariant to the scale of ``Z``.
    n_grid : int, default=50
        Points of the log-spaced grid and of each refinement.
    n_refine : int, default=2
        Rounds of refinement between the grid neighbours of the best point.

    Returns
    -------
    result : GCVResult
        The chosen ``lam``, the head ``W`` at ``lam`` and the GCV curve.

    Raises
    ------
    ValueError
        If ``n - tr H(lam) <= 0`` on the whole grid (too few samples, or
        weights summing to less than the number of fitted directions).

    Notes
    -----
    The GCV function is ``G(lam) = ||(I - H) C||_F^2 / (c (n - tr H))^2`` with
    the hat matrix ``H(lam) = Z (Z^T Z + lam I)^{-1} Z^T`` (Golub, Heath, Wahba
    1979), the same count as the sampled GCV of slimTik. It is evaluated for all
    grid points from one SVD. This is not leave-one-out (``RidgeCV``'s default).
    """
    factors = tikhonov_factor(Z, C, sample_weight)
    lam, score, grid, grid_scores = factors.minimize_gcv(
        lam_range, n_grid=n_grid, n_refine=n_refine
    )
    W = _like_targets(factors.solve(lam), Z, C)
    return GCVResult(lam, W, score, grid, grid_scores)


def _like_targets(W, Z, C):
    """Cast ``W`` (p, c) back to the inputs' dtype and 1-D-ness of ``C``."""
    W = W.to(torch.result_type(Z, C))
    return W.reshape(-1) if C.ndim == 1 else W
