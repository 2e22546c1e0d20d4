"""Derivative observations of the targets, and the reduced problem that fits them.

With derivative data the least-squares loss of a separable network is

    sum_i w_i ( ||f(x_i) - c_i||^2 + sum_j v_ij ||df(x_i)/dx_j - g_ij||^2 )

(``v_ij``: the derivative rows' weight, zero where ``g_ij`` is missing). Both
parts are linear in the head (``input_derivatives.py``), so the head stays one
weighted ridge problem over the value rows ``[phi(x_i), 1]`` and the derivative
rows ``[d phi(x_i)/dx_j, 0]``, and variable projection (Newman et al. 2021)
goes through with the stacked rows in place of the value rows: GCV counts every
observed row, value or derivative, as a sample of the weighted mean loss.
"""

from dataclasses import dataclass

import torch

from ..rows import LOCAL_ROWS
from .input_derivatives import stacked_feature_maps, stacked_features
from .linearization import hand_written
from .reduced import _DTYPE, ReducedProblem

__all__ = [
    "DerivativeData",
    "DerivativeReducedProblem",
    "augment_stacked",
    "held_out_stacked_r2",
]


@dataclass(frozen=True)
class DerivativeData:
    """Derivatives of the head's targets in the network's leading inputs.

    Attributes
    ----------
    G : Tensor of shape (n, q, c)
        ``G[i, j, k] = d c_ik / d x_ij`` in the units the network sees
        (encoded inputs, standardized targets); 0 where missing.
    weight : Tensor of shape (n, q)
        Each derivative row's weight relative to its value row: the
        estimator's ``grad_weight`` where observed, 0 where missing.
    """

    G: torch.Tensor
    weight: torch.Tensor

    @property
    def n_columns(self):
        """``q``, the inputs with derivative data."""
        return self.G.shape[1]

    def on_rows(self, rows):
        """The derivatives of some of the samples.

        Parameters
        ----------
        rows : Tensor or slice
            Sample indices.

        Returns
        -------
        DerivativeData
            Of those samples.
        """
        return DerivativeData(self.G[rows], self.weight[rows])

    def stack_targets(self, C):
        """The targets of the stacked rows: ``C``, then the derivative blocks.

        Parameters
        ----------
        C : Tensor of shape (n, c)
            The value targets.

        Returns
        -------
        Tensor of shape (n + q n, c)
            In the row order of :func:`~.input_derivatives.stacked_features`.
        """
        G = self.G.to(C.dtype).transpose(0, 1).reshape(-1, C.shape[1])
        return torch.cat([C, G])

    def stack_weights(self, sample_weight, n_samples):
        """The weights of the stacked rows.

        Parameters
        ----------
        sample_weight : Tensor of shape (n,) or None
            The samples' weights; None: all one.
        n_samples : int
            ``n``.

        Returns
        -------
        Tensor of shape (n + q n,)
            ``w_i`` for a value row, ``w_i v_ij`` for a derivative row.
        """
        w = self.weight.new_ones(n_samples) if sample_weight is None else sample_weight
        w = w.to(self.weight.dtype)
        return torch.cat([w, (self.weight * w[:, None]).T.reshape(-1)])

    def augmented_features(self, net, X):
        """``[phi, 1]`` for the value rows and ``[d phi / dx_j, 0]`` below.

        Parameters
        ----------
        net : SeparableNet
            The network.
        X : Tensor of shape (n, d)
            Inputs.

        Returns
        -------
        Tensor of shape (n + q n, m + 1)
            The head's stacked design matrix (no gradient kept).
        """
        with torch.no_grad():
            phi = stacked_features(net.feature_extractor, None, X, self.n_columns)
        return augment_stacked(phi, len(X))


def augment_stacked(phi, n_values):
    """``[phi, 1]`` for the first ``n_values`` (value) rows, ``[phi, 0]`` below.

    Parameters
    ----------
    phi : Tensor of shape (n + q n, m)
        Stacked features (:func:`~.input_derivatives.stacked_features`).
    n_values : int
        ``n``.

    Returns
    -------
    Tensor of shape (n + q n, m + 1)
        The bias column: a derivative row has no bias.
    """
    ones = phi.new_zeros(phi.shape[0], 1)
    ones[:n_values] = 1.0
    return torch.cat([phi, ones], dim=1)


