"""The variable-projection reduced problem of a separable network (least squares).

The head is eliminated exactly, ``W = W(theta)``, and the reduced objective

    Phi(theta) = 1/2 ||Z(theta) W(theta) - C||_F^2 + alpha_W/2 ||W(theta)||_F^2
                 + alpha_theta/2 ||theta_w||^2

(rows scaled by ``sqrt(w_i / sum w)``, so the data term is a weighted mean) is a
function of the feature extractor's parameters ``theta`` alone (Newman et al.
2021: the reduced objective, and its gradient by the envelope argument with
``W`` held fixed). Jacobian products come from the features' tangent and
adjoint maps (``linearization.py``: hand-written for the networks sk_slim
builds, ``torch.func`` otherwise); no Jacobian is formed. The cross-entropy
problem shares :class:`_ReducedBase` (``gnvpro_logistic.py``).

References
----------
Newman, Ruthotto, Hart, van Bloemen Waanders (2021), "Train Like a (Var)Pro:
Efficient Training of Neural Networks with Variable Projection", SIAM J. Math.
Data Sci. 3(4).
"""

import math
from dataclasses import dataclass, replace

import torch
from torch.func import functional_call

from ..linalg import tikhonov_factor
from ..rows import LOCAL_ROWS
from .gauss_newton import kaufman_factor, least_squares_gauss_newton
from .linearization import hand_written, linearize_features

__all__ = ["ReducedProblem"]

_DTYPE = torch.float64

