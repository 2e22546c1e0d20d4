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
from torch import nn
from torch.func import functional_call, jacfwd, jvp, vjp, vmap

from .linearization import _SLOPES, _activate, _layer_plan, hand_written

__all__ = [
    "FuncStackedMaps",
    "NetworkStackedMaps",
    "input_jacobian",
    "stacked_feature_maps",
    "stacked_features",
]

# sigma''(a) from the activation's output s and slope sigma'(a); None: zero.
_CURVATURES = {
    nn.Identity: None,
    nn.Tanh: lambda s, slope: -2.0 * s * slope,
    nn.Sigmoid: lambda s, slope: slope * (1.0 - 2.0 * s),
    nn.ReLU: None,
}


def input_jacobian(extractor, params, X, n_columns):
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
    extractor : nn.Module
        The feature extractor.
    params : Tensor of shape (P,) or dict or None
        Its parameters, as in :func:`input_jacobian`.
    X : Tensor of shape (n, d)
        Inputs.
    n_columns : int
        ``q``, how many leading input columns to differentiate in.

    Returns
    -------
    Tensor of shape (n + q n, m)
        ``phi(X)``, then ``d phi / d x_j`` for ``j = 0 .. q-1``, each a block
        of ``n`` rows in the order of ``X``.
    """
    phi, D = input_jacobian(extractor, params, X, n_columns)
    return torch.cat([phi, D.reshape(-1, phi.shape[1])])


def _network_input_derivatives(extractor, theta, X, n_columns):
    """Input tangents propagated layer by layer (the module docstring)."""
    x, T = _propagate_tangents(extractor, theta, X, n_columns)
    return x, T.expand(n_columns, X.shape[0], x.shape[1])


def _propagate_tangents(extractor, theta, X, n_columns, cache=None):
    """``phi(X)`` and its input tangents ``T`` (q, n or 1, m) through a built-in
    network; with ``cache`` (a list), each layer's quantities that
    :class:`NetworkStackedMaps` differentiates are appended to it."""
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
        slope = curvature = None
        if _SLOPES[activation] is not None:
            slope = _SLOPES[activation](a, s)
            if cache is not None and _CURVATURES[activation] is not None:
                curvature = _CURVATURES[activation](s, slope)
        if cache is not None:
            cache.append(
                {
                    "K": K,
                    "shape": (out, inp),
                    "step": step,
                    "antisymmetric": antisymmetric,
                    "x": x,
                    "T": T,
                    "Ta": Ta,
                    "slope": slope,
                    "curvature": curvature,
                }
            )
        Ts = Ta if slope is None else slope * Ta
        if step is None:
            x, T = s, Ts
        else:
            x, T = x + step * s, T + step * Ts
    return x, T


def _func_input_derivatives(extractor, params, X, n_columns):
    """The input Jacobian of any extractor, row by row, by ``torch.func``."""

    def row_features(x):  # (d,) -> (m,)
        return functional_call(extractor, params, (x[None],))[0]

    phi = functional_call(extractor, params, (X,))
    J = vmap(jacfwd(row_features))(X)  # (n, m, d)
    return phi, J[..., :n_columns].permute(2, 0, 1)


def stacked_feature_maps(extractor, theta, unflatten, X, n_columns):
    """The stacked features' tangent and adjoint maps in ``theta``.

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

    Returns
    -------
    NetworkStackedMaps or FuncStackedMaps
        Hand-written where :func:`~.linearization.hand_written` says so.
    """
    if hand_written(extractor):
        return NetworkStackedMaps(extractor, theta, X, n_columns)
    return FuncStackedMaps(extractor, theta, unflatten, X, n_columns)


class FuncStackedMaps:
    """The stacked features' tangent and adjoint maps, by ``torch.func``.

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


