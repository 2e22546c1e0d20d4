"""slimTrain's step and epoch, and LSGD's epoch (Newman et al. 2022; Cyr et al. 2020).

Per mini-batch: forward pass, slimTik update of the head under no-grad, the loss
with the new head on the same graph, backward, and one optimizer step on the
feature extractor's parameters only (the alternating iteration of slimTrain).
Batches are tensor slices (no DataLoader); on the CPU the epoch of a network
``make_mlp`` builds runs on numpy views instead (``numpy_step.py``). The
trainer that runs these epochs is in ``slimtrain.py``.

References
----------
Newman, Chung, Chung, Ruthotto (2022), "slimTrain - A Stochastic Approximation
Method for Training Separable Deep Neural Networks", SIAM J. Sci. Comput. 44(4),
A2322-A2348.
"""

import math

import torch

from ..rows import LOCAL_ROWS
from .derivative_data import augment_stacked
from .head import features_of, ridge_head
from .input_derivatives import NetworkStackedMaps, stacked_features
from .linearization import NetworkLinearization, hand_written
from .numpy_step import NumpyStep

__all__ = ["half_mse", "lsgd_epoch", "slimtrain_epoch", "slimtrain_step"]


def half_mse(residual, sample_weight=None, n_samples=None):
    """Half the (weighted) mean squared error over samples and outputs.

    Parameters
    ----------
    residual : Tensor of shape (n, c)
        Predictions minus targets.
    sample_weight : Tensor of shape (n,), default=None
        Weights of the rows.
    n_samples : float, default=None
        The mean's denominator, ``sum_i w_i`` by default; the count of all
        processes' rows when these are one process's share of a batch.

    Returns
    -------
    Tensor of shape ()
        ``sum_i w_i ||r_i||^2 / (2 c sum_i w_i)``, as ``MLPRegressor``'s loss.
    """
    squared = residual.square().mean(dim=1)  # (n,)
    if sample_weight is not None:
        squared = sample_weight * squared
        n_samples = sample_weight.sum() if n_samples is None else n_samples
    elif n_samples is None:
        return 0.5 * squared.mean()
    return 0.5 * squared.sum() / n_samples


def slimtrain_step(
    net,
    optimizer,
    slimtik,
    X,
    C,
    sample_weight=None,
    *,
    mgrit_iterations=None,
    rows=LOCAL_ROWS,
    derivatives=None,
    numpy_step=None,
):
    """One slimTrain iteration on a mini-batch.

    Parameters
    ----------
    net : SeparableNet
        The network; its head buffers receive the slimTik solution.
    optimizer : torch.optim.Optimizer
        Steps the feature extractor's parameters (never the head).
    slimtik : SlimTik
        The head's sampled limited-memory Tikhonov state.
    X : Tensor of shape (n, ...)
        The batch's inputs.
    C : Tensor of shape (n, c)
        The batch's targets.
    sample_weight : Tensor of shape (n,), default=None
        Weights of the batch's rows.
    mgrit_iterations : int, default=None
        Propagate a ``make_resnet`` extractor forward, and the loss's cotangent
        backward, by this many MGRIT iterations (inexact propagation, as in
        simultaneous layer-parallel training; Guenther et al. 2020) instead of
        block after block. Needs the ``parallel`` extra.
    rows : RowGroup, default=LOCAL_ROWS
        Where the batch's rows are (:mod:`sk_slim.rows`): the
        batch is then all processes' rows together; the head's statistics and
        theta's gradient are summed over them.
    derivatives : DerivativeData, default=None
        Derivative targets of the batch's rows: their rows
        ``[d phi / d x_j, 0]`` join the slimTik update and the loss
        (``derivative_data.py``); not with ``mgrit_iterations``.
    numpy_step : NumpyStep, default=None
        Take the step in numpy (:class:`NumpyStep`); ``X``, ``C`` and
        ``sample_weight`` are then numpy arrays. :func:`slimtrain_epoch`
        builds it once an epoch where it applies.

    Returns
    -------
    loss : Tensor of shape () or float
        The batch loss with the updated head (detached; a float in numpy).
    """
    if numpy_step is not None:
        return numpy_step.step(X, C, sample_weight)
    if derivatives is not None and hand_written(net.feature_extractor):
        loss = _hand_written_derivative_step(
            net, slimtik, X, C, sample_weight, derivatives, rows
        )
        optimizer.step()
        return loss
    if derivatives is not None:
        n = len(X)
        Z = augment_stacked(
            stacked_features(net.feature_extractor, None, X, derivatives.n_columns), n
        )  # (n + q n, m + 1), keeps the graph
        C = derivatives.stack_targets(C)
        sample_weight = derivatives.stack_weights(sample_weight, n).to(Z.dtype)
        with torch.no_grad():
            net.set_head(slimtik.update(Z.detach(), C, sample_weight, rows))
        R = Z @ net.augmented_head - C
        loss = half_mse(R, sample_weight, _denominator(slimtik, rows))
        return _step_on_loss(net, optimizer, loss, rows)
    if mgrit_iterations is not None:
        loss = _mgrit_step(net, slimtik, X, C, sample_weight, mgrit_iterations, rows)
        optimizer.step()
        return loss
    if hand_written(net.feature_extractor):
        params = list(net.feature_extractor.parameters())
        loss = _hand_written_step(net, params, slimtik, X, C, sample_weight, rows)
        optimizer.step()
        return loss
    Z = net.features(X)  # (n, m), keeps the graph
    with torch.no_grad():
        head = slimtik.update(net.augment(Z.detach()), C, sample_weight, rows)
        net.set_head(head)
    loss = half_mse(net.head(Z) - C, sample_weight, _denominator(slimtik, rows))
    return _step_on_loss(net, optimizer, loss, rows)


