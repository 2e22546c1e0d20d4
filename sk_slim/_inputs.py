"""What fit and predict do to ``X``: the input encoding, in numpy.

The estimators validate ``X`` as held (dataframes with categorical and missing
columns included), encode it with their fitted :class:`InputEncoder`, and hand
the network the encoded float matrix.
"""

import narwhals.stable.v2 as nw
import numpy as np
from sklearn.utils.validation import (
    _check_sample_weight,
    _num_samples,
    check_is_fitted,
    check_X_y,
    validate_data,
)

from .preprocessing import InputEncoder, as_table

__all__ = []


class _InputsMixin:
    """The input hooks of :class:`~sk_slim._base._BaseSeparable`."""

    def _fit_input_encoder(self, X, sample_weight):
        """A new :class:`InputEncoder` fitted on ``X`` (all ranks' rows)."""
        encoder = InputEncoder(
            scaling=self.input_scaling,
            categorical_features=self.categorical_features,
            max_categories=self.max_categories,
        )
        return encoder.fit(X, sample_weight=sample_weight)

    @staticmethod
    def _rows_of_all_ranks(X, sample_weight, rows):
        """``X`` and ``sample_weight`` of every rank, stacked in rank order (in
        a data-parallel fit; as given otherwise): what the encoder is fitted
        on, so that it is the encoder of one process holding all rows."""
        if not rows.distributed:
            return X, sample_weight
        parts = rows.gather_objects((X, sample_weight))
        weights = [w for _, w in parts]
        if any(w is not None for w in weights):
            weights = [
                np.ones(_num_samples(x)) if w is None else np.asarray(w)
                for (x, _), w in zip(parts, weights, strict=True)
            ]
            weight = np.concatenate(weights)
        else:
            weight = None
        tables = [x for x, _ in parts]
        if nw.dependencies.is_into_dataframe(tables[0]):
            frames = [nw.from_native(x, eager_only=True) for x in tables]
            return nw.concat(frames).to_native(), weight
        return np.concatenate([np.asarray(x) for x in tables]), weight

    def _validate_fit_data(self, X, y, sample_weight, encoder, continuing):
        """Validate and encode fit's inputs (this rank's, in a data-parallel fit)."""
        X = as_table(X)
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
        X = as_table(X)
        validate_data(self, X, reset=False, skip_check_array=True)
        return self.input_encoder_._encode(X)

    def _n_network_inputs(self):
        """Columns of the encoded inputs: the network's input width."""
        return self.input_encoder_._n_features_out
