"""The MLP-style epoch loop every sk_slim estimator runs its trainer in.

Early stopping on a validation split (or on the training loss), patience,
history, divergence recovery (undo the epoch, shrink the step, retry),
interrupts and sklearn callbacks (and the model they are handed). The estimator
supplies the trainer
(:class:`sk_slim.training.Trainer`), the fit's data and its scoring.
"""

import copy
import math
import os
import sys
import time
import warnings
from functools import partial

import numpy as np
import sklearn
import torch
from sklearn.exceptions import ConvergenceWarning

from .training import held_out_stacked_r2

__all__ = []

# A divergent epoch is retried this many times with half the step.
_MAX_RETRIES = 5
# The least-squares head that scores the validation split after every epoch or
# iteration is solved on at most this many training rows (a random sample: the
# validation split shuffles them; GNvpro's logistic head keeps all, see
# GNvproTrainer.solve_head); the final head on all. Its p (c) coefficients are then
# set by hundreds of rows each, and on many rows it no longer costs a third of
# an epoch: 1e5 rows of friedman1, SlimTrainRegressor 13.7 -> 10.9 s and
# GNvproRegressor 8.3 -> 5.9 s, the same iterations and test R²
# (benchmarks/README.md, "Fit time").
_VALIDATION_HEAD_ROWS = 2**15
# The loop's own state on the estimator, removed when it ends.
_LOOP_SCRATCH = (
    "_no_improvement_count",
    "_run_best",
    "_reached_max_iter",
    "_previous_run",
    "_runs",
    "_n_iter_no_change",
)
# Where warnings are not addressed: this package and scikit-learn.
_INTERNAL = tuple(
    os.path.dirname(os.path.abspath(path)) + os.sep
    for path in (__file__, sklearn.__file__)
)
# What sklearn's callback support keeps on the estimator during fit.
_CALLBACK_STATE = ("_callback_fit_ctx", "_skl_callbacks_to_teardown")


