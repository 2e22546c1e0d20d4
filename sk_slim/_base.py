"""Plumbing shared by every sk_slim estimator.

Validation, dtype and device policy, random state, the MLP-style epoch loop
(early stopping, history, divergence recovery, interrupts, callbacks, verbose),
rollback of a failed fit, pickling with CPU tensors; ``predict`` and export in
its mixin ``_inference.py``. numpy <-> torch conversion happens in these two
modules and nowhere else. The training algorithm
is a trainer (:class:`sk_slim.training.Trainer`) that each estimator builds in
``_make_trainer``; the loop drives it and stores its state.
"""

import copy
import math
from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import (
    BaseEstimator,
    ClassNamePrefixFeaturesOutMixin,
    TransformerMixin,
)
from sklearn.callback import CallbackSupportMixin
from sklearn.utils._param_validation import Interval, StrOptions

from ._derivatives import _DerivativesMixin
from ._inference import _InferenceMixin
from ._inputs import _InputsMixin
from ._loop import _CALLBACK_STATE, _EpochLoopMixin, _gather_rows
from ._runtime import (
    draw_seed,
    extractor_kwargs,
    n_threads,
    on_cpu,
    resolve_device,
    torch_threads,
)
from ._split import split_in_place
from ._targets import _TargetsMixin
from .networks import ACTIVATIONS, SeparableNet, make_mlp
from .preprocessing import SCALINGS
from .rows import row_group
from .training import FitData, HeadPosterior, head_posterior, held_out_noise

