"""Plumbing shared by every sk_slim estimator (DESIGN.md §2, §4).

Validation, dtype and device policy, random state, the MLP-style epoch loop
(early stopping, history, divergence recovery, interrupts, callbacks, verbose),
pickling with CPU tensors, ``predict``/``transform``. numpy <-> torch conversion
happens here and nowhere else. Subclasses supply the training algorithm through
hooks: ``_start_training``, ``_train_epoch``, ``_snapshot``/``_restore``,
``_scale_learning_rate``, ``_current_head_alpha`` and ``_finish_training``.
"""

import copy
import io
import math
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import (
    BaseEstimator,
    ClassNamePrefixFeaturesOutMixin,
    TransformerMixin,
)
from sklearn.callback import CallbackSupportMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import r2_score
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import (
    _check_sample_weight,
    check_is_fitted,
    validate_data,
)

from .networks import ACTIVATIONS, SeparableNet, make_mlp
from .training import solve_head

_DTYPES = {"float32": torch.float32, "float64": torch.float64}
# Attributes holding tensors: pickled through torch with CPU mapping.
_TORCH_ATTRIBUTES = ("module_", "_solver_state")
# A divergent epoch is retried this many times with half the learning rate.
_MAX_RETRIES = 5
# early_stopping='auto' holds out validation data from this many samples on.
_AUTO_EARLY_STOPPING_MIN_SAMPLES = 200


@dataclass
class _Run:
    """One call to fit/partial_fit: problem data (tensors) and the loop's state."""

    net: SeparableNet
    X: torch.Tensor  # (n, d) training inputs
    C: torch.Tensor  # (n, c) standardized targets
    weight: torch.Tensor | None  # (n,)
    X_val: np.ndarray | None  # validation split, original units
    y_val: np.ndarray | None
    weight_val: np.ndarray | None
    generator: torch.Generator
    incremental: bool
    X_fit: np.ndarray  # the data given to fit, for callbacks that score it
    y_fit: np.ndarray
    solver: dict = field(default_factory=dict)  # the subclass's optimizer state
    n_iter_no_change_count: int = 0
    best_state: dict | None = None


