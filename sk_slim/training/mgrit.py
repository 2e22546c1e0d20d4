"""Layer-parallel propagation through ``make_resnet`` extractors by MGRIT.

A ResNet of ``make_resnet`` is forward-Euler time stepping: after the opening
layer ``x_0 = sigma(X W_0^T + b_0)``, block ``l`` takes
``x_{l+1} = x_l + h sigma(x_l K_l^T + b_l)``. Its forward propagation is the
solution of a time-stepping problem with one step per block, and the backward
propagation of a cotangent ``M`` of the features ``x_L`` is the adjoint
recursion

    lam_L = M,   lam_l = lam_{l+1} + (h sigma'(a_l) * lam_{l+1}) K_l,

a time-stepping problem run backwards. Both are solved here by multigrid
reduction in time (MGRIT, the ``pymgrit`` package): the fine propagator is the
block itself, so at convergence the solution is the serial one; coarse levels
apply, over ``m`` blocks, the block at the coarse point with step ``m h``
(Guenther, Ruthotto, Schroder, Cyr, Gauger 2020). The parameters' gradient is
then a sum of per-block products of the adjoint and forward states.

Needs the ``parallel`` extra (``pymgrit``, ``mpi4py`` and an MPI library such
as the ``mpich`` wheel). With ``comm_time`` spanning several MPI processes the
time points are distributed over them; every process gets the result.

References
----------
Guenther, Ruthotto, Schroder, Cyr, Gauger (2020), "Layer-parallel training of
deep residual neural networks", SIAM J. Math. Data Sci. 2(1).
Falgout, Friedhoff, Kolev, MacLachlan, Schroder (2014), "Parallel time
integration with multigrid", SIAM J. Sci. Comput. 36(6).
"""

from dataclasses import dataclass

import numpy as np
import pymgrit.core.mgrit
import torch
from pymgrit.core.application import Application
from pymgrit.core.mgrit import Mgrit
from pymgrit.core.simple_setup_problem import simple_setup_problem
from pymgrit.core.vector import Vector
from torch import nn

from ..networks import ResidualBlock
from ..training.linearization import NetworkLinearization, activation_slope

__all__ = ["ResNetSteps", "mgrit_backward", "mgrit_forward"]


class _NumpyForPymgrit:
    """numpy, with ``in1d`` (removed in numpy 2.4, called by pymgrit 1.0) as
    ``isin``: given to pymgrit's MGRIT module alone, numpy itself untouched."""

    in1d = staticmethod(np.isin)

    def __getattr__(self, name):
        return getattr(np, name)


if not hasattr(np, "in1d"):
    pymgrit.core.mgrit.np = _NumpyForPymgrit()


@dataclass(frozen=True)
class ResNetSteps:
    """A ``make_resnet`` extractor as an opening layer and explicit time steps.

    Attributes
    ----------
    opening : nn.Linear
        The opening layer, followed by ``activation``.
    activation : nn.Module
        The opening layer's nonlinearity.
    blocks : list of ResidualBlock
        The residual blocks, one time step each.
    step : float
        Their common step size ``h``.
    """

    opening: nn.Linear
    activation: nn.Module
    blocks: list
    step: float

    @classmethod
    def of(cls, extractor):
        """Read the parts of a ``make_resnet`` extractor.

        Parameters
        ----------
        extractor : nn.Sequential
            ``Linear``, an activation, then residual blocks of one step size.

        Returns
        -------
        ResNetSteps
        """
        layers = list(extractor)
        blocks = layers[2:]
        valid = (
            NetworkLinearization.supports(extractor)  # the layers and activations
            and len(layers) >= 3
            and type(layers[0]) is nn.Linear
            and all(type(block) is ResidualBlock for block in blocks)
            and len({block.step for block in blocks}) == 1
        )
        if not valid:
            raise ValueError(
                "MGRIT propagation needs a make_resnet extractor: a Linear layer, "
                "its activation, and residual blocks of one step size."
            )
        return cls(layers[0], layers[1], blocks, blocks[0].step)

    @property
    def depth(self):
        """The number of residual blocks (time steps)."""
        return len(self.blocks)

    def weight(self, layer):
        """The block's weight matrix ``K_l`` (antisymmetrized if it is).

        Parameters
        ----------
        layer : int
            The block's index ``l``.

        Returns
        -------
        Tensor of shape (width, width)
            ``K_l``, or ``K_l - K_l^T`` for an antisymmetric block.
        """
        block = self.blocks[layer]
        K = block.linear.weight
        return K - K.T if block.antisymmetric else K

    def pre_activation(self, layer, x):
        """The block's pre-activation ``a_l = x K_l^T + b_l``.

        Parameters
        ----------
        layer : int
            The block's index ``l``.
        x : Tensor of shape (n, width)
            The state ``x_l``.

        Returns
        -------
        Tensor of shape (n, width)
            ``a_l``.
        """
        return torch.addmm(self.blocks[layer].linear.bias, x, self.weight(layer).T)

    def slope(self, layer, x):
        """The activation's derivative ``sigma'(a_l)`` at the state ``x_l``.

        Parameters
        ----------
        layer : int
            The block's index ``l``.
        x : Tensor of shape (n, width)
            The state ``x_l``.

        Returns
        -------
        Tensor of shape (n, width) or None
            ``sigma'(a_l)``; None for the identity (all ones).
        """
        return activation_slope(
            self.blocks[layer].activation, self.pre_activation(layer, x)
        )