class NetworkStackedMaps:
    """The stacked features' tangent and adjoint maps, written by hand.

    For the networks of :func:`~.linearization.hand_written`: one forward pass
    caches each layer's input ``x``, input tangents ``T``, ``T a = T K^T`` and
    the activation's first and second derivatives; then, with ``dK, db`` a
    parameter direction (the mixed derivative ``d^2 phi / dx dtheta``),

        da = x dK^T + db + dx K^T,        dTa = T dK^T + dT K^T,
        ds = sigma' da,                   dTs = (sigma'' da) Ta + sigma' dTa,

    and the adjoint runs the same products backwards. The tests compare both
    with ``torch.func``.

    Parameters
    ----------
    extractor : nn.Sequential
        A built-in network (``make_mlp``, ``make_resnet``).
    theta : Tensor of shape (P,)
        The parameters to linearize at.
    X : Tensor of shape (n, d)
        Inputs.
    n_columns : int
        The inputs with derivative data (the leading ``q``).

    Attributes
    ----------
    output : Tensor of shape (n + q n, m)
        The stacked features at ``theta``.
    """

    def __init__(self, extractor, theta, X, n_columns):
        self.theta = theta
        self._n, self._q = X.shape[0], n_columns
        self._layers = []
        with torch.no_grad():
            x, T = _propagate_tangents(extractor, theta, X, n_columns, self._layers)
        T = T.expand(n_columns, self._n, x.shape[1])
        self.output = torch.cat([x, T.reshape(-1, x.shape[1])])

    def tangent(self, v):
        """``J v``: the stacked features' derivative along a parameter direction.

        Parameters
        ----------
        v : Tensor of shape (P,)
            The direction, flat like ``theta``.

        Returns
        -------
        Tensor of shape (n + q n, m)
            ``d stacked(theta + t v) / dt`` at ``t = 0``.
        """
        dx = dT = None  # the inputs and their tangents do not depend on theta
        offset = 0
        for layer in self._layers:
            out, inp = layer["shape"]
            dK = v[offset : offset + out * inp].view(out, inp)
            db = v[offset + out * inp : offset + out * inp + out]
            offset += out * inp + out
            if layer["antisymmetric"]:
                dK = dK - dK.T
            K, slope, curvature = layer["K"], layer["slope"], layer["curvature"]
            da = torch.addmm(db, layer["x"], dK.T)
            dTa = layer["T"] @ dK.T
            if dx is not None:
                da = da.addmm_(dx, K.T)
                dTa = dTa + dT @ K.T
            if slope is None:
                ds, dTs = da, dTa
            else:
                ds, dTs = slope * da, slope * dTa
                if curvature is not None:
                    dTs = dTs + (curvature * da) * layer["Ta"]
            if layer["step"] is None or dx is None:
                step = 1.0 if layer["step"] is None else layer["step"]
                dx, dT = step * ds, step * dTs
            else:
                dx, dT = dx + layer["step"] * ds, dT + layer["step"] * dTs
        dT = dT.expand(-1, self._n, -1)
        return torch.cat([dx, dT.reshape(-1, dx.shape[1])])

    def adjoint(self, M):
        """``J^T M``: a cotangent of the stacked features pulled back to ``theta``.

        Parameters
        ----------
        M : Tensor of shape (n + q n, m)
            The cotangent.

        Returns
        -------
        Tensor of shape (P,)
            ``dL / dtheta``, flat like ``theta``.
        """
        n = self._n
        u, U = M[:n], M[n:].view(self._q, n, M.shape[1])  # of x and of T
        grads = []
        for index in reversed(range(len(self._layers))):
            layer = self._layers[index]
            K, slope, curvature = layer["K"], layer["slope"], layer["curvature"]
            step = layer["step"]
            u_s, U_s = (u, U) if step is None else (step * u, step * U)
            if slope is None:
                ga, gTa = u_s, U_s
            else:
                ga, gTa = slope * u_s, slope * U_s
                if curvature is not None:
                    ga = ga + curvature * (U_s * layer["Ta"]).sum(dim=0)
            T = layer["T"].expand(-1, n, -1)
            q = T.shape[0]
            out, inp = layer["shape"]  # explicit: q n may be 0 (an empty batch)
            dK = ga.T @ layer["x"] + gTa.reshape(q * n, out).T @ T.reshape(q * n, inp)
            if layer["antisymmetric"]:
                dK = dK - dK.T
            grads += [ga.sum(dim=0), dK.reshape(-1)]
            if index:
                gx, gT = ga @ K, gTa @ K
                u, U = (gx, gT) if step is None else (u + gx, U + gT)
        return torch.cat(grads[::-1])

    def row_jacobians(self, directions, rows):
        """Per-row Jacobians of the stacked features along feature directions.

        Parameters
        ----------
        directions : Tensor of shape (m, r)
            Directions in feature space.
        rows : slice
            Stacked rows (value rows ``0 .. n-1``, then derivative row
            ``n + j n + i`` of sample ``i`` and input ``j``).

        Returns
        -------
        J : Tensor of shape (n_rows, r, P)
            ``J[k, l] = d(stacked_k directions[:, l]) / d theta``, the rows
            kept apart: a derivative row's cotangent stays in its input's
            tangent and reaches the values' path through ``sigma''``.
        """
        n = self._n
        index = torch.arange(len(self.output), device=self.output.device)[rows]
        sample = index % n  # the sample of each stacked row
        slot = (index // n - 1).clamp(min=0)  # its input (value rows: unused)
        is_derivative = (index >= n).to(self.output.dtype)[:, None, None]
        m, r = directions.shape
        seed = directions.T.to(self.output.dtype)[None].expand(len(index), r, m)
        u, U = seed * (1.0 - is_derivative), seed * is_derivative  # (k, r, m)
        blocks = []
        for position in reversed(range(len(self._layers))):
            layer = self._layers[position]
            K, slope, curvature = layer["K"], layer["slope"], layer["curvature"]
            step = layer["step"]
            T = layer["T"].expand(-1, n, -1)[slot, sample][:, None]  # (k, 1, in)
            x = layer["x"][sample][:, None]  # (k, 1, in)
            u_s, U_s = (u, U) if step is None else (step * u, step * U)
            if slope is None:
                ga, gTa = u_s, U_s
            else:
                row_slope = slope[sample][:, None]  # (k, 1, out)
                ga, gTa = row_slope * u_s, row_slope * U_s
                if curvature is not None:
                    Ta = layer["Ta"].expand(-1, n, -1)[slot, sample][:, None]
                    ga = ga + curvature[sample][:, None] * U_s * Ta
            dK = (
                ga[..., :, None] * x[..., None, :] + gTa[..., :, None] * T[..., None, :]
            )
            if layer["antisymmetric"]:
                dK = dK - dK.transpose(-1, -2)
            blocks += [ga, dK.flatten(-2)]
            if position:
                gx, gT = ga @ K, gTa @ K
                u, U = (gx, gT) if step is None else (u + gx, U + gT)
        return torch.cat(blocks[::-1], dim=-1)
