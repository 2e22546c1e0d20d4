"""GNvpro: Gauss-Newton on the variable-projection reduced objective (ALGORITHMS.md §2).

The head is eliminated exactly, ``W = W(theta)``, and the reduced objective

    Phi(theta) = 1/2 ||Z(theta) W(theta) - C||_F^2 + alpha_W/2 ||W(theta)||_F^2
                 + alpha_theta/2 ||theta_w||^2

(rows scaled by ``sqrt(w_i / sum w)``, so the data term is a weighted mean) is
minimized over the feature extractor's parameters ``theta`` by Gauss-Newton with
a truncated-CG inner solve, globalized by a trust region or an Armijo line
search. Jacobian products come from ``torch.func.jvp``/``vjp``; no Jacobian is
formed.
"""

import math
from dataclasses import dataclass, replace

import torch
from torch.func import functional_call, jacrev, jvp, vjp, vmap

from ..linalg import cg, steihaug_cg, tikhonov_factor

__all__ = ["GNvproState", "ReducedProblem", "gnvpro_step"]

_DTYPE = torch.float64
# GCV's search range for alpha_W, relative to the largest squared singular value
# of the features. Its default floor, 1e-12, let GCV pick an unregularized head on
# near noise-free data (peaks: 3e-12), where W(theta) is so ill-conditioned that
# the Gauss-Newton model fails and trust radii collapse (test R^2 0.977 after 30
# iterations, against 0.9993 with any fixed alpha_W in 1e-8..1e-4).
_GCV_RANGE = (1e-8, 1e2)
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


@dataclass
class _Linearization:
    """The reduced problem at one ``theta``: head, residual and SVD factors."""

    theta: torch.Tensor  # (P,) flat parameters
    head_alpha: float  # alpha_W used for W(theta)
    Z: torch.Tensor  # (n, p) scaled, augmented features, float64
    W: torch.Tensor  # (p, c) the optimal head W(theta)
    R: torch.Tensor  # (n, c) residual Z W - C
    U: torch.Tensor  # (n, q) left singular vectors of Z
    V: torch.Tensor  # (p, q) right singular vectors of Z
    s: torch.Tensor  # (q,) singular values
    value: float  # Phi(theta)
    pullback: object = None  # vjp of features() at theta, when differentiable


