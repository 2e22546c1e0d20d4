"""slimTrain: one step and one epoch (ALGORITHMS.md §1.5).

Per mini-batch: forward pass, slimTik update of the head under no-grad, the loss
with the new head on the same graph, backward, and one optimizer step on the
feature extractor's parameters only. Batches are tensor slices (no DataLoader).
"""

import torch

__all__ = ["half_mse", "slimtrain_epoch", "slimtrain_step"]


def half_mse(residual, sample_weight=None):
    """Half the (weighted) mean squared error over samples and outputs.

    Parameters
    ----------
    residual : Tensor of shape (n, c)
        Predictions minus targets.
    sample_weight : Tensor of shape (n,), default=None
        Weights of the rows.

    Returns
    -------
    Tensor of shape ()
        ``sum_i w_i ||r_i||^2 / (2 c sum_i w_i)``, as ``MLPRegressor``'s loss.
    """
    squared = residual.square().mean(dim=1)  # (n,)
    if sample_weight is None:
        return 0.5 * squared.mean()
    return 0.5 * (sample_weight * squared).sum() / sample_weight.sum()


def slimtrain_step(net, optimizer, slimtik, X, C, sample_weight=None):
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

    Returns
    -------
    loss : Tensor of shape ()
        The batch loss with the updated head (detached).
    """
    Z = net.features(X)  # (n, m), keeps the graph
    with torch.no_grad():
        net.set_head(slimtik.update(net.augment(Z.detach()), C, sample_weight))
    loss = half_mse(net.head(Z) - C, sample_weight)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


def slimtrain_epoch(
    net, optimizer, slimtik, X, C, sample_weight=None, *, batch_size, generator=None
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
    total, mass = X.new_zeros(()), 0.0
    for batch in order.split(batch_size):
        weight = None if sample_weight is None else sample_weight[batch]
        loss = slimtrain_step(net, optimizer, slimtik, X[batch], C[batch], weight)
        batch_mass = len(batch) if weight is None else weight.sum()
        # Accumulate on the device: no host sync per step.
        total = total + loss * batch_mass
        mass = mass + batch_mass
    return total / mass
