"""The features' derivatives with respect to ``theta``, for the reduced problems.

The Gauss-Newton solvers need, at one ``theta``, the tangent map
``v -> J v`` and the adjoint map ``M -> J^T M`` of the features
``phi(X; theta)``, many times. :class:`FuncDerivatives` gets them from
``torch.func`` for any extractor. ``torch.func`` adds tens of microseconds per
operation, which for the small networks of GNvpro costs more than the arithmetic
(a Jacobian-vector product of a (16, 16) tanh MLP on 3000 rows is 3 MFLOP,
about 0.1 ms of one core). So for the networks sk_slim builds (``make_mlp``,
``make_resnet``), :class:`NetworkLinearization` caches each layer's input and
activation slope in one forward pass and writes both maps as dense products:

    a_l = x_{l-1} K_l^T + b_l,  x_l = sigma(a_l)  or  x_{l-1} + h sigma(a_l)
    da_l = x_{l-1} dK_l^T + db_l + dx_{l-1} K_l^T,
    dx_l = sigma'(a_l) da_l  or  dx_{l-1} + h sigma'(a_l) da_l        (tangent)
    g_l = sigma'(a_l) u_l (times h),  dK_l = g_l^T x_{l-1},  db_l = 1^T g_l,
    u_{l-1} = g_l K_l  (plus u_l for a residual block)                (adjoint)

with ``K = W - W^T`` for antisymmetric blocks. The tests use ``torch.func`` as
the oracle of this path.
"""

import contextlib
import weakref

import torch
from torch import nn
from torch.func import functional_call, jacrev, jvp, vjp, vmap

from ..networks import ResidualBlock

__all__ = [
    "FuncDerivatives",
    "activation_slope",
    "NetworkLinearization",
    "hand_written",
    "linearize_features",
    "torch_func_only",
]

_hand_written_enabled = True

# sigma'(a), from a and the activation's output s = sigma(a); None: identically 1.
_SLOPES = {
    nn.Identity: None,
    nn.Tanh: lambda a, s: 1.0 - s * s,
    nn.Sigmoid: lambda a, s: s * (1.0 - s),
    nn.ReLU: lambda a, s: (a > 0).to(s.dtype),
}


def activation_slope(activation, a):
    """The derivative ``sigma'(a)`` of an activation of ``make_mlp``/``make_resnet``.

    Parameters
    ----------
    activation : nn.Module
        ``nn.Identity``, ``nn.Tanh``, ``nn.Sigmoid`` or ``nn.ReLU``.
    a : Tensor
        Its input.

    Returns
    -------
    Tensor of the shape of ``a``, or None
        ``sigma'(a)``; None for the identity (all ones).
    """
    derivative = _SLOPES[type(activation)]
    return None if derivative is None else derivative(a, activation(a))


def hand_written(extractor):
    """Whether ``extractor`` gets the hand-written maps (not ``torch.func``).

    Parameters
    ----------
    extractor : nn.Module
        A feature extractor.

    Returns
    -------
    bool
        True when :meth:`NetworkLinearization.supports` it, all its parameters
        are trainable, and no :func:`torch_func_only` context is active.
    """
    return (
        _hand_written_enabled
        and NetworkLinearization.supports(extractor)
        and all(p.requires_grad for p in extractor.parameters())
    )


@contextlib.contextmanager
def torch_func_only():
    """Within this context every extractor takes the ``torch.func``/autograd path.

    For benchmarks and tests that compare the two paths. It is read when the
    maps are built (a reduced problem's ``linearize``, each slimTrain step):
    maps built inside keep their path after the context ends. It is one flag
    for the process, not per thread.

    Yields
    ------
    None
    """
    global _hand_written_enabled
    previous, _hand_written_enabled = _hand_written_enabled, False
    try:
        yield
    finally:
        _hand_written_enabled = previous