# GCV's search range for alpha_W, relative to the largest squared singular value
# of the features. Its default floor, 1e-12, let GCV pick an unregularized head on
# near noise-free data (peaks: 3e-12), where W(theta) is so ill-conditioned that
# the Gauss-Newton model fails and trust radii collapse (test R^2 0.977 after 30
# iterations, against 0.9993 with any fixed alpha_W in 1e-8..1e-4).
_GCV_RANGE = (1e-8, 1e2)
# Up to this many rows (the process with the most), a trial point keeps its
# derivative maps for the next iteration (relinearize): they hold a few floats
# per row and unit, beside those of the linearization being stepped from.
_TRIAL_MAPS_MAX_ROWS = 2**16


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
    maps: object = None  # the features' tangent/adjoint maps, when differentiable
    factors: object = None  # the TikhonovSVD of Z (scaled rows; n_samples sum(w))


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
    rows : RowGroup, default=LOCAL_ROWS
        Where the rows are (:mod:`sk_slim.rows`): all here, or
        this process's share; every sum over rows is then summed over the
        processes.

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
    # The linearization at the iterate gnvpro_step last returned (it sets it).
    current = None
    # Whether relinearize() can rebuild a trial point's linearization for the
    # next iteration (least squares: the head is re-solved from kept factors).
    reuses_trial = False

    def __init__(self, net, X, sample_weight=None, alpha=0.0, rows=LOCAL_ROWS):
        self.net = net
        self.X = X
        self.rows = rows
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

    @property
    def n_rows(self):
        """The rows of the features (this process's): one per sample here."""
        return self.X.shape[0]

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
        # Copied, not re-pointed (vector_to_parameters makes the parameters views
        # of theta, so a later in-place change of either would change the other).
        params = list(self.net.feature_extractor.parameters())
        chunks = theta.split([p.numel() for p in params])
        for p, chunk in zip(params, chunks, strict=True):
            p.copy_(chunk.view_as(p))

    def trial_linearize(self, theta, head_alpha):
        """``linearize(theta, head_alpha)`` at a trial point of an iteration.

        Where the problem :attr:`reuses_trial` and the hand-written networks'
        forward pass gives the derivatives' maps with the features, the maps
        are kept (up to ``2**16`` rows), for ``relinearize`` once the point is
        accepted.

        Parameters
        ----------
        theta : Tensor of shape (P,)
            The trial parameters.
        head_alpha : float
            ``alpha_W`` of the iteration.

        Returns
        -------
        object or None
            The problem's linearization, as from ``linearize``.
        """
        keep = (
            self.reuses_trial
            and hand_written(self.net.feature_extractor)
            and self.rows.max_int(self.n_rows) <= _TRIAL_MAPS_MAX_ROWS
        )
        return self.linearize(theta, head_alpha, differentiable=keep)

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

    def feature_tangent(self, lin, v):
        """The features' directional derivative ``dZ = J_Z v`` (one tangent pass).

        Parameters
        ----------
        lin : object
            The reduced problem at the current ``theta``, from ``linearize``
            with ``differentiable=True``.
        v : Tensor of shape (P,)
            The direction.

        Returns
        -------
        dZ : Tensor of shape (n, p)
            The derivative of :meth:`features` along ``v``, float64 (its column
            of ones has none).
        """
        dphi = self.derivative_maps(lin).tangent(v)
        dZ = torch.cat([dphi, dphi.new_zeros(dphi.shape[0], 1)], dim=1).to(_DTYPE)
        return dZ if self.scale is None else self.scale * dZ

    def derivative_maps(self, lin):
        """The features' tangent and adjoint maps at ``lin.theta``.

        Those kept by ``linearize(..., differentiable=True)``, or new ones (one
        forward pass).

        Parameters
        ----------
        lin : object
            The reduced problem at the current ``theta``.

        Returns
        -------
        NetworkLinearization or FuncDerivatives
            See :func:`~sk_slim.training.linearization.linearize_features`.
        """
        if lin.maps is None:
            lin.maps = self._evaluate(lin.theta, differentiable=True)[1]
        return lin.maps

    def feature_adjoint(self, lin, M):
        """Pull a cotangent of the features back to ``theta``: ``J_Z^T M``.

        Parameters
        ----------
        lin : object
            The reduced problem at the current ``theta``, from ``linearize``
            with ``differentiable=True``.
        M : Tensor of shape (n, p)
            A cotangent of :meth:`features` (its last column, the ones, has
            no derivative).

        Returns
        -------
        Tensor of shape (P,)
            ``J_Z^T M``, in the parameters' dtype.
        """
        if self.scale is not None:
            M = self.scale * M
        return self.derivative_maps(lin).adjoint(M[:, :-1].to(lin.theta.dtype))

    def _theta_penalty(self, theta):
        """``alpha/2 ||theta_w||^2`` (weight matrices only)."""
        if not self.alpha:
            return 0.0
        return 0.5 * self.alpha * float((self.penalized * theta.double() ** 2).sum())

    def _envelope_gradient(self, lin, dPhi_dZ):
        """Pull ``dPhi/dZ`` (n, p) back through the features (one backward pass,
        the head frozen) and add the ridge term on ``theta``."""
        g = self.rows.sum(self.feature_adjoint(lin, dPhi_dZ))
        self.work_units += 1
        return g + self.alpha * self.penalized * lin.theta

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
        """Features at ``theta`` (float64, detached) and, if asked for, their
        tangent and adjoint maps from the same forward pass."""
        phi, maps = linearize_features(
            self.net.feature_extractor, theta, self._unflatten, self.X, differentiable
        )
        self.work_units += 1
        return self._augment(phi.detach()).to(_DTYPE), maps


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
    rows : RowGroup, default=LOCAL_ROWS
        As in the base class: this process's rows, or all of them.

    Attributes
    ----------
    work_units : float
        Passes over the data so far: one per forward, backward, or
        forward-mode (jvp) pass, as the GNvpro paper counts them (a pass over
        a sample of the rows counts as its share of a pass).
    """

    def __init__(self, net, X, C, sample_weight=None, alpha=0.0, rows=LOCAL_ROWS):
        super().__init__(net, X, sample_weight, alpha, rows)
        self.C = C.to(_DTYPE)
        self.n_samples = rows.sum(self.weight.sum())  # all processes' rows
        self.scale = (self.weight / self.n_samples).sqrt()[:, None]  # (n, 1)

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
            self.net,
            self.X[rows],
            self.C[rows],
            self.weight[rows],
            self.alpha,
            self.rows,
        )

    # ----------------------------------------------------------------- the head

    # A trial point's features and SVD serve the next iteration once the point
    # is accepted (relinearize): the same forward pass computes the same
    # features with or without derivatives' maps for the hand-written networks.
    reuses_trial = True

    def relinearize(self, lin, head_alpha):
        """:meth:`linearize` at ``lin.theta`` from ``lin``'s features, SVD and maps.

        What ``linearize(lin.theta, head_alpha, differentiable=True)`` returns,
        without its forward pass and SVD: the head (and its GCV weight) and the
        objective, this problem's ``theta`` penalty included, are computed
        again.

        Parameters
        ----------
        lin : _Linearization
            A linearization of this problem's rows with maps (from
            :meth:`trial_linearize` or a differentiable :meth:`linearize`).
        head_alpha : 'gcv' or float
            As in :meth:`linearize`.

        Returns
        -------
        _Linearization
            The reduced problem at ``lin.theta``, with ``lin``'s maps.
        """
        C = self.C * self.scale  # (n, c)
        return self._head_at(lin.theta, lin.Z, C, lin.maps, lin.factors, head_alpha)

    def linearize(self, theta, head_alpha, *, differentiable=False):
        """Solve the head at ``theta`` and evaluate the reduced objective.

        Parameters
        ----------
        theta : Tensor of shape (P,)
            The extractor's parameters.
        head_alpha : 'gcv' or float
            ``alpha_W``, or ``'gcv'`` to choose it by GCV from these features.
        differentiable : bool, default=False
            Keep the features' tangent and adjoint maps (for the gradient and
            Gauss-Newton products) from the same forward pass.

        Returns
        -------
        _Linearization or None
            None if the features are not finite.
        """
        Z, maps = self._evaluate(theta, differentiable)  # (n, p)
        if not self.rows.all(torch.isfinite(Z).all()):
            return None
        # One SVD serves GCV, the head and the Gram inverse.
        C = self.C * self.scale  # (n, c)
        # The rows stand for sum(w) samples (weights as repetitions); with that
        # count the GCV of these scaled rows is the weighted problem's, rescaled,
        # so its minimiser is alpha_W itself.
        factors = tikhonov_factor(Z, C, rows=self.rows)
        factors = replace(factors, n_samples=float(self.n_samples))
        return self._head_at(theta, Z, C, maps, factors, head_alpha)

    def _head_at(self, theta, Z, C, maps, factors, head_alpha):
        """The head, residual and objective at ``theta`` from its features
        ``Z``, scaled targets ``C`` and their factors."""
        if head_alpha == "gcv":
            s_max2 = float(factors.s[0] ** 2)
            lam_range = (_GCV_RANGE[0] * s_max2, _GCV_RANGE[1] * s_max2)
            head_alpha = factors.minimize_gcv(lam_range)[0]
        W = factors.solve(head_alpha)  # (p, c)
        R = Z @ W - C  # (n, c)
        misfit = self.rows.sum(R.square().sum())
        value = 0.5 * float(misfit + head_alpha * W.square().sum())
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
            maps,
            factors,
        )

    def solve_gram(self, lin, Y):
        """Apply ``(Z^T Z + alpha_W I)^{-1}`` from the SVD, complement included.

        Parameters
        ----------
        lin : _Linearization
            The reduced problem at the current ``theta``.
        Y : Tensor of shape (p, k)
            Right-hand sides.

        Returns
        -------
        Tensor of shape (p, k)
            ``(Z^T Z + alpha_W I)^{-1} Y``.
        """
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
        return -self.solve_gram(lin, self.rows.sum(dZ.T @ lin.R + lin.Z.T @ dZ @ lin.W))

    def kaufman_factor(self, lin):
        """Cholesky factor of Kaufman's Gauss-Newton matrix, to precondition CG.

        Parameters
        ----------
        lin : _Linearization
            The reduced problem at the current ``theta``.

        Returns
        -------
        L : Tensor of shape (P, P) or None
            See :func:`~sk_slim.training.gauss_newton.kaufman_factor`.
        """
        return kaufman_factor(self, lin)

    def gauss_newton(self, lin):
        """The Gauss-Newton matrix ``J^T J + alpha_theta D`` as a matvec closure.

        Parameters
        ----------
        lin : _Linearization
            The reduced problem at the current ``theta``, from :meth:`linearize`
            with ``differentiable=True``.

        Returns
        -------
        matvec : callable
            See :func:`~sk_slim.training.gauss_newton.least_squares_gauss_newton`.
        """
        return least_squares_gauss_newton(self, lin)
