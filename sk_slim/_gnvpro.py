"""GNvpro estimators: Gauss-Newton on the variable-projection reduced objective."""

from numbers import Integral, Real

from sklearn.base import RegressorMixin, _fit_context
from sklearn.utils._param_validation import Interval, StrOptions

from ._base import _PATIENCE_OR_AUTO, _BaseSeparable
from .training import GNvproConfig, GNvproTrainer

__all__ = ["GNvproRegressor"]


class _BaseGNvpro(_BaseSeparable):
    """What the GNvpro regressor and classifier share: the trainer they build."""

    _history_attributes = {
        "grad_norm": "grad_norm_curve_",
        "trust_radius": "trust_radius_curve_",
        "work_units": "work_units_",
        "run": "run_curve_",
    }

    _auto_width = 16
    _step_name = "iterations"

    _parameter_constraints = {
        **_BaseSeparable._parameter_constraints,
        "krylov_max_iter": [Interval(Integral, 1, None, closed="left")],
        "krylov_tol": [Interval(Real, 0, 1, closed="neither")],
        "batch_size": [None, Interval(Integral, 2, None, closed="left")],
        "globalization": [StrOptions({"trust_region", "armijo"})],
        "alpha_init": [
            None,
            StrOptions({"auto"}),
            Interval(Real, 0, None, closed="left"),
        ],
    }
    # alpha_init='auto': the continuation's start when it is tried.
    _continuation_start = None

    def _make_trainer(self, net, *, incremental, with_derivatives):
        options = self._trainer_options()
        if with_derivatives:
            # alpha_init='auto' runs the path only: on noiseless values and
            # derivatives the run without it won 5 of 27 tune fits, and the
            # path alone had 1.03x the error of both runs in 0.45x the time
            # (user guide, "Values and derivatives").
            options["compare_without_continuation"] = False
        return GNvproTrainer(net, GNvproConfig(**options))

    def _trainer_options(self):
        """The :class:`~sk_slim.training.GNvproConfig` of these parameters."""
        auto = self.alpha_init == "auto"
        return {
            "alpha": self.alpha,
            "alpha_init": self._continuation_start if auto else self.alpha_init,
            # 'auto' with a validation split: also run without the path.
            "compare_without_continuation": auto and self._early_stopping,
            "head_alpha": self.head_alpha,
            "batch_size": self.batch_size,
            "krylov_max_iter": self.krylov_max_iter,
            "krylov_tol": self.krylov_tol,
            "globalization": self.globalization,
            "tol": self.tol,
        }

    def _finish_fit(self, trainer, net, fit):
        super()._finish_fit(trainer, net, fit)
        self.alpha_init_ = trainer.alpha_init