class _BaseSeparable(
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
        ],
        "activation": [StrOptions(set(ACTIVATIONS))],
        "feature_extractor": [None, callable],
        "feature_extractor_kwargs": [None, dict],
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

    # Fitted attributes that training changes in place (rolled back on failure).
    _mutable_fitted_attributes = (
        *_TORCH_ATTRIBUTES,
        "loss_curve_",
        "head_alpha_curve_",
        "validation_scores_",
    )

    # ------------------------------------------------------------------ fitting

    def _fit(self, X, y, sample_weight, *, incremental, classes=None):
        """Validate, (re)build, train, and commit the fitted state atomically."""
        saved = self.__dict__.copy()
        # Training mutates these in place: keep copies to roll a failure back.
        for name in self._mutable_fitted_attributes:
            if name in saved:
                saved[name] = copy.deepcopy(saved[name])
        try:
            return self._fit_unsafe(
                X, y, sample_weight, incremental=incremental, classes=classes
            )
        except BaseException:
            # A failed fit never leaves a half-changed model.
            self.__dict__.clear()
            self.__dict__.update(saved)
            raise

    def _fit_unsafe(self, X, y, sample_weight, *, incremental, classes):
        continuing = (incremental or self.warm_start) and hasattr(self, "module_")
        X, y = validate_data(
            self,
            X,
            y,
            reset=not continuing,
            dtype=(np.float64, np.float32),
            ensure_min_samples=2,
            **self._target_validation,
        )
        y2d = self._encode_targets(y, reset=not continuing, classes=classes)
        sample_weight = _check_sample_weight(
            sample_weight, X, dtype=np.float64, ensure_non_negative=True
        )
        sample_weight = self._weight_targets(y, sample_weight, incremental)
        if continuing and y2d.shape[1] != self.n_outputs_:
            raise ValueError(
                f"y has {y2d.shape[1]} outputs, but {type(self).__name__} was fitted "
                f"with {self.n_outputs_}."
            )
        if not continuing:
            self._init_fitted_state(X, y, y2d, sample_weight)
        else:  # e.g. a CUDA model unpickled (on the CPU) on a CUDA machine
            self.module_.to(self._device())
        run = self._make_run(X, y, y2d, sample_weight, incremental=incremental)

        callback_ctx = self._init_callback_context(
            max_subtasks=1 if incremental else self.max_iter
        )
        metadata = {"sample_weight": sample_weight}
        callback_ctx.call_on_fit_task_begin(estimator=self, X=X, y=y, metadata=metadata)
        self._start_training(run, fresh=not (continuing and incremental))
        with _torch_threads(self._n_threads(X)):
            self._epoch_loop(run, callback_ctx, n_epochs=1 if incremental else None)
            if run.best_state is not None:
                self._restore(run, run.best_state)
            self._finish_training(run)
        self._rng_state = run.generator.get_state()
        self._set_head_attributes()
        callback_ctx.call_on_fit_task_end(estimator=self, X=X, y=y, metadata=metadata)
        return self

    def _init_fitted_state(self, X, y, y2d, sample_weight):
        """First fit: device, dtype, RNG, target scaling, the network, history."""
        self.device_ = _resolve_device(self.device)
        self._dtype = (
            _DTYPES[self.dtype]
            if self.dtype
            else (torch.float64 if self.device_ == "cpu" else torch.float32)
        )
        # 1-D targets in, 1-D predictions out (labels are encoded in columns).
        self._y_1d = y.ndim == 1 and y2d.shape[1] == 1
        self.n_outputs_ = y2d.shape[1]
        self._seed = _draw_seed(self.random_state)
        generator = torch.Generator().manual_seed(self._seed)
        self._y_mean, self._y_scale = self._target_scaling(y2d, sample_weight)
        self.module_ = self._build_module(X, generator)
        self._rng_state = generator.get_state()
        self._solver_state = None
        self.n_iter_, self.t_ = 0, 0
        self.loss_curve_, self.head_alpha_curve_ = [], []
        self._early_stopping = self._uses_early_stopping(len(X))
        self.validation_scores_ = [] if self._early_stopping else None
        self.best_validation_score_ = -np.inf if self._early_stopping else None
        self.best_loss_ = None if self._early_stopping else np.inf

    # ------------------------------------- targets (classifiers override these)

    # validate_data's options for y.
    _target_validation = {"multi_output": True, "y_numeric": True}

    def _encode_targets(self, y, *, reset, classes):
        """Validated ``y`` -> float64 targets of shape (n, c) for the head."""
        return y.reshape(len(y), -1).astype(np.float64, copy=False)

    def _weight_targets(self, y, sample_weight, incremental):
        """Hook: fold target-dependent weights (``class_weight``) into the rows'."""
        return sample_weight

    def _target_scaling(self, y2d, sample_weight):
        """Mean and scale that standardize the targets the head is solved for."""
        mean = np.average(y2d, axis=0, weights=sample_weight)
        var = np.average((y2d - mean) ** 2, axis=0, weights=sample_weight)
        # Constant targets keep unit scale: the head then only fits the mean.
        return mean, np.where(var > 0, np.sqrt(var), 1.0)

    def _validation_score(self, y_val, scores, sample_weight):
        """The early-stopping score of outputs ``scores`` (n, c): R^2 here."""
        return r2_score(y_val, scores, sample_weight=sample_weight)

    def _stratify(self, y2d):
        """Hook: labels to stratify the validation split by (None: do not)."""
        return None

    def _build_module(self, X, generator):
        """The separable network: a feature extractor and an empty head."""
        n_in = X.shape[1]
        if self.feature_extractor is None:
            sizes = np.atleast_1d(self.hidden_layer_sizes).tolist()
            if min(sizes, default=0) < 1:
                raise ValueError(
                    f"hidden_layer_sizes must be > 0, got {self.hidden_layer_sizes}."
                )
            extractor = make_mlp(
                n_in, sizes, self.activation, generator=generator, dtype=self._dtype
            )
        else:
            kwargs = self.feature_extractor_kwargs or {}
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
        """``'auto'``: hold out validation data from 200 samples on (>= 20 rows)."""
        if self.early_stopping == "auto":
            return n_samples >= _AUTO_EARLY_STOPPING_MIN_SAMPLES
        return self.early_stopping

    def _make_run(self, X, y, y2d, sample_weight, *, incremental):
        """Split off validation data, standardize targets, move tensors."""
        X_fit, y_fit = X, y
        X_val = y_val = weight_val = None
        if self._early_stopping and not incremental:
            n_val = math.ceil(self.validation_fraction * len(X))
            if n_val < 2 or len(X) - n_val < 2:
                raise ValueError(
                    f"The validation set is too small: {len(X)} samples with "
                    f"validation_fraction={self.validation_fraction}. Need at least 2 "
                    "samples in both the training and the validation split."
                )
            split = train_test_split(
                X,
                y2d,
                sample_weight,
                test_size=n_val,
                random_state=np.random.RandomState(self._seed),
                stratify=self._stratify(y2d),
            )
            X, X_val, y2d, y_val, sample_weight, weight_val = split
        # Zero-weight rows carry nothing; dropping them keeps every mini-batch's
        # weights summing to > 0 and makes weights act exactly as repetitions.
        keep = sample_weight > 0
        if not keep.all():
            X, y2d, sample_weight = X[keep], y2d[keep], sample_weight[keep]
        if sample_weight.sum() < len(sample_weight):
            # Weights are repetitions (integer weights act as repeated rows), but
            # weights summing to fewer than the rows they weight (e.g. normalized
            # to sum to 1) are read as relative: GCV needs a sample count. The
            # validation rows get the same factor (a calibration counts them).
            factor = len(sample_weight) / sample_weight.sum()
            sample_weight = sample_weight * factor
            weight_val = None if weight_val is None else weight_val * factor
        unweighted = bool(np.all(sample_weight == 1.0))
        C = (y2d - self._y_mean) / self._y_scale
        generator = torch.Generator()
        generator.set_state(self._rng_state)
        return _Run(
            net=self.module_,
            X=self._to_tensor(X),
            C=self._to_tensor(C),
            weight=None if unweighted else self._to_tensor(sample_weight),
            X_val=X_val,
            y_val=y_val,
            weight_val=weight_val,
            generator=generator,
            incremental=incremental,
            X_fit=X_fit,
            y_fit=y_fit,
        )

    def _epoch_loop(self, run, callback_ctx, n_epochs=None):
        """MLP-style epochs: record, stop early, recover from divergence."""
        n_epochs = self.max_iter if n_epochs is None else n_epochs
        retries, epoch, epoch_ctx = 0, 0, None
        while epoch < n_epochs:
            if epoch_ctx is None:  # a retried epoch keeps its context
                epoch_ctx = callback_ctx.subcontext(task_name="epoch")
                epoch_ctx.call_on_fit_task_begin(estimator=self)
            snapshot = self._snapshot(run)
            start = time.perf_counter()
            try:
                run.net.train()
                loss = self._train_epoch(run)
            except KeyboardInterrupt:
                self._restore(run, snapshot)
                warnings.warn(
                    "Training interrupted by the user; keeping the best weights so "
                    "far.",
                    UserWarning,
                    stacklevel=4,
                )
                return
            except (FloatingPointError, torch.linalg.LinAlgError):
                loss = math.nan
            if not math.isfinite(loss):
                retries = self._recover(run, snapshot, retries)
                continue
            epoch, retries = epoch + 1, 0
            stop = self._record_epoch(run, loss, time.perf_counter() - start)
            stop |= epoch_ctx.call_on_fit_task_end(
                estimator=self,
                X=run.X_fit,
                y=run.y_fit,
                reconstruction_attributes=self._reconstruction_attributes,
            )
            epoch_ctx = None
            if stop:
                return
        if not run.incremental:
            warnings.warn(
                f"{type(self).__name__}: the maximum number of epochs "
                f"(max_iter={self.max_iter}) was reached and the optimization "
                "has not converged yet.",
                ConvergenceWarning,
                stacklevel=4,
            )

    def _recover(self, run, snapshot, retries):
        """Undo a divergent epoch and halve the learning rate, a bounded number of
        times."""
        self._restore(run, snapshot)
        if retries >= _MAX_RETRIES:
            raise FloatingPointError(
                f"Training diverged (non-finite loss or head) {retries + 1} times in a "
                f"row, even after halving the learning rate {retries} times. Lower "
                "learning_rate_init, or scale the inputs (e.g. StandardScaler)."
            )
        self._scale_learning_rate(run, 0.5)
        if self.verbose:
            print("Non-finite loss: epoch undone, learning rate halved.")
        return retries + 1

    def _record_epoch(self, run, loss, seconds):
        """Append to the history; return True when training should stop."""
        self.n_iter_ += 1
        self.t_ += run.X.shape[0]
        self.loss_curve_.append(loss)
        self.head_alpha_curve_.append(self._current_head_alpha(run))
        message = f"Iteration {self.n_iter_}, loss = {loss:.8f}"
        if self.validation_scores_ is not None and run.X_val is not None:
            # Score the model fit would return now: these features with the
            # full-data head (the streaming head is a noisy proxy for it).
            self._solve_head(run)
            score = self._validation_score(
                run.y_val, self._predict_scaled(run.net, run.X_val), run.weight_val
            )
            self.validation_scores_.append(score)
            message += f", validation score = {score:.6f}"
            improved = score > self.best_validation_score_ + self.tol
            if score > self.best_validation_score_:
                self.best_validation_score_ = score
                run.best_state = self._snapshot(run)
        elif self.best_loss_ is not None:
            improved = loss < self.best_loss_ - self.tol
            self.best_loss_ = min(self.best_loss_, loss)
        else:  # partial_fit with early_stopping: no validation split to judge by
            improved = True
        self._record_iteration(run)
        if self.verbose:
            print(f"{message}, {seconds:.3f} s")
        if self._converged(run):
            return True
        run.n_iter_no_change_count = 0 if improved else run.n_iter_no_change_count + 1
        if run.n_iter_no_change_count > self.n_iter_no_change:
            if self.verbose:
                print(f"No improvement for {self.n_iter_no_change} epochs: stopping.")
            return True
        return False

    def _record_iteration(self, run):
        """Hook: append algorithm-specific history (default: nothing)."""

    def _converged(self, run):
        """Hook: an algorithm-specific convergence test (default: never)."""
        return False

    def _full_data_head_alpha(self, run):
        """``'gcv'`` for ``head_alpha='auto'``, else the fixed ridge weight."""
        return "gcv" if self.head_alpha == "auto" else self.head_alpha

    def _solve_head(self, run):
        """Solve the head on all training rows (GCV or the fixed ``head_alpha``)."""
        alpha = self._full_data_head_alpha(run)
        self.head_alpha_ = solve_head(run.net, run.X, run.C, run.weight, alpha)

    # ---------------------------------------------------------------- inference

    def predict(self, X):
        """Predict with the separable network.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Inputs, with the features seen in fit.

        Returns
        -------
        y : ndarray of shape (n_samples,) or (n_samples, n_outputs)
            In the dtype of ``X`` (float32 or float64).
        """
        X = self._validate_inference_input(X)
        y = self._predict_scaled(self.module_, X).astype(X.dtype, copy=False)
        return y.ravel() if self._y_1d else y

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

    def _validate_inference_input(self, X):
        """Fitted check and the same validation as fit, without resetting."""
        check_is_fitted(self)
        return validate_data(self, X, reset=False, dtype=(np.float64, np.float32))

    def _predict_scaled(self, net, X):
        """Network output in the original target units, float64, shape (n, c)."""
        # No thread changes here: the count is process-global, and predict may run
        # in threads; fit sets it (and restores it) around training only.
        with torch.no_grad():
            out = self._net_on_device(net)(self._to_tensor(X))
        return out.cpu().double().numpy() * self._y_scale + self._y_mean

    def _set_head_attributes(self):
        """``coef_``/``intercept_``: the head in the original target units."""
        W = self.module_.W.detach().cpu().double().numpy() * self._y_scale
        b = self.module_.b.detach().cpu().double().numpy() * self._y_scale
        b = b + self._y_mean
        self.coef_ = W[:, 0] if self._y_1d else W
        self.intercept_ = float(b[0]) if self._y_1d else b

    def _reconstruction_attributes(self):
        """What a callback needs to predict with the estimator mid-fit."""
        attributes = {"module_": copy.deepcopy(self.module_)}
        for name in ("n_features_in_", "feature_names_in_", "n_outputs_", "device_"):
            if hasattr(self, name):
                attributes[name] = getattr(self, name)
        return attributes

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

    def _n_threads(self, X):
        """Torch intra-op threads for this problem size.

        Measured on the 2-core dev VM (slimTrain epoch, 2000 rows, batch 200):
        width 64: 14.4 ms with 1 thread, 12.6 ms with 2; width 256: 144 vs 173
        ms; width 512: 639 vs 429 ms. Two threads also made tiny ops
        intermittently 100x slower there, so one thread is used unless the
        per-batch matrix work reaches that of a width-512 layer.
        """
        width = max(np.atleast_1d(self.hidden_layer_sizes).tolist() + [X.shape[1]])
        work = min(len(X), 200) * width * width
        return 1 if work < 200 * 512 * 512 else min(4, torch.get_num_threads() or 1)

    def __getstate__(self):
        state = self.__dict__.copy()
        if state.get("device_", "cpu") != "cpu":
            # Map every tensor (module, optimizer and solver state) to the CPU, so
            # a GPU-trained model loads and predicts on a CPU-only machine.
            parts = {k: state[k] for k in _TORCH_ATTRIBUTES if k in state}
            buffer = io.BytesIO()
            torch.save(parts, buffer)
            buffer.seek(0)
            state.update(torch.load(buffer, map_location="cpu", weights_only=False))
        return state

    @property
    def _n_features_out(self):
        """Number of learned features (for ``get_feature_names_out``)."""
        return self.module_.W.shape[0]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        tags.non_deterministic = False
        return tags


def _resolve_device(device):
    """'auto' -> 'cuda' when available, else 'cpu'; validate explicit devices."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        parsed = torch.device(device)
    except RuntimeError as error:
        raise ValueError(f"device={device!r} is not a valid torch device.") from error
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was requested but CUDA is not available.")
    if parsed.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:k]', got {device!r}.")
    return str(parsed)


def _draw_seed(random_state):
    """A torch seed from ``random_state``; ``None`` draws OS entropy so the
    user's global numpy RNG is left alone."""
    if random_state is None:
        return int(np.random.SeedSequence().generate_state(1)[0])
    return int(check_random_state(random_state).randint(np.iinfo(np.int32).max))


@contextmanager
def _torch_threads(n_threads):
    """Run with ``n_threads`` torch intra-op threads, then restore the user's."""
    previous = torch.get_num_threads()
    if n_threads == previous:
        yield
        return
    torch.set_num_threads(n_threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
