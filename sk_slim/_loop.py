"""The MLP-style epoch loop every sk_slim estimator runs its trainer in.

Early stopping on a validation split (or on the training loss), patience,
history, divergence recovery (undo the epoch, shrink the step, retry),
interrupts and sklearn callbacks. The estimator supplies the trainer
(:class:`sk_slim.training.Trainer`), the fit's data and its scoring.
"""

import math
import time
import warnings
from functools import partial

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning

__all__ = []

# A divergent epoch is retried this many times with half the step.
_MAX_RETRIES = 5


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
        runs, or None.
        """
        n_epochs = self.max_iter if n_epochs is None else n_epochs
        self._no_improvement_count = 0
        # Patience counts against the run's own best, the snapshot against all.
        self._run_best = (
            self.best_validation_score_
            if self.validation_scores_ is not None
            else self.best_loss_
        )
        best = None
        retries, epoch, epoch_ctx, reached_max_iter = 0, 0, None, False
        while True:
            if epoch >= n_epochs:
                reached_max_iter = True
                if fit.incremental or not self._next_run(trainer):
                    break
                epoch = 0
            if epoch_ctx is None:  # a retried epoch keeps its context
                epoch_ctx = callback_ctx.subcontext(task_name="epoch")
                epoch_ctx.call_on_fit_task_begin(estimator=self)
            snapshot = trainer.snapshot()
            start = time.perf_counter()
            try:
                trainer.net.train()
                loss = trainer.epoch()
            except KeyboardInterrupt:
                trainer.restore(snapshot)
                warnings.warn(
                    "Training interrupted by the user; keeping the best weights so "
                    "far.",
                    UserWarning,
                    stacklevel=4,
                )
                return best
            except (FloatingPointError, torch.linalg.LinAlgError):
                loss = math.nan
            if not math.isfinite(loss):
                retries = self._recover(trainer, snapshot, retries)
                continue
            epoch, retries = epoch + 1, 0
            self._record_history(trainer, loss, fit)
            score = self._score_validation(trainer, fit)
            if score is not None and score > self.best_validation_score_:
                best = trainer.snapshot()
            improved = self._update_best(loss, score)
            if self.verbose:
                print(self._progress_line(loss, score, time.perf_counter() - start))
            end_run = trainer.converged() or self._update_no_improvement_count(improved)
            stop = epoch_ctx.call_on_fit_task_end(
                estimator=self,
                X=fit.X,
                y=fit.y,
                reconstruction_attributes=partial(
                    self._reconstruction_attributes, trainer, fit, best
                ),
            )
            epoch_ctx = None
            # Every rank of a data-parallel fit stops together (a callback may
            # stop one); the trainer's own decisions agree on every rank.
            if not fit.data.rows.all(not stop):
                return best
            if end_run and (fit.incremental or not self._next_run(trainer)):
                return best
            if end_run:
                epoch = 0
        if reached_max_iter and not fit.incremental:
            warnings.warn(
                f"{type(self).__name__}: the maximum number of {self._step_name} "
                f"(max_iter={self.max_iter}) was reached and the optimization "
                "has not converged yet.",
                ConvergenceWarning,
                stacklevel=4,
            )
        return best

    def _next_run(self, trainer):
        """Let the trainer begin another run; reset patience if it does."""
        if not trainer.next_run():
            return False
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
        features with the full-data head; the streaming head is a noisy proxy
        for it), or None without early stopping. In a data-parallel fit it is
        the score on all ranks' validation rows."""
        validation = fit.validation
        if self.validation_scores_ is None or validation is None:
            return None
        trainer.solve_head()
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
        if self._no_improvement_count > self.n_iter_no_change:
            if self.verbose:
                print(f"No improvement for {self.n_iter_no_change} epochs: stopping.")
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