def linearize_features(extractor, theta, unflatten, X, derivatives=True):
    """Evaluate ``phi(X; theta)`` and, if asked for, its derivatives' maps.

    Parameters
    ----------
    extractor : nn.Module
        The feature extractor; its own parameters are not read.
    theta : Tensor of shape (P,)
        The parameters to evaluate at, flat, in ``named_parameters`` order.
    unflatten : callable
        Maps a flat vector to ``{name: tensor}`` (for ``torch.func``).
    X : Tensor of shape (n, d)
        Inputs.
    derivatives : bool, default=True
        Also return the tangent and adjoint maps at ``theta``.

    Returns
    -------
    phi : Tensor of shape (n, m)
        The features, detached.
    maps : NetworkLinearization or FuncDerivatives or None
        Hand-written where :func:`hand_written` says so, ``torch.func``
        otherwise; None when ``derivatives`` is False.
    """
    if hand_written(extractor):
        maps = NetworkLinearization(extractor, theta, X, derivatives=derivatives)
        return maps.output, (maps if derivatives else None)
    if not derivatives:
        with torch.no_grad():
            return functional_call(extractor, unflatten(theta), (X,)), None
    maps = FuncDerivatives(extractor, theta, unflatten, X)
    return maps.output, maps


class FuncDerivatives:
    """The features' tangent and adjoint maps by ``torch.func``, for any extractor.

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

    Attributes
    ----------
    output : Tensor of shape (n, m)
        The features ``phi(X; theta)``, detached.
    """

    def __init__(self, extractor, theta, unflatten, X):
        self._extractor, self._unflatten, self._X = extractor, unflatten, X
        self.theta = theta
        output, self._pullback = vjp(self._features, theta)
        self.output = output.detach()

    def _features(self, theta):
        return functional_call(self._extractor, self._unflatten(theta), (self._X,))

    def tangent(self, v):
        """``J v``: the features' derivative along a parameter direction.

        Parameters
        ----------
        v : Tensor of shape (P,)
            The direction.

        Returns
        -------
        Tensor of shape (n, m)
            ``d phi(X; theta + t v) / dt`` at ``t = 0``.
        """
        return jvp(self._features, (self.theta,), (v,))[1]

    def adjoint(self, M):
        """``J^T M``: a cotangent of the features pulled back to ``theta``.

        Parameters
        ----------
        M : Tensor of shape (n, m)
            The cotangent ``dL / dphi``.

        Returns
        -------
        Tensor of shape (P,)
            ``dL / dtheta``.
        """
        return self._pullback(M)[0]

    def row_jacobians(self, directions, rows):
        """Per-row Jacobians of the features along directions, under ``vmap``.

        One row at a time: an extractor that mixes rows (batch statistics) gets
        per-row derivatives, which is good enough for a preconditioner.

        Parameters
        ----------
        directions : Tensor of shape (m, r)
            Directions in feature space.
        rows : slice
            The rows of ``X`` to differentiate.

        Returns
        -------
        J : Tensor of shape (n_rows, r, P)
            As :meth:`NetworkLinearization.row_jacobians`.
        """
        directions = directions.to(self.theta.dtype)

        def row_outputs(theta, x):  # (d,) -> (r,)
            z = functional_call(self._extractor, self._unflatten(theta), (x[None],))
            return z[0] @ directions

        return vmap(jacrev(row_outputs), in_dims=(None, 0))(self.theta, self._X[rows])


