"""GNvpro for cross-entropy: the reduced problem with a logistic head.

The head is eliminated exactly, ``W(theta)`` = the ridge-regularized multinomial
logistic regression on the features (Newton-Krylov, float64, warm-started), and

    Phi(theta) = sum_i w_i CE(softmax(z_i W(theta)), y_i) + alpha_W/2 ||W(theta)||^2
                 + alpha_theta/2 ||theta_w||^2

(weights summing to one) is minimized by the same trust-region Gauss-Newton step
as the least-squares problem (:func:`~sk_slim.training.gnvpro.gnvpro_step`).
"""

from dataclasses import dataclass

import torch

from ..linalg import (
    cg,
    logistic_head,
    logistic_hessian,
    logistic_hessian_dense,
    softmax_jacobian_product,
)
from ..rows import LOCAL_ROWS
from .reduced import _DTYPE, _ReducedBase

__all__ = ["ReducedLogisticProblem"]

# Above this many head entries (p c) the inner Hessian is not formed: its solves
# run by CG on the matrix-free product instead of a Cholesky factor. Below, it is
# assembled by blocks of rows whose intermediates hold up to 2^24 entries (128
# MiB in float64): forming it costs n (p c)^2, about p c / 4 matrix-free
# products, and serves every product of an iteration (a Gauss-Newton step
# needs tens of them, each tens of CG iterations at inner_tol).
_DENSE_HESSIAN_MAX = 4096
_DENSE_ASSEMBLY_MAX = 2**24


@dataclass
class _LogisticLinearization:
    """The reduced problem at one ``theta``: head, probabilities, Hessian solve."""

    theta: torch.Tensor  # (P,) flat parameters
    head_alpha: float  # alpha_W
    Z: torch.Tensor  # (n, p) augmented features, float64
    W: torch.Tensor  # (p, c) the optimal head W(theta)
    P: torch.Tensor  # (n, c) softmax(Z W)
    value: float  # Phi(theta)
    maps: object = None  # the features' tangent/adjoint maps, when differentiable
    solve_hessian: object = None  # (p, c) -> H_W^{-1} (p, c), when differentiable


