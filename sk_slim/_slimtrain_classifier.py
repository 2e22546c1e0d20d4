"""SlimTrainClassifier: slimTrain on one-hot targets, with a logistic or a
calibrated least-squares final head."""

import numpy as np
import torch
from sklearn.base import _fit_context
from sklearn.utils._param_validation import StrOptions

from ._classifier import _SeparableClassifierMixin
from ._slimtrain import _BaseSlimTrain
from .linalg import fit_temperature
from .training import features_of, solve_logistic_head

__all__ = ["SlimTrainClassifier"]


class SlimTrainClassifier(_SeparableClassifierMixin, _BaseSlimTrain):
    """Separable neural network classifier trained by slimTrain.

    The network is ``f(x) = phi(x; theta) W + b`` with one output per class.
    As in the slimTrain paper, the head is a least-squares fit to one-hot
    targets: per mini-batch it is updated by sampled limited-memory Tikhonov
    regularization (slimTik) with sampled GCV, then ``theta`` takes one Adam (or
    SGD) step. At the end of ``fit`` the head is solved once more on all
    training data (``final_head``): for three or more classes by default as a
    multinomial logistic regression on the learned features, whose softmax is
    ``predict_proba``; for two, as least squares with GCV, whose outputs ``S``
    are not probabilities: ``predict_proba`` is then ``softmax(S / T)`` with a
    temperature ``T`` fitted by minimizing the log-loss (against slightly
    smoothed targets, so that it stays finite when the scores separate the
    classes) on the validation split, or on the training data without one.

    Parameters
    ----------
    hidden_layer_sizes : array-like of shape (n_layers,) or 'auto', default=(64, 64)
        Widths of the default MLP feature extractor; the last is the number of
        learned features (``'auto'``: two layers of 64, or of the number of
        outputs when larger).
    activation : {'identity', 'logistic', 'tanh', 'relu'}, default='tanh'
        Activation of the default MLP feature extractor.
    init : {'glorot', 'box'}, default='box'
        Initialization of the default MLP feature extractor: the box
        initialization of Cyr et al. (2020), which draws every unit's
        hyperplane through the bounding box of its inputs on the training rows
        (per feature, from the encoded inputs) and
        redraws those that miss every row, or scikit-learn's uniform Glorot.
        Box applies to every activation (ReLU: no dead units; tanh and
        logistic: each unit's steep part crosses the data). It is the default
        because it fitted better on the benchmark suite's tune half
        (measurements: the user guide). Not used with ``feature_extractor``.
    feature_extractor : callable, default=None
        ``feature_extractor(n_inputs, **feature_extractor_kwargs)`` returns an
        ``nn.Module`` mapping (n, n_inputs) to (n, n_features_out), e.g. an
        ``nn.Module`` subclass; ``n_inputs`` counts the encoded input columns
        (``n_features_in_`` when all are numeric without missing values).
        Overrides ``hidden_layer_sizes``/``activation``.
        It is seeded from ``random_state`` in a fork of torch's global RNG.
        A factory with a ``generator=None`` keyword (``make_mlp``,
        ``make_resnet``) is given a CPU generator seeded from ``random_state``;
        a generator in ``feature_extractor_kwargs`` is copied for each fit.
    feature_extractor_kwargs : dict, default=None
        Keyword arguments for ``feature_extractor``.
    input_scaling : {'standard', 'robust', 'robust-clip'} or None, default='robust-clip'
        How numeric input columns are scaled, fitted in ``fit`` (weighted by
        ``sample_weight``) and kept in ``input_encoder_``: ``'standard'``
        (mean and standard deviation, as ``StandardScaler``), ``'robust'``
        (median and interquartile range, as ``RobustScaler``), ``'robust-clip'``
        (robust, then the smooth clipping ``x / sqrt(1 + (x / 3)^2)`` of
        RealMLP-TD, Holzmueller et al. 2024), or None (as given). Inputs in
        any units: no scaler needed in front. A missing value (NaN) becomes
        the column's center, and a column with missing values at fit gets an
        indicator column (as ``SimpleImputer(add_indicator=True)``).
        ``'robust-clip'`` because it fitted the benchmark suite's tune half
        best (0.96 times the error of ``'standard'`` at the geometric mean for
        the regressor, 0.94 for the classifier; the user guide).
    categorical_features : array-like of {bool, int, str} or 'from_dtype' or None, \
            default='from_dtype'
        The categorical columns, as in ``HistGradientBoostingRegressor``: a
        boolean mask, indices, or names; ``'from_dtype'``: the dataframe
        columns of dtype ``category`` (pandas) or ``Categorical``/``Enum``
        (polars). String (``object``) columns must be declared or converted to
        ``category``. Each is one-hot encoded; missing values are a category.
    max_categories : int, default=8
        Most one-hot columns per categorical column (``OneHotEncoder``'s
        ``max_categories``): the most frequent ``max_categories - 1``
        categories keep a column each and the rest share one; a category
        unseen at fit encodes as zeros. 8, as RealMLP-TD's one-hot limit:
        on the tune half's real data with more categories it fitted better
        than 20 and 64 (the user guide).
    alpha : float, default=1e-4
        L2 penalty on the extractor's weights (not biases), as in
        ``MLPRegressor``: ``alpha / (2 batch_size) ||theta||^2`` per batch.
    head_alpha : 'auto' or float, default='auto'
        The least-squares head's ridge weight on the mean loss (one-hot
        targets): ``'auto'`` chooses it by sampled GCV per batch and by GCV in the
        final solve; a float fixes it in both. A logistic final head (see
        ``final_head``) has its own ridge weight, on the cross-entropy's scale.
    memory_depth : int, default=5
        Number ``r`` of previous batches whose features slimTik remembers.
    sgcv_every : int or 'auto', default='auto'
        Sampled GCV chooses slimTik's regularization increment on the first
        mini-batch and on every ``sgcv_every``-th after it; the batches between
        keep the regularization and take their update by one linear solve
        instead of an eigendecomposition and a sweep of 61 trial points.
        ``'auto'`` is ``min(8, mini-batches per epoch)``: at least once an
        epoch. 1 is the published method (user guide, "Sampled GCV").
    solver : {'adam', 'sgd', 'lsgd'}, default='adam'
        Optimizer of the extractor's parameters (SGD with Nesterov momentum
        0.9). ``'lsgd'`` is the hybrid least-squares/gradient-descent method of
        Cyr et al. (2020): Adam on the extractor, and instead of slimTik the
        exact ridge head on all training rows (GCV, or ``head_alpha``) solved
        before every step; ``batch_size='auto'`` then means full batches, as
        published, and ``memory_depth`` is not used.
    learning_rate_init : float, default=1e-2
        Learning rate of the extractor's optimizer. Ten times ``MLPRegressor``'s
        default: with the head solved per batch, the gradient on ``theta`` only
        carries what the features cannot yet explain, and 1e-3 left them close to
        their random initialization (measurements: the user guide).
    batch_size : int or 'auto', default='auto'
        Mini-batch size; ``'auto'`` is ``min(200, n_samples)`` (all rows with
        ``solver='lsgd'``).
    shuffle : bool, default=True
        Shuffle the rows every epoch.
    mgrit_iterations : int, default=None
        Propagate a ``make_resnet`` extractor (``feature_extractor=make_resnet``)
        forward, and the loss's gradient backward, by this many iterations of
        multigrid reduction in time per step instead of block after block: the
        inexact layer-parallel propagation of Guenther et al. (2020), needing
        the ``parallel`` extra (``sk_slim.training.mgrit``). Prediction and
        the final head use the exact forward pass. None: serial propagation.
    max_iter : int, default=200
        Maximum number of epochs.
    tol : float, default=1e-4
        Improvement of the training loss (or validation score with
        ``early_stopping``) below which an epoch counts as no improvement.
    n_iter_no_change : int, default=20
        Stop after this many epochs in a row without improvement. Twice
        ``MLPRegressor``'s: epochs are cheap, the best one is restored, and
        validation scores plateau for about 10 epochs before improving again
        (measurements: the user guide).
    early_stopping : bool or 'auto', default='auto'
        Hold out ``validation_fraction`` of the data (stratified), stop when the
        validation Brier score (of the outputs of the network with its full-data
        head) stops improving, and restore the weights of the best epoch.
        ``'auto'`` does so from 200 samples on. The held-out data also calibrate
        the probabilities.
    validation_fraction : float, default=0.1
        Share of the training data held out with ``early_stopping``.
    warm_start : bool, default=False
        Continue from the previous fit's network instead of starting afresh.
    random_state : int, RandomState instance or None, default=None
        Seeds initialization, shuffling and the validation split through a
        ``torch.Generator``; torch's and numpy's global RNGs are left untouched.
    device : str, default='auto'
        ``'auto'`` (CUDA when available), ``'cpu'``, ``'cuda'`` or ``'cuda:k'``.
    dtype : {'float32', 'float64'}, default=None
        The network's dtype: float64 on CPU and float32 on CUDA by default; the
        head algebra always runs in float64.
    verbose : int, default=0
        Print one line per epoch.
    class_weight : dict, 'balanced' or None, default=None
        Weights of the classes, multiplying ``sample_weight``: ``{label:
        weight}``, or ``'balanced'`` for ``n_samples / (n_classes *
        np.bincount(y))`` (not with ``partial_fit``).
    final_head : {'auto', 'logistic', 'least_squares'}, default='auto'
        The head ``fit`` returns. ``'logistic'``: a multinomial logistic
        regression on the learned features (Newton-Krylov), its ridge weight
        the one of least validation log-loss along a path from ``100 /
        n_samples`` to ``0.01 / n_samples`` with ``early_stopping``, else ``1 /
        n_samples`` (``LogisticRegression(C=1.0)``); ``predict_proba`` is its
        softmax. ``'least_squares'``: the ridge head on one-hot targets that
        training uses, with a fitted temperature for ``predict_proba``.
        ``'auto'``: logistic for three or more classes, where least squares
        can mask a class whose scores lie between two others', least squares
        for two. ``partial_fit`` always keeps the streamed least-squares head.
        Measurements: the user guide.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The class labels.
    coef_ : ndarray of shape (n_features_out, n_classes)
        Head weights: ``decision_function`` is built from
        ``transform(X) @ coef_ + intercept_`` (features in rows).
    intercept_ : ndarray of shape (n_classes,)
        Head bias.
    temperature_ : float
        The fitted temperature ``T`` of ``predict_proba`` (``inf``: the outputs
        carried no signal and the probabilities are uniform); 1 for a logistic
        head.
    final_head_ : {'logistic', 'least_squares'}
        The head the model holds (see ``final_head``).
    module_ : SeparableNet
        The fitted network.
    head_alpha_ : float
        The head's ridge weight of the final solve (mean-loss scale; of the
        mean cross-entropy for a logistic head); after ``partial_fit``,
        slimTik's effective weight ``Lambda_k / (k + 1)``.
    head_alpha_curve_ : list of float
        slimTik's effective ridge weight ``Lambda_k / (k + 1)`` after each epoch.
    n_iter_ : int
        Epochs run.
    t_ : int
        Training samples seen.
    loss_curve_ : list of float
        Training loss per epoch: half the mean squared error to the one-hot
        targets, averaged over the batches, each with the head just fitted to it.
    validation_scores_ : list of float or None
        Per epoch with ``early_stopping``, else None: the negative Brier score of
        the outputs on the validation split, ``-mean_i ||S_i - y_i||^2`` with
        one-hot ``y_i`` (the least-squares loss; it keeps improving while the
        accuracy stalls).
    best_validation_score_ : float or None
        Best validation score with ``early_stopping``, else None.
    best_loss_ : float or None
        Lowest training loss without ``early_stopping``, else None.
    n_features_in_ : int
        Number of input features.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Input feature names, when ``X`` has string column names.
    input_encoder_ : InputEncoder
        The fitted input encoding (scaling, missing values, categories) the
        network's inputs come from.
    n_outputs_ : int
        Number of head outputs (the number of classes).
    device_ : str
        The device the network was trained on.

    See Also
    --------
    GNvproClassifier : A cross-entropy (logistic) head, solved exactly.
    sklearn.neural_network.MLPClassifier : The same network trained end to end.

    References
    ----------
    Newman, Chung, Chung, Ruthotto (2022), "slimTrain - A Stochastic
    Approximation Method for Training Separable Deep Neural Networks",
    SIAM J. Sci. Comput. 44(4), A2322-A2348.

    Guo, Pleiss, Sun, Weinberger (2017), "On Calibration of Modern Neural
    Networks", ICML (temperature scaling).

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sk_slim import SlimTrainClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> model = SlimTrainClassifier(max_iter=20, random_state=0).fit(X, y)
    >>> model.predict_proba(X[:2]).shape
    (2, 3)
    """

    _parameter_constraints = {
        **_BaseSlimTrain._parameter_constraints,
        "class_weight": [None, dict, StrOptions({"balanced"})],
        "final_head": [StrOptions({"auto", "logistic", "least_squares"})],
    }

    def __init__(
        self,
        hidden_layer_sizes=(64, 64),
        activation="tanh",
        *,
        init="box",
        feature_extractor=None,
        feature_extractor_kwargs=None,
        input_scaling="robust-clip",
        categorical_features="from_dtype",
        max_categories=8,
        alpha=1e-4,
        head_alpha="auto",
        memory_depth=5,
        sgcv_every="auto",
        solver="adam",
        learning_rate_init=1e-2,
        batch_size="auto",
        shuffle=True,
        mgrit_iterations=None,
        max_iter=200,
        tol=1e-4,
        n_iter_no_change=20,
        early_stopping="auto",
        validation_fraction=0.1,
        warm_start=False,
        random_state=None,
        device="auto",
        dtype=None,
        verbose=0,
        class_weight=None,
        final_head="auto",
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.init = init
        self.feature_extractor = feature_extractor
        self.feature_extractor_kwargs = feature_extractor_kwargs
        self.input_scaling = input_scaling
        self.categorical_features = categorical_features
        self.max_categories = max_categories
        self.alpha = alpha
        self.head_alpha = head_alpha
        self.memory_depth = memory_depth
        self.sgcv_every = sgcv_every
        self.solver = solver
        self.learning_rate_init = learning_rate_init
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.mgrit_iterations = mgrit_iterations
        self.max_iter = max_iter
        self.tol = tol
        self.n_iter_no_change = n_iter_no_change
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.warm_start = warm_start
        self.random_state = random_state
        self.device = device
        self.dtype = dtype
        self.verbose = verbose
        self.class_weight = class_weight
        self.final_head = final_head

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Train the network by slimTrain, solve the head, calibrate.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training inputs (standardize them, e.g. in a Pipeline).
        y : array-like of shape (n_samples,)
            Class labels (any type ``np.unique`` sorts).
        sample_weight : array-like of shape (n_samples,), default=None
            Weights of the loss and of the head solves (as repetitions).

        Returns
        -------
        self : SlimTrainClassifier
            The fitted estimator.
        """
        return self._fit(X, y, sample_weight, incremental=False)

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """Run one slimTrain epoch over ``(X, y)``, continuing any previous state.

        The head stays the streaming slimTik head (no full-data solve); the
        temperature is refitted on the chunk.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            A chunk of training inputs.
        y : array-like of shape (n_samples,)
            Its class labels.
        sample_weight : array-like of shape (n_samples,), default=None
            Weights of the chunk's rows.
        classes : array-like of shape (n_classes,), default=None
            All the classes; required on the first call (a chunk may miss some).

        Returns
        -------
        self : SlimTrainClassifier
            The estimator, one epoch further.
        """
        if classes is None and not hasattr(self, "module_"):
            raise ValueError("classes must be passed on the first call to partial_fit.")
        return self._fit(X, y, sample_weight, incremental=True, classes=classes)

    def _validation_score(self, y_val, scores, sample_weight):
        """Negative Brier score of the outputs: minus the mean squared distance
        to the one-hot targets, the loss the head minimizes.

        Measured (benchmarks/README.md, archived classifier benchmark): stopping
        on validation accuracy, which stalls for 20 epochs while the features
        still improve, stopped lr=1e-4 at 27 epochs with test accuracy 0.61 on a
        4-class problem; on the Brier score it ran on to 0.82.
        """
        squared = ((scores - y_val) ** 2).sum(axis=1)
        return -float(np.average(squared, weights=sample_weight))

    def _calibrate(self, net, fit):
        """Replace the trained head by a logistic one, or fit the temperature of
        ``predict_proba`` to the least-squares head (``final_head_``)."""
        self.final_head_ = self._final_head(fit)
        if self.final_head_ == "logistic":
            self.head_alpha_ = self._solve_logistic_head(net, fit)
            self.temperature_ = 1.0
            return
        beta = self._fit_inverse_temperature(net, fit)
        self.temperature_ = 1.0 / beta if beta > 0 else float("inf")

    def _final_head(self, fit):
        if fit.incremental:  # partial_fit keeps the streamed head
            return "least_squares"
        if self.final_head == "auto":
            # Least squares on one-hot targets can mask a class whose scores lie
            # between two others' (three or more classes); two cannot be.
            return "logistic" if len(self.classes_) > 2 else "least_squares"
        return self.final_head

    def _solve_logistic_head(self, net, fit):
        """The multinomial logistic regression on the learned features: its
        ridge weight is the one of least validation log-loss along a path when
        there is a validation split, else ``1 / n_samples`` (the penalty of
        ``LogisticRegression(C=1.0)``)."""
        data, validation = fit.data, fit.validation
        if validation is None:
            return solve_logistic_head(
                net, data.X, data.C, data.weight, 1.0 / data.n_effective, rows=data.rows
            )
        return self._validated_logistic_head(net, fit)

    def _fit_inverse_temperature(self, net, fit):
        """``beta`` minimizing the log-loss of ``softmax(beta S)``: on the
        validation split when there is one, else on the training data."""
        if fit.validation is not None:
            validation = fit.validation
            S = self._to_tensor(self._predict_scaled(net, validation.X))
            Y = self._to_tensor(validation.y)
            weight = self._to_tensor(validation.weight)
        else:
            with torch.no_grad():
                S = net.head(features_of(net, fit.data.X))
            Y, weight = fit.data.C, fit.data.weight
        return fit_temperature(S, Y.argmax(dim=1), weight, rows=fit.data.rows)