class _ReducedBase:
    """What every reduced problem shares: ``theta`` as one flat vector.

    Parameters
    ----------
    net : SeparableNet
        The network; ``theta`` are its feature extractor's parameters, which
        this object reads and writes in place.
    X : Tensor of shape (n, d)
        Training inputs.
    sample_weight : Tensor of shape (n,), default=None
        Weights of the rows, read as repetitions.
    alpha : float, default=0.0
        Ridge weight on the extractor's weight matrices (not biases), on the
        mean-loss scale.

    Attributes
    ----------
    work_units : float
        Passes over the data so far: one per forward, backward, or
        forward-mode (jvp) pass, as the GNvpro paper counts them (a pass over
        a sample of the rows counts as its share of a pass).
    """

    # (n, 1) row scale of the features, sqrt(w / sum w), where the loss is a
    # plain sum over scaled rows (least squares); None where the weights enter
    # the loss itself (cross-entropy).
    scale = None

    def __init__(self, net, X, sample_weight=None, alpha=0.0):
        self.net = net
        self.X = X
        weight = torch.ones(len(X), dtype=_DTYPE, device=X.device)
        if sample_weight is not None:
            weight = sample_weight.to(_DTYPE)
        self.weight = weight
        self.alpha = alpha
        self.names = [name for name, _ in net.feature_extractor.named_parameters()]
        params = [p for _, p in net.feature_extractor.named_parameters()]
        self.shapes = [p.shape for p in params]
        self.penalized = torch.cat(  # which entries of theta the ridge applies to
            [
                torch.full((p.numel(),), float(p.ndim > 1), device=X.device)
                for p in params
            ]
        ).to(params[0].dtype)
        self.work_units = 0

    # --------------------------------------------------------------- parameters

    def get_theta(self):
        """Return the extractor's parameters as one flat vector (a detached copy).

        Returns
        -------
        theta : Tensor of shape (P,)
            The parameters, concatenated in ``named_parameters`` order.
        """
        return torch.cat(
            [p.detach().reshape(-1) for p in self.net.feature_extractor.parameters()]
        )

    @torch.no_grad()
    def set_theta(self, theta):
        """Write a flat parameter vector back into the extractor.

        Parameters
        ----------
        theta : Tensor of shape (P,)
            The parameters, in the order of :meth:`get_theta`.
        """
        torch.nn.utils.vector_to_parameters(
            theta, self.net.feature_extractor.parameters()
        )

    def _unflatten(self, theta):
        chunks = theta.split([math.prod(shape) for shape in self.shapes])
        return {
            name: chunk.view(shape)
            for name, chunk, shape in zip(self.names, chunks, self.shapes, strict=True)
        }

    def extractor_features(self, theta):
        """Compute the features ``phi(X; theta)``, without the column of ones.

        Parameters
        ----------
        theta : Tensor of shape (P,)
            The extractor's parameters (a pure function of ``theta``, for
            ``torch.func``).

        Returns
        -------
        phi : Tensor of shape (n, p - 1)
            The extractor's output.
        """
        return functional_call(
            self.net.feature_extractor, self._unflatten(theta), (self.X,)
        )

    def features(self, theta):
        """Compute the features the head sees, ``scale * [phi(X; theta), 1]``.

        Parameters
        ----------
        theta : Tensor of shape (P,)
            The extractor's parameters.

        Returns
        -------
        Z : Tensor of shape (n, p)
            The features with a column of ones, rows scaled by ``scale``
            (least squares: ``sqrt(w / sum w)``; cross-entropy: unscaled, the
            weights enter the loss instead).
        """
        return self._augment(self.extractor_features(theta))

    def _augment(self, phi):
        """``scale * [phi, 1]``: the ones column and the row scale are applied
        outside ``torch.func`` transforms, where they would cost more than the
        network (a jvp of ``scale * Z`` took 270 us against 4 us plain)."""
        Z = torch.cat([phi, phi.new_ones(phi.shape[0], 1)], dim=1)
        return Z if self.scale is None else self.scale.to(Z.dtype) * Z

    def feature_jvp(self, theta, v):
        """The features' directional derivative ``dZ = J_Z v`` (one jvp pass).

        Parameters
        ----------
        theta : Tensor of shape (P,)
            The extractor's parameters.
        v : Tensor of shape (P,)
            The direction.

        Returns
        -------
        dZ : Tensor of shape (n, p)
            The derivative of :meth:`features` along ``v``, float64 (its column
            of ones has none).
        """
        _, dphi = jvp(self.extractor_features, (theta,), (v,))
        dZ = torch.cat([dphi, dphi.new_zeros(dphi.shape[0], 1)], dim=1).to(_DTYPE)
        return dZ if self.scale is None else self.scale * dZ

    def _row_jacobians(self, theta, directions, rows):
        """Per-row Jacobians of the features along head directions.

        Parameters
        ----------
        theta : Tensor of shape (P,)
            The extractor's parameters.
        directions : Tensor of shape (p - 1, r)
            Directions in feature space (the column of ones has no derivative).
        rows : slice
            The rows of ``X`` to differentiate.

        Returns
        -------
        J : Tensor of shape (m, r, P)
            ``J[i, k] = d(phi(x_i; theta) directions[:, k]) / d theta``, computed
            one row at a time under ``vmap`` (r backward passes' work). An
            extractor that mixes rows (batch statistics) gets per-row
            derivatives, which is good enough for a preconditioner.
        """
        directions = directions.to(theta.dtype)

        def row_outputs(theta, x):  # (d,) -> (r,)
            params = self._unflatten(theta)
            z = functional_call(self.net.feature_extractor, params, (x[None],))
            return z[0] @ directions

        return vmap(jacrev(row_outputs), in_dims=(None, 0))(theta, self.X[rows])

    def _theta_penalty(self, theta):
        """``alpha/2 ||theta_w||^2`` (weight matrices only)."""
        if not self.alpha:
            return 0.0
        return 0.5 * self.alpha * float((self.penalized * theta.double() ** 2).sum())

    def _envelope_gradient(self, lin, dPhi_dZ):
        """Pull ``dPhi/dZ`` (n, p) back through the features (one backward pass,
        the head frozen) and add the ridge term on ``theta``."""
        theta = lin.theta
        (g,) = lin.pullback(dPhi_dZ.to(theta.dtype))
        self.work_units += 1
        return g + self.alpha * self.penalized * theta

    def kaufman_factor(self, lin):
        """Cholesky factor of a preconditioner for the Gauss-Newton CG solve.

        Parameters
        ----------
        lin : object
            The reduced problem at the current ``theta``.

        Returns
        -------
        None
            No preconditioner by default; the least-squares problem overrides
            this.
        """
        return None

    def _evaluate(self, theta, differentiable):
        """Features at ``theta`` (float64, detached) and, if asked for, their vjp:
        ``pullback(M)`` maps a cotangent of shape (n, p) to ``(J_Z^T M,)``."""
        if differentiable:
            phi, extractor_pullback = vjp(self.extractor_features, theta)

            def pullback(M):
                if self.scale is not None:
                    M = self.scale.to(M.dtype) * M
                return extractor_pullback(M[:, :-1])
        else:
            with torch.no_grad():
                phi = self.extractor_features(theta)
            pullback = None
        self.work_units += 1
        return self._augment(phi.detach()).to(_DTYPE), pullback


