"""slimTrain's trainer: its configuration, state and epochs (Newman et al. 2022).

The trainer runs the epochs of ``slimtrain_steps.py`` (slimTrain's mini-batch
steps, or LSGD's), and builds the optimizer and the head's slimTik.

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
from .head import solve_head
from .protocol import Trainer
from .slimtrain_steps import lsgd_epoch, slimtrain_epoch

__all__ = ["SlimTrainConfig", "SlimTrainState", "SlimTrainTrainer", "make_slimtik"]


# sGCV on every 8th mini-batch at most (the tune half: the same accuracy as on
# every batch, a (64, 64) epoch at 0.6 times the cost; user guide, "Sampled GCV").
_SGCV_EVERY_MAX = 8


def make_slimtik(W0, *, memory_depth=5, head_alpha="auto", sgcv_every=1):
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
    sgcv_every : int, default=1
        Sampled GCV chooses the increment on every ``sgcv_every``-th batch
        (:class:`~sk_slim.linalg.SlimTik`); 1 is the published method.

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
        sgcv_every=sgcv_every,
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
        MGRIT iterations per step (``sk_slim.training.mgrit``); None: serially.
    head_gcv_weight : float
        The weight of the GCV function that chooses the full-data head's ridge
        (:meth:`~sk_slim.linalg.TikhonovSVD.gcv`; 1 is GCV, above 1 the
        weighted GCV of Chung, Nagy and O'Leary, 2008). The per-batch sGCV
        is unweighted.
    sgcv_every : int or 'auto'
        slimTik's sampled GCV runs on every ``sgcv_every``-th batch; ``'auto'``
        is ``min(8, steps of an epoch)``: at least once an epoch.
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
    head_gcv_weight: float = 1.0
    sgcv_every: object = 1

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
            self.slimtik.sgcv_every = self._sgcv_every()
        else:
            self.slimtik = make_slimtik(
                self.net.augmented_head.detach(),
                memory_depth=self.config.memory_depth,
                head_alpha=self.config.head_alpha,
                sgcv_every=self._sgcv_every(),
            )

    def _sgcv_every(self):
        """``config.sgcv_every``, with ``'auto'`` at most the steps of an epoch
        (as :func:`slimtrain_epoch` counts them): sGCV chooses at least once an
        epoch, every batch where an epoch is one batch."""
        every = self.config.sgcv_every
        if every != "auto":
            return every
        steps = self.data.rows.max_int(-(-len(self.data.X) // self.rows_per_step()))
        return max(1, min(_SGCV_EVERY_MAX, steps))

    def rows_per_step(self):
        """The rows of one mini-batch (of this process).

        Returns
        -------
        int
            ``config.batch_size_for`` this call's rows.
        """
        return self.config.batch_size_for(len(self.data.X))

    def _make_optimizer(self):
        # MLP's penalty alpha / (2 n_batch) ||theta||^2 on weights, not biases, with
        # n_batch the samples a batch stands for (weights count as repetitions).
        data, config = self.data, self.config
        batch_mass = config.batch_size_for(len(data.X))
        if data.weight is not None:
            batch_mass *= float(data.weight.mean())
        if data.derivatives is not None:
            # The loss is a mean over the stacked rows: alpha / (2 stacked mass)
            # keeps alpha / 2 ||theta||^2 the penalty of the summed loss (as
            # DerivativeReducedProblem's).
            rows_per_sample = 1.0 + data.derivatives.weight.sum(dim=1)
            if data.weight is None:
                batch_mass *= float(rows_per_sample.mean())
            else:
                batch_mass *= float(
                    (data.weight * rows_per_sample).sum() / data.weight.sum()
                )
        # Split rows: a step's batch is every process's batch together.
        batch_mass = data.rows.sum_floats(batch_mass)
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
                rows=data.rows,
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
                rows=data.rows,
                derivatives=data.derivatives,
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
            "module": _cloned(self.net.state_dict()),
            "optimizer": _cloned(self.optimizer.state_dict()),
            "slimtik": slimtik,
            "head_alpha": self._head_alpha,
            # The batches drawn: an undone epoch draws them again.
            "generator": self.data.generator.get_state(),
        }

    def restore(self, snapshot):
        """Return to a snapshot.

        Parameters
        ----------
        snapshot : dict
            From :meth:`snapshot`.
        """
        self.net.load_state_dict(snapshot["module"])
        # load_state_dict shares the snapshot's tensors: a retried epoch would
        # then change the snapshot's moments in place.
        self.optimizer.load_state_dict(_cloned(snapshot["optimizer"]))
        self._head_alpha = snapshot["head_alpha"]
        self.data.generator.set_state(snapshot["generator"])
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

    def solve_head(self, net=None, max_rows=None):
        """Solve the head on all training rows and store it in the network.

        Parameters
        ----------
        net : SeparableNet, default=None
            The network (a copy of :attr:`net`, say); None: :attr:`net`.
        max_rows : int, default=None
            On at most this many rows (:meth:`FitData.first_rows`); None: all.

        Returns
        -------
        head_alpha : float
            The ridge weight: chosen by GCV (weighted by
            ``config.head_gcv_weight``) for ``head_alpha='auto'``, else the
            fixed one.
        """
        data = self.data.first_rows(max_rows)
        net = self.net if net is None else net
        return solve_head(
            net,
            data.X,
            data.C,
            data.weight,
            self.config.ridge_alpha,
            data.rows,
            data.derivatives,
            self.config.head_gcv_weight,
        )

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


def _cloned(state):
    """A copy of a (module or optimizer) state dict whose tensors are cloned:
    what ``copy.deepcopy`` gives, at a fraction of its cost per epoch."""
    if isinstance(state, torch.Tensor):
        return state.clone()
    if isinstance(state, dict):
        cloned = type(state)((key, _cloned(value)) for key, value in state.items())
        if hasattr(state, "_metadata"):  # a module's: versions of its layers
            cloned._metadata = state._metadata
        return cloned
    if isinstance(state, list):
        return [_cloned(value) for value in state]
    return state  # numbers, strings, tuples of numbers, None