_DTYPES = {"float32": torch.float32, "float64": torch.float64}
# Attributes holding tensors: pickled as CPU copies (__getstate__).
_TORCH_ATTRIBUTES = ("module_", "_trainer_state")
# Below this many samples, early_stopping='auto' holds out at least this share
# (the small-data benchmark, benchmarks/small_data_results.md, tune half).
_SMALL_DATA_SAMPLES, _SMALL_DATA_VALIDATION_FRACTION = 200, 0.2
# The constraint of n_iter_no_change where an estimator resolves 'auto' itself.
_PATIENCE_OR_AUTO = [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"})]


@dataclass(frozen=True)
class _ValidationSplit:
    """The rows held out for early stopping, inputs encoded, targets in their
    units (this process's share of them in a data-parallel fit)."""

    X: np.ndarray  # (n_val, d) encoded inputs
    y: np.ndarray  # (n_val, c) encoded targets
    weight: np.ndarray | None  # (n_val,)
    y_all: np.ndarray  # all processes' y, what the score is of
    weight_all: np.ndarray | None
    derivatives: object = None  # their DerivativeData, scored with the values


@dataclass(frozen=True)
class _Fit:
    """One call to fit/partial_fit: what the loop trains on and scores with."""

    data: FitData  # the training rows, as tensors
    validation: _ValidationSplit | None
    X: object  # the data given to fit, as given: for callbacks that score it
    y: np.ndarray
    incremental: bool
    n_rows: int  # training rows, of all processes in a data-parallel fit


class _BaseSeparable(
    _EpochLoopMixin,
    _InferenceMixin,
    _DerivativesMixin,
    _InputsMixin,
    _TargetsMixin,
    ClassNamePrefixFeaturesOutMixin,
    TransformerMixin,
    CallbackSupportMixin,
    BaseEstimator,
):
    """Base class of the separable-network estimators; not for direct use.

    Every estimator is also a transformer: ``transform`` returns the learned
    features, the inputs of the solved head (as ``PLSRegression`` is both).
    """

    _parameter_constraints = {
        "hidden_layer_sizes": [
            "array-like",
            Interval(Integral, 1, None, closed="left"),
            StrOptions({"auto"}),
        ],
        "activation": [StrOptions(set(ACTIVATIONS))],
        "init": [StrOptions({"glorot", "box"})],
        "feature_extractor": [None, callable],
        "feature_extractor_kwargs": [None, dict],
        "input_scaling": [StrOptions(set(SCALINGS)), None],
        "categorical_features": ["array-like", StrOptions({"from_dtype"}), None],
        "max_categories": [Interval(Integral, 2, None, closed="left")],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "head_alpha": [StrOptions({"auto"}), Interval(Real, 0, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "early_stopping": ["boolean", StrOptions({"auto"})],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "warm_start": ["boolean"],
        "random_state": ["random_state"],
        "device": [str],
        "dtype": [None, StrOptions(set(_DTYPES))],
        "verbose": ["verbose"],
    }

    # The trainer's per-epoch records (``Trainer.record``) -> fitted list attributes.
    _history_attributes = {}
    # early_stopping='auto' holds out validation data from this many samples on.
    _auto_early_stopping_from = 200
    # n_iter_no_change='auto' (where an estimator takes it): this patience, and
    # this with derivative data.
    _auto_n_iter_no_change = 20
    _auto_n_iter_no_change_with_derivatives = 20
    # hidden_layer_sizes='auto': two layers of this width, or of n_outputs_ when
    # that is larger (the head maps the last layer's features to the outputs).
    _auto_width = 64

    # ------------------------------------------------------------------ fitting

    def _fit(self, X, y, sample_weight, *, incremental, classes=None, y_grad=None):
        """Validate, (re)build, train, and commit the fitted state atomically."""
        # Training changes fitted state in place (the network, the histories, the
        # trainer's state): keep a deep copy of all of it to roll a failure back.
        saved = {
            name: copy.deepcopy(value) if _is_fitted_state(name) else value
            for name, value in self.__dict__.items()
        }
        try:
            return self._fit_unsafe(
                X, y, sample_weight, y_grad, incremental=incremental, classes=classes
            )
        except BaseException:
            # A failed fit never leaves a half-changed model; the callbacks'
            # bookkeeping stays, for their teardown.
            callbacks = {k: v for k, v in self.__dict__.items() if k in _CALLBACK_STATE}
            self.__dict__.clear()
            self.__dict__.update(saved)
            self.__dict__.update(callbacks)
            raise

    def _fit_unsafe(self, X, y, sample_weight, y_grad, *, incremental, classes):
        continuing = (incremental or self.warm_start) and hasattr(self, "module_")
        # Inside a torch.distributed process group each rank holds a shard of the
        # rows; a rank that fails makes all fail (none waits in a collective).
        rows = row_group()
        X_given = X  # as the user holds it: what callbacks score the model on
        if continuing:
            encoder = self.input_encoder_
        else:  # on all ranks' rows, as one process would
            X_all, weight_all = self._rows_of_all_ranks(X, sample_weight, rows)
            encoder = rows.agreed(self._fit_input_encoder, X_all, weight_all)
        X, y, sample_weight = rows.agreed(
            self._validate_fit_data, X, y, sample_weight, encoder, continuing
        )
        classes = self._classes_of_all_ranks(y, classes, continuing, rows)
        y2d = rows.agreed(self._encode_fit_targets, y, continuing, classes)
        if rows.distributed and len(set(rows.gather_objects(y_grad is None))) > 1:
            raise ValueError(
                "Pass y_grad on every rank of a data-parallel fit, or none."
            )
        if y_grad is not None:
            y_grad = rows.agreed(
                self._encode_y_grad, X_given, y_grad, encoder, y2d.shape[1]
            )
        sample_weight = self._weight_targets(y, sample_weight, incremental, rows)
        if rows.distributed:
            shapes = rows.gather_objects((X.shape[1], y2d.shape[1]))
            if len(set(shapes)) > 1:
                raise ValueError(
                    "Every rank of a data-parallel fit needs the same numbers of "
                    f"features and outputs; got (features, outputs) = {shapes}."
                )
        if not continuing:
            self.input_encoder_ = encoder
            self._init_fitted_state(X, y, y2d, sample_weight, rows)
        else:  # e.g. a CUDA model unpickled (on the CPU) on a CUDA machine
            self.module_.to(self._device())
        fit = self._make_fit(
            X,
            y,
            y2d,
            sample_weight,
            X_given,
            y_grad,
            incremental=incremental,
            rows=rows,
        )
        # The fit holds the rows it trains on; the encoded copy of all of them
        # (the validation split's source) need not live through training.
        n_inputs, X = X.shape[1], None

        trainer = self._make_trainer(
            self.module_,
            incremental=incremental,
            with_derivatives=fit.data.derivatives is not None,
        )
        # One callback context per call, whatever runs the trainer makes.
        callback_ctx = self._init_callback_context(
            max_subtasks=1 if incremental else self.max_iter * trainer.max_runs
        )
        metadata = {"sample_weight": sample_weight}
        callback_ctx.call_on_fit_task_begin(
            estimator=self, X=X_given, y=y, metadata=metadata
        )
        trainer.start(fit.data, self._trainer_state if continuing else None)
        threads = n_threads(self._hidden_sizes(), n_inputs, trainer.rows_per_step())
        with torch_threads(threads):
            best = self._epoch_loop(
                trainer, fit, callback_ctx, n_epochs=1 if incremental else None
            )
            if best is not None:
                trainer.restore(best)
            self._finish_interruptible(trainer, fit)
        self._trainer_state = trainer.state
        self._rng_state = fit.data.generator.get_state()
        callback_ctx.call_on_fit_task_end(
            estimator=self, X=X_given, y=y, metadata=metadata
        )
        return self

    def _finish_fit(self, trainer, net, fit):
        """Turn the trained ``net`` (``self.module_``) into the fitted model: the
        final head, what calibrates it, the head in target units."""
        self.head_alpha_ = trainer.finish(net)
        self._calibrate(net, fit)
        self._set_head_attributes()

    def _init_fitted_state(self, X, y, y2d, sample_weight, rows):
        """First fit: device, dtype, RNG, target scaling, the network, history."""
        self.device_ = resolve_device(self.device)
        self._dtype = (
            _DTYPES[self.dtype]
            if self.dtype
            else (torch.float64 if self.device_ == "cpu" else torch.float32)
        )
        # 1-D targets in, 1-D predictions out (labels are encoded in columns).
        self._y_1d = y.ndim == 1 and y2d.shape[1] == 1
        self.n_outputs_ = y2d.shape[1]
        # Every rank draws what rank 0 draws (random_state=None included).
        self._seed = rows.broadcast_object(self._new_seed())
        generator = torch.Generator().manual_seed(self._seed)
        self._y_mean, self._y_scale = self._target_scaling(y2d, sample_weight, rows)
        # Box initialization reads the inputs: those of weighted rows only, so
        # that a zero weight is as good as no row.
        weighted = sample_weight > 0
        self.module_ = self._build_module(
            X if weighted.all() else X[weighted], generator
        )
        # A user's extractor (or box initialization, which reads the data) may
        # differ between ranks: all start from rank 0's.
        rows.broadcast_module_(self.module_)
        self._rng_state = generator.get_state()
        self._trainer_state = None
        self.n_iter_, self.t_ = 0, 0
        self.loss_curve_, self.head_alpha_curve_ = [], []
        for name in self._history_attributes.values():
            setattr(self, name, [])
        n_samples = round(rows.sum_floats(len(X)))
        self._early_stopping = self._uses_early_stopping(n_samples)
        self._validation_fraction = self.validation_fraction
        if self.early_stopping == "auto" and n_samples < _SMALL_DATA_SAMPLES:
            self._validation_fraction = max(
                self.validation_fraction, _SMALL_DATA_VALIDATION_FRACTION
            )
        self.validation_scores_ = [] if self._early_stopping else None
        self.best_validation_score_ = -np.inf if self._early_stopping else None
        self.best_loss_ = None if self._early_stopping else np.inf

    def _new_seed(self):
        """The seed of a fresh fit, from ``random_state``."""
        return draw_seed(self.random_state)

    def _calibrate(self, net, fit):
        """Fit what turns the trained head into predictions: for the ridge head
        of a regressor, its posterior given the features (``return_std``), its
        noise level from the validation split when there is one.

        Only ``fit`` solves the head on all rows; ``partial_fit`` keeps the
        streamed head, which has no such posterior.
        """
        self._head_posterior = None
        if not fit.incremental:
            data = fit.data
            posterior = head_posterior(
                net,
                data.X,
                data.C,
                data.weight,
                self.head_alpha_,
                data.rows,
                data.derivatives,
            )
            validation = fit.validation
            if validation is not None:
                C_val = (validation.y - self._y_mean) / self._y_scale
                posterior = held_out_noise(
                    posterior,
                    net,
                    self._to_tensor(validation.X),
                    self._to_tensor(C_val),
                    self._to_tensor(validation.weight),
                    data.rows,
                )
            self._head_posterior = HeadPosterior(
                posterior.covariance.cpu(), posterior.noise_variance.cpu()
            )

    def _make_trainer(self, net, *, incremental, with_derivatives):
        """The training algorithm for ``net`` (a :class:`~sk_slim.training.Trainer`),
        for a fit with or without derivative data."""
        raise NotImplementedError

    def _hidden_sizes(self):
        """``hidden_layer_sizes`` as a list, ``'auto'`` resolved."""
        if isinstance(self.hidden_layer_sizes, str):  # 'auto'
            width = self._auto_hidden_width(self.n_outputs_)
            return [width, width]
        return np.atleast_1d(self.hidden_layer_sizes).tolist()

    def _auto_hidden_width(self, n_outputs):
        """The width of ``hidden_layer_sizes='auto'``'s two layers."""
        return max(self._auto_width, n_outputs)

    def _build_module(self, X, generator):
        """The separable network: a feature extractor and an empty head."""
        n_in = X.shape[1]
        if self.feature_extractor is None:
            sizes = self._hidden_sizes()
            if min(sizes, default=0) < 1:
                raise ValueError(
                    f"hidden_layer_sizes must be > 0, got {self.hidden_layer_sizes}."
                )
            extractor = make_mlp(
                n_in,
                sizes,
                self.activation,
                init=self.init,
                data=self._to_tensor(X) if self.init == "box" else None,
                generator=generator,
                dtype=self._dtype,
            )
        else:
            kwargs = extractor_kwargs(
                self.feature_extractor, self.feature_extractor_kwargs, generator
            )
            # A user's module initializes from the global RNG: seed it in a fork
            # so the fit is reproducible and the user's RNG stays untouched.
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self._seed)
                extractor = self.feature_extractor(n_in, **kwargs)
        extractor = extractor.to(device=self.device_, dtype=self._dtype)
        with torch.no_grad():
            # Probe the feature count in eval mode: no dropout, no BatchNorm update.
            Z = extractor.eval()(self._to_tensor(X[:2]))
        extractor.train()
        if Z.ndim != 2:
            raise ValueError(
                "feature_extractor must return a 2-D tensor (n_samples, n_features); "
                f"got shape {tuple(Z.shape)}."
            )
        net = SeparableNet(extractor, Z.shape[1], self.n_outputs_)
        return net.to(device=self.device_, dtype=self._dtype)

    def _uses_early_stopping(self, n_samples):
        """``'auto'``: on from ``_auto_early_stopping_from`` samples."""
        if self.early_stopping == "auto":
            return n_samples >= self._auto_early_stopping_from
        return self.early_stopping

    def _patience(self, fit):
        """``n_iter_no_change``, ``'auto'`` resolved for this fit's data."""
        if self.n_iter_no_change != "auto":
            return self.n_iter_no_change
        if fit.data.derivatives is not None:
            return self._auto_n_iter_no_change_with_derivatives
        return self._auto_n_iter_no_change

    def _make_fit(self, X, y, y2d, sample_weight, X_given, G, *, incremental, rows):
        """Split off validation data, standardize targets, move tensors (``G``:
        the encoded derivative data and its row weights, or None).

        In a data-parallel fit each rank splits its own rows (with the same
        seed) and keeps its share of the training and the validation rows.
        """
        y_fit = y
        X_val = y_val = weight_val = G_val = None
        if self._early_stopping and not incremental:
            more = () if G is None else G  # the derivatives and their weights
            split = rows.agreed(self._validation_split, X, y2d, sample_weight, *more)
            X, X_val, y2d, y_val, sample_weight, weight_val = split[:6]
            if G is not None:
                G, G_val = split[6::2], split[7::2]
        # Zero-weight rows carry nothing; dropping them keeps every mini-batch's
        # weights summing to > 0 and makes weights act exactly as repetitions.
        keep = sample_weight > 0
        if not keep.all():
            X, y2d, sample_weight = X[keep], y2d[keep], sample_weight[keep]
            G = None if G is None else tuple(part[keep] for part in G)
        mass, n_rows = rows.sum_floats(sample_weight.sum(), len(sample_weight))
        if mass < n_rows:
            # Weights are repetitions (integer weights act as repeated rows), but
            # weights summing to fewer than the rows they weight (e.g. normalized
            # to sum to 1) are read as relative: GCV needs a sample count. The
            # validation rows get the same factor (a calibration counts them).
            factor = n_rows / mass
            sample_weight = sample_weight * factor
            weight_val = None if weight_val is None else weight_val * factor
        # Unweighted on every rank: the weighted path is taken by all or none.
        unweighted = rows.all(np.all(sample_weight == 1.0))
        C = (y2d - self._y_mean) / self._y_scale
        generator = torch.Generator()
        generator.set_state(self._rng_state)
        data = FitData(
            X=self._to_tensor(X),
            C=self._to_tensor(C),
            weight=None if unweighted else self._to_tensor(sample_weight),
            generator=generator,
            rows=rows,
            derivatives=None if G is None else self._derivative_data(G),
        )
        validation = None
        if X_val is not None:
            validation = _ValidationSplit(
                X_val,
                y_val,
                weight_val,
                _gather_rows(rows, y_val),
                _gather_rows(rows, weight_val),
                None if G_val is None else self._derivative_data(G_val),
            )
        return _Fit(data, validation, X_given, y_fit, incremental, round(n_rows))

    def _validation_split(self, X, y2d, sample_weight, *more):
        """Hold out the validation rows (seeded, stratified where the
        estimator stratifies; ``_validation_fraction`` of them) of ``X``,
        ``y2d``, ``sample_weight`` and the arrays in ``more``. ``X``, the
        encoded inputs that fit owns, is split in place (its parts are views)."""
        n_val = math.ceil(self._validation_fraction * len(X))
        if n_val < 2 or len(X) - n_val < 2:
            raise ValueError(
                f"The validation set is too small: {len(X)} samples with "
                f"validation_fraction={self._validation_fraction}. Need at least 2 "
                "samples in both the training and the validation split."
            )
        return split_in_place(
            X,
            y2d,
            sample_weight,
            *more,
            test_size=n_val,
            random_state=np.random.RandomState(self._seed),
            stratify=self._stratify(y2d),
        )

    # ---------------------------------------------------------------- inference

    # Here, not in _InferenceMixin: set_output wraps only the ``transform`` of a
    # class that derives from TransformerMixin.
    def transform(self, X):
        """The learned features ``phi(X)``, the inputs of the solved head.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Inputs, with the features seen in fit.

        Returns
        -------
        Z : ndarray of shape (n_samples, n_features_out)
            ``predict(X) == Z @ coef_ + intercept_``.
        """
        X = self._validate_inference_input(X)
        with torch.no_grad():
            Z = self._net_on_device().features(self._to_tensor(X))
        return Z.cpu().numpy().astype(X.dtype, copy=False)

    # ------------------------------------------------------------------ helpers

    def _to_tensor(self, array):
        array = np.ascontiguousarray(array)
        if not array.flags.writeable:  # torch does not wrap read-only memory
            array = array.copy()
        return torch.as_tensor(array, dtype=self._dtype, device=self._device())

    def _device(self):
        """Where to compute now: ``device_``, or the CPU when it is unavailable
        (a CUDA-trained model unpickled on a CPU-only machine)."""
        if self.device_.startswith("cuda") and not torch.cuda.is_available():
            return torch.device("cpu")
        return torch.device(self.device_)

    def _net_on_device(self, net=None):
        net = self.module_ if net is None else net
        device = self._device()
        if net.W.device != device:
            net.to(device)
        return net.eval()

    def __getstate__(self):
        state = self.__dict__.copy()
        if state.get("device_", "cpu") != "cpu":
            # Every tensor (module, optimizer and solver state) on the CPU, so a
            # GPU-trained model loads and predicts on a CPU-only machine.
            for name in _TORCH_ATTRIBUTES:
                if name in state:
                    state[name] = on_cpu(state[name])
        return state

    @property
    def _n_features_out(self):
        """Number of learned features (for ``get_feature_names_out``)."""
        return self.module_.W.shape[0]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        tags.input_tags.allow_nan = True
        tags.input_tags.categorical = True
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        tags.non_deterministic = False
        return tags


def _is_fitted_state(name):
    """Fitted attributes (``name_``) and the trainer's state: what fit changes."""
    return (name.endswith("_") and not name.startswith("__")) or name in (
        "_trainer_state",
        "_rng_state",
    )
