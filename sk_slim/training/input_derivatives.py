"""The features' derivatives with respect to the inputs, for derivative data.

A separable network ``f(x) = phi(x; theta) W + b`` has the input gradient
``df/dx_j = (d phi / d x_j) W``: linear in the head, like the values. Derivative
observations ``g_ij ~ df(x_i)/dx_j`` therefore add rows ``d phi(x_i)/d x_j``
(with a zero in the bias column) to the head's least-squares problem, and the
variable-projection machinery applies to the stacked rows unchanged. This
module computes those rows, and, as a function of ``theta``, the stacked
features whose tangent and adjoint maps (the mixed derivative
``d^2 phi / dx dtheta``) the reduced problem needs.

For the networks sk_slim builds (``make_mlp``, ``make_resnet``) the input
tangents are propagated by hand through the layers, for ``q`` input directions
at once::

    a_l = x_{l-1} K_l^T + b_l,      T a_l = T_{l-1} K_l^T,
    x_l = sigma(a_l)                T_l = sigma'(a_l) * T a_l
       (or x_{l-1} + h sigma(a_l))     (or T_{l-1} + h sigma'(a_l) * T a_l)

in plain tensor operations, so ``torch.func`` differentiates them in ``theta``
at the cost of a few batched products. Any other extractor gets the input
Jacobian from ``torch.func.jacfwd`` under ``vmap``; the tests compare the two.
"""

import torch
from torch.func import functional_call, jacfwd, jvp, vjp, vmap

from .linearization import _SLOPES, _activate, _layer_plan, hand_written

__all__ = ["StackedFeatureMaps", "input_derivatives", "stacked_features"]


def input_derivatives(extractor, params, X, n_columns):
    """Compute ``phi(X)`` and its derivatives in the first ``n_columns`` inputs.

    Parameters
    ----------
    extractor : nn.Module
        The feature extractor.
    params : Tensor of shape (P,) or dict or None
        Its parameters: flat (the built-in networks, see :func:`hand_written`),
        ``{name: tensor}`` (any extractor, through ``functional_call``), or
        None for its own.
    X : Tensor of shape (n, d)
        Inputs.
    n_columns : int
        ``q``, how many leading input columns to differentiate in.

    Returns
    -------
    phi : Tensor of shape (n, m)
        The features.
    D : Tensor of shape (q, n, m)
        ``D[j, i] = d phi(x_i) / d x_ij``.
    """
    if hand_written(extractor) and (params is None or torch.is_tensor(params)):
        if params is None:
            params = torch.cat([p.reshape(-1) for p in extractor.parameters()])
        return _network_input_derivatives(extractor, params, X, n_columns)
    if params is None:
        params = dict(extractor.named_parameters())
    elif torch.is_tensor(params):
        raise TypeError("A flat parameter vector needs a built-in network.")
    return _func_input_derivatives(extractor, params, X, n_columns)


def stacked_features(extractor, params, X, n_columns):
    """The value rows and the derivative rows of the features, stacked.

    Parameters
    ----------
    extractor, params, X, n_columns
        As in :func:`input_derivatives`.

    Returns
    -------
    Tensor of shape (n + q n, m)
        ``phi(X)``, then ``d phi / d x_j`` for ``j = 0 .. q-1``, each a block
        of ``n`` rows in the order of ``X``.
    """
    phi, D = input_derivatives(extractor, params, X, n_columns)
    return torch.cat([phi, D.reshape(-1, phi.shape[1])])


def _network_input_derivatives(extractor, theta, X, n_columns):
    """Input tangents propagated layer by layer (the module docstring)."""
    x = X
    # T[j] = d x / d x_j = e_j for every row: (q, 1, d), broadcast over the rows.
    T = torch.eye(X.shape[1], dtype=X.dtype, device=X.device)[:n_columns, None, :]
    offset = 0
    for out, inp, step, antisymmetric, activation in _layer_plan(extractor):
        W = theta[offset : offset + out * inp].view(out, inp)
        b = theta[offset + out * inp : offset + out * inp + out]
        offset += out * inp + out
        K = W - W.T if antisymmetric else W
        a = torch.addmm(b, x, K.T)
        s = _activate(activation, a)
        Ta = T @ K.T  # (q, n or 1, out)
        slope = _SLOPES[activation]
        Ts = Ta if slope is None else slope(a, s) * Ta
        if step is None:
            x, T = s, Ts
        else:
            x, T = x + step * s, T + step * Ts
    return x, T.expand(n_columns, X.shape[0], x.shape[1])


def _func_input_derivatives(extractor, params, X, n_columns):
    """The input Jacobian of any extractor, row by row, by ``torch.func``."""

    def row_features(x):  # (d,) -> (m,)
        return functional_call(extractor, params, (x[None],))[0]

    phi = functional_call(extractor, params, (X,))
    J = vmap(jacfwd(row_features))(X)  # (n, m, d)
    return phi, J[..., :n_columns].permute(2, 0, 1)


class StackedFeatureMaps:
    """Tangent and adjoint maps of the stacked features in ``theta``.

    The maps of the value rows and derivative rows of :func:`stacked_features`
    as a function of the flat parameters, by ``torch.func`` over the
    input-tangent propagation (built-in networks) or the nested ``jacfwd``
    (others). It offers what :class:`~.linearization.FuncDerivatives` offers
    but the per-row Jacobians: no Kaufman preconditioner with derivative data.

    Parameters
    ----------
    extractor : nn.Module
        The feature extractor.
    theta : Tensor of shape (P,)
        The parameters to linearize at.
    unflatten : callable
        Maps a flat vector to ``{name: tensor}``.
    X : Tensor of shape (n, d)
        Inputs.
    n_columns : int
        The inputs with derivative data (the leading ``q``).

    Attributes
    ----------
    output : Tensor of shape (n + q n, m)
        The stacked features at ``theta``, detached.
    """

    def __init__(self, extractor, theta, unflatten, X, n_columns):
        self._extractor, self._unflatten, self._X = extractor, unflatten, X
        self._n_columns = n_columns
        self._flat = hand_written(extractor)
        self.theta = theta
        output, self._pullback = vjp(self._features, theta)
        self.output = output.detach()

    def _features(self, theta):
        params = theta if self._flat else self._unflatten(theta)
        return stacked_features(self._extractor, params, self._X, self._n_columns)

    def tangent(self, v):
        """``J v``: the stacked features' derivative along a parameter direction.

        Parameters
        ----------
        v : Tensor of shape (P,)
            The direction.

        Returns
        -------
        Tensor of shape (n + q n, m)
            ``d stacked(theta + t v) / dt`` at ``t = 0``.
        """
        return jvp(self._features, (self.theta,), (v,))[1]

    def adjoint(self, M):
        """``J^T M``: a cotangent of the stacked features pulled back to ``theta``.

        Parameters
        ----------
        M : Tensor of shape (n + q n, m)
            The cotangent.

        Returns
        -------
        Tensor of shape (P,)
            ``dL / dtheta``.
        """
        return self._pullback(M)[0]