def _step_on_loss(net, optimizer, loss, rows):
    """Backpropagate ``loss`` (autograd), sum the gradient over the processes
    when the rows are split, and take the optimizer's step; return the loss
    (detached, summed)."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if rows.distributed:
        loss = _sum_gradients(net, loss.detach(), rows)
    optimizer.step()
    return loss.detach()


def _sum_gradients(net, loss, rows):
    """Sum each process's share of the extractor's gradient and of the loss over
    the processes (one all-reduce); return the loss."""
    # Which parameters have a gradient is the network's structure, the same on
    # every rank; the others stay untouched, as in a single process.
    params = [p for p in net.feature_extractor.parameters() if p.grad is not None]
    gradient, loss = rows.sum(torch.cat([p.grad.reshape(-1) for p in params]), loss)
    _set_gradient(params, gradient)
    return loss


def _denominator(slimtik, rows):
    """The batch mean's denominator: all processes' weight sum when split."""
    return slimtik.batch_samples if rows.distributed else None


def _loss_cotangent(net, R, sample_weight, n_samples):
    """``d half_mse / dZ`` for residuals ``R = Z W + b - C``: ``R / (n c)``, or
    ``w_i R_i / (c sum w)``, times ``W^T`` (``n_samples``: ``n`` or
    ``sum w``)."""
    if sample_weight is None:
        dR = R / (R.shape[1] * n_samples)
    else:
        dR = R * (sample_weight / (R.shape[1] * n_samples))[:, None]
    return dR @ net.W.T


def _set_gradient(params, grad):
    """Split a flat gradient into the parameters' ``.grad``."""
    for p, g in zip(params, grad.split([p.numel() for p in params]), strict=True):
        p.grad = g.view_as(p)


@torch.no_grad()
def _mgrit_step(net, slimtik, X, C, sample_weight, iterations, rows):
    """:func:`slimtrain_step` with MGRIT propagation through a ``make_resnet``
    extractor, forward and back; leaves the gradient in ``p.grad``."""
    from .mgrit import mgrit_backward, mgrit_forward

    extractor = net.feature_extractor
    # Exactly this many iterations: a tolerance of 0 never stops them earlier.
    options = {"max_iter": iterations, "tol": 0.0}
    states, _ = mgrit_forward(extractor, X, **options)

    def pull_back(M):
        return mgrit_backward(extractor, X, states, M, **options)[0]

    return _step_on_features(
        net, slimtik, C, sample_weight, states[-1], pull_back, rows
    )


@torch.no_grad()
def _hand_written_step(net, params, slimtik, X, C, sample_weight, rows):
    """:func:`slimtrain_step` for the networks sk_slim builds, without autograd:
    their adjoint is a few dense products over the forward pass's cached
    activations (``linearization.py``), which at the sizes of a mini-batch costs
    less than autograd's bookkeeping. Leaves the gradient in ``p.grad``."""
    theta = torch.cat([p.reshape(-1) for p in params])
    layers = NetworkLinearization(net.feature_extractor, theta, X)
    return _step_on_features(
        net, slimtik, C, sample_weight, layers.output, layers.adjoint, rows
    )


