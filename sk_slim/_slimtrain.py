"""slimTrain estimators: mini-batch training with a slimTik-solved head (the
regressor and what the classifier shares with it)."""

from numbers import Integral, Real

from sklearn.base import RegressorMixin, _fit_context
from sklearn.utils._param_validation import Interval, StrOptions

from ._base import _PATIENCE_OR_AUTO, _BaseSeparable
from .training import (
    SlimTrainConfig,
    SlimTrainTrainer,
)

__all__ = ["SlimTrainRegressor"]


class _BaseSlimTrain(_BaseSeparable):
    """What the slimTrain regressor and classifier share: the trainer they build."""

    # The weight of the GCV that chooses the full-data head's ridge (1: GCV).
    _head_gcv_weight = 1.0

    _parameter_constraints = {
        **_BaseSeparable._parameter_constraints,
        "memory_depth": [Interval(Integral, 0, None, closed="left")],
        "sgcv_every": [
            StrOptions({"auto"}),
            Interval(Integral, 1, None, closed="left"),
        ],
        "solver": [StrOptions({"adam", "sgd", "lsgd"})],
        "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
        "batch_size": [
            StrOptions({"auto"}),
            Interval(Integral, 1, None, closed="left"),
        ],
        "shuffle": ["boolean"],
        "mgrit_iterations": [None, Interval(Integral, 1, None, closed="left")],
    }

    def _make_trainer(self, net, *, incremental, with_derivatives):
        config = SlimTrainConfig(
            memory_depth=self.memory_depth,
            head_alpha=self.head_alpha,
            solver="adam" if self.solver == "lsgd" else self.solver,
            learning_rate_init=self.learning_rate_init,
            alpha=self.alpha,
            batch_size=self.batch_size,
            shuffle=self.shuffle,
            streaming=incremental,
            head_update="exact" if self.solver == "lsgd" else "slimtik",
            mgrit_iterations=self.mgrit_iterations,
            head_gcv_weight=self._head_gcv_weight,
            sgcv_every=self.sgcv_every,
        )
        if self.mgrit_iterations is not None and self.solver == "lsgd":
            raise ValueError(
                "mgrit_iterations propagates slimTrain's mini-batch steps; it does "
                "not apply to solver='lsgd'."
            )
        return SlimTrainTrainer(net, config)