class ReducedLogisticProblem(_ReducedBase):
    """The VarPro-reduced cross-entropy problem of a separable network.

    Parameters
    ----------
    net : SeparableNet
        The network; ``theta`` are its feature extractor's parameters, which
        this object reads and writes in place. Its current head warm-starts the
        first inner solve.
    X : Tensor of shape (n, d)
        Training inputs.
    Y : Tensor of shape (n, c)
        One-hot targets.
    sample_weight : Tensor of shape (n,), default=None
        Weights of the rows, read as repetitions.
    alpha : float, default=0.0
        Ridge weight on the extractor's weight matrices (not biases), on the
        mean-loss scale.
    inner_tol : float, default=1e-10
        Gradient-norm tolerance of the inner logistic solve (the envelope
        gradient is exact only at the inner optimum).
    rows : RowGroup, default=LOCAL_ROWS
        Where the rows are (:mod:`sk_slim.rows`): all here, or
        this process's share; every sum over rows is then summed over the
        processes.

    Attributes
    ----------
    work_units : float
        Passes over the data so far (forward, backward or jvp passes).
    """

    def __init__(
        self,
        net,
        X,
        Y,
        sample_weight=None,
        alpha=0.0,
        inner_tol=1e-10,
        rows=LOCAL_ROWS,
    ):
        super().__init__(net, X, sample_weight, alpha, rows)
        self.Y = Y.to(_DTYPE)
        self.omega = (self.weight / rows.sum(self.weight.sum()))[:, None]  # (n, 1)
        self.inner_tol = inner_tol
        self._W_start = net.augmented_head.detach().to(_DTYPE)

    def on_rows(self, rows):
        """The same problem on some of the rows: same network, targets and alpha.

        Parameters
        ----------
        rows : Tensor of shape (m,)
            Row indices.

        Returns
        -------
        ReducedLogisticProblem
            The problem on those rows, a mean loss over them.
        """
        return ReducedLogisticProblem(
            self.net,
            self.X[rows],
            self.Y[rows],
            self.weight[rows],
            self.alpha,
            self.inner_tol,
            self.rows,
        )

    def linearize(self, theta, head_alpha, *, differentiable=False):
        """Solve the logistic head at ``theta`` and evaluate the reduced objective.

        Parameters
        ----------
        theta : Tensor of shape (P,)
            The extractor's parameters.
        head_alpha : float
            ``alpha_W`` > 0.
        differentiable : bool, default=False
            Keep the features' vjp and a solver of the inner Hessian (for the
            gradient and Gauss-Newton products).

        Returns
        -------
        _LogisticLinearization or None
            The head ``W(theta)``, its probabilities and ``Phi(theta)``; None if
            the features or the head are not finite.
        """
        Z, maps = self._evaluate(theta, differentiable)  # (n, p)
        if not self.rows.all(torch.isfinite(Z).all()):
            return None
        # Warm start from the last head solved (the previous theta is close).
        result = logistic_head(
            Z,
            self.Y,
            head_alpha,
            self.weight,
            self._W_start,
            tol=self.inner_tol,
            rows=self.rows,
        )
        if not torch.isfinite(result.W).all():
            return None
        self._W_start = result.W
        solve = None
        if differentiable:
            solve = self._hessian_solver(Z, result.P, head_alpha)
        value = result.value + self._theta_penalty(theta)
        return _LogisticLinearization(
            theta, head_alpha, Z, result.W, result.P, value, maps, solve
        )

    def _hessian_solver(self, Z, P, head_alpha):
        """``V -> H_W^{-1} V`` for the inner Hessian at ``(Z, P)``."""
        p, c = Z.shape[1], P.shape[1]
        rows = self.rows
        if p * c <= _DENSE_HESSIAN_MAX:
            block_rows = _DENSE_ASSEMBLY_MAX // (p * c)
            factor = torch.linalg.cholesky(
                logistic_hessian_dense(
                    Z, P, head_alpha, self.weight, rows, block_rows=block_rows
                )
            )

            def solve(V):
                return torch.cholesky_solve(V.reshape(-1, 1), factor).view(p, c)

            return solve
        hessian = logistic_hessian(Z, P, head_alpha, self.weight, rows)

        def solve(V):
            return cg(
                lambda v: hessian(v.view(p, c)).reshape(-1),  # on vec(V)
                V.reshape(-1),
                rtol=self.inner_tol,
            ).x.view(p, c)

        return solve

    def gradient(self, lin):
        """Reduced gradient by the envelope theorem: one backward pass, W fixed.

        Parameters
        ----------
        lin : _LogisticLinearization
            The reduced problem at the current ``theta``, from :meth:`linearize`
            with ``differentiable=True``.

        Returns
        -------
        g : Tensor of shape (P,)
            The gradient of ``Phi`` at ``lin.theta``.
        """
        dPhi_dZ = (self.omega * (lin.P - self.Y)) @ lin.W.T  # (n, p)
        return self._envelope_gradient(lin, dPhi_dZ)

    def delta_head(self, lin, dZ):
        """Sensitivity ``dW`` of the optimal head to a feature perturbation ``dZ``.

        Implicit differentiation of ``Z^T diag(w) (P - Y) + alpha_W W = 0``:
        ``H_W dW = -(dZ^T diag(w) (P - Y) + Z^T diag(w) D_P[dZ W])``, with
        ``D_P`` the softmax Jacobian per row.

        Parameters
        ----------
        lin : _LogisticLinearization
            The reduced problem at the current ``theta``, from :meth:`linearize`
            with ``differentiable=True``.
        dZ : Tensor of shape (n, p)
            A perturbation of the augmented features (float64).

        Returns
        -------
        dW : Tensor of shape (p, c)
            The first-order change of ``W(theta)``.
        """
        E = self.omega * (lin.P - self.Y)  # (n, c)
        curvature = self.omega * softmax_jacobian_product(lin.P, dZ @ lin.W)
        return -lin.solve_hessian(self.rows.sum(dZ.T @ E + lin.Z.T @ curvature))

    def gauss_newton(self, lin):
        """The Gauss-Newton matrix of the reduced problem as a matvec closure.

        ``J_S^T (d^2 L / dS^2) J_S + alpha_W J_W^T J_W + alpha_theta D`` for the
        outputs ``S = Z W(theta)`` and the head ``W(theta)``, with the head's
        sensitivity ``dW`` included (the cross-entropy case of Newman et al. 2021).

        Parameters
        ----------
        lin : _LogisticLinearization
            The reduced problem at the current ``theta``, from :meth:`linearize`
            with ``differentiable=True``.

        Returns
        -------
        matvec : callable
            ``matvec(v)`` maps a direction ``v`` of shape (P,) to the
            Gauss-Newton product; each call costs one jvp and one vjp pass over
            the data and two solves with the inner Hessian.

        Notes
        -----
        Forward: ``dZ = J_Z v``, ``dW`` from :meth:`delta_head`,
        ``dS = dZ W + Z dW``. Backward, with ``U = diag(w) D_P[dS]`` and
        ``lam = H_W^{-1} (Z^T U + alpha_W dW)`` (the adjoint of the inner
        solve): the cotangent of ``dZ`` is
        ``(U - diag(w) D_P[Z lam]) W^T - diag(w) (P - Y) lam^T``, pulled back
        through the network by one vjp. The dense-Jacobian test checks it.
        """
        E = self.omega * (lin.P - self.Y)  # (n, c)

        def matvec(v):  # (P,) -> (P,)
            dZ = self.feature_tangent(lin, v)  # (n, p)
            dW = self.delta_head(lin, dZ)  # (p, c)
            dS = dZ @ lin.W + lin.Z @ dW  # (n, c)
            U = self.omega * softmax_jacobian_product(lin.P, dS)
            ZtU = self.rows.sum(lin.Z.T @ U)
            lam = lin.solve_hessian(ZtU + lin.head_alpha * dW)  # (p, c)
            U = U - self.omega * softmax_jacobian_product(lin.P, lin.Z @ lam)
            M = U @ lin.W.T - E @ lam.T  # (n, p)
            Hv = self.rows.sum(self.feature_adjoint(lin, M))
            self.work_units += 2
            return Hv + self.alpha * self.penalized * v

        return matvec