class NetworkLinearization:
    """The features of an sk_slim network at one ``theta``, and their derivatives.

    The tangent and adjoint maps are written as dense products over the
    activations cached by one forward pass.

    Parameters
    ----------
    extractor : nn.Sequential
        A network that :meth:`supports` accepts; its own parameters are not read.
    theta : Tensor of shape (P,)
        The parameters to linearize at, flat, in ``named_parameters`` order.
    X : Tensor of shape (n, d)
        Inputs.
    derivatives : bool, default=True
        Cache what the maps need; False just evaluates.

    Attributes
    ----------
    output : Tensor of shape (n, m)
        The features ``phi(X; theta)``.
    """

    def __init__(self, extractor, theta, X, derivatives=True):
        self._layers = []  # per Linear: its views of theta and its role
        offset = 0
        for out, inp, step, antisymmetric, activation in _layer_plan(extractor):
            W = theta[offset : offset + out * inp].view(out, inp)
            b = theta[offset + out * inp : offset + out * inp + out]
            offset += out * inp + out
            self._layers.append(
                {
                    "K": W - W.T if antisymmetric else W,
                    "b": b,
                    "step": step,
                    "antisymmetric": antisymmetric,
                    "activation": activation,
                }
            )
        self.n_params = offset
        self._buffers = {}  # scratch of the tangent and adjoint passes
        self._inputs, self._slopes = [], []  # x_{l-1}; sigma'(a_l) (times h)
        x = X
        with torch.no_grad():
            for layer in self._layers:
                a = torch.addmm(layer["b"], x, layer["K"].T)
                s = _activate(layer["activation"], a)
                slope = None
                if derivatives and _SLOPES[layer["activation"]] is not None:
                    slope = _SLOPES[layer["activation"]](a, s)
                if layer["step"] is not None:
                    if derivatives:
                        slope = layer["step"] * (1.0 if slope is None else slope)
                    s = x + layer["step"] * s
                if derivatives:
                    self._inputs.append(x)
                    self._slopes.append(slope)
                x = s
        self.output = x

    @staticmethod
    def supports(extractor):
        """Whether ``extractor`` is a network this class linearizes.

        Parameters
        ----------
        extractor : nn.Module
            A feature extractor.

        Returns
        -------
        bool
            True for an ``nn.Sequential`` of ``Linear`` layers (with biases),
            each followed by an activation of ``make_mlp``, and of residual
            blocks (``make_resnet``), and nothing else.
        """
        if type(extractor) is not nn.Sequential or len(extractor) == 0:
            return False
        expect_activation = False
        for layer in extractor:
            if expect_activation:
                if type(layer) not in _SLOPES:
                    return False
                expect_activation = False
            elif type(layer) is nn.Linear:
                if layer.bias is None:
                    return False
                expect_activation = True
            elif type(layer) is ResidualBlock:
                if type(layer.activation) not in _SLOPES:
                    return False
            else:
                return False
        return not expect_activation

    def tangent(self, v):
        """``J v``: the features' derivative along a parameter direction.

        Parameters
        ----------
        v : Tensor of shape (P,)
            The direction, flat like ``theta``.

        Returns
        -------
        Tensor of shape (n, m)
            ``d phi(X; theta + t v) / dt`` at ``t = 0``; it lives in a buffer
            of this object that the next call overwrites.
        """
        dx, offset = None, 0
        for index, (layer, x, slope) in enumerate(
            zip(self._layers, self._inputs, self._slopes, strict=True)
        ):
            out, inp = layer["K"].shape
            dK = v[offset : offset + out * inp].view(out, inp)
            db = v[offset + out * inp : offset + out * inp + out]
            offset += out * inp + out
            if layer["antisymmetric"]:
                dK = dK - dK.T
            da = torch.addmm(db, x, dK.T, out=self._scratch("tangent", index, x, out))
            if dx is not None:  # the inputs do not depend on theta
                da.addmm_(dx, layer["K"].T)
            if slope is not None:
                da.mul_(slope)
            dx = da if layer["step"] is None or dx is None else dx.add_(da)
        return dx

    def adjoint(self, M):
        """``J^T M``: a cotangent of the features pulled back to ``theta``.

        Parameters
        ----------
        M : Tensor of shape (n, m)
            The cotangent ``dL / dphi``.

        Returns
        -------
        Tensor of shape (P,)
            ``dL / dtheta``, flat like ``theta``.
        """
        grads, u = [], M
        for index in reversed(range(len(self._layers))):
            layer, slope, x = (
                self._layers[index],
                self._slopes[index],
                self._inputs[index],
            )
            g = u
            if slope is not None:  # (n, out)
                g = torch.mul(
                    slope, u, out=self._scratch("slope", index, u, u.shape[1])
                )
            dK = g.T @ x
            if layer["antisymmetric"]:
                dK = dK - dK.T
            grads += [g.sum(dim=0), dK.reshape(-1)]
            if index:
                back = self._scratch("back", index, g, x.shape[1])
                torch.mm(g, layer["K"], out=back)
                u = back if layer["step"] is None else back.add_(u)
        return torch.cat(grads[::-1])

    def _scratch(self, name, index, like, columns):
        """A reused (n, columns) buffer: fresh blocks of this size each product
        were page-faulted in anew once the allocator had returned them (up to
        twice the product's time at width 64, n = 3000)."""
        key = (name, index)
        buffer = self._buffers.get(key)
        if buffer is None or buffer.shape != (like.shape[0], columns):
            buffer = like.new_empty(like.shape[0], columns)
            self._buffers[key] = buffer
        return buffer

    def row_jacobians(self, directions, rows):
        """Per-row Jacobians of the features along directions in feature space.

        Parameters
        ----------
        directions : Tensor of shape (m, r)
            Directions in feature space.
        rows : slice
            The rows of ``X`` to differentiate.

        Returns
        -------
        J : Tensor of shape (n_rows, r, P)
            ``J[i, k] = d(phi(x_i; theta) directions[:, k]) / d theta``: ``r``
            adjoint passes, the rows kept apart.
        """
        inputs = [x[rows] for x in self._inputs]
        slopes = [s[rows] if torch.is_tensor(s) else s for s in self._slopes]
        n_rows = inputs[0].shape[0]
        # u[k, i] = directions[:, k] for every row i: (r, n_rows, m)
        u = directions.T.to(inputs[0].dtype)[:, None, :].expand(-1, n_rows, -1)
        blocks = []
        for index in reversed(range(len(self._layers))):
            layer, slope = self._layers[index], slopes[index]
            g = u if slope is None else slope * u  # (r, n_rows, out)
            dK = g[..., :, None] * inputs[index][None, :, None, :]  # (r, n, out, in)
            if layer["antisymmetric"]:
                dK = dK - dK.transpose(-1, -2)
            blocks += [g, dK.flatten(-2)]
            if index:
                back = g @ layer["K"]
                u = back if layer["step"] is None else u + back
        return torch.cat(blocks[::-1], dim=-1).transpose(0, 1)


# An extractor's layers as (out, in, step or None, antisymmetric, activation type),
# parsed once: at mini-batch sizes, parsing every step cost a tenth of a step.
_PLANS = weakref.WeakKeyDictionary()


def _layer_plan(extractor):
    plan = _PLANS.get(extractor)
    if plan is None or plan[0] != list(extractor):  # new, or its layers replaced
        layers = []
        for layer in extractor:
            if isinstance(layer, ResidualBlock):
                shape, activation = layer.linear.weight.shape, layer.activation
                layers.append(
                    [*shape, layer.step, layer.antisymmetric, type(activation)]
                )
            elif isinstance(layer, nn.Linear):
                layers.append([*layer.weight.shape, None, False, None])
            else:  # the activation of the Linear before it
                layers[-1][-1] = type(layer)
        plan = _PLANS[extractor] = (list(extractor), [tuple(x) for x in layers])
    return plan[1]


def _activate(activation, a):
    """``sigma(a)`` for the activations of ``make_mlp``."""
    if activation is nn.Tanh:
        return torch.tanh(a)
    if activation is nn.Sigmoid:
        return torch.sigmoid(a)
    if activation is nn.ReLU:
        return torch.relu(a)
    return a
