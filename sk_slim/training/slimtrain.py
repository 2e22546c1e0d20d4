"""slimTrain: one step, one epoch, and the trainer (Newman et al. 2022).

Per mini-batch: forward pass, slimTik update of the head under no-grad, the loss
with the new head on the same graph, backward, and one optimizer step on the
feature extractor's parameters only (the alternating iteration of slimTrain).
Batches are tensor slices (no DataLoader).

References
----------
Newman, Chung, Chung, Ruthotto (2022), "slimTrain - A Stochastic Approximation
Method for Training Separable Deep Neural Networks", SIAM J. Sci. Comput. 44(4),
A2322-A2348.
"""

import copy
import math
from dataclasses import dataclass

import torch

from ..linalg import SlimTik
from .head import features_of, ridge_head, solve_head
from .linearization import NetworkLinearization, hand_written
from .protocol import Trainer

__all__ = [
    "SlimTrainConfig",
    "SlimTrainState",
    "SlimTrainTrainer",
    "half_mse",
    "lsgd_epoch",
    "make_slimtik",
    "slimtrain_epoch",
    "slimtrain_step",
]


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


def slimtrain_step(
    net, optimizer, slimtik, X, C, sample_weight=None, *, mgrit_iterations=None
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

    Returns
    -------
    loss : Tensor of shape ()
        The batch loss with the updated head (detached).
    """
    if mgrit_iterations is not None:
        loss = _mgrit_step(net, slimtik, X, C, sample_weight, mgrit_iterations)
        optimizer.step()
        return loss
    if hand_written(net.feature_extractor):
        params = list(net.feature_extractor.parameters())
        loss = _hand_written_step(net, params, slimtik, X, C, sample_weight)
        optimizer.step()
        return loss
    Z = net.features(X)  # (n, m), keeps the graph
    with torch.no_grad():
        net.set_head(slimtik.update(net.augment(Z.detach()), C, sample_weight))
    loss = half_mse(net.head(Z) - C, sample_weight)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


def _loss_cotangent(net, R, sample_weight):
    """``d half_mse / dZ`` for residuals ``R = Z W + b - C``: ``R / (n c)``, or
    ``w_i R_i / (c sum w)``, times ``W^T``."""
    if sample_weight is None:
        dR = R / R.numel()
    else:
        dR = R * (sample_weight / (R.shape[1] * sample_weight.sum()))[:, None]
    return dR @ net.W.T


def _set_gradient(params, grad):
    """Split a flat gradient into the parameters' ``.grad``."""
    for p, g in zip(params, grad.split([p.numel() for p in params]), strict=True):
        p.grad = g.view_as(p)


@torch.no_grad()
def _mgrit_step(net, slimtik, X, C, sample_weight, iterations):
    """:func:`slimtrain_step` with MGRIT propagation through a ``make_resnet``
    extractor, forward and back; leaves the gradient in ``p.grad``."""
    from ..parallel.mgrit import mgrit_backward, mgrit_forward

    extractor = net.feature_extractor
    # Exactly this many iterations: a tolerance of 0 never stops them earlier.
    options = {"max_iter": iterations, "tol": 0.0}
    states, _ = mgrit_forward(extractor, X, **options)

    def pull_back(M):
        return mgrit_backward(extractor, X, states, M, **options)[0]

    return _step_on_features(net, slimtik, C, sample_weight, states[-1], pull_back)


@torch.no_grad()
def _hand_written_step(net, params, slimtik, X, C, sample_weight):
    """:func:`slimtrain_step` for the networks sk_slim builds, without autograd:
    their adjoint is a few dense products over the forward pass's cached
    activations (``linearization.py``), which at the sizes of a mini-batch costs
    less than autograd's bookkeeping. Leaves the gradient in ``p.grad``."""
    theta = torch.cat([p.reshape(-1) for p in params])
    layers = NetworkLinearization(net.feature_extractor, theta, X)
    return _step_on_features(
        net, slimtik, C, sample_weight, layers.output, layers.adjoint
    )


def _step_on_features(net, slimtik, C, sample_weight, Z, pull_back):
    """The head's slimTik update on the batch's features ``Z``, then the loss's
    gradient in ``p.grad``: its cotangent on ``Z`` pulled back to the extractor's
    parameters by ``pull_back`` (flat). Returns the loss."""
    net.set_head(slimtik.update(net.augment(Z), C, sample_weight))
    R = net.head(Z) - C  # (n, c)
    gradient = pull_back(_loss_cotangent(net, R, sample_weight))
    _set_gradient(list(net.feature_extractor.parameters()), gradient)
    return half_mse(R, sample_weight)


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
        loss = slimtrain_step(
            net,
            optimizer,
            slimtik,
            X[batch],
            C[batch],
            weight,
            mgrit_iterations=mgrit_iterations,
        )
        batch_mass = len(batch) if weight is None else weight.sum()
        # Accumulate on the device: no host sync per step.
        total = total + loss * batch_mass
        mass = mass + batch_mass
    return total / mass


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
    for batch in order.split(batch_size):
        weight = None if sample_weight is None else sample_weight[batch]
        Z = net.features(X[batch])  # (b, m), keeps the graph
        with torch.no_grad():
            full = Z.detach() if len(batch) == n else features_of(net, X)
            W, alpha = ridge_head(net.augment(full), C, sample_weight, head_alpha)
            net.set_head(W)
        loss = half_mse(net.head(Z) - C[batch], weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        batch_mass = len(batch) if weight is None else weight.sum()
        total = total + loss.detach() * batch_mass
        mass = mass + batch_mass
    return total / mass, alpha


def make_slimtik(W0, *, memory_depth=5, head_alpha="auto"):
    """The slimTik solver of a separable network's head, as sk_slim configures it.

    Parameters
    ----------
    W0 : Tensor of shape (p, c)
        The initial augmented head ``[W; b]`` (its last row is the bias); its
        device is the solver's.
    memory_depth : int, default=5
        Number ``r`` of previous batches remembered.
    head_alpha : 'auto' or float, default='auto'
        ``'auto'`` chooses each batch's regularization increment by sampled
        GCV; a float fixes it.

    Returns
    -------
    SlimTik
        With :class:`~sk_slim.linalg.SlimTik`'s default floor (and start) of
        ``Lambda``.
    """
    return SlimTik(
        W0.shape[0],
        W0.shape[1],
        memory_depth=memory_depth,
        lam="sgcv" if head_alpha == "auto" else float(head_alpha),
        W0=W0,
        device=W0.device,
    )


@dataclass(frozen=True)
class SlimTrainConfig:
    """What a slimTrain run is asked to do (the estimator's parameters).

    Attributes
    ----------
    memory_depth : int
        slimTik's memory depth ``r``.
    head_alpha : 'auto' or float
        ``'auto'``: sampled GCV per batch and GCV in the full-data solve.
    solver : {'adam', 'sgd'}
        The optimizer of ``theta`` (SGD with Nesterov momentum 0.9).
    learning_rate_init : float
        Its learning rate.
    alpha : float
        L2 penalty on the extractor's weight matrices (not biases), as
        ``MLPRegressor``'s: ``alpha / (2 n_batch) ||theta_w||^2`` per batch.
    batch_size : int or 'auto'
        Rows per mini-batch; ``'auto'`` is ``min(200, n)``.
    shuffle : bool
        Shuffle the rows every epoch.
    streaming : bool
        ``partial_fit``: continue the optimizer and slimTik from the previous
        call and keep the streamed head (no full-data solve at the end).
    head_update : {'slimtik', 'exact'}
        ``'slimtik'``: slimTrain. ``'exact'``: LSGD (:func:`lsgd_epoch`), the
        ridge head on all rows before every step; ``batch_size='auto'`` is then
        all rows, as published.
    mgrit_iterations : int or None
        Propagate a ``make_resnet`` extractor forward and backward by this many
        MGRIT iterations per step (``sk_slim.parallel.mgrit``); None: serially.
    """

    memory_depth: int = 5
    head_alpha: object = "auto"
    solver: str = "adam"
    learning_rate_init: float = 1e-2
    alpha: float = 1e-4
    batch_size: object = "auto"
    shuffle: bool = True
    streaming: bool = False
    head_update: str = "slimtik"
    mgrit_iterations: int | None = None

    @property
    def ridge_alpha(self):
        """``head_alpha`` as the ridge solves take it: ``'gcv'`` for ``'auto'``."""
        return "gcv" if self.head_alpha == "auto" else self.head_alpha

    def batch_size_for(self, n_samples):
        """Return the mini-batch size for a data set.

        Parameters
        ----------
        n_samples : int
            Training rows.

        Returns
        -------
        int
            ``batch_size``, or for ``'auto'`` ``min(200, n_samples)`` (all rows
            with ``head_update='exact'``); at most ``n_samples``.
        """
        if self.batch_size == "auto":
            return n_samples if self.head_update == "exact" else min(200, n_samples)
        return min(self.batch_size, n_samples)


@dataclass
class SlimTrainState:
    """Where a slimTrain run stands between calls (what ``partial_fit`` continues).

    Attributes
    ----------
    optimizer : dict
        The state dict of ``theta``'s optimizer (moments, learning rate).
    slimtik : SlimTik or None
        The head's solver and its memory (None for LSGD's exact head).
    head_alpha : float
        The head's last ridge weight (LSGD; nan for slimTik).
    """

    optimizer: dict
    slimtik: SlimTik | None
    head_alpha: float = math.nan


class SlimTrainTrainer(Trainer):
    """Run slimTrain: mini-batch epochs, a slimTik head, an optimizer on theta.

    Parameters
    ----------
    net : SeparableNet
        The network, trained in place.
    config : SlimTrainConfig
        The run's settings.
    """

    history_names = ()

    def __init__(self, net, config):
        self.net = net
        self.config = config

    def start(self, data, state=None):
        """Build the optimizer and slimTik, continuing ``state`` when streaming.

        Parameters
        ----------
        data : FitData
            The training data of this call.
        state : SlimTrainState, default=None
            The previous call's state; used only when ``config.streaming``.
        """
        self.data = data
        self.optimizer = self._make_optimizer()
        self._head_alpha = math.nan
        continuing = state is not None and self.config.streaming
        if continuing:
            decays = [group["weight_decay"] for group in self.optimizer.param_groups]
            self.optimizer.load_state_dict(state.optimizer)
            # Keep the moments and learning rate, not a stale alpha / batch size.
            for group, decay in zip(self.optimizer.param_groups, decays, strict=True):
                group["weight_decay"] = decay
            self._head_alpha = state.head_alpha
        if self.config.head_update == "exact":
            self.slimtik = None
        elif continuing and state.slimtik is not None:
            self.slimtik = copy.copy(state.slimtik)
            self.slimtik.state = state.slimtik.state.to(data.X.device)
        else:
            self.slimtik = make_slimtik(
                self.net.augmented_head.detach(),
                memory_depth=self.config.memory_depth,
                head_alpha=self.config.head_alpha,
            )

    def _make_optimizer(self):
        # MLP's penalty alpha / (2 n_batch) ||theta||^2 on weights, not biases, with
        # n_batch the samples a batch stands for (weights count as repetitions).
        data, config = self.data, self.config
        batch_mass = config.batch_size_for(len(data.X))
        if data.weight is not None:
            batch_mass *= float(data.weight.mean())
        params = list(self.net.feature_extractor.parameters())
        groups = [
            {
                "params": [p for p in params if p.ndim > 1],
                "weight_decay": config.alpha / batch_mass,
            },
            {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0},
        ]
        groups = [g for g in groups if g["params"]]
        lr = config.learning_rate_init
        # One fused kernel for all parameters: at mini-batch sizes the default
        # per-parameter loop cost about twice the update (74 against 38 us a step
        # for a (16, 16) MLP); it differs from it by rounding only.
        fused = all(p.device.type in ("cpu", "cuda") for p in params)
        if config.solver == "adam":
            return torch.optim.Adam(groups, lr=lr, fused=fused)
        return torch.optim.SGD(groups, lr=lr, momentum=0.9, nesterov=True, fused=fused)

    @property
    def state(self):
        """The optimizer's state dict and slimTik, a :class:`SlimTrainState`."""
        return SlimTrainState(
            self.optimizer.state_dict(), self.slimtik, self._head_alpha
        )

    @property
    def head_alpha(self):
        """The head's ridge weight: slimTik's effective ``Lambda_k / (k + 1)``.

        With LSGD's exact head, the weight of the last step's solve.
        """
        if self.slimtik is None:
            return self._head_alpha
        return float(self.slimtik.state.alpha)

    def epoch(self):
        """Run one pass over the data in mini-batches.

        Returns
        -------
        loss : float
            The mean batch loss, each with the head just fitted to it; nan if the
            network's parameters or head became non-finite.
        """
        data, config = self.data, self.config
        batch_size = config.batch_size_for(len(data.X))
        generator = data.generator if config.shuffle else None
        if self.slimtik is None:
            loss, self._head_alpha = lsgd_epoch(
                self.net,
                self.optimizer,
                data.X,
                data.C,
                data.weight,
                head_alpha=config.ridge_alpha,
                batch_size=batch_size,
                generator=generator,
            )
        else:
            loss = slimtrain_epoch(
                self.net,
                self.optimizer,
                self.slimtik,
                data.X,
                data.C,
                data.weight,
                batch_size=batch_size,
                generator=generator,
                mgrit_iterations=config.mgrit_iterations,
            )
        # A NaN gradient on the last batch poisons theta after the loss was taken.
        net = self.net
        finite = all(torch.isfinite(p).all() for p in net.parameters())
        if not finite or not torch.isfinite(net.W).all():
            return math.nan
        return float(loss)

    def snapshot(self):
        """Copy the network and the algorithm's state.

        Returns
        -------
        snapshot : dict
            What :meth:`restore` needs to undo the next epochs.
        """
        slimtik = None if self.slimtik is None else self.slimtik.state.clone()
        return {
            "module": copy.deepcopy(self.net.state_dict()),
            "optimizer": copy.deepcopy(self.optimizer.state_dict()),
            "slimtik": slimtik,
            "head_alpha": self._head_alpha,
        }

    def restore(self, snapshot):
        """Return to a snapshot.

        Parameters
        ----------
        snapshot : dict
            From :meth:`snapshot`.
        """
        self.net.load_state_dict(snapshot["module"])
        self.optimizer.load_state_dict(snapshot["optimizer"])
        self._head_alpha = snapshot["head_alpha"]
        if self.slimtik is not None:
            self.slimtik.state = snapshot["slimtik"].clone()

    def shrink_step(self, factor):
        """Scale the optimizer's learning rate after a divergence.

        Parameters
        ----------
        factor : float
            The scale, in (0, 1).
        """
        for group in self.optimizer.param_groups:
            group["lr"] *= factor

    def record(self):
        """Report this epoch's algorithm-specific history.

        Returns
        -------
        record : dict of str to float
            Empty: slimTrain has no history beyond the loss and the head's ridge weight.
        """
        return {}

    def converged(self):
        """Test the algorithm's own convergence criterion.

        Returns
        -------
        bool
            Always False: slimTrain stops by the loop's patience only.
        """
        return False

    def solve_head(self, net=None):
        """Solve the head on all training rows and store it in the network.

        Parameters
        ----------
        net : SeparableNet, default=None
            The network (a copy of :attr:`net`, say); None: :attr:`net`.

        Returns
        -------
        head_alpha : float
            The ridge weight: chosen by GCV for ``head_alpha='auto'``, else
            the fixed one.
        """
        data = self.data
        net = self.net if net is None else net
        return solve_head(net, data.X, data.C, data.weight, self.config.ridge_alpha)

    def finish(self, net=None):
        """Solve the final head at the end of a call.

        Parameters
        ----------
        net : SeparableNet, default=None
            The network (a copy of :attr:`net`, say); None: :attr:`net`.

        Returns
        -------
        head_alpha : float
            The full-data ridge head's weight; when streaming with slimTik,
            its effective weight (the streamed head is kept: bounded memory).
            LSGD solves on all rows of the call anyway, so it always ends
            with the exact head of the final ``theta``.
        """
        if self.config.streaming and self.slimtik is not None:
            return self.head_alpha
        return self.solve_head(net)