class _TensorVector(Vector):
    """A pymgrit vector holding a state: a tensor of shape (n, width)."""

    def __init__(self, value):
        super().__init__()
        self.value = value

    def __add__(self, other):
        return _TensorVector(self.value + other.value)

    def __sub__(self, other):
        return _TensorVector(self.value - other.value)

    def __mul__(self, other):
        return _TensorVector(self.value * other)

    def norm(self):
        return float(torch.linalg.vector_norm(self.value))

    def clone(self):
        return _TensorVector(self.value.clone())

    def clone_zero(self):
        return _TensorVector(torch.zeros_like(self.value))

    def clone_rand(self):
        # Only for pymgrit's random initial guess, which this module never asks
        # for; seeded all the same, so that nothing reads the global RNG.
        generator = torch.Generator().manual_seed(0)
        return _TensorVector(
            torch.rand(self.value.shape, generator=generator, dtype=self.value.dtype)
        )

    def set_values(self, value):
        self.value = value

    def get_values(self):
        return self.value

    # pymgrit sends packed vectors with mpi4py's pickle-based messages, which
    # carry tensors as they are.
    def pack(self):
        return self.value

    def unpack(self, value):
        self.value = value


class _Forward(Application):
    """Forward propagation: point ``j`` of the time grid is the state ``x_j``."""

    def __init__(self, steps, x0):
        super().__init__(
            t_start=0.0, t_stop=steps.depth * steps.step, nt=steps.depth + 1
        )
        self.steps = steps
        self.vector_template = _TensorVector(torch.zeros_like(x0))
        self.vector_t_start = _TensorVector(x0.clone())

    def step(self, u_start, t_start, t_stop):
        steps = self.steps
        layer = int(round(t_start / steps.step))  # the block at the step's start
        x = u_start.value
        block = steps.blocks[layer]
        update = block.activation(steps.pre_activation(layer, x))
        return _TensorVector(x + (t_stop - t_start) * update)


class _Adjoint(Application):
    """Backward propagation: point ``j`` is the adjoint state ``lam_{L - j}``."""

    def __init__(self, steps, states, cotangent):
        super().__init__(
            t_start=0.0, t_stop=steps.depth * steps.step, nt=steps.depth + 1
        )
        self.steps = steps
        self.slopes = [
            steps.slope(layer, states[layer]) for layer in range(steps.depth)
        ]
        self.vector_template = _TensorVector(torch.zeros_like(cotangent))
        self.vector_t_start = _TensorVector(cotangent.clone())

    def step(self, u_start, t_start, t_stop):
        steps = self.steps
        layer = steps.depth - int(round(t_start / steps.step)) - 1
        lam, slope = u_start.value, self.slopes[layer]
        g = (t_stop - t_start) * (lam if slope is None else slope * lam)
        return _TensorVector(lam + g @ steps.weight(layer))