@torch.no_grad()
def _hand_written_derivative_step(net, slimtik, X, C, sample_weight, derivatives, rows):
    """:func:`slimtrain_step` with derivative rows for the networks sk_slim builds:
    the stacked features and their adjoint written by hand
    (``input_derivatives.py``). Leaves the gradient in ``p.grad``."""
    params = list(net.feature_extractor.parameters())
    theta = torch.cat([p.reshape(-1) for p in params])
    maps = NetworkStackedMaps(net.feature_extractor, theta, X, derivatives.n_columns)
    weight = derivatives.stack_weights(sample_weight, len(X)).to(X.dtype)
    C = derivatives.stack_targets(C)
    return _step_on_features(
        net, slimtik, C, weight, maps.output, maps.adjoint, rows, n_values=len(X)
    )


def _step_on_features(
    net, slimtik, C, sample_weight, Z, pull_back, rows, n_values=None
):
    """The head's slimTik update on the batch's features ``Z``, then the loss's
    gradient in ``p.grad``: its cotangent on ``Z`` pulled back to the extractor's
    parameters by ``pull_back`` (flat). Returns the loss. With ``n_values``,
    the rows of ``Z`` below the first ``n_values`` are derivative rows (no
    bias)."""
    Z_augmented = net.augment(Z) if n_values is None else augment_stacked(Z, n_values)
    net.set_head(slimtik.update(Z_augmented, C, sample_weight, rows))
    if n_values is None:
        R = net.head(Z) - C  # (n, c)
    else:
        R = Z_augmented @ net.augmented_head.to(Z.dtype) - C
    n_samples = slimtik.batch_samples  # over all processes' rows
    gradient = pull_back(_loss_cotangent(net, R, sample_weight, n_samples))
    loss = half_mse(R, sample_weight, n_samples)
    if rows.distributed:  # this process's shares of both: one all-reduce
        gradient, loss = rows.sum(gradient, loss)
    _set_gradient(list(net.feature_extractor.parameters()), gradient)
    return loss


def slimtrain_epoch(
    net,
    optimizer,
    slimtik,
    X,
    C,
    sample_weight=None,
    *,
    batch_size,
    generator=None,
    mgrit_iterations=None,
    rows=LOCAL_ROWS,
    derivatives=None,
):
    """One pass of slimTrain over ``(X, C)`` in mini-batches.

    Parameters
    ----------
    net : SeparableNet
        As in :func:`slimtrain_step`.
    optimizer : torch.optim.Optimizer
        As in :func:`slimtrain_step`.
    slimtik : SlimTik
        As in :func:`slimtrain_step`.
    X : Tensor of shape (n, ...)
        Training inputs.
    C : Tensor of shape (n, c)
        Training targets.
    sample_weight : Tensor of shape (n,), default=None
        Weights of the rows.
    batch_size : int
        Rows per mini-batch (the last batch may be smaller).
    generator : torch.Generator, default=None
        Shuffles the rows; ``None`` keeps their order.
    mgrit_iterations : int, default=None
        As in :func:`slimtrain_step`.
    rows : RowGroup, default=LOCAL_ROWS
        As in :func:`slimtrain_step`: each process draws ``batch_size`` rows
        of its own per step (as ``DistributedDataParallel`` does).
    derivatives : DerivativeData, default=None
        Derivative targets of the rows; each batch takes those of its rows.

    Returns
    -------
    loss : Tensor of shape ()
        The mean of the batch losses, weighted by batch size (or weight sum).
    """
    n = X.shape[0]
    if generator is None:
        order = torch.arange(n, device=X.device)
    else:
        order = torch.randperm(n, generator=generator).to(X.device)
    if NumpyStep.supports(
        net,
        optimizer,
        X,
        rows=rows,
        derivatives=derivatives,
        mgrit_iterations=mgrit_iterations,
    ):
        numpy_step = NumpyStep(net, optimizer, slimtik)
        try:
            return _numpy_epoch(numpy_step, X, C, sample_weight, order, batch_size)
        finally:
            numpy_step.finish()  # the head buffers, as after each torch step
    total, mass = X.new_zeros(()), 0.0
    for batch in _batches(order, batch_size, rows):
        weight = None if sample_weight is None else sample_weight[batch]
        loss = slimtrain_step(
            net,
            optimizer,
            slimtik,
            X[batch],
            C[batch],
            weight,
            mgrit_iterations=mgrit_iterations,
            rows=rows,
            derivatives=None if derivatives is None else derivatives.on_rows(batch),
        )
        # Accumulate on the device: no host sync per step.
        total = total + loss * slimtik.batch_samples
        mass = mass + slimtik.batch_samples
    return total / mass


