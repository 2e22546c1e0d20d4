"""GNvpro: Gauss-Newton on the variable-projection reduced objective, and its trainer.

One outer iteration is :func:`~sk_slim.training.gnvpro_iteration.gnvpro_step`
(the GNvpro algorithm of Newman et al. 2021). :class:`GNvproTrainer` runs these
iterations for an estimator: the continuation on the ``theta`` penalty, the row
sampling, the preconditioner kept over iterations and the head solves live
there.

References
----------
Friedlander, Schmidt (2012), "Hybrid deterministic-stochastic methods for data
fitting", SIAM J. Sci. Comput. 34(3).

Newman, Ruthotto, Hart, van Bloemen Waanders (2021), "Train Like a (Var)Pro:
Efficient Training of Neural Networks with Variable Projection", SIAM J. Math.
Data Sci. 3(4).
"""

import math
from dataclasses import dataclass, replace

import torch

from .derivative_data import DerivativeReducedProblem
from .gauss_newton import ReusedKaufmanFactor
from .gnvpro_iteration import GNvproState, gnvpro_step
from .gnvpro_logistic import ReducedLogisticProblem
from .head import ridge_head_factored, solve_head, solve_logistic_head
from .linearization import hand_written
from .protocol import Trainer, effective_samples
from .reduced import ReducedProblem

__all__ = ["GNvproConfig", "GNvproState", "GNvproTrainer", "gnvpro_step"]

# batch_size='auto' (GNvproConfig): Gauss-Newton on all rows up to this many;
# above, a sample of _AUTO_BATCH_START rows that grows geometrically.
_AUTO_FULL_BATCH_ROWS = 10_000
_AUTO_BATCH_START = 2_000
_AUTO_BATCH_GROWTH = 1.02

# Outer iterations, and summed step length, one Kaufman factor serves
# (ReusedKaufmanFactor). On the suite's tune half
# (tune_records/preconditioner_every.jsonl): 0.69x the fit time of a fresh factor
# every iteration, test error 0.93x (geometric means; worst problem 1.10x).
_PRECONDITIONER_EVERY = 5
_PRECONDITIONER_TRAVEL = 0.3


@dataclass(frozen=True)
class GNvproConfig:
    """What a GNvpro run is asked to do (the estimator's parameters).

    Attributes
    ----------
    loss : {'squared', 'cross_entropy'}
        The reduced problem: least squares with a ridge head (GCV), or
        cross-entropy with a ridge-regularized multinomial logistic head.
    alpha : float
        L2 penalty on the extractor's weight matrices (not biases), as
        ``MLPRegressor``'s: ``alpha / (2 n) ||theta_w||^2``.
    alpha_init : float or None
        Continuation on that penalty: iteration ``k`` uses
        ``alpha + alpha_init * alpha_decay**k``; None keeps ``alpha``.
    alpha_decay : float
        The continuation's decay per iteration.
    compare_without_continuation : bool
        After the run along the continuation, run once more from the same
        starting network and random stream without it; the estimator's loop
        keeps the iterate of best validation score over both runs (smooth or
        noisy targets want the path, jumps do not).
    head_alpha : 'auto' or float
        The head's ridge weight on the mean loss. ``'auto'``: GCV at every
        iteration (least squares), ``1 / n`` (cross-entropy: the ridge of
        ``LogisticRegression(C=1.0)``).
    batch_size : int, None or 'auto'
        Rows drawn afresh for each iteration (per process); None uses all of
        them. ``'auto'``: all rows up to ``_AUTO_FULL_BATCH_ROWS`` (over all
        processes); above, ``_AUTO_BATCH_START`` rows (split over the
        processes) growing by ``_AUTO_BATCH_GROWTH`` per iteration.
    batch_growth : float
        The sample grows by this factor per iteration of a run, ``batch_size *
        batch_growth**k`` rows at its iteration ``k`` until all are used (a
        geometric sample size: Friedlander and Schmidt 2012); 1 keeps it.
        Ignored with ``batch_size='auto'``, which has its own. A run's ``k``
        counts from where it began in this call (a warm start's first run
        counts from 0).
    curvature_fraction : float or None
        Share of the (sampled) rows whose Gauss-Newton matrix the inner solve
        uses, drawn afresh per iteration; None uses all of them.
    krylov_max_iter, krylov_tol, globalization, preconditioner
        As in :func:`gnvpro_step`.
    tol : float
        Converged when the reduced gradient's norm is below ``tol`` times its
        first value.
    """

    loss: str = "squared"
    alpha: float = 1e-4
    alpha_init: float | None = None
    # Measured on the eight benchmark problems (benchmarks/README.md) against a
    # constant alpha: early iterations under a strong penalty fit smooth features,
    # and early stopping then picks the iterate along the decreasing path with the
    # best validation score. Decays 0.7-0.85 gave similar results, 0.8 the best.
    alpha_decay: float = 0.8
    compare_without_continuation: bool = False
    head_alpha: object = "auto"
    batch_size: int | str | None = None
    batch_growth: float = 1.0
    curvature_fraction: float | None = None
    krylov_max_iter: int = 20
    krylov_tol: float = 1e-2
    globalization: str = "trust_region"
    preconditioner: str | None = None
    tol: float = 1e-4


