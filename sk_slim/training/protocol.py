"""The trainer protocol: how an estimator drives a training algorithm.

An estimator owns the epoch loop (validation split, early stopping, history,
divergence recovery, callbacks); a *trainer* owns one algorithm. The loop calls

1. ``start(data, state)`` once per ``fit``/``partial_fit`` call, with the state
   a previous call's trainer left (``None``: start afresh);
2. ``epoch()`` repeatedly, with ``snapshot()``/``restore()`` around it to undo
   an epoch that diverged and ``shrink_step(factor)`` before the retry;
   ``record()``, ``head_alpha`` and ``converged()`` after each accepted epoch;
   ``solve_head()`` when the loop scores the network with its full-data head;
3. ``next_run()`` when the loop would end the run (patience ran out, the
   trainer converged, or the run reached ``max_iter``): a trainer that tries
   more than one run from its starting point (GNvpro without its
   continuation, say) begins the next one and returns True, and the loop goes
   on with fresh patience; the best epoch over all runs is kept;
4. ``finish()`` at the end, which solves the final head and returns its ridge
   weight; ``state`` is then what the estimator stores (a picklable dataclass)
   and passes to the next call's ``start``.

A new algorithm is a new trainer (or a new configuration of one), never a new
hook of the estimators.
"""

from abc import ABC, abstractmethod
from dataclasses import dataclass, replace

import torch

from ..rows import LOCAL_ROWS, RowGroup

__all__ = ["FitData", "Trainer"]


def effective_samples(X, weight=None, rows=LOCAL_ROWS):
    """The number of samples rows stand for: ``len(X)``, or ``sum(weight)``
    (weights count as repetitions), over all processes' rows."""
    return rows.sum_floats(float(len(X) if weight is None else weight.sum()))


@dataclass(frozen=True)
class FitData:
    """The training data of one call to ``fit``, as tensors on the device.

    Attributes
    ----------
    X : Tensor of shape (n, ...)
        Training inputs.
    C : Tensor of shape (n, c)
        Targets of the head: standardized values, or one-hot labels.
    weight : Tensor of shape (n,) or None
        Positive row weights, read as repetitions; None when all are one.
    generator : torch.Generator
        The fit's random stream (shuffling, sub-sampling).
    rows : RowGroup
        Where the rows are: all here (``LOCAL_ROWS``), or this process's share
        of a data-parallel fit (:mod:`sk_slim.rows`).
    derivatives : DerivativeData or None
        Derivatives of ``C`` in the leading inputs
        (:class:`~sk_slim.training.derivative_data.DerivativeData`), or None.
    """

    X: torch.Tensor
    C: torch.Tensor
    weight: torch.Tensor | None
    generator: torch.Generator
    rows: RowGroup = LOCAL_ROWS
    derivatives: object = None

    @property
    def n_effective(self):
        """The number of samples all the rows stand for, ``sum(weight)``."""
        return effective_samples(self.X, self.weight, self.rows)

    def first_rows(self, max_rows=None):
        """The data of the first ``max_rows`` rows (of each process), or all.

        A random sample of the rows where their order is random, as it is
        after ``fit``'s validation split.

        Parameters
        ----------
        max_rows : int, default=None
            How many rows to keep; None keeps all.

        Returns
        -------
        FitData
            This data where it has at most ``max_rows`` rows or derivative
            data (kept whole), else its first rows (views).
        """
        if max_rows is None or len(self.X) <= max_rows or self.derivatives is not None:
            return self
        weight = None if self.weight is None else self.weight[:max_rows]
        return replace(self, X=self.X[:max_rows], C=self.C[:max_rows], weight=weight)


class Trainer(ABC):
    """What every training algorithm implements (see the module docstring).

    Attributes
    ----------
    net : SeparableNet
        The network the trainer updates in place.
    history_names : tuple of str
        The keys of :meth:`record`.
    max_runs : int
        The most runs one call may make (see :meth:`next_run`).
    """

    net: torch.nn.Module
    history_names: tuple = ()
    max_runs: int = 1

    def next_run(self):
        """Begin another run from this call's starting point, if there is one.

        The loop calls it when it would end the current run.

        Returns
        -------
        bool
            True when a new run has begun (the loop then goes on); False by
            default: one run per call.
        """
        return False

    def rows_per_step(self):
        """The rows (of this process) one step's products touch, most of the run.

        Returns
        -------
        int
            All of this call's rows by default (after :meth:`start`).
        """
        return len(self.data.X)

    @property
    @abstractmethod
    def state(self):
        """The state to store and to pass to the next :meth:`start`."""

    @property
    @abstractmethod
    def head_alpha(self):
        """The head's current ridge weight (mean-loss scale), for the history."""

    @abstractmethod
    def start(self, data, state=None):
        """Take the data of this call and continue ``state``.

        Parameters
        ----------
        data : FitData
            The training data of this call.
        state : object, default=None
            The :attr:`state` a previous call left; None starts afresh.
        """

    @abstractmethod
    def epoch(self):
        """Run one epoch (or one outer iteration).

        Returns
        -------
        loss : float
            The epoch's training loss; nan if it diverged.
        """

    @abstractmethod
    def snapshot(self):
        """Copy what :meth:`restore` needs to undo the next epochs.

        Returns
        -------
        snapshot : object
            The network's tensors and the algorithm's state, copied.
        """

    @abstractmethod
    def restore(self, snapshot):
        """Return to a snapshot (the network and the algorithm's state).

        Parameters
        ----------
        snapshot : object
            From :meth:`snapshot`.
        """

    @abstractmethod
    def shrink_step(self, factor):
        """Scale the step (learning rate or trust radius) after a divergence.

        Parameters
        ----------
        factor : float
            The scale, in (0, 1).
        """

    @abstractmethod
    def record(self):
        """Report this epoch's algorithm-specific history.

        Returns
        -------
        record : dict of str to float
            One value per name of :attr:`history_names`.
        """

    @abstractmethod
    def converged(self):
        """Test the algorithm's own convergence criterion.

        Returns
        -------
        bool
            True when training should stop.
        """

    @abstractmethod
    def solve_head(self, net=None, max_rows=None):
        """Solve the head on all the training rows and store it in the network.

        Parameters
        ----------
        net : SeparableNet, default=None
            The network to solve it for (a copy of :attr:`net`, say); None:
            :attr:`net`.
        max_rows : int, default=None
            Solve it on at most this many rows (:meth:`FitData.first_rows`)
            where that costs less: the head that scores the validation split
            every epoch. None: on all rows.

        Returns
        -------
        head_alpha : float
            The head's ridge weight (mean-loss scale).
        """

    @abstractmethod
    def finish(self, net=None):
        """Solve the final head, if the algorithm does, at the end of a call.

        Parameters
        ----------
        net : SeparableNet, default=None
            The network to finish (a copy of :attr:`net`, for a model to look
            at mid-fit); None: :attr:`net`.

        Returns
        -------
        head_alpha : float
            The final head's ridge weight (mean-loss scale).
        """
