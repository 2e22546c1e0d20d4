"""What fit does to the targets, in numpy: encoding, target-dependent
weights, standardization, the early-stopping score and the stratification of
the validation split. Regressors use these; the classifiers' mixin overrides
them."""

import numpy as np

__all__ = []


class _TargetsMixin:
    """The target hooks of :class:`~sk_slim._base._BaseSeparable`."""

    # validate_data's options for y.
    _target_validation = {"multi_output": True, "y_numeric": True}

    def _encode_targets(self, y, *, reset, classes):
        """Validated ``y`` -> float64 targets of shape (n, c) for the head."""
        return y.reshape(len(y), -1).astype(np.float64, copy=False)

    def _classes_of_all_ranks(self, y, classes, continuing, rows):
        """Hook: the labels of all ranks' rows, for a classifier's first fit in
        a data-parallel group (``classes`` otherwise)."""
        return classes

    def _weight_targets(self, y, sample_weight, incremental, rows):
        """Hook: fold target-dependent weights (``class_weight``) into the rows'."""
        return sample_weight

    def _target_scaling(self, y2d, sample_weight, rows):
        """Mean and scale that standardize the targets the head is solved for
        (over all ranks' rows in a data-parallel fit)."""
        mass, total = _row_sums(rows, sample_weight, y2d)
        mean = total / mass
        # Squares of targets beyond ~1e154 overflow: square the deviations
        # relative to their mean absolute size.
        centered = y2d - mean
        size = _row_sums(rows, sample_weight, np.abs(centered))[1] / mass
        size = np.where(size > 0, size, 1.0)
        var = _row_sums(rows, sample_weight, (centered / size) ** 2)[1] / mass
        # Constant targets keep unit scale: the head then only fits the mean.
        return mean, np.where(var > 0, size * np.sqrt(var), 1.0)

    def _validation_score(self, y_val, scores, sample_weight):
        """The early-stopping score of outputs ``scores`` (n, c): R^2 here."""
        return r2(y_val, scores, sample_weight)

    def _stratify(self, y2d):
        """Hook: labels to stratify the validation split by (None: do not)."""
        return None

    def _encode_fit_targets(self, y, continuing, classes):
        """Encode validated targets for the head; check their outputs."""
        y2d = self._encode_targets(y, reset=not continuing, classes=classes)
        if continuing and y2d.shape[1] != self.n_outputs_:
            raise ValueError(
                f"y has {y2d.shape[1]} outputs, but {type(self).__name__} was fitted "
                f"with {self.n_outputs_}."
            )
        return y2d


def r2(y, scores, sample_weight=None):
    """``sklearn.metrics.r2_score(y, scores, sample_weight=sample_weight)`` of
    (n, c) arrays with n >= 2: the uniform average over outputs, an output
    fitted exactly scoring 1 and a constant one otherwise 0.

    Computed here because ``r2_score``'s argument checks cost 0.2 ms a call,
    a few percent of a small slimTrain fit, which scores every epoch.
    """
    weight = 1.0 if sample_weight is None else sample_weight[:, None]
    residual = (weight * (y - scores) ** 2).sum(axis=0)
    mean = np.average(y, axis=0, weights=sample_weight)
    total = (weight * (y - mean) ** 2).sum(axis=0)
    explained = np.where(residual == 0, 1.0, 0.0)
    scored = total != 0
    explained[scored] = 1.0 - residual[scored] / total[scored]
    return float(explained.mean())


def _row_sums(rows, sample_weight, values):
    """``(sum_i w_i, sum_i w_i v_i)`` over all ranks' rows, float64."""
    weighted = (sample_weight[:, None] * values).sum(axis=0)
    mass, *totals = rows.sum_floats(sample_weight.sum(), *weighted)
    return mass, np.asarray(totals)
