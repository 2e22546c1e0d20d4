"""What fit does to derivative data ``y_grad``, in numpy.

Derivatives come in the user's units, ``d y / d X``; the network sees encoded
inputs and standardized targets, so by the chain rule each is divided by the
input encoding's slope and by the target scale (the user guide's
:ref:`derivative-data`).
"""

import numpy as np
from sklearn.utils.validation import check_array

from .training import DerivativeData

__all__ = []


class _DerivativesMixin:
    """The ``y_grad`` hooks of :class:`~sk_slim._base._BaseSeparable`."""

    def _encode_y_grad(self, X, y_grad, encoder, n_outputs):
        """``y_grad`` as held -> (n, q, c): derivatives of the raw targets in
        the encoded numeric inputs, NaN where missing."""
        G = check_array(
            y_grad,
            dtype=np.float64,
            ensure_2d=False,
            allow_nd=True,
            ensure_all_finite="allow-nan",
            input_name="y_grad",
        )
        slopes = encoder._input_slopes(X)  # (n, q)
        n, d = len(slopes), encoder.n_features_in_
        if G.ndim == 2 and n_outputs == 1:
            G = G[:, None, :]
        if G.shape != (n, n_outputs, d):
            raise ValueError(
                f"y_grad has shape {G.shape}; expected (n_samples, n_features) = "
                f"{(n, d)} for one output, or (n_samples, n_outputs, n_features) "
                f"= {(n, n_outputs, d)}."
            )
        categorical = encoder.is_categorical_
        if np.isfinite(G[:, :, categorical]).any():
            raise ValueError(
                "y_grad gives derivatives in categorical columns, which have "
                "none; set those entries to NaN."
            )
        # d y / d encoded = (d y / d raw) / (d encoded / d raw)
        return (G[:, :, ~categorical] / slopes[:, None, :]).transpose(0, 2, 1)

    def _derivative_data(self, G):
        """Encoded derivatives (n, q, c) -> :class:`DerivativeData` on the
        network's scale (standardized targets), rows missing any output
        weighted zero."""
        G = G / self._y_scale
        observed = np.isfinite(G).all(axis=2)  # (n, q)
        weight = self.grad_weight * observed
        return DerivativeData(
            self._to_tensor(np.where(observed[..., None], G, 0.0)),
            self._to_tensor(weight),
        )