class GNvproTrainer(Trainer):
    """Run GNvpro: one outer Gauss-Newton iteration per epoch.

    Parameters
    ----------
    net : SeparableNet
        The network, trained in place.
    config : GNvproConfig
        The run's settings.
    """

    history_names = ("grad_norm", "trust_radius", "work_units", "run")

    def __init__(self, net, config):
        self.net = net
        self.config = config
        # A second run without the continuation, compared or after a collapse.
        self.max_runs = 1 if config.alpha_init is None else 2

    def start(self, data, state=None):
        """Take this call's data and continue a previous fit's state.

        Parameters
        ----------
        data : FitData
            The training data.
        state : GNvproState, default=None
            A previous fit's state (warm start: its trust radius, iteration count
            and passes go on); None starts afresh.
        """
        self.data = data
        self._state = GNvproState() if state is None else replace(state)
        self._current = None  # the last iterate's linearization on all rows
        self._run_start = 0  # n_iter where this run began (the batch's growth)
        self._sample_start, self._sample_growth = self._sample_schedule()
        # Where this call started, to begin again without the continuation:
        # the network and the random stream (the second run is then the run
        # alpha_init=None makes from the same seed).
        # The head too: the logistic head's Newton solve starts from it.
        self._start = {k: v.clone() for k, v in self.net.state_dict().items()}
        self._start_generator = data.generator.get_state()
        self._preconditioner = None
        if self.config.preconditioner == "auto":
            self._preconditioner = ReusedKaufmanFactor(
                _PRECONDITIONER_EVERY, _PRECONDITIONER_TRAVEL
            )

    @property
    def state(self):
        """The :class:`GNvproState`."""
        return self._state

    @property
    def head_alpha(self):
        """The head's ridge weight of the last iteration."""
        return float(self._state.head_alpha)

    @property
    def alpha_init(self):
        """The continuation's start of the current run.

        ``config.alpha_init``, or None in a run without the continuation.
        """
        return None if self._state.continuation_over else self.config.alpha_init

    def theta_alpha(self):
        """Return this iteration's penalty weight on ``theta``.

        Returns
        -------
        float
            ``alpha`` plus the decaying continuation term
            ``alpha_init * alpha_decay**k`` (``k`` counted over warm starts: the
            path goes on) while that term exceeds ``alpha`` and no iteration
            has converged under it (see :meth:`converged`); ``alpha`` after.
        """
        if not self._continuing():
            return self.config.alpha
        return self.config.alpha + self._continuation_term()

    def _continuation_term(self):
        config = self.config
        return config.alpha_init * config.alpha_decay**self._state.n_iter

    def _continuing(self):
        """Whether the penalty is still on its path (its extra term above the
        final ``alpha``)."""
        config, state = self.config, self._state
        if config.alpha_init is None or state.continuation_over:
            return False
        return self._continuation_term() > config.alpha

    def _head_alpha_value(self):
        alpha = self.config.head_alpha
        if self.config.loss == "cross_entropy":
            return 1.0 / self.data.n_effective if alpha == "auto" else alpha
        return "gcv" if alpha == "auto" else alpha

    def batch_size(self, k=None):
        """Return the rows an iteration samples (per process), or None for all.

        Parameters
        ----------
        k : int, default=None
            The iteration of the run; None: the current one.

        Returns
        -------
        int or None
            ``batch_size * batch_growth**k``, rounded up; None once that
            reaches the rows of this process (or without ``batch_size``).
        """
        start, growth = self._sample_start, self._sample_growth
        if start is None:
            return None
        k = self._state.n_iter - self._run_start if k is None else k
        size = start * math.exp(min(k * math.log(growth), 50.0))
        return math.ceil(size) if size < len(self.data.X) else None

    def _sample_schedule(self):
        """``(start, growth)`` of this call's samples: ``batch_size`` and
        ``batch_growth``, 'auto' resolved once on all processes' rows (start
        None: all rows)."""
        start, growth = self.config.batch_size, self.config.batch_growth
        if start != "auto":
            return start, growth
        n = len(self.data.X)
        n_total = self.data.rows.sum_floats(n)
        if n_total <= _AUTO_FULL_BATCH_ROWS:
            return None, 1.0
        return _AUTO_BATCH_START * n / n_total, _AUTO_BATCH_GROWTH

    def rows_per_step(self):
        """The rows (of this process) a run's first iteration touches.

        Returns
        -------
        int
            :meth:`batch_size` at iteration 0, or all rows. A growing sample
            reaches all rows only where that many iterations are run.
        """
        size = self.batch_size(k=0)
        return len(self.data.X) if size is None else size

    def _problem(self):
        """The reduced problem on all rows, or on a fresh sample of them."""
        data = self.data
        X, C, weight, derivatives = data.X, data.C, data.weight, data.derivatives
        n, batch_size = len(X), self.batch_size()
        if batch_size is not None and batch_size < n:  # per process, split rows
            rows = torch.randperm(n, generator=data.generator)[:batch_size]
            rows = rows.to(X.device)
            X, C = X[rows], C[rows]
            weight = None if weight is None else weight[rows]
            if derivatives is not None:
                derivatives = derivatives.on_rows(rows)
        alpha = self.theta_alpha() / effective_samples(X, weight, data.rows)
        if self.config.loss == "cross_entropy":
            return ReducedLogisticProblem(self.net, X, C, weight, alpha, rows=data.rows)
        if derivatives is not None:
            return DerivativeReducedProblem(
                self.net, X, C, derivatives, weight, alpha, rows=data.rows
            )
        return ReducedProblem(self.net, X, C, weight, alpha=alpha, rows=data.rows)

    def _curvature_rows(self, problem):
        """A fresh sample of the rows for the inner solve's curvature, or None."""
        fraction = self.config.curvature_fraction
        if fraction is None:
            return None
        n = len(problem.X)
        n_total = round(problem.rows.sum_floats(n))  # over all processes
        # Twice as many residuals as parameters at least: with fewer the
        # sample's Gauss-Newton matrix is rank-deficient.
        n_params = problem.get_theta().numel()
        floor = -(-2 * n_params // self.data.C.shape[1])  # ceil
        m = max(round(fraction * n_total), floor)
        if m >= n_total:
            return None
        if n < n_total:  # rows split over processes: each samples its share
            m = min(n, -(-m * n // n_total))
        rows = torch.randperm(n, generator=self.data.generator)[:m]
        return rows.to(problem.X.device)

    def epoch(self):
        """One outer Gauss-Newton iteration.

        Returns
        -------
        value : float
            The reduced objective after the iteration.
        """
        config, state = self.config, self._state
        problem = self._problem()
        value = gnvpro_step(
            problem,
            state,
            head_alpha=self._head_alpha_value(),
            globalization=config.globalization,
            krylov_max_iter=config.krylov_max_iter,
            krylov_tol=config.krylov_tol,
            preconditioner=self._preconditioner,
            curvature_rows=self._curvature_rows(problem),
            start=self._current if problem.X is self.data.X else None,
        )
        state.work_units += problem.work_units
        self._current = None
        if not math.isfinite(value):  # undone by the loop: not an iteration
            return value
        every_row = self.data.rows.all(problem.X is self.data.X)  # on every rank
        if every_row and hand_written(self.net.feature_extractor):
            # Its SVD of all rows' features serves solve_head at this theta (the
            # features of these networks do not depend on train/eval mode).
            self._current = problem.current
        state.n_iter += 1
        if math.isnan(state.first_grad_norm):
            state.first_grad_norm = state.grad_norm
        return value

    def snapshot(self):
        """Copy the network, the trust radius and where the run stands.

        Returns
        -------
        snapshot : dict
            What :meth:`restore` needs to undo the next epochs.
        """
        # The iterate's place on the path (n_iter), its run and its gradients
        # belong to it: an undone epoch leaves no trace, and a warm start from a
        # restored best iterate goes on from its place. The passes over the data
        # are history (work_units_), and the comparison is made once.
        state = self._state
        return {
            "module": {k: v.clone() for k, v in self.net.state_dict().items()},
            "generator": self.data.generator.get_state(),
            "preconditioner": None
            if self._preconditioner is None
            else self._preconditioner.get_state(),
            **{name: getattr(state, name) for name in _ITERATE_STATE},
        }

    def restore(self, snapshot):
        """Return to a snapshot.

        Parameters
        ----------
        snapshot : dict
            From :meth:`snapshot`.
        """
        self.net.load_state_dict(snapshot["module"])
        self.data.generator.set_state(snapshot["generator"])
        for name in _ITERATE_STATE:
            setattr(self._state, name, snapshot[name])
        if self._preconditioner is not None:
            self._preconditioner.set_state(snapshot["preconditioner"])

    def shrink_step(self, factor):
        """Shrink the trust radius after a divergence (there is no learning rate).

        Parameters
        ----------
        factor : float
            The scale, in (0, 1).
        """
        if self._state.radius is not None:
            self._state.radius *= factor

    def record(self):
        """Report this epoch's algorithm-specific history.

        Returns
        -------
        record : dict of str to float
            ``grad_norm`` (at the start of the iteration), ``trust_radius``
            (after it; nan with Armijo), ``work_units`` (passes so far) and
            ``run`` (0 along the continuation or without one, 1 in the run
            restarted without it).
        """
        state = self._state
        radius = state.radius if self.config.globalization == "trust_region" else None
        restarted = state.continuation_over and self.config.alpha_init is not None
        return {
            "grad_norm": state.grad_norm,
            "trust_radius": math.nan if radius is None else radius,
            "work_units": state.work_units,
            "run": int(restarted),
        }

    def converged(self):
        """Test the algorithm's own convergence criterion.

        Returns
        -------
        bool
            True when the reduced gradient's norm fell below ``tol`` times its
            first value.
        """
        state = self._state
        return state.grad_norm <= self.config.tol * state.first_grad_norm

    def next_run(self):
        """Restart without the continuation at the end of a run along it.

        Restarts when ``compare_without_continuation`` asks for the comparison
        (once), or when the run converged while the continuation was still on.

        Returns
        -------
        bool
            True when the run without the continuation has begun: from the
            network and the random stream this call started with, its trust
            radius measured afresh.

        Notes
        -----
        Converged while the continuation is still on, the penalized problem
        is solved, not the problem asked for, and typically at a collapse: the
        penalty has pulled the weights to where the features are constant and
        the gradient vanishes with or without it (cross-entropy at ``log 2`` on
        a radial problem; a GCV head shrunk to zero on a high-frequency one).
        """
        config, state = self.config, self._state
        if config.alpha_init is None or state.continuation_over:
            return False
        compare = config.compare_without_continuation and not state.compared
        if not (compare or (self._continuing() and self.converged())):
            return False
        state.continuation_over, state.compared = True, state.compared or compare
        state.radius, state.first_grad_norm = None, math.nan
        self.net.load_state_dict(self._start)
        self.data.generator.set_state(self._start_generator)
        self._current, self._run_start = None, state.n_iter
        if self._preconditioner is not None:
            self._preconditioner.reset()
        return True

    def solve_head(self, net=None, max_rows=None):
        """Solve the head on all training rows and store it in the network.

        Parameters
        ----------
        net : SeparableNet, default=None
            The network (a copy of :attr:`net`, say); None: :attr:`net`.
        max_rows : int, default=None
            The least-squares head on at most this many rows
            (:meth:`FitData.first_rows`), unless the last iterate's factors on
            all rows give it at no cost. The cross-entropy head takes all rows:
            on fewer, its Newton systems lose the sampled-Hessian
            preconditioner of many rows (``logistic_head``) and cost more
            (GNvproClassifier, 1e5 rows, 6 iterations a run: 23 -> 39 s).

        Returns
        -------
        head_alpha : float
            Its ridge weight: GCV-chosen (least squares, ``'auto'``),
            ``1 / n`` (cross-entropy, ``'auto'``), or the fixed one.
        """
        alpha = self._head_alpha_value()
        net = self.net if net is None else net
        if self.config.loss == "cross_entropy":
            data = self.data
            return solve_logistic_head(
                net, data.X, data.C, data.weight, alpha, rows=data.rows
            )
        current = self._current
        if current is not None and torch.equal(current.theta, _theta_of(net)):
            W, alpha = ridge_head_factored(current.factors, alpha)
            net.set_head(W)
            return alpha
        data = self.data.first_rows(max_rows)
        return solve_head(
            net, data.X, data.C, data.weight, alpha, data.rows, data.derivatives
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
            As :meth:`solve_head`.
        """
        return self.solve_head(net)


# What a snapshot holds of GNvproState (all but the passes and the comparison).
_ITERATE_STATE = (
    "radius",
    "head_alpha",
    "grad_norm",
    "accepted",
    "step_norm",
    "n_iter",
    "first_grad_norm",
    "continuation_over",
)


def _theta_of(net):
    """The feature extractor's parameters as one flat vector."""
    return torch.cat(
        [p.detach().reshape(-1) for p in net.feature_extractor.parameters()]
    )