class _EpochLoopMixin:
    """The epoch loop of :class:`~sk_slim._base._BaseSeparable`."""

    # What max_iter counts, in messages (GNvpro: "iterations").
    _step_name = "epochs"

    def _epoch_loop(self, trainer, fit, callback_ctx, n_epochs=None):
        """MLP-style epochs: record, stop early, recover from divergence.

        A run ends when patience runs out, the trainer converges or ``n_epochs``
        (``max_iter``) epochs were run; the trainer may then begin another run
        (:meth:`~sk_slim.training.Trainer.next_run`), with fresh patience and
        epoch count, in the same histories. A callback's stop ends the fit.

        Returns the snapshot of the best epoch by validation score over all
        runs; without one, where the previous run ended when a later run
        failed; else None (the network as it stands).
        """
        n_epochs = self.max_iter if n_epochs is None else n_epochs
        self._n_iter_no_change = self._patience(fit)
        self._no_improvement_count = 0
        # Patience counts against the run's own best, the snapshot against all.
        self._run_best = (
            self.best_validation_score_
            if self.validation_scores_ is not None
            else self.best_loss_
        )
        best = None
        retries, epoch, epoch_ctx = 0, 0, None
        # Where the runs stand (cleared at the end: no snapshot is pickled).
        self._reached_max_iter, self._previous_run, self._runs = False, None, 1
        while True:
            if epoch >= n_epochs:
                self._reached_max_iter = True
                try:
                    if fit.incremental or not self._next_run(trainer):
                        return self._end_loop(best, fit)
                except KeyboardInterrupt:
                    return self._interrupted(best, fit)
                epoch = 0
            # What an interrupted epoch is undone to: the network and the
            # trainer (snapshot) and the fit's records.
            snapshot, records = None, self._records(best)
            try:
                if epoch_ctx is None:  # a retried epoch keeps its context
                    epoch_ctx = callback_ctx.subcontext(task_name="epoch")
                    epoch_ctx.call_on_fit_task_begin(estimator=self)
                snapshot = trainer.snapshot()
                start = time.perf_counter()
                try:
                    trainer.net.train()
                    loss = trainer.epoch()
                    if not _is_finite(trainer.net):  # a finite loss, NaN weights
                        loss = math.nan
                except (FloatingPointError, torch.linalg.LinAlgError):
                    loss = math.nan
                except Exception as error:  # not KeyboardInterrupt: see below
                    # A later run failing keeps what the earlier ones learned.
                    return self._after_failed_run(trainer, snapshot, best, fit, error)
                if not math.isfinite(loss):
                    try:
                        retries = self._recover(trainer, snapshot, retries)
                    except FloatingPointError as error:
                        return self._after_failed_run(
                            trainer, snapshot, best, fit, error
                        )
                    continue
                self._record_history(trainer, loss, fit)
                score = self._score_validation(trainer, fit)
                if score is not None and score > self.best_validation_score_:
                    best = trainer.snapshot()
                improved = self._update_best(loss, score)
                epoch, retries, records = epoch + 1, 0, None  # the epoch is done
                if self.verbose:
                    seconds = time.perf_counter() - start
                    print(self._progress_line(loss, score, seconds))
                end_run = trainer.converged() or self._update_no_improvement_count(
                    improved
                )
                stop = epoch_ctx.call_on_fit_task_end(
                    estimator=self,
                    X=fit.X,
                    y=fit.y,
                    reconstruction_attributes=partial(
                        self._reconstruction_attributes, trainer, fit, best
                    ),
                )
            except KeyboardInterrupt:
                # Anywhere in the epoch (the step, the validation head solve, a
                # snapshot, a callback): undo what is unfinished, keep the best.
                if records is not None:
                    best = self._undo_epoch(trainer, snapshot, records)
                return self._interrupted(best, fit)
            epoch_ctx = None
            # Every rank of a data-parallel fit stops together (a callback may
            # stop one); the trainer's own decisions agree on every rank.
            if not fit.data.rows.all(not stop):
                return self._end_loop(best, fit)
            try:
                if end_run and (fit.incremental or not self._next_run(trainer)):
                    return self._end_loop(best, fit)
            except KeyboardInterrupt:
                return self._interrupted(best, fit)
            if end_run:
                epoch = 0

    def _finish_interruptible(self, trainer, fit):
        """``_finish_fit`` on the trained network; interrupted, once more (the
        epochs are kept), and a second interrupt abandons the fit."""
        try:
            self._finish_fit(trainer, trainer.net, fit)
        except KeyboardInterrupt:
            _warn(
                "Interrupted while the final head was solved; solving it again "
                "to keep what was learned (interrupt again to abandon the fit).",
                UserWarning,
            )
            self._finish_fit(trainer, trainer.net, fit)

    def _interrupted(self, best, fit):
        """Ctrl-C: warn, and end the loop with the best so far."""
        _warn(
            "Training interrupted by the user; keeping the best weights so far.",
            UserWarning,
        )
        return self._end_loop(best, fit)

    def _records(self, best):
        """The fit's records before an epoch: what undoing it restores."""
        histories = [
            getattr(self, name) for name in self._history_attributes.values()
        ] + [self.loss_curve_, self.head_alpha_curve_, self.validation_scores_]
        return {
            "lengths": [None if h is None else len(h) for h in histories],
            "histories": histories,
            "counts": (self.n_iter_, self.t_),
            "best": (best, self.best_validation_score_, self.best_loss_),
        }

    def _undo_epoch(self, trainer, snapshot, records):
        """Undo an unfinished epoch: the network and trainer, the histories,
        the counts and the best so far; return the best snapshot before it."""
        if snapshot is not None:
            trainer.restore(snapshot)
        for history, length in zip(
            records["histories"], records["lengths"], strict=True
        ):
            if history is not None:
                del history[length:]
        self.n_iter_, self.t_ = records["counts"]
        best, self.best_validation_score_, self.best_loss_ = records["best"]
        return best

    def _reconstruction_attributes(self, trainer, fit, best):
        """What a callback needs to predict with the estimator mid-fit: the
        model ``fit`` would return if it stopped now (the ``best`` snapshot when
        there is one), finished as ``fit`` finishes it, on a copy: training
        goes on with its own network and head."""
        current = trainer.snapshot() if best is not None else None
        model = copy.copy(self)
        try:
            if best is not None:
                trainer.restore(best)
            model.module_ = copy.deepcopy(trainer.net)
            model._finish_fit(trainer, model.module_, fit)
        finally:
            if current is not None:
                trainer.restore(current)
        # Its own histories: the fit goes on appending to the estimator's.
        return {
            k: list(v) if isinstance(v, list) else v
            for k, v in vars(model).items()
            if k not in _CALLBACK_STATE
        }

    def _end_loop(self, best, fit):
        """Warn when a run stopped at ``max_iter``; return the best snapshot."""
        reached_max_iter = self._reached_max_iter
        for name in _LOOP_SCRATCH:  # nothing of the loop's is kept or pickled
            self.__dict__.pop(name, None)
        if reached_max_iter and not fit.incremental:
            _warn(
                f"{type(self).__name__}: the maximum number of {self._step_name} "
                f"(max_iter={self.max_iter}) was reached and the optimization "
                "has not converged yet.",
                ConvergenceWarning,
            )
        return best

    def _after_failed_run(self, trainer, snapshot, best, fit, error):
        """An epoch failed: in the first run (or in a data-parallel fit), the
        fit fails (and is rolled back); in a later one, warn and keep the best
        iterate so far, or where the previous run ended."""
        previous_run = self._previous_run
        # In a data-parallel fit the other ranks are inside this epoch's
        # collectives: going on alone would leave the group out of step.
        if previous_run is None or fit.data.rows.distributed:
            raise error
        trainer.restore(snapshot)
        _warn(
            f"{type(self).__name__}: run {self._runs} failed ({error}); keeping "
            "what the earlier runs learned.",
            UserWarning,
        )
        return self._end_loop(previous_run if best is None else best, fit)

    def _next_run(self, trainer):
        """Let the trainer begin another run; reset patience if it does.

        Interrupted while the run begins, the trainer is back where the run
        ended (and the interrupt propagates)."""
        end_of_run = trainer.snapshot()
        try:
            if not trainer.next_run():
                return False
        except KeyboardInterrupt:
            trainer.restore(end_of_run)
            raise
        self._previous_run = end_of_run
        self._runs += 1
        self._no_improvement_count = 0
        self._run_best = -np.inf if self.validation_scores_ is not None else np.inf
        if self.verbose:
            print("A new run from the starting point: patience reset.")
        return True

    def _recover(self, trainer, snapshot, retries):
        """Undo a divergent epoch and halve the step, a bounded number of times."""
        trainer.restore(snapshot)
        if retries >= _MAX_RETRIES:
            raise FloatingPointError(
                f"Training diverged (non-finite loss or head) {retries + 1} times in a "
                f"row, even after halving the learning rate {retries} times. Lower "
                "learning_rate_init, or scale the inputs (e.g. StandardScaler)."
            )
        trainer.shrink_step(0.5)
        if self.verbose:
            print("Non-finite loss: epoch undone, learning rate halved.")
        return retries + 1

    def _record_history(self, trainer, loss, fit):
        """Append the epoch to the loss, head-alpha and trainer histories."""
        self.n_iter_ += 1
        self.t_ += fit.n_rows
        self.loss_curve_.append(loss)
        self.head_alpha_curve_.append(trainer.head_alpha)
        record = trainer.record()
        for key, name in self._history_attributes.items():
            getattr(self, name).append(record[key])

    def _score_validation(self, trainer, fit):
        """The validation score of the model ``fit`` would return now (these
        features with the full-data head, from up to ``_VALIDATION_HEAD_ROWS``
        rows; the streaming head is a noisy proxy for it), or None without
        early stopping. In a data-parallel fit it is the score on all ranks'
        validation rows."""
        validation = fit.validation
        if self.validation_scores_ is None or validation is None:
            return None
        trainer.solve_head(max_rows=_VALIDATION_HEAD_ROWS)
        if validation.derivatives is not None:  # values and derivatives together
            score = held_out_stacked_r2(
                self._net_on_device(trainer.net),
                self._to_tensor(validation.X),
                self._to_tensor((validation.y - self._y_mean) / self._y_scale),
                validation.derivatives,
                None
                if validation.weight is None
                else self._to_tensor(validation.weight),
                fit.data.rows,
            )
            self.validation_scores_.append(score)
            return score
        scores = self._predict_scaled(trainer.net, validation.X)
        scores = _gather_rows(fit.data.rows, scores)
        score = self._validation_score(validation.y_all, scores, validation.weight_all)
        self.validation_scores_.append(score)
        return score

    def _update_best(self, loss, score):
        """Track the best validation score (or training loss), over the fit and
        over the run; return whether this epoch improved on the run's best by
        more than ``tol``."""
        if score is not None:
            improved = score > self._run_best + self.tol
            self._run_best = max(self._run_best, score)
            self.best_validation_score_ = max(self.best_validation_score_, score)
        elif self.best_loss_ is not None:
            improved = loss < self._run_best - self.tol
            self._run_best = min(self._run_best, loss)
            self.best_loss_ = min(self.best_loss_, loss)
        else:  # partial_fit with early_stopping: no validation split to judge by
            improved = True
        return improved

    def _update_no_improvement_count(self, improved):
        """Count epochs without improvement; return True when patience ran out."""
        self._no_improvement_count = 0 if improved else self._no_improvement_count + 1
        if self._no_improvement_count > self._n_iter_no_change:
            if self.verbose:
                print(
                    f"No improvement for {self._n_iter_no_change} "
                    f"{self._step_name}: stopping."
                )
            return True
        return False

    def _progress_line(self, loss, score, seconds):
        """The verbose line of one epoch, as MLPRegressor prints it."""
        message = f"Iteration {self.n_iter_}, loss = {loss:.8f}"
        if score is not None:
            message += f", validation score = {score:.6f}"
        return f"{message}, {seconds:.3f} s"


def _gather_rows(rows, array):
    """Every rank's rows of a numpy array (or None), concatenated in rank order."""
    if not rows.distributed:
        return array
    parts = rows.gather_objects(array)
    return None if parts[0] is None else np.concatenate(parts)


def _is_finite(net):
    """Whether every parameter and buffer of ``net`` is finite."""
    tensors = [t for t in net.state_dict().values() if t.is_floating_point()]
    return bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all())


def _warn(message, category):
    """Warn at the first caller outside sk_slim and scikit-learn (the user's
    ``fit``, or the search that called it)."""
    level, frame = 2, sys._getframe(1)  # stacklevel 2: our caller
    while frame is not None and frame.f_code.co_filename.startswith(_INTERNAL):
        level, frame = level + 1, frame.f_back
    warnings.warn(message, category, stacklevel=level)
