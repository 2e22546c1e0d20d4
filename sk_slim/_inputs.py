"""What fit and predict do to ``X``: the input encoding, in numpy.

The estimators validate ``X`` as held (dataframes with categorical and missing
columns included), encode it with their fitted :class:`InputEncoder`, and hand
the network the encoded float matrix.
"""

import numpy as np
from sklearn.utils.validation import (
    _check_sample_weight,
    check_is_fitted,
    check_X_y,
    validate_data,
)

from .preprocessing import InputEncoder

__all__ = []


class _InputsMixin:
    """The input hooks of :class:`~sk_slim._base._BaseSeparable`."""

    def _fit_input_encoder(self, X, sample_weight):
        """A new :class:`InputEncoder` fitted on ``X`` (this rank's rows)."""
        encoder = InputEncoder(
            scaling=self.input_scaling,
            categorical_features=self.categorical_features,
            max_categories=self.max_categories,
        )
        return encoder.fit(X, sample_weight=sample_weight)

    def _validate_fit_data(self, X, y, sample_weight, encoder, continuing):
        """Validate and encode fit's inputs (this rank's, in a data-parallel fit)."""
        validate_data(self, X, reset=not continuing, skip_check_array=True)
        X, y = check_X_y(
            encoder._encode(X),
            y,
            dtype=(np.float64, np.float32),
            ensure_min_samples=2,
            **self._target_validation,
        )
        sample_weight = _check_sample_weight(
            sample_weight, X, dtype=np.float64, ensure_non_negative=True
        )
        return X, y, sample_weight

    def _validate_inference_input(self, X):
        """Fitted check, the columns seen in fit, and the encoding."""
        check_is_fitted(self)
        validate_data(self, X, reset=False, skip_check_array=True)
        return self.input_encoder_._encode(X)

    def _n_network_inputs(self):
        """Columns of the encoded inputs: the network's input width."""
        return self.input_encoder_._n_features_out