def _solve(application, levels, coarsening, tol, max_iter, comm_time):
    """Run MGRIT on ``application``; return every fine-grid state, in order."""
    hierarchy = simple_setup_problem(application, level=levels, coarsening=coarsening)
    options = {"tol": tol, "max_iter": max_iter, "logging_lvl": 40}
    if comm_time is not None:
        options["comm_time"] = comm_time
    solver = Mgrit(problem=hierarchy, **options)
    info = solver.solve()
    # This process's points, without the ghost point it receives from the left.
    states = [solver.u[0][i].value for i in solver.index_local[0]]
    if solver.comm_time.Get_size() > 1:
        states = [s for part in solver.comm_time.allgather(states) for s in part]
    return states, info


def mgrit_forward(
    extractor, X, *, levels=2, coarsening=2, tol=1e-12, max_iter=None, comm_time=None
):
    """Propagate ``X`` through a ``make_resnet`` extractor by MGRIT.

    Parameters
    ----------
    extractor : nn.Sequential
        Built by ``make_resnet``.
    X : Tensor of shape (n, d)
        Inputs.
    levels : int, default=2
        Time-grid levels of the MGRIT hierarchy.
    coarsening : int, default=2
        Coarsening factor between levels.
    tol : float, default=1e-12
        MGRIT's stopping tolerance on its residual norm.
    max_iter : int, default=None
        MGRIT iterations at most; the number of blocks (always enough: MGRIT is
        exact after as many iterations as coarse intervals) if None. A small
        number gives inexact propagation, as in simultaneous layer-parallel
        training.
    comm_time : mpi4py communicator, default=None
        Processes to distribute the time points over (pymgrit's default: all).

    Returns
    -------
    states : list of Tensor of shape (n, width)
        The states ``x_0, ..., x_L``: the opening layer's output, then each
        block's; the last is the features.
    info : dict
        The convergence record of pymgrit (``conv``: the residual norm per
        iteration).
    """
    steps = ResNetSteps.of(extractor)
    with torch.no_grad():
        x0 = steps.activation(steps.opening(X))
        max_iter = steps.depth if max_iter is None else max_iter
        return _solve(_Forward(steps, x0), levels, coarsening, tol, max_iter, comm_time)


def mgrit_backward(
    extractor,
    X,
    states,
    cotangent,
    *,
    levels=2,
    coarsening=2,
    tol=1e-12,
    max_iter=None,
    comm_time=None,
):
    """Pull a cotangent of the features back to the parameters, by MGRIT.

    The adjoint is propagated backwards through the blocks by MGRIT; the
    gradient ``J^T M`` is then a sum of per-block products.

    Parameters
    ----------
    extractor : nn.Sequential
        Built by ``make_resnet``.
    X : Tensor of shape (n, d)
        Inputs.
    states : list of Tensor of shape (n, width)
        The forward states ``x_0, ..., x_L`` (from :func:`mgrit_forward`).
    cotangent : Tensor of shape (n, width)
        ``M = dL / dx_L``.
    levels : int, default=2
        As in :func:`mgrit_forward`.
    coarsening : int, default=2
        As in :func:`mgrit_forward`.
    tol : float, default=1e-12
        As in :func:`mgrit_forward`.
    max_iter : int, default=None
        As in :func:`mgrit_forward`.
    comm_time : mpi4py communicator, default=None
        As in :func:`mgrit_forward`.

    Returns
    -------
    gradient : Tensor of shape (P,)
        ``dL / dtheta``, flat in ``named_parameters`` order.
    info : dict
        The convergence record of pymgrit.
    """
    steps = ResNetSteps.of(extractor)
    with torch.no_grad():
        max_iter = steps.depth if max_iter is None else max_iter
        application = _Adjoint(steps, states, cotangent)
        reversed_adjoint, info = _solve(
            application, levels, coarsening, tol, max_iter, comm_time
        )
        adjoint = reversed_adjoint[::-1]  # lam_0, ..., lam_L
        grads = []
        # The opening layer: x_0 = sigma(a), a = X W_0^T + b_0.
        slope = activation_slope(steps.activation, steps.opening(X))
        g = adjoint[0] if slope is None else slope * adjoint[0]
        grads += [(g.T @ X).reshape(-1), g.sum(dim=0)]
        for layer, block in enumerate(steps.blocks):
            lam, slope = adjoint[layer + 1], application.slopes[layer]
            g = steps.step * (lam if slope is None else slope * lam)
            dK = g.T @ states[layer]
            if block.antisymmetric:
                dK = dK - dK.T
            grads += [dK.reshape(-1), g.sum(dim=0)]
        return torch.cat(grads), info
