"""What the classifiers add to ``_BaseSeparable``: labels in, probabilities out.

Labels of any type are encoded as one-hot targets for the head; the head's
outputs ``S`` (n, n_classes) become probabilities by ``softmax(S / T)``, where
``T`` is 1 for a logistic head (GNvpro) and the fitted ``temperature_`` of a
least-squares head (slimTrain).
"""

import numpy as np
from scipy.special import log_softmax
from sklearn.base import ClassifierMixin
from sklearn.metrics import accuracy_score
from sklearn.utils.class_weight import compute_sample_weight
from sklearn.utils.multiclass import check_classification_targets

from .training import validated_logistic_head

__all__ = []


class _SeparableClassifierMixin(ClassifierMixin):
    """Mixin for the classifiers; put it before ``_BaseSeparable`` in the bases."""

    _target_validation = {"multi_output": False, "y_numeric": False}

    def _encode_targets(self, y, *, reset, classes):
        """Labels -> one-hot float64 targets; sets ``classes_`` on a fresh fit."""
        check_classification_targets(y)
        if reset:
            self.classes_ = np.unique(y if classes is None else classes)
            if len(self.classes_) < 2:
                raise ValueError(
                    "This solver needs samples of at least 2 classes in the data, but "
                    f"the data contains only one class: {self.classes_[0]!r}."
                )
        elif classes is not None and not np.array_equal(
            np.unique(classes), self.classes_
        ):
            raise ValueError(
                f"`classes={np.unique(classes)!r}` is not the same as on the first "
                f"call to partial_fit, {self.classes_!r}."
            )
        unseen = np.setdiff1d(y, self.classes_)
        if len(unseen):
            raise ValueError(f"y contains previously unseen labels: {unseen!r}.")
        indices = np.searchsorted(self.classes_, y)
        return np.eye(len(self.classes_))[indices]

    def _classes_of_all_ranks(self, y, classes, continuing, rows):
        if not rows.distributed or continuing or classes is not None:
            return classes
        return np.unique(np.concatenate(rows.gather_objects(np.unique(y))))

    def _weight_targets(self, y, sample_weight, incremental, rows):
        if self.class_weight is None:
            return sample_weight
        if incremental and self.class_weight == "balanced":
            raise ValueError(
                "class_weight 'balanced' is not supported for partial_fit: the class "
                "frequencies of a chunk are not those of the data. Pass a dict of "
                "weights instead."
            )
        class_weight = self.class_weight
        if class_weight == "balanced" and rows.distributed:
            # The frequencies of all ranks' rows: n / (n_classes * n_k), as
            # compute_sample_weight gives on all of them.
            counts = np.array(
                rows.sum_floats(*(np.sum(y == label) for label in self.classes_))
            )
            class_weight = {
                label: counts.sum() / (len(counts) * count)
                for label, count in zip(self.classes_, counts, strict=True)
                if count > 0
            }
        if isinstance(class_weight, dict):
            unknown = [k for k in class_weight if k not in set(self.classes_)]
            if unknown:
                raise ValueError(
                    f"class_weight has keys {unknown!r} that are not classes: "
                    f"{self.classes_!r}."
                )
            # compute_sample_weight wants only the classes in this y's rows.
            present = set(np.unique(y))
            class_weight = {k: v for k, v in class_weight.items() if k in present}
        return sample_weight * compute_sample_weight(class_weight, y)

    def _target_scaling(self, y2d, sample_weight, rows):
        # One-hot targets are on a fixed scale: no standardization.
        n_classes = y2d.shape[1]
        return np.zeros(n_classes), np.ones(n_classes)

    def _calibrate(self, net, fit):
        """Nothing to fit by default (a logistic head's softmax is calibrated)."""

    def _validated_logistic_head(self, net, fit):
        """Solve the logistic head on the training rows along a ridge path and
        keep the one of least validation log-loss; return its ridge weight."""
        data, validation = fit.data, fit.validation
        return validated_logistic_head(
            net,
            data.X,
            data.C,
            data.weight,
            self._to_tensor(validation.X),
            self._to_tensor(validation.y),
            self._to_tensor(validation.weight),
            rows=data.rows,
        )

    def _validation_score(self, y_val, scores, sample_weight):
        """Accuracy, as ``MLPClassifier``'s early stopping."""
        return accuracy_score(
            y_val.argmax(axis=1), scores.argmax(axis=1), sample_weight=sample_weight
        )

    def _stratify(self, y2d):
        # Stratify as MLPClassifier does, when every class can be in both parts.
        counts = y2d.sum(axis=0)
        n_val = int(np.ceil(self._validation_fraction * len(y2d)))
        n_classes = y2d.shape[1]
        if counts.min() < 2 or min(n_val, len(y2d) - n_val) < n_classes:
            return None
        return y2d.argmax(axis=1)

    # ---------------------------------------------------------------- inference

    def _scores(self, X):
        """The head's outputs ``S`` (n, n_classes), after the fitted check."""
        X = self._validate_inference_input(X)
        return self._predict_scaled(self.module_, X)

    def _output_transform(self):
        # The logits S / T: zeros for an infinite temperature (uniform proba).
        temperature = getattr(self, "temperature_", 1.0)
        n_classes = len(self.classes_)
        return np.full(n_classes, 1.0 / temperature), np.zeros(n_classes), False

    def _logits(self, X):
        """``S / temperature_`` (slimTrain) or ``S`` itself (a logistic head)."""
        temperature = getattr(self, "temperature_", 1.0)
        return self._scores(X) / temperature

    def decision_function(self, X):
        """Compute the logits of the classes (for two classes, of the second).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Inputs, with the features seen in fit.

        Returns
        -------
        scores : ndarray of shape (n_samples,) or (n_samples, n_classes)
            ``log predict_proba(X)`` up to a per-row constant; for two classes,
            the log-odds of ``classes_[1]``, of shape (n_samples,).
        """
        logits = self._logits(X)
        if len(self.classes_) == 2:
            return logits[:, 1] - logits[:, 0]
        return logits

    def predict(self, X):
        """Predict class labels.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Inputs, with the features seen in fit.

        Returns
        -------
        y : ndarray of shape (n_samples,)
            The class of highest probability, from ``classes_``.
        """
        # The scores' argmax: a temperature never changes it (and an infinite
        # one, uniform probabilities, would make every logit 0).
        scores = self._scores(X)  # first: it checks that the model is fitted
        return self.classes_[scores.argmax(axis=1)]

    def predict_log_proba(self, X):
        """Log of the class probabilities.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Inputs, with the features seen in fit.

        Returns
        -------
        log_proba : ndarray of shape (n_samples, n_classes)
            Columns in the order of ``classes_``; finite for any logits.
        """
        return log_softmax(self._logits(X), axis=1)

    def predict_proba(self, X):
        """Class probabilities.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Inputs, with the features seen in fit.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Rows sum to one; columns in the order of ``classes_``.
        """
        return np.exp(self.predict_log_proba(X))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = False
        tags.target_tags.single_output = True
        tags.classifier_tags.multi_class = True
        return tags