class SlimTrainRegressor(RegressorMixin, _BaseSlimTrain):
    """Separable neural network regressor trained by slimTrain.

    The network is ``f(x) = phi(x; theta) W + b``. Per mini-batch, the head
    ``(W, b)`` is updated by sampled limited-memory Tikhonov regularization
    (slimTik), with its regularization chosen by sampled GCV, so it needs no
    learning rate; then ``theta`` takes one Adam (or SGD) step with the new head.
    At the end of ``fit`` the head is solved once more on all training data, with
    its ridge weight chosen by a weighted GCV. Targets are standardized
    internally.

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
        The head's ridge weight on the mean loss: ``'auto'`` chooses it by sampled
        GCV per batch and by a weighted GCV (``n - 1.5 tr H``; user guide) in the
        full-data solves; a float fixes it in both.
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
    max_iter : int, default=400
        Maximum number of epochs. Twice ``MLPRegressor``'s: 200 stopped 6 of
        the benchmark suite's 14 tune problems (measurements: the user guide).
    tol : float, default=1e-6
        Improvement of the training loss (or validation score with
        ``early_stopping``) below which an epoch counts as no improvement.
        Below ``MLPRegressor``'s 1e-4: near-noiseless targets gain less than
        1e-4 of validation R^2 per epoch long before their error stops
        falling (measurements: the user guide).
    n_iter_no_change : int or 'auto', default='auto'
        Stop after this many epochs in a row without improvement. ``'auto'``:
        20, twice ``MLPRegressor``'s (epochs are cheap, the best one is
        restored, and validation scores plateau for about 10 epochs before
        improving again), and 50 with derivative data (``y_grad``), whose
        held-out score keeps climbing slowly (measurements: the user guide).
    early_stopping : bool or 'auto', default='auto'
        Hold out ``validation_fraction`` of the data, stop when the validation R^2
        (of the network with its full-data head) stops improving, and restore the
        weights of the best epoch. ``'auto'``: on from 20 samples, holding out
        at least 20% below 200 samples, where a fit that runs on interpolates
        noise (measured on small noisy data: the user guide's
        :ref:`data-as-held`).
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
    grad_weight : float, default=1.0
        With derivative data (``fit``'s ``y_grad``): the weight of each
        derivative residual relative to a value residual, on the network's
        scale (inputs as encoded, targets standardized). 1 had the lowest
        error on the benchmark's tune half of exact simulator gradients
        (0.3-100 within 1.18 times; the user guide).

    Attributes
    ----------
    coef_ : ndarray of shape (n_features_out, n_outputs) or (n_features_out,)
        Head weights in the original target units: ``predict(X) ==
        transform(X) @ coef_ + intercept_`` (features in rows, the transpose of
        scikit-learn's linear models).
    intercept_ : ndarray of shape (n_outputs,) or float
        Head bias in the original target units.
    module_ : SeparableNet
        The fitted network (on standardized targets).
    head_alpha_ : float
        The head's ridge weight of the final solve (mean-loss scale); after
        ``partial_fit``, slimTik's effective weight ``Lambda_k / (k + 1)``.
    head_alpha_curve_ : list of float
        slimTik's effective ridge weight ``Lambda_k / (k + 1)`` after each epoch.
    n_iter_ : int
        Epochs run.
    t_ : int
        Training samples seen.
    loss_curve_ : list of float
        Training loss per epoch: half the mean squared error on standardized
        targets, averaged over the batches, each with the head just fitted to it
        (so slightly optimistic); the L2 term on ``theta`` is not included.
    validation_scores_ : list of float or None
        Validation R^2 per epoch with ``early_stopping``, else None.
    best_validation_score_ : float or None
        Best validation R^2 with ``early_stopping``, else None.
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
        Number of outputs.
    device_ : str
        The device the network was trained on.

    See Also
    --------
    sklearn.neural_network.MLPRegressor : The same network trained end to end.

    References
    ----------
    Newman, Chung, Chung, Ruthotto (2022), "slimTrain - A Stochastic
    Approximation Method for Training Separable Deep Neural Networks",
    SIAM J. Sci. Comput. 44(4), A2322-A2348.

    Examples
    --------
    >>> from sklearn.datasets import make_friedman1
    >>> from sk_slim import SlimTrainRegressor
    >>> X, y = make_friedman1(n_samples=300, random_state=0)
    >>> model = SlimTrainRegressor(max_iter=20, random_state=0).fit(X, y)
    >>> model.predict(X[:2]).shape
    (2,)
    """

    # Early stopping at every size a split allows: below 200 rows a fit that
    # runs on interpolates noise (benchmarks/small_data_results.md, tune half).
    _auto_early_stopping_from = 20
    # The full-data heads' ridge by weighted GCV (Chung, Nagy and O'Leary,
    # 2008): where the head's 65 coefficients are a large share of the rows,
    # plain GCV took ridge weights near 1e-9 and coefficients in the hundreds,
    # and predictions far outside the targets' range (test R² -1.0 at 100 rows);
    # with many rows the weight hardly moves the choice. 1.5 was chosen on the
    # tune half (user guide, "Few noisy rows").
    _head_gcv_weight = 1.5
    # n_iter_no_change='auto' with derivative data: the held-out score, then of
    # n (1 + d) residuals from a simulator, still climbs after 20 epochs without
    # gain (below 200 rows an epoch is one step). Patience 50 cut the error 0.90x
    # on the derivative benchmark's tune half at 1.5x the time (100: 0.86x at
    # 2.2x); on small noisy data without derivatives it put 20 fits below a
    # linear model where 20 epochs put 18 (user guide, "Values and derivatives").
    _auto_n_iter_no_change_with_derivatives = 50

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
        max_iter=400,
        tol=1e-6,
        n_iter_no_change="auto",
        early_stopping="auto",
        validation_fraction=0.1,
        warm_start=False,
        random_state=None,
        device="auto",
        dtype=None,
        verbose=0,
        grad_weight=1.0,
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
        self.grad_weight = grad_weight

    _parameter_constraints = {
        **_BaseSlimTrain._parameter_constraints,
        "n_iter_no_change": _PATIENCE_OR_AUTO,
        "grad_weight": [Interval(Real, 0, None, closed="left")],
    }

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None, y_grad=None):
        """Train the network by slimTrain, then solve the head on all data.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training inputs, in any units (scaled by ``input_scaling``).
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Targets (standardized internally).
        sample_weight : array-like of shape (n_samples,), default=None
            Weights of the loss and of the head solves (as repetitions).
        y_grad : array-like of shape (n_samples, n_features) or \
                (n_samples, n_outputs, n_features), default=None
            Derivative data, ``d y / d X``, as in
            :meth:`GNvproRegressor.fit <sk_slim.GNvproRegressor.fit>`: each
            mini-batch's slimTik update and loss take its rows' derivative
            rows too, and early stopping scores the held-out values and
            derivatives together. Not with ``solver='lsgd'`` or
            ``mgrit_iterations``.

        Returns
        -------
        self : SlimTrainRegressor
            The fitted estimator.
        """
        self._check_derivative_solver(y_grad)
        return self._fit(X, y, sample_weight, incremental=False, y_grad=y_grad)

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, sample_weight=None, y_grad=None):
        """Run one slimTrain epoch over ``(X, y)``, continuing any previous state.

        The head stays the streaming slimTik head (no full-data solve), so memory
        is bounded by the batch size and ``memory_depth``, not by the data seen.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            A chunk of training inputs.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Its targets (standardized with the first chunk's mean and scale).
        sample_weight : array-like of shape (n_samples,), default=None
            Weights of the chunk's rows.
        y_grad : array-like of shape (n_samples, n_features) or \
                (n_samples, n_outputs, n_features), default=None
            The chunk's derivative data, as in :meth:`fit` (its derivatives
            are standardized with the first chunk's target scale).

        Returns
        -------
        self : SlimTrainRegressor
            The fitted estimator.
        """
        self._check_derivative_solver(y_grad)
        return self._fit(X, y, sample_weight, incremental=True, y_grad=y_grad)

    def _check_derivative_solver(self, y_grad):
        if y_grad is not None and (
            self.solver == "lsgd" or self.mgrit_iterations is not None
        ):
            raise ValueError(
                "y_grad (derivative data) needs slimTrain's own steps: not "
                "solver='lsgd' or mgrit_iterations."
            )