class DerivativeReducedProblem(ReducedProblem):
    """The reduced least-squares problem with derivative rows stacked below.

    Parameters
    ----------
    net : SeparableNet
        The network; ``theta`` are its feature extractor's parameters.
    X : Tensor of shape (n, d)
        Training inputs.
    C : Tensor of shape (n, c)
        Value targets (standardized).
    derivatives : DerivativeData
        The derivative targets of the same samples.
    sample_weight : Tensor of shape (n,), default=None
        Weights of the samples, read as repetitions.
    alpha : float, default=0.0
        Ridge weight on the extractor's weight matrices on the value rows'
        mean-loss scale (as :class:`~.reduced.ReducedProblem`'s); rescaled to
        the stacked mean, so that ``alpha / 2 ||theta_w||^2`` stays the
        penalty of the summed loss.
    rows : RowGroup, default=LOCAL_ROWS
        Where the rows are.
    """

    def __init__(
        self, net, X, C, derivatives, sample_weight=None, alpha=0.0, rows=LOCAL_ROWS
    ):
        super().__init__(net, X, C, sample_weight, alpha, rows)
        self.derivatives = derivatives
        self.C = derivatives.stack_targets(self.C)
        stacked_weight = derivatives.stack_weights(self.weight, len(X)).to(_DTYPE)
        n_values = self.n_samples
        self.n_samples = self.rows.sum(stacked_weight.sum())
        self.scale = (stacked_weight / self.n_samples).sqrt()[:, None]
        self.alpha = alpha * float(n_values / self.n_samples)
        self._value_alpha = alpha

    def on_rows(self, rows):
        """The same problem on some of the samples, with their derivatives.

        Parameters
        ----------
        rows : Tensor of shape (k,)
            Sample indices.

        Returns
        -------
        DerivativeReducedProblem
            The problem on those samples.
        """
        return DerivativeReducedProblem(
            self.net,
            self.X[rows],
            self.C[: len(self.X)][rows],
            self.derivatives.on_rows(rows),
            self.weight[rows],
            self._value_alpha,
            rows=self.rows,
        )

    def extractor_features(self, theta):
        """The stacked features at ``theta`` (value rows, then derivative rows).

        Parameters
        ----------
        theta : Tensor of shape (P,)
            The extractor's parameters.

        Returns
        -------
        Tensor of shape (n + q n, m)
            See :func:`~.input_derivatives.stacked_features`.
        """
        extractor = self.net.feature_extractor
        params = theta if hand_written(extractor) else self._unflatten(theta)
        return stacked_features(extractor, params, self.X, self.derivatives.n_columns)

    def _augment(self, phi):
        """``scale * [phi, 1]``, with a zero for the derivative rows' bias."""
        return self.scale.to(phi.dtype) * augment_stacked(phi, len(self.X))

    @property
    def n_rows(self):
        """The stacked rows: ``n (1 + q)``."""
        return self.X.shape[0] * (1 + self.derivatives.n_columns)

    def kaufman_factor(self, lin):
        """Form Kaufman's factor over the stacked rows (built-in networks).

        Parameters
        ----------
        lin : _Linearization
            The reduced problem at the current ``theta``.

        Returns
        -------
        L : Tensor of shape (P, P) or None
            As :func:`~.gauss_newton.kaufman_factor`; None for an extractor
            without hand-written maps (no per-row Jacobians).
        """
        if not hand_written(self.net.feature_extractor):
            return None
        return super().kaufman_factor(lin)

    def _evaluate(self, theta, differentiable):
        n_columns = self.derivatives.n_columns
        if differentiable:
            maps = stacked_feature_maps(
                self.net.feature_extractor, theta, self._unflatten, self.X, n_columns
            )
            phi = maps.output
        else:
            with torch.no_grad():
                phi, maps = self.extractor_features(theta), None
        self.work_units += 1 + n_columns
        return self._augment(phi.detach()).to(_DTYPE), maps


@torch.no_grad()
def held_out_stacked_r2(net, X, C, derivatives, sample_weight=None, rows=LOCAL_ROWS):
    """Score held-out values and derivatives together by the R^2 of both.

    What early stopping scores with derivative data: ``1 - SSE / SST`` over
    the stacked rows on the network's scale, each row weighted as in the loss
    (``w_i``, and ``w_i v_ij`` for a derivative row); ``SST`` about each
    block's weighted mean (the values', and each input's derivatives', per
    output). With few held-out samples the derivatives carry
    most of what they say about the fit: ``d`` observations per sample.

    Parameters
    ----------
    net : SeparableNet
        The network (in eval mode), its head solved.
    X : Tensor of shape (n, d)
        Held-out inputs, encoded.
    C : Tensor of shape (n, c)
        Their standardized targets.
    derivatives : DerivativeData
        Their derivatives.
    sample_weight : Tensor of shape (n,), default=None
        Their weights.
    rows : RowGroup, default=LOCAL_ROWS
        Where the held-out rows are: sums run over all processes' rows.

    Returns
    -------
    float
        The score; 1 for a perfect fit (0 where the targets are constant and
        the fit is not).
    """
    n, q = len(X), derivatives.n_columns
    Z = derivatives.augmented_features(net, X).to(_DTYPE)
    T = derivatives.stack_targets(C).to(_DTYPE)
    w = derivatives.stack_weights(sample_weight, n).to(_DTYPE)[:, None]
    residual = Z @ net.augmented_head.to(_DTYPE) - T
    blocks = [slice(k * n, (k + 1) * n) for k in range(1 + q)]
    mass = torch.stack([w[b].sum() for b in blocks])
    first = torch.stack([(w[b] * T[b]).sum(dim=0) for b in blocks])
    second = torch.stack([(w[b] * T[b] ** 2).sum(dim=0) for b in blocks])
    sse, mass, first, second = rows.sum((w * residual**2).sum(), mass, first, second)
    present = mass > 0
    sst = (second[present] - first[present] ** 2 / mass[present, None]).sum()
    if sst <= 0:
        return float(sse == 0)
    return float(1.0 - sse / sst)