class GNvproRegressor(RegressorMixin, _BaseGNvpro):
    """Separable neural network regressor trained by GNvpro.

    The network is ``f(x) = phi(x; theta) W + b``. The head is eliminated
    exactly, ``W = W(theta)`` (ridge on the features, one SVD per evaluation),
    and the reduced objective is minimized over ``theta`` by Gauss-Newton with a
    truncated-CG inner solve, globalized by a trust region: no learning rate.
    Each iteration is one outer Gauss-Newton step on all the data (or on a fresh
    sub-sample with ``batch_size``). Targets are standardized internally.

    Parameters
    ----------
    hidden_layer_sizes : array-like of shape (n_layers,) or 'auto', default='auto'
        Widths of the default MLP feature extractor; the last is the number of
        learned features. ``'auto'``: two layers of 16, of ``2 n_outputs_``
        up to 64, or of ``n_outputs_`` beyond: ``m`` features confine the
        predictions to an ``m``-dimensional subspace of the outputs, and
        (16, 16) fitted 40 outputs of high rank to R^2 0.88 where (40, 40)
        reached 0.988 (measurements: the user guide). The
        width has no cap: for hundreds of outputs, set the sizes (or fit
        principal components of the targets).
        Narrower than the slimTrain estimators' (64, 64): each Gauss-Newton
        iteration costs passes in proportion to the Krylov budget, which must
        grow with the parameter count, and the GNvpro paper used width-8/16
        networks (measurements in the user guide).
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
    input_scaling : {'standard', 'robust', 'robust-clip'} or None, default='standard'
        How numeric input columns are scaled, fitted in ``fit`` (weighted by
        ``sample_weight``) and kept in ``input_encoder_``: ``'standard'``
        (mean and standard deviation, as ``StandardScaler``), ``'robust'``
        (median and interquartile range, as ``RobustScaler``), ``'robust-clip'``
        (robust, then the smooth clipping ``x / sqrt(1 + (x / 3)^2)`` of
        RealMLP-TD, Holzmueller et al. 2024), or None (as given). Inputs in
        any units: no scaler needed in front. A missing value (NaN) becomes
        the column's center, and a column with missing values at fit gets an
        indicator column (as ``SimpleImputer(add_indicator=True)``).
        ``'standard'``: on the benchmark suite's tune half GNvproRegressor had
        1.05 times the error with ``'robust-clip'`` at the geometric mean, up
        to 3 times on borehole (the user guide).
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
        ``MLPRegressor``: ``alpha / (2 n_samples) ||theta||^2``; with
        ``alpha_init``, the end of a decreasing path.
    alpha_init : 'auto', float or None, default='auto'
        Continuation on that penalty: iteration ``k`` uses
        ``alpha + alpha_init * 0.8**k``, so the first iterations fit smooth
        features under a strong penalty and early stopping picks the iterate
        with the best validation score along the path; None keeps ``alpha``
        throughout. The path needs about 40 iterations to come down to 1e-2:
        short runs should pass None.
        ``'auto'``: with early stopping, one run along the path from
        100 and, from the same network, random stream and validation
        split, a second run without it; the iterate of best validation
        score over both runs is kept (smooth, noisy or many-output targets
        want the path, jumps do not). Without early stopping, or with
        derivative data (``y_grad``), the path from 100 only. Both runs
        are one fit: its histories, ``n_iter_`` and the epochs callbacks
        see hold both, and ``run_curve_`` tells them apart; ``max_iter``
        bounds each run. Measurements: the user guide.
    head_alpha : 'auto' or float, default='auto'
        The head's ridge weight on the mean loss; ``'auto'`` chooses it by GCV at
        every outer iteration (held fixed within the iteration).
    max_iter : int, default=200
        Maximum number of outer Gauss-Newton iterations. 100 stopped 4 of the
        benchmark suite's 14 tune problems (measurements: the user guide).
    tol : float, default=1e-6
        Stop when the reduced gradient norm falls below ``tol`` times its first
        value; also the improvement below which an iteration counts as none.
        Below ``MLPRegressor``'s 1e-4: near-noiseless targets gain less than
        1e-4 of validation R^2 per iteration long before their error stops
        falling (measurements: the user guide).
    n_iter_no_change : int or 'auto', default='auto'
        Stop after this many iterations in a row without improvement.
        ``'auto'``: 10, and 20 with derivative data (``y_grad``), whose held-out
        score keeps climbing slowly (measurements: the user guide).
    early_stopping : bool or 'auto', default='auto'
        Hold out ``validation_fraction`` of the data, stop when the validation R^2
        stops improving and restore the best iteration. ``'auto'``: on from 20
        samples, holding out at least 20% below 200 samples, where a fit that
        runs on interpolates noise (measured on small noisy data: the user
        guide's :ref:`data-as-held`).
    validation_fraction : float, default=0.1
        Share of the training data held out with ``early_stopping``.
    warm_start : bool, default=False
        Continue from the previous fit's network (and trust radius).
    random_state : int, RandomState instance or None, default=None
        Seeds initialization, sub-sampling and the validation split through a
        ``torch.Generator``; torch's and numpy's global RNGs are left untouched.
    device : str, default='auto'
        ``'auto'`` (CUDA when available), ``'cpu'``, ``'cuda'`` or ``'cuda:k'``.
    dtype : {'float32', 'float64'}, default=None
        The network's dtype: float64 on CPU and float32 on CUDA by default; the
        head algebra always runs in float64.
    verbose : int, default=0
        Print one line per iteration.
    krylov_max_iter : int, default=20
        Conjugate-gradient iterations per outer iteration (each costs one
        forward-mode and one backward pass over the data).
    krylov_tol : float, default=1e-2
        Relative residual tolerance of the CG solve.
    batch_size : int, 'auto' or None, default='auto'
        Sub-sample size drawn afresh at every outer iteration (the head is then
        solved on the sub-sample); None uses all the data. ``'auto'``: all the
        data up to 10 000 training rows; above, a sample of 2000 rows that
        grows by 2% per iteration of a run until it holds all rows
        (sub-sampled Gauss-Newton with a geometric sample size, Friedlander and
        Schmidt 2012), so that early iterations on many rows cost little; the
        run without the continuation (``alpha_init='auto'``) starts again from
        2000. Measurements: the user guide.
    globalization : {'trust_region', 'armijo'}, default='trust_region'
        Steihaug-CG inside a trust region, or CG with Armijo backtracking.
    preconditioner : 'auto' or None, default='auto'
        ``'auto'`` preconditions CG with Kaufman's Gauss-Newton matrix (the
        exact one less the residual's terms, slightly damped) when forming it
        costs at most ~5e8 multiply-adds (rows x head rank x parameters^2, about
        20 ms on one core): small networks with few outputs. The trust region is
        then measured in that matrix's norm. None: plain CG. Measurements: the
        user guide.
    curvature_fraction : float in (0, 1] or None, default=0.5
        Share of the rows, drawn afresh at every iteration, whose Gauss-Newton
        matrix (and preconditioner) the inner CG solve uses; the gradient, the
        objective and the trust region's test stay on all rows (sub-sampled
        curvature, Byrd et al. 2011). Never fewer rows than give twice as many
        residuals as parameters; None uses all rows. Where the steps are limited
        by ``krylov_max_iter`` it can take about twice the iterations, so short
        fixed-length runs fit less. Measurements: the user guide.
    grad_weight : float, default=100.0
        With derivative data (``fit``'s ``y_grad``): the weight of each
        derivative residual ``d f / d x_j - g_j`` relative to a value
        residual, both on the network's scale (inputs as encoded, targets
        standardized). 100 had the lowest error on the benchmark's tune half
        of exact simulator gradients (25-400 runs; 10 and 30 within 7%, 1
        1.2 times; the user guide); for noisy derivatives a smaller weight,
        chosen by cross-validation, may do better.

    Attributes
    ----------
    coef_ : ndarray of shape (n_features_out, n_outputs) or (n_features_out,)
        Head weights in the original target units.
    intercept_ : ndarray of shape (n_outputs,) or float
        Head bias in the original target units.
    module_ : SeparableNet
        The fitted network (on standardized targets).
    head_alpha_ : float
        The head's ridge weight of the final full-data solve.
    alpha_init_ : float or None
        The continuation's start the fit kept (``alpha_init``, or for
        ``'auto'`` 100.0 or None): None when the returned iterate is of the
        run without the continuation.
    head_alpha_curve_ : list of float
        The GCV-chosen head ridge weight per iteration.
    loss_curve_ : list of float
        The reduced objective after each iteration.
    grad_norm_curve_ : list of float
        Norm of the reduced gradient at the start of each iteration.
    trust_radius_curve_ : list of float
        Trust radius after each iteration (nan with Armijo).
    work_units_ : list of float
        Cumulative passes over the (sub-sampled) data after each iteration.
    run_curve_ : list of int
        The run each iteration belongs to: 0 along the continuation (or the
        only run), 1 without it, restarted from the fit's starting network
        (``alpha_init='auto'``, or after converging while still on the path).
    n_iter_ : int
        Outer iterations run.
    t_ : int
        Training samples processed (per iteration, the rows used).
    validation_scores_ : list of float or None
        Validation R^2 per iteration with early stopping, else None.
    best_validation_score_ : float or None
        Best validation R^2 with early stopping, else None.
    best_loss_ : float or None
        Lowest objective without early stopping, else None.
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
    SlimTrainRegressor : Mini-batch training with a slimTik-solved head.

    References
    ----------
    Newman, Ruthotto, Hart, van Bloemen Waanders (2021), "Train Like a (Var)Pro:
    Efficient Training of Neural Networks with Variable Projection", SIAM J.
    Math. Data Sci. 3(4).

    Examples
    --------
    >>> from sklearn.datasets import make_friedman1
    >>> from sk_slim import GNvproRegressor
    >>> X, y = make_friedman1(n_samples=300, random_state=0)
    >>> model = GNvproRegressor(hidden_layer_sizes=(16,), max_iter=5, random_state=0)
    >>> model.fit(X, y).predict(X[:2]).shape
    (2,)
    """

    _continuation_start = 100.0

    # Early stopping at every size a split allows: below 200 rows a fit that
    # runs on interpolates noise (benchmarks/small_data_results.md, tune half).
    _auto_early_stopping_from = 20
    # n_iter_no_change='auto': 10 iterations, 20 with derivative data, whose
    # held-out score of noiseless values and derivatives still climbs after 10
    # iterations without gain. 20 cut the error 0.88x on the derivative
    # benchmark's tune half at 1.45x the time (25: 0.85x at 1.7x; user guide,
    # "Values and derivatives").
    _auto_n_iter_no_change = 10
    _auto_n_iter_no_change_with_derivatives = 20

    def _auto_hidden_width(self, n_outputs):
        # Twice the outputs up to 64: 8-40 outputs of high rank fitted better
        # at no measured cost (benchmarks/width_results.md, tune half).
        return max(self._auto_width, n_outputs, min(2 * n_outputs, 64))

    def __init__(
        self,
        hidden_layer_sizes="auto",
        activation="tanh",
        *,
        init="box",
        feature_extractor=None,
        feature_extractor_kwargs=None,
        input_scaling="standard",
        categorical_features="from_dtype",
        max_categories=8,
        alpha=1e-4,
        alpha_init="auto",
        head_alpha="auto",
        max_iter=200,
        tol=1e-6,
        n_iter_no_change="auto",
        early_stopping="auto",
        validation_fraction=0.1,
        warm_start=False,
        random_state=None,
        device="auto",
        dtype=None,
        verbose=0,
        krylov_max_iter=20,
        krylov_tol=1e-2,
        batch_size="auto",
        globalization="trust_region",
        preconditioner="auto",
        curvature_fraction=0.5,
        grad_weight=100.0,
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
        self.alpha_init = alpha_init
        self.head_alpha = head_alpha
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
        self.krylov_max_iter = krylov_max_iter
        self.krylov_tol = krylov_tol
        self.batch_size = batch_size
        self.globalization = globalization
        self.preconditioner = preconditioner
        self.curvature_fraction = curvature_fraction
        self.grad_weight = grad_weight

    _parameter_constraints = {
        **_BaseGNvpro._parameter_constraints,
        "n_iter_no_change": _PATIENCE_OR_AUTO,
        "batch_size": [
            None,
            StrOptions({"auto"}),
            Interval(Integral, 2, None, closed="left"),
        ],
        "preconditioner": [None, StrOptions({"auto"})],
        "curvature_fraction": [None, Interval(Real, 0, 1, closed="right")],
        "grad_weight": [Interval(Real, 0, None, closed="left")],
    }

    def _trainer_options(self):
        return {
            **super()._trainer_options(),
            "preconditioner": self.preconditioner,
            "curvature_fraction": self.curvature_fraction,
        }

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None, y_grad=None):
        """Train the network by GNvpro, then solve the head on all data.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training inputs, in any units (scaled by ``input_scaling``).
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Targets (standardized internally).
        sample_weight : array-like of shape (n_samples,), default=None
            Weights of the objective and of the head solves (as repetitions).
        y_grad : array-like of shape (n_samples, n_features) or \
                (n_samples, n_outputs, n_features), default=None
            Derivative data: ``y_grad[i, k, j] = d y[i, k] / d X[i, j]`` in
            the units of ``y`` and ``X`` (without the ``k`` axis for one
            output), e.g. from an adjoint solver. The model's input gradient
            is fitted to them alongside the values, each derivative residual
            weighted ``grad_weight`` in standardized units; the head stays an
            exact ridge solve over the stacked rows. NaN marks a missing entry
            (an entry missing for one output drops that derivative for all);
            categorical columns take NaN. Early stopping then scores the
            held-out values and derivatives together (``validation_scores_``:
            the R^2 of both, weighted as in the loss).
            Routed through ``Pipeline`` and ``GridSearchCV`` as a fit
            parameter (metadata routing: ``set_fit_request(y_grad=True)``).

        Returns
        -------
        self : GNvproRegressor
            The fitted estimator.
        """
        return self._fit(X, y, sample_weight, incremental=False, y_grad=y_grad)