def _numpy_epoch(numpy_step, X, C, sample_weight, order, batch_size):
    """:func:`slimtrain_epoch`'s loop on numpy views of the data, each step
    by ``numpy_step``; the same batches as the torch loop's."""
    X, C, weight, order = numpy_step.views(X, C, sample_weight, order)
    total, mass = 0.0, 0.0
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        loss = slimtrain_step(
            numpy_step.net,
            numpy_step.optimizer,
            numpy_step.slimtik,
            X[batch],
            C[batch],
            None if weight is None else weight[batch],
            numpy_step=numpy_step,
        )
        samples = numpy_step.slimtik.batch_samples
        total, mass = total + loss * samples, mass + samples
    return torch.tensor(total / mass, dtype=torch.float64)


def _batches(order, batch_size, rows):
    """Split a permutation of the rows into mini-batches. With rows split over
    processes, every process takes as many steps as the one with the most rows:
    its batches are as even as they can be (some empty when it has few rows)."""
    if not rows.distributed:
        return order.split(batch_size)
    n_steps = rows.max_int(-(-len(order) // batch_size))
    return order.tensor_split(n_steps)


def lsgd_epoch(
    net,
    optimizer,
    X,
    C,
    sample_weight=None,
    *,
    head_alpha="gcv",
    batch_size=None,
    generator=None,
    rows=LOCAL_ROWS,
):
    """One pass of the hybrid least-squares/gradient-descent method (LSGD).

    Per mini-batch: the head is solved exactly, by ridge on *all* rows at the
    current ``theta`` (Cyr et al. 2020: least squares for the last layer after
    every gradient step on the hidden ones), then ``theta`` takes one optimizer
    step on the batch's loss with that head. With full batches (the method as
    published) the head's features come from the same forward pass as the
    gradient; with mini-batches each step adds a no-grad pass over all rows.

    Parameters
    ----------
    net : SeparableNet
        The network; its head buffers receive each solution.
    optimizer : torch.optim.Optimizer
        Steps the feature extractor's parameters (never the head).
    X : Tensor of shape (n, ...)
        Training inputs.
    C : Tensor of shape (n, c)
        Training targets.
    sample_weight : Tensor of shape (n,), default=None
        Weights of the rows (repetitions).
    head_alpha : 'gcv' or float, default='gcv'
        The head's ridge weight on the mean loss, or GCV at every step.
    batch_size : int, default=None
        Rows per gradient step; None: all of them.
    generator : torch.Generator, default=None
        Shuffles the rows; ``None`` keeps their order.
    rows : RowGroup, default=LOCAL_ROWS
        As in :func:`slimtrain_epoch`.

    Returns
    -------
    loss : Tensor of shape ()
        The mean of the batch losses, weighted by batch size (or weight sum).
    alpha : float
        The head's ridge weight at the last step.

    References
    ----------
    Cyr, Gulian, Patel, Perego, Trask (2020), "Robust training and
    initialization of deep neural networks: an adaptive basis viewpoint",
    MSML, PMLR 107.
    """
    n = X.shape[0]
    batch_size = n if batch_size is None else batch_size
    if generator is None or batch_size >= n:  # a full batch: no order to draw
        order = torch.arange(n, device=X.device)
    else:
        order = torch.randperm(n, generator=generator).to(X.device)
    total, mass, alpha = X.new_zeros(()), 0.0, math.nan
    for batch in _batches(order, batch_size, rows):
        weight = None if sample_weight is None else sample_weight[batch]
        Z = net.features(X[batch])  # (b, m), keeps the graph
        with torch.no_grad():
            full = Z.detach() if len(batch) == n else features_of(net, X)
            W, alpha = ridge_head(
                net.augment(full), C, sample_weight, head_alpha, rows=rows
            )
            net.set_head(W)
        batch_mass = float(len(batch) if weight is None else weight.sum())
        batch_mass = rows.sum_floats(batch_mass)
        loss = half_mse(net.head(Z) - C[batch], weight, batch_mass)
        loss = _step_on_loss(net, optimizer, loss, rows)
        total = total + loss * batch_mass
        mass = mass + batch_mass
    return total / mass, alpha