class ReducedProblem(_ReducedBase):
    """The VarPro-reduced least-squares problem of a separable network.

    Parameters
    ----------
    net : SeparableNet
        The network; ``theta`` are its feature extractor's parameters, which
        this object reads and writes in place.
    X : Tensor of shape (n, d)
        Training inputs.
    C : Tensor of shape (n, c)
        Targets (standardized by the estimator).
    sample_weight : Tensor of shape (n,), default=None
        Weights of the rows, read as repetitions.
    alpha : float, default=0.0
        Ridge weight on the extractor's weight matrices (not biases), on the
        mean-loss scale.

    Attributes
    ----------
    work_units : float
        Passes over the data so far: one per forward, backward, or
        forward-mode (jvp) pass, as the GNvpro paper counts them (a pass over
        a sample of the rows counts as its share of a pass).
    """

    def __init__(self, net, X, C, sample_weight=None, alpha=0.0):
        super().__init__(net, X, sample_weight, alpha)
        self.C = C.to(_DTYPE)
        self.scale = (self.weight / self.weight.sum()).sqrt()[:, None]  # (n, 1)

    def on_rows(self, rows):
        """The same problem on some of the rows: same network, targets and alpha.

        Parameters
        ----------
        rows : Tensor of shape (m,)
            Row indices.

        Returns
        -------
        ReducedProblem
            The problem on those rows, a mean loss over them.
        """
        return ReducedProblem(
            self.net, self.X[rows], self.C[rows], self.weight[rows], self.alpha
        )

    # ----------------------------------------------------------------- the head

    def linearize(self, theta, head_alpha, *, differentiable=False):
        """Solve the head at ``theta`` and evaluate the reduced objective.

        Parameters
        ----------
        theta : Tensor of shape (P,)
            The extractor's parameters.
        head_alpha : 'gcv' or float
            ``alpha_W``, or ``'gcv'`` to choose it by GCV from these features.
        differentiable : bool, default=False
            Keep the features' vjp (for the gradient and Gauss-Newton products)
            from the same forward pass.

        Returns
        -------
        _Linearization or None
            None if the features are not finite.
        """
        Z, pullback = self._evaluate(theta, differentiable)  # (n, p)
        if not torch.isfinite(Z).all():
            return None
        # One SVD serves GCV, the head and the Gram inverse.
        C = self.C * self.scale  # (n, c)
        factors = tikhonov_factor(Z, C)
        if head_alpha == "gcv":
            # The rows stand for sum(w) samples (weights as repetitions); with
            # that count the GCV of these scaled rows is the weighted problem's,
            # rescaled, so its minimiser is alpha_W itself.
            factors = replace(factors, n_samples=float(self.weight.sum()))
            s_max2 = float(factors.s[0] ** 2)
            lam_range = (_GCV_RANGE[0] * s_max2, _GCV_RANGE[1] * s_max2)
            head_alpha = factors.minimize_gcv(lam_range)[0]
        W = factors.solve(head_alpha)  # (p, c)
        R = Z @ W - C  # (n, c)
        value = 0.5 * float(R.square().sum() + head_alpha * W.square().sum())
        value += self._theta_penalty(theta)
        return _Linearization(
            theta,
            head_alpha,
            Z,
            W,
            R,
            factors.U,
            factors.Vh.T,
            factors.s,
            float(value),
            pullback,
        )

    def _solve_gram(self, lin, Y):
        """``(Z^T Z + alpha_W I)^{-1} Y`` from the SVD, complement included."""
        V, d = lin.V, 1.0 / (lin.s**2 + lin.head_alpha)
        VtY = V.T @ Y
        return V @ (d[:, None] * VtY) + (Y - V @ VtY) / lin.head_alpha

    # ------------------------------------------------- derivatives of Phi(theta)

    def gradient(self, lin):
        """Reduced gradient by the envelope theorem: one backward pass, W fixed.

        Parameters
        ----------
        lin : _Linearization
            The reduced problem at the current ``theta``, from :meth:`linearize`
            with ``differentiable=True``.

        Returns
        -------
        g : Tensor of shape (P,)
            The gradient of ``Phi`` at ``lin.theta``.
        """
        return self._envelope_gradient(lin, lin.R @ lin.W.T)  # dPhi/dZ = R W^T

    def delta_head(self, lin, dZ):
        """Sensitivity ``dW`` of the optimal head to a feature perturbation ``dZ``.

        From ``(Z^T Z + alpha_W I) W = Z^T C``:
        ``dW = -(Z^T Z + alpha_W I)^{-1} (dZ^T R + Z^T dZ W)``.

        Parameters
        ----------
        lin : _Linearization
            The reduced problem at the current ``theta``, from :meth:`linearize`.
        dZ : Tensor of shape (n, p)
            A perturbation of the scaled features (float64).

        Returns
        -------
        dW : Tensor of shape (p, c)
            The first-order change of ``W(theta)``.
        """
        return -self._solve_gram(lin, dZ.T @ lin.R + lin.Z.T @ dZ @ lin.W)

    def kaufman_factor(self, lin):
        """Cholesky factor of Kaufman's Gauss-Newton matrix, to precondition CG.

        Kaufman's approximation drops the residual's term from the head's
        sensitivity, ``dW ~ -G^{-1} Z^T dZ W``; its matrix differs from the
        exact one (:meth:`gauss_newton`) by terms of the order of the residual
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
        lin : _Linearization
            The reduced problem at the current ``theta``.

        Returns
        -------
        L : Tensor of shape (P, P) or None
            Lower Cholesky factor of ``K + mu I`` (float64, ``mu`` =
            ``_DAMPING`` times the mean diagonal); None
            when forming it would cost more than ``_PRECONDITIONER_FLOPS``
            multiply-adds or ``_JACOBIAN_MAX`` stored entries, or it cannot be
            factored.
        """
        theta = lin.theta
        n_params, n_rows = theta.numel(), self.X.shape[0]
        Q, q, _ = torch.linalg.svd(lin.W[:-1], full_matrices=False)  # features only
        rank = int((q > 1e-6 * q[0]).sum()) if q.numel() and q[0] > 0 else 0
        too_big = (
            n_params > _PRECONDITIONER_MAX_PARAMS
            or n_rows * rank * n_params > _JACOBIAN_MAX
            or n_rows * rank * n_params**2 > _PRECONDITIONER_FLOPS
        )
        if not rank or too_big:
            return None
        directions = Q[:, :rank] * q[:rank]  # (p - 1, r)
        chunk = max(1, _JACOBIAN_CHUNK // (rank * n_params))
        A = torch.cat(
            [
                self._row_jacobians(theta, directions, slice(start, start + chunk))
                for start in range(0, n_rows, chunk)
            ]
        ).to(_DTYPE)  # (n, r, P)
        self.work_units += 1 + rank
        A = A * self.scale[:, :, None]
        s2 = lin.s**2 + lin.head_alpha
        UtA = torch.einsum("nq,nrj->rqj", lin.U, A)  # (r, q, P)
        projected = A - torch.einsum(
            "nq,rqj->nrj", lin.U, (lin.s**2 / s2)[:, None] * UtA
        )
        head = (lin.s / s2)[:, None] * UtA  # G^{-1} Z^T A in the basis V
        projected = projected.reshape(-1, n_params)
        head = head.reshape(-1, n_params)
        K = projected.T @ projected + lin.head_alpha * (head.T @ head)
        K += torch.diag(self.alpha * self.penalized.to(_DTYPE))
        return _damped_cholesky(K)

    def gauss_newton(self, lin):
        """The Gauss-Newton matrix ``J^T J + alpha_theta D`` as a matvec closure.

        ``J`` is the Jacobian of the residual
        ``r(theta) = [Z W(theta) - C; sqrt(alpha_W) W(theta)]`` including the head's
        sensitivity ``dW`` (Golub-Pereyra, not Kaufman's simplification).

        Parameters
        ----------
        lin : _Linearization
            The reduced problem at the current ``theta``, from :meth:`linearize`
            with ``differentiable=True``.

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

        two (n, p, c) products per call instead of eight; the dense-Jacobian test
        checks it.
        """
        theta, pullback = lin.theta, lin.pullback
        WWt = lin.W @ lin.W.T  # (p, p)

        def matvec(v):  # (P,) -> (P,)
            dZ = self.feature_jvp(theta, v)  # (n, p)
            B = dZ @ WWt  # (n, p)
            B = B - lin.Z @ self._solve_gram(lin, lin.Z.T @ B)  # (I - H) dZ W W^T
            M = B + lin.R @ self._solve_gram(lin, dZ.T @ lin.R).T  # (n, p)
            (Hv,) = pullback(M.to(theta.dtype))
            self.work_units += 2
            return Hv + self.alpha * self.penalized * v

        return matvec


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


@dataclass
class GNvproState:
    """Where a GNvpro run stands between outer iterations.

    Attributes
    ----------
    radius : float or None
        The trust radius; None before the first step.
    head_alpha : float
        The head's ridge weight ``alpha_W`` of the last iteration.
    grad_norm : float
        Norm of the reduced gradient at the start of the last iteration.
    accepted : bool
        Whether the last iteration accepted a step.
    """

    radius: float | None = None  # trust radius; None before the first step
    head_alpha: float = math.nan
    grad_norm: float = math.nan
    accepted: bool = False


def gnvpro_step(
    problem,
    state,
    *,
    head_alpha="gcv",
    globalization="trust_region",
    krylov_max_iter=20,
    krylov_tol=1e-2,
    max_trials=8,
    preconditioner="auto",
    curvature_rows=None,
):
    """One outer Gauss-Newton iteration on the reduced objective.

    Parameters
    ----------
    problem : ReducedProblem
        Its network's parameters are updated in place when a step is accepted.
    state : GNvproState
        Trust radius and diagnostics; updated in place.
    head_alpha : 'gcv' or float, default='gcv'
        The head's ridge weight: chosen by GCV at the current ``theta`` (and held
        for this iteration, so the objective is consistent within it) or fixed.
    globalization : {'trust_region', 'armijo'}, default='trust_region'
        Steihaug-CG inside a trust region (radius update as ALGORITHMS.md §2.6),
        or CG followed by Armijo backtracking (c1 = 1e-4, halving).
    krylov_max_iter : int, default=20
        Maximum number of CG iterations of the inner solve.
    krylov_tol : float, default=1e-2
        Relative residual tolerance of the inner CG solve.
    max_trials : int, default=8
        Rejected trust-region steps (or halvings) before giving up this iteration.
    preconditioner : {'auto', None}, default='auto'
        'auto' preconditions CG with Kaufman's Gauss-Newton matrix
        (``problem.kaufman_factor``, None where the problem has none or it is
        too costly to form); the trust region is then measured in that
        matrix's norm.
    curvature_rows : Tensor of shape (m,), default=None
        Rows whose problem supplies the Gauss-Newton matrix (and the
        preconditioner) of the inner solve: ``problem.on_rows(curvature_rows)``,
        its head solved on those rows with this iteration's ``alpha_W``. The
        gradient, the objective and the step's acceptance stay on all rows
        (sub-sampled curvature, Byrd et al. 2011). None: all rows.

    Returns
    -------
    value : float
        The reduced objective after the iteration (unchanged if no step was
        accepted).

    References
    ----------
    Byrd, Chin, Neveitt, Nocedal (2011), "On the use of stochastic Hessian
    information in optimization methods for machine learning", SIAM J. Optim.
    21(3).
    """
    lin = problem.linearize(problem.get_theta(), head_alpha, differentiable=True)
    if lin is None:
        raise FloatingPointError("The learned features are not finite.")
    state.head_alpha = lin.head_alpha
    g = problem.gradient(lin)
    state.grad_norm = float(torch.linalg.vector_norm(g))
    curvature, curvature_lin = problem, lin
    if curvature_rows is not None:  # Byrd et al.: the curvature of a row sample
        curvature = problem.on_rows(curvature_rows)
        curvature_lin = curvature.linearize(
            lin.theta, lin.head_alpha, differentiable=True
        )
        if curvature_lin is None:  # non-finite features on the sample
            raise FloatingPointError("The learned features are not finite.")
    factor = None
    if preconditioner == "auto":
        factor = curvature.kaufman_factor(curvature_lin)
    space = _StepSpace.of(curvature.gauss_newton(curvature_lin), g, factor)
    globalize = _armijo if globalization == "armijo" else _trust_region
    current = globalize(
        problem, state, lin, g, space, krylov_max_iter, krylov_tol, max_trials
    )
    if curvature is not problem:  # its passes, as fractions of a full pass
        problem.work_units += curvature.work_units * len(curvature.X) / len(problem.X)
    problem.net.set_head(current.W)  # the optimal head of the current theta
    return current.value


def _trust_region(problem, state, lin, g, space, max_iter, tol, trials):
    if state.radius is None:  # first step: the radius of the full Krylov step
        first = cg(space.matvec, space.rhs, rtol=tol, max_iter=max_iter)
        state.radius = float(torch.linalg.vector_norm(first.x)) or 1.0
    state.accepted = False
    for _ in range(trials):
        sol = steihaug_cg(
            space.matvec, space.rhs, state.radius, rtol=tol, max_iter=max_iter
        )
        step_norm = float(torch.linalg.vector_norm(sol.x))
        if step_norm == 0:  # a zero gradient (or float32 underflow): nowhere to go
            break
        trial = problem.linearize(lin.theta + space.to_theta(sol.x), lin.head_alpha)
        actual = lin.value - trial.value if trial is not None else -math.inf
        predicted = sol.predicted_reduction
        rho = actual / predicted if predicted > 0 else -math.inf
        if rho < 1e-4:  # reject and shrink
            state.radius = 0.5 * min(state.radius, step_norm)
            continue
        problem.set_theta(trial.theta)
        state.accepted = True
        if rho < 0.1:
            state.radius *= 0.5
        elif rho > 0.75 and step_norm >= 0.99 * state.radius:
            state.radius *= 1.5
        return trial
    return lin


def _armijo(problem, state, lin, g, space, max_iter, tol, trials):
    step = space.to_theta(cg(space.matvec, space.rhs, rtol=tol, max_iter=max_iter).x)
    slope = float(g @ step)
    if slope >= 0:  # not a descent direction (inexact solve): fall back on -g
        step, slope = -g, -float(g @ g)
    t, state.accepted = 1.0, False
    for _ in range(trials):
        trial = problem.linearize(lin.theta + t * step, lin.head_alpha)
        if trial is not None and trial.value <= lin.value + 1e-4 * t * slope:
            problem.set_theta(trial.theta)
            state.accepted = True
            return trial
        t *= 0.5
    return lin
