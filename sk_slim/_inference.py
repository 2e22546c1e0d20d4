"""What a fitted estimator does with new inputs: predict, transform, export.

The mixin of :class:`~sk_slim._base._BaseSeparable` that turns the fitted network
(``module_``, on encoded inputs and standardized targets) into predictions in
the user's units, their standard deviation and input gradient, the learned
features, and a plain torch module.
"""

import numpy as np
import torch
from sklearn.utils.validation import check_is_fitted

from ._derivatives import input_slopes
from .networks import export_network
from .preprocessing import InputTransform
from .training import input_jacobian

__all__ = []

# Rows per forward pass of predict and the validation scores.
_PREDICT_ROWS = 16384


class _InferenceMixin:
    """Inference of :class:`~sk_slim._base._BaseSeparable`; not for direct use."""

    def predict(self, X, return_std=False, return_grad=False):
        """Predict, optionally with a standard deviation and the input gradient.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Inputs, with the features seen in fit.
        return_std : bool, default=False
            Also return the predictive standard deviation of the ridge head
            given the learned features (its Bayesian reading): per output
            ``k``, ``sigma_k sqrt(1 + z^T (Z^T W Z + lam I)^{-1} z)`` with
            ``z = [phi(x), 1]``, ``Z`` the training rows' features, ``W``
            their weights, and ``sigma_k^2`` output ``k``'s noise variance: from
            the residuals on the early-stopping split when there is one (rows
            the fit never saw), else the training residual over the residual
            degrees of freedom ``n - tr H``. It ignores the uncertainty in the
            features themselves (see the user guide). Needs the full-data head
            solve of ``fit`` (not ``partial_fit``).
        return_grad : bool, default=False
            Also return the model's gradient in its inputs, ``d y_mean / d X``,
            in the units of ``y`` per unit of each column of ``X`` (the input
            scaling's derivative included): the feature extractor's exact
            input Jacobian times the head. NaN for categorical columns and
            for missing values.

        Returns
        -------
        y_mean : ndarray of shape (n_samples,) or (n_samples, n_outputs)
            In the dtype of ``X`` (float32 or float64).
        y_std : ndarray of shape (n_samples,) or (n_samples, n_outputs)
            In the units of ``y``; only with ``return_std=True``.
        y_grad : ndarray of shape (n_samples, n_features) or \
                (n_samples, n_outputs, n_features)
            ``y_grad[i, k, j] = d y_mean[i, k] / d X[i, j]`` (without the
            ``k`` axis for 1-D targets); only with ``return_grad=True``.
        """
        X_given = X
        X = self._validate_inference_input(X)
        if return_std and getattr(self, "_head_posterior", None) is None:
            raise ValueError(
                "return_std=True needs the posterior of fit's final head solve on "
                "all training rows; partial_fit keeps none. Call fit first."
            )
        net = self._net_on_device()

        def mean_and_variance(rows):  # one pass serves the mean and the std
            features = net.features(rows)  # (rows, m)
            mean = net.head(features)
            if not return_std:
                return (mean,)
            Z = net.augment(features).cpu()  # (rows, p)
            return mean, self._head_posterior.predictive_variance(Z)

        with torch.no_grad():  # by blocks: not the activations of all rows at once
            means, *variances = _by_blocks(mean_and_variance, self._to_tensor(X))
        y = self._in_target_units(means).astype(X.dtype, copy=False)
        y = y.ravel() if self._y_1d else y
        out = [y]
        if return_std:
            variance = variances[0].numpy()
            std = (np.sqrt(variance) * self._y_scale).astype(X.dtype, copy=False)
            out.append(std.ravel() if self._y_1d else std)
        if return_grad:
            out.append(self._input_gradient(net, X_given, X).astype(X.dtype))
        return out[0] if len(out) == 1 else tuple(out)

    def _input_gradient(self, net, X_given, X):
        """``d predict / d X`` in the user's units (see :meth:`predict`)."""
        encoder = self.input_encoder_
        slopes = input_slopes(encoder, X_given)  # (n, q): d encoded / d raw
        with torch.no_grad():
            _, D = input_jacobian(
                net.feature_extractor, None, self._to_tensor(X), slopes.shape[1]
            )  # (q, n, m)
            dC = (D @ net.W).cpu().double().numpy()  # (q, n, c)
        numeric = dC.transpose(1, 2, 0) * self._y_scale[:, None] * slopes[:, None]
        grad = np.full((len(X), numeric.shape[1], encoder.n_features_in_), np.nan)
        grad[:, :, ~encoder.is_categorical_] = numeric
        return grad[:, 0] if self._y_1d else grad

    def to_torch(self):
        """The fitted network as a plain ``torch.nn.Module`` on raw inputs.

        The input encoding (``input_encoder_``), the feature extractor, and an
        ``nn.Linear`` head with the target scaling folded in. Numeric columns
        go in as they are (missing values as NaN); categorical columns as their
        category's code, which ``input_encoder_.to_codes(X)`` gives. Differentiable
        in its input, and exportable with ``torch.export`` (and to ONNX, the
        default extractors).

        Returns
        -------
        module : ExportedNet
            In eval mode, on the CPU, in the estimator's dtype, with its own
            copy of the parameters. It maps a tensor of shape (n_samples,
            `n_features_in_`) to what ``predict`` returns (regressors), or to the
            logits behind ``decision_function`` and ``predict_proba``
            (classifiers: shape (n_samples, n_classes)).
        """
        check_is_fitted(self)
        scale, shift, squeeze = self._output_transform()
        return export_network(
            self.module_,
            torch.as_tensor(np.asarray(scale, dtype=np.float64)),
            torch.as_tensor(np.asarray(shift, dtype=np.float64)),
            squeeze=squeeze,
            inputs=self._input_module(),
        )

    def _input_module(self):
        """``input_encoder_`` as a torch module (:class:`InputTransform`)."""

        def tensor(a):  # floats in the network's dtype, indices as they are
            return torch.as_tensor(
                a, dtype=self._dtype if a.dtype.kind == "f" else None
            )

        parts = self.input_encoder_._torch_arrays()
        onehot, clip = [tensor(m) for m in parts.pop("onehot")], parts.pop("clip")
        tensors = {name: tensor(array) for name, array in parts.items()}
        return InputTransform(**tensors, onehot=onehot, clip=clip)

    def _output_transform(self):
        """``(scale, shift, squeeze)`` from the head's outputs to predictions."""
        return self._y_scale, self._y_mean, self._y_1d

    def _predict_scaled(self, net, X):
        """Network output in the original target units, float64, shape (n, c)."""
        # No thread changes here: the count is process-global, and predict may run
        # in threads; fit sets it (and restores it) around training only.
        net = self._net_on_device(net)
        with torch.no_grad():  # by blocks: not the activations of all rows at once
            (out,) = _by_blocks(lambda rows: (net(rows),), self._to_tensor(X))
        return self._in_target_units(out)

    def _in_target_units(self, out):
        """Head outputs (n, c) as float64 numpy in the original target units."""
        return out.cpu().double().numpy() * self._y_scale + self._y_mean

    def _set_head_attributes(self):
        """``coef_``/``intercept_``: the head in the original target units."""
        W = self.module_.W.detach().cpu().double().numpy() * self._y_scale
        b = self.module_.b.detach().cpu().double().numpy() * self._y_scale
        b = b + self._y_mean
        self.coef_ = W[:, 0] if self._y_1d else W
        self.intercept_ = float(b[0]) if self._y_1d else b


def _by_blocks(function, X):
    """``function(X)``, a tuple of (n, ...) tensors, computed by blocks of
    ``_PREDICT_ROWS`` rows into preallocated outputs.

    Small per-block results kept between a block's megabyte temporaries (a list
    to concatenate) fragment the heap, which then grows by every block's
    temporaries: 88 MiB over the 100 000 validation rows of a 1e6-row fit.
    """
    outputs = None
    for start in range(0, len(X), _PREDICT_ROWS):
        blocks = function(X[start : start + _PREDICT_ROWS])
        if outputs is None:
            outputs = [b.new_empty((len(X), *b.shape[1:])) for b in blocks]
        for output, block in zip(outputs, blocks, strict=True):
            output[start : start + len(block)] = block
    return outputs
