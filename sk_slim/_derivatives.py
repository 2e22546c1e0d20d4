"""What fit does to derivative data ``y_grad``, in numpy.

Derivatives come in the user's units, ``d y / d X``; the network sees encoded
inputs and standardized targets, so by the chain rule each is divided by the
input encoding's slope and by the target scale (the user guide's
:ref:`derivative-data`).
"""

import numpy as np
from sklearn.utils.validation import check_array

from .preprocessing import _CLIP, as_table
from .training import DerivativeData

__all__ = []


class _DerivativesMixin:
    """The ``y_grad`` hooks of :class:`~sk_slim._base._BaseSeparable`."""

    def _encode_y_grad(self, X, y_grad, encoder, n_outputs):
        """``y_grad`` as held -> ``(G, factor)``: G (n, q, c) the derivatives
        of the raw targets in the encoded numeric inputs, NaN where missing;
        ``factor`` (n, q) each derivative row's weight factor. None without
        numeric inputs."""
        G = check_array(
            y_grad,
            dtype=np.float64,
            ensure_2d=False,
            allow_nd=True,
            ensure_all_finite="allow-nan",
            input_name="y_grad",
        )
        slopes = input_slopes(encoder, X)  # (n, q)
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
        if not slopes.shape[1]:
            return None
        # d y / d encoded = (d y / d raw) / (d encoded / d raw). A residual is
        # weighed per unit of the centered, scaled input (scale_) before any
        # clipping: (slope * scale)^2, 1 without clipping, < 1 in the clipped
        # tails, whose derivatives the division blows up.
        G = (G[:, :, ~categorical] / slopes[:, None, :]).transpose(0, 2, 1)
        factor = np.where(np.isnan(slopes), np.nan, 1.0)
        if encoder.scaling == "robust-clip":
            factor = (slopes * encoder.scale_) ** 2
        return G, factor

    def _derivative_data(self, encoded):
        """``(G, factor)`` from :meth:`_encode_y_grad` -> :class:`DerivativeData`
        on the network's scale (standardized targets), rows missing any
        output weighted zero."""
        G, factor = encoded
        G = G / self._y_scale
        observed = np.isfinite(G).all(axis=2) & np.isfinite(factor)  # (n, q)
        weight = np.where(observed, self.grad_weight * factor, 0.0)
        return DerivativeData(
            self._to_tensor(np.where(observed[..., None], G, 0.0)),
            self._to_tensor(weight),
        )


def input_slopes(encoder, X):
    """``d encoded / d raw`` of each numeric column of ``X``, per row.

    Parameters
    ----------
    encoder : InputEncoder
        Fitted.
    X : {array-like, dataframe} of shape (n_samples, n_features)
        Inputs as held.

    Returns
    -------
    ndarray of shape (n_samples, n_numeric)
        The slope of the encoding of each numeric column; NaN where the value
        is missing (imputed: it has no derivative).
    """
    columns = encoder._columns(as_table(X))
    numeric, _ = encoder._split(columns)
    if not numeric:
        return np.empty((len(columns[0]), 0))
    values = np.column_stack(numeric).astype(np.float64)
    slopes = np.broadcast_to(1.0 / encoder.scale_, values.shape).copy()
    if encoder.scaling == "robust-clip":  # x / sqrt(1 + (x / c)^2)
        scaled = (values - encoder.center_) / encoder.scale_
        slopes *= (1 + (scaled / _CLIP) ** 2) ** -1.5
    slopes[np.isnan(values)] = np.nan
    return slopes
