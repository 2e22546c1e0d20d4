"""Calibration of the regressors' ``predict(X, return_std=True)``.

Run from the repository root (needs the ``bench`` extra: mapie)::

    .venv/bin/python benchmarks/bench_calibration.py > benchmarks/calibration_results.md

SlimTrainRegressor and GNvproRegressor (defaults, ``random_state=0``) against a
Gaussian process (Matérn 5/2 with ARD length scales + white noise,
``normalize_y=True``) and BayesianRidge on random Fourier features, on generated
problems (homoscedastic and heteroscedastic noise) and ``load_diabetes``:

- Gaussian intervals ``y_mean ± 1.645 y_std`` (nominal 90%): test coverage, mean
  width (in units of the training targets' std), Gaussian NLL (of the targets
  standardized by the training std, mean over test points), z-RMS (the root mean
  square of ``(y - y_mean) / y_std``: 1 if the std is right on average) and fit
  seconds, the estimator fitted on the whole training split.
- MAPIE's split conformal intervals (``SplitConformalRegressor``,
  ``confidence_level=0.9``, ``prefit=True``, ``conformity_score="std_normalized"``:
  ``|y - y_mean| / y_std``): the estimator fitted on 60% of the training split,
  conformalized on the other 40%; coverage and width.

Multi-output problems (the CDR surrogate) average every metric over the outputs;
MAPIE runs on each output separately.
"""

import sys
import time
from dataclasses import dataclass

import numpy as np
from _common import Split, benchmark_conditions, split_and_scale, timed_fit, warm_up
from mapie.regression import SplitConformalRegressor
from scipy.spatial.distance import pdist
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.datasets import (
    load_diabetes,
    make_friedman1,
    make_friedman2,
    make_friedman3,
    make_regression,
)
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel
from sklearn.kernel_approximation import RBFSampler
from sklearn.linear_model import BayesianRidge
from sklearn.metrics import r2_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from sk_slim import GNvproRegressor, SlimTrainRegressor
from sk_slim.datasets import make_cdr_surrogate, make_peaks

CONFIDENCE = 0.9
Z90 = 1.6448536269514722  # the standard normal's 95% quantile
N_TRAIN, N_TEST = 1000, 2000  # generated problems (the CDR surrogate: 400 rows)
CONFORMALIZE_FRACTION = 0.4  # of the training split, for MAPIE
RFF_COMPONENTS = 500
RFF_GAMMA_FACTORS = (0.25, 0.5, 1.0, 2.0, 4.0)  # × the median heuristic
SK_SLIM = ("SlimTrainRegressor", "GNvproRegressor")
BASELINE = "RFF + BayesianRidge"

# ---------------------------------------------------------------------- problems


@dataclass(frozen=True)
class Problem:
    """A split, its noise class, and the test points' true noise std (if known)."""

    split: Split
    noise: str  # "homoscedastic", "heteroscedastic" or "real"
    description: str
    test_noise_std: np.ndarray | None = None


def _split_sized(X, y, n_train, noise_std=None):
    """``n_train`` rows to train (``random_state=0``), the rest to test, X
    standardized on the training rows; also the test rows' noise std."""
    split = split_and_scale(X, y, train_size=n_train)
    if noise_std is None:
        return split, None
    # The same permutation as the split's (same sizes, same random_state).
    return split, train_test_split(noise_std, train_size=n_train, random_state=0)[1]


def _generate(f, noise_std, low, high, n_features, n_samples, seed=0):
    """``y = f(X) + noise_std(X) ε`` with X uniform on ``[low, high]^d``; also
    the rows' noise std."""
    rng = np.random.RandomState(seed)
    X = rng.uniform(low, high, size=(n_samples, n_features))
    sd = noise_std(X)
    return X, f(X) + sd * rng.standard_normal(n_samples), sd


def _friedman1_mean(X):
    return (
        10 * np.sin(np.pi * X[:, 0] * X[:, 1])
        + 20 * (X[:, 2] - 0.5) ** 2
        + 10 * X[:, 3]
        + 5 * X[:, 4]
    )


def _smooth(X):
    return (
        np.exp(-(X**2).sum(axis=1)) * np.cos(2 * X[:, 0])
        + 0.5 * np.sin(np.pi * X[:, 1]) * X[:, 2]
    )


def load_problems():
    """``{name: Problem}``: 11 problems, generated with ``random_state=0``
    (friedman1_hetero: 1, so that its X differ from friedman1's)."""
    n = N_TRAIN + N_TEST
    homoscedastic = {
        "friedman1": (make_friedman1(n, noise=1.0, random_state=0), "noise 1"),
        "friedman2": (make_friedman2(n, noise=125.0, random_state=0), "noise 125"),
        "friedman3": (make_friedman3(n, noise=0.1, random_state=0), "noise 0.1"),
        "peaks": (make_peaks(n, noise=0.3, random_state=0), "noise 0.3"),
        "linear20": (
            make_regression(
                n, n_features=20, n_informative=10, noise=50.0, random_state=0
            ),
            "make_regression, 20 features (10 informative), noise 50",
        ),
        "smooth3": (
            _generate(_smooth, lambda X: np.full(len(X), 1e-3), -1, 1, 3, n)[:2],
            "smooth 3-D function, noise 1e-3 (nearly noiseless)",
        ),
    }
    problems = {}
    for name, ((X, y), description) in homoscedastic.items():
        split, _ = _split_sized(X, y, N_TRAIN)
        problems[name] = Problem(split, "homoscedastic", description)
    cdr = make_cdr_surrogate(400 + N_TEST, n_sensors=16, noise=0.01, random_state=0)
    problems["cdr16"] = Problem(
        _split_sized(*cdr, 400)[0],
        "homoscedastic",
        "make_cdr_surrogate, 55 → 16 outputs, noise 0.01, 400 training rows",
    )
    problems["diabetes"] = Problem(
        split_and_scale(*load_diabetes(return_X_y=True)),
        "real",
        "load_diabetes, 75/25 split (331 training rows)",
    )
    heteroscedastic = {
        "hetero1d": (
            _generate(
                lambda X: np.sin(2 * X[:, 0]) + 0.3 * X[:, 0],
                lambda X: 0.05 + 0.3 * np.abs(X[:, 0]),
                -3,
                3,
                1,
                n,
            ),
            "sin(2x) + 0.3x on [-3, 3], noise std 0.05 + 0.3 abs(x)",
        ),
        "hetero2d": (
            _generate(
                lambda X: np.sin(X[:, 0]) * np.cos(X[:, 1]),
                lambda X: 0.05 + 0.2 * np.linalg.norm(X, axis=1),
                -2,
                2,
                2,
                n,
            ),
            "sin(x1) cos(x2) on [-2, 2]², noise std 0.05 + 0.2‖x‖",
        ),
        "friedman1_hetero": (
            _generate(_friedman1_mean, lambda X: 2 * X[:, 0], 0, 1, 10, n, seed=1),
            "friedman1's mean, noise std 2 x1 (0 to 2, mean 1)",
        ),
    }
    for name, ((X, y, sd), description) in heteroscedastic.items():
        split, test_sd = _split_sized(X, y, N_TRAIN, sd)
        problems[name] = Problem(split, "heteroscedastic", description, test_sd)
    return problems


# ----------------------------------------------------------------------- methods


class RandomFeatureBayesianRidge(RegressorMixin, BaseEstimator):
    """BayesianRidge on random Fourier features (``RBFSampler``), one per output.

    ``gamma`` is the median heuristic (1 / the median squared distance between
    training rows) times the factor of :data:`RFF_GAMMA_FACTORS` with the largest
    log marginal likelihood, summed over the outputs.
    """

    def __init__(self, n_components=RFF_COMPONENTS, random_state=0):
        self.n_components = n_components
        self.random_state = random_state

    def _fit_gamma(self, X, Y, gamma):
        sampler = RBFSampler(
            gamma=gamma, n_components=self.n_components, random_state=self.random_state
        ).fit(X)
        Z = sampler.transform(X)
        models = [BayesianRidge(compute_score=True).fit(Z, y) for y in Y.T]
        return sampler, models, sum(model.scores_[-1] for model in models)

    def fit(self, X, y):
        self._1d = y.ndim == 1
        Y = y.reshape(len(y), -1)
        rows = np.random.RandomState(0).permutation(len(X))[:500]
        median = 1.0 / np.median(pdist(X[rows], "sqeuclidean"))
        fits = [self._fit_gamma(X, Y, f * median) for f in RFF_GAMMA_FACTORS]
        self.sampler_, self.models_, _ = max(fits, key=lambda fit: fit[2])
        self.gamma_ = self.sampler_.gamma
        return self

    def predict(self, X, return_std=False):
        Z = self.sampler_.transform(X)
        out = [model.predict(Z, return_std=True) for model in self.models_]
        mean = np.column_stack([m for m, _ in out])
        std = np.column_stack([s for _, s in out])
        if self._1d:
            mean, std = mean.ravel(), std.ravel()
        return (mean, std) if return_std else mean


def gaussian_process(n_features):
    """Matérn 5/2 with ARD length scales (started at sqrt(d)) + white noise."""
    kernel = ConstantKernel(1.0, (1e-3, 1e3)) * Matern(
        np.full(n_features, np.sqrt(n_features)), (1e-2, 1e4), nu=2.5
    ) + WhiteKernel(1e-2, (1e-9, 1e1))
    return GaussianProcessRegressor(kernel, normalize_y=True, random_state=0)


def methods(n_features):
    """``{method: unfitted estimator}``, each with ``predict(X, return_std=True)``."""
    return {
        "SlimTrainRegressor": SlimTrainRegressor(random_state=0),
        "GNvproRegressor": GNvproRegressor(random_state=0),
        "GP Matérn 5/2 ARD": gaussian_process(n_features),
        BASELINE: RandomFeatureBayesianRidge(),
    }


class _OneOutput(RegressorMixin, BaseEstimator):
    """Output ``k`` of a fitted (multi-output) regressor, for MAPIE."""

    def __init__(self, model, k):
        self.model = model
        self.k = k

    def __sklearn_is_fitted__(self):
        return True

    def fit(self, X, y):  # MAPIE checks for it; prefit=True never calls it
        raise NotImplementedError("The wrapped model is fitted already.")

    def predict(self, X, return_std=False):
        mean, std = self.model.predict(X, return_std=True)
        if mean.ndim == 2:
            mean, std = mean[:, self.k], std[:, self.k]
        return (mean, std) if return_std else mean


# ----------------------------------------------------------------------- metrics


@dataclass(frozen=True)
class Calibration:
    """A method on a problem: Gaussian and conformal 90% intervals."""

    r2: float
    coverage: float
    width: float  # mean width / the training targets' std
    nll: float  # of the standardized targets
    z_rms: float
    seconds: float
    conformal_r2: float  # of the fit on 60% of the training rows
    conformal_fit_coverage: float  # that fit's Gaussian coverage
    conformal_coverage: float
    conformal_width: float
    coverage_by_noise: tuple[float, float] | None  # low / high third of noise std


def _columns(a):
    return a.reshape(len(a), -1)


def gaussian_metrics(y, mean, std, scale):
    """Coverage, width, NLL and z-RMS, averaged over the outputs."""
    y, mean, std = _columns(y), _columns(mean), _columns(std)
    z = (y - mean) / std
    covered = np.abs(z) <= Z90
    nll = 0.5 * np.log(2 * np.pi * (std / scale) ** 2) + 0.5 * z**2
    return (
        covered.mean(),
        (2 * Z90 * std / scale).mean(),
        nll.mean(),
        np.sqrt((z**2).mean(axis=0)).mean(),
        covered.mean(axis=1),
    )


def conformal_metrics(model, split, scale):
    """MAPIE's split conformal intervals of a fitted ``model``: coverage and
    width, averaged over the outputs."""
    coverage, width = [], []
    Y_cal, Y_test = _columns(split.y_train), _columns(split.y_test)
    for k in range(Y_cal.shape[1]):
        mapie = SplitConformalRegressor(
            _OneOutput(model, k),
            confidence_level=CONFIDENCE,
            conformity_score="std_normalized",
            prefit=True,
        ).conformalize(split.X_train, Y_cal[:, k])
        _, intervals = mapie.predict_interval(split.X_test)
        low, high = intervals[:, 0, 0], intervals[:, 1, 0]
        coverage.append(np.mean((Y_test[:, k] >= low) & (Y_test[:, k] <= high)))
        width.append(np.mean(high - low) / scale[k])
    return float(np.mean(coverage)), float(np.mean(width))


def conformal_split(split):
    """(fit part, conformalization part as a :class:`Split` with the test rows):
    40% of the training rows held out, X standardized again on the fit part."""
    X_fit, X_cal, y_fit, y_cal = train_test_split(
        split.X_train,
        split.y_train,
        test_size=CONFORMALIZE_FRACTION,
        random_state=0,
    )
    scaler = StandardScaler().fit(X_fit)
    held_out = Split(
        scaler.transform(X_cal), scaler.transform(split.X_test), y_cal, split.y_test
    )
    return scaler.transform(X_fit), y_fit, held_out


def coverage_by_noise(covered, noise_std):
    """Coverage on the test rows with the lowest and the highest third of the
    true noise std."""
    order = np.argsort(noise_std)
    third = len(order) // 3
    return covered[order[:third]].mean(), covered[order[-third:]].mean()


def calibrate(estimator, problem):
    """Fit clones of ``estimator`` on the training split (Gaussian intervals)
    and on its fit part (conformal intervals); score both on the test rows."""
    split = problem.split
    scale = _columns(split.y_train).std(axis=0)
    model = clone(estimator)
    seconds = timed_fit(model, split.X_train, split.y_train)
    mean, std = model.predict(split.X_test, return_std=True)
    coverage, width, nll, z_rms, covered = gaussian_metrics(
        split.y_test, mean, std, scale
    )
    X_fit, y_fit, held_out = conformal_split(split)
    conformal_model = clone(estimator).fit(X_fit, y_fit)
    fit_mean, fit_std = conformal_model.predict(held_out.X_test, return_std=True)
    conformal_coverage, conformal_width = conformal_metrics(
        conformal_model, held_out, scale
    )
    by_noise = None
    if problem.test_noise_std is not None:
        by_noise = coverage_by_noise(covered, problem.test_noise_std)
    return Calibration(
        r2=r2_score(split.y_test, mean),
        coverage=coverage,
        width=width,
        nll=nll,
        z_rms=z_rms,
        seconds=seconds,
        conformal_r2=r2_score(held_out.y_test, fit_mean),
        conformal_fit_coverage=gaussian_metrics(
            held_out.y_test, fit_mean, fit_std, scale
        )[0],
        conformal_coverage=conformal_coverage,
        conformal_width=conformal_width,
        coverage_by_noise=by_noise,
    )


# ------------------------------------------------------------------------ report

INTRO = """\
SlimTrainRegressor and GNvproRegressor with their defaults (`random_state=0`) against
`GaussianProcessRegressor` (constant × Matérn 5/2 with ARD length scales started at
√d, + `WhiteKernel`; `normalize_y=True`, one optimizer start) and `BayesianRidge` on
500 random Fourier features (`RBFSampler`; gamma = the median heuristic × 1/4, 1/2,
1, 2 or 4, chosen by BayesianRidge's log marginal likelihood on the training rows;
one BayesianRidge per output). Gaussian intervals are `y_mean ± 1.645 y_std` from
`predict(X, return_std=True)` after a fit on the whole training split. Conformal
intervals: MAPIE's `SplitConformalRegressor(confidence_level=0.9, prefit=True,
conformity_score="std_normalized")` (score `|y - y_mean| / y_std`) around a fit on
60% of the training rows, conformalized on the other 40% (X standardized again on
the 60%). Data generated with `random_state=0` (friedman1_hetero: 1); one torch and
one BLAS thread, CPU.

Sampling error: with 2000 test rows a coverage has a standard error of 0.007 (diabetes,
111 rows: 0.028). A split conformal coverage also varies with the conformalization
rows, by about sqrt(0.09 / (n + 2)): 0.015 with 400 rows, 0.024 with 160 (cdr16, but
averaged over 16 outputs), 0.026 with 133 (diabetes). The band [0.87, 0.93] is ±2.0
standard errors with 400 rows, ±0.8 for diabetes (0.038 with its test rows' error),
so a miss of the conformal target on one problem can be chance."""

COLUMNS = """\
*coverage*: share of the test targets inside the interval (nominal 0.90). *width*:
mean interval width over the training targets' std. *NLL*: mean Gaussian negative
log-likelihood of the targets divided by their training std (lower is better).
*z-RMS*: sqrt(mean((y - y_mean)² / y_std²)): 1 when the std matches the errors on
average, above 1 when it is too small. *fit s*: the fit on the whole training split
(the GP and the random features include their hyper-parameter search).
*conformal coverage*, *width*: MAPIE's intervals. *60% fit*: the estimator they wrap
(fitted on 60% of the training rows): its test R² and the coverage of its own Gaussian
interval, before conformalization. Multi-output: means over the outputs (R²:
sklearn's uniform average)."""


GAUSSIAN_BAND = (0.85, 0.95)
CONFORMAL_BAND = (0.87, 0.93)
SHARE = 0.8  # of the problems, for the Gaussian coverage and NLL targets


def _in(value, band):
    return band[0] <= value <= band[1]


def _list(items):
    return ", ".join(items) if items else "none"


def print_problems(problems):
    print("| problem | noise | description | train rows | test rows | outputs |")
    print("| --- | --- | --- | ---: | ---: | ---: |")
    for name, problem in problems.items():
        split = problem.split
        print(
            f"| {name} | {problem.noise} | {problem.description} "
            f"| {len(split.y_train)} | {len(split.y_test)} "
            f"| {_columns(split.y_train).shape[1]} |"
        )


def print_results(results):
    print(
        "| problem | method | test R² | coverage | width | NLL | z-RMS "
        "| conformal coverage | conformal width | 60% fit: R² | 60% fit: coverage "
        "| fit s |"
    )
    print("| --- | --- |" + " ---: |" * 10)
    for (name, method), r in results.items():
        print(
            f"| {name} | {method} | {r.r2:.4f} | {r.coverage:.3f} | {r.width:.3f} "
            f"| {r.nll:.3f} | {r.z_rms:.2f} | {r.conformal_coverage:.3f} "
            f"| {r.conformal_width:.3f} | {r.conformal_r2:.4f} "
            f"| {r.conformal_fit_coverage:.3f} | {r.seconds:.2f} |"
        )


def print_noise_thirds(results):
    print("| problem | method | coverage, lowest-noise third | highest-noise third |")
    print("| --- | --- | ---: | ---: |")
    for (name, method), r in results.items():
        if r.coverage_by_noise is not None:
            low, high = r.coverage_by_noise
            print(f"| {name} | {method} | {low:.3f} | {high:.3f} |")


def print_summary(problems, results, method_names):
    classes = ("homoscedastic", "heteroscedastic", "real")
    print(
        "| method | Gaussian coverage in [0.85, 0.95] | median coverage "
        "| median z-RMS | "
        + " | ".join(f"mean coverage, {c}" for c in classes)
        + " | conformal coverage in [0.87, 0.93] | NLL ≤ RFF + BayesianRidge |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    n = len(problems)
    for method in method_names:
        rows = [results[name, method] for name in problems]
        by_class = [
            np.mean(
                [
                    results[p, method].coverage
                    for p in problems
                    if problems[p].noise == c
                ]
            )
            for c in classes
        ]
        gaussian = sum(_in(r.coverage, GAUSSIAN_BAND) for r in rows)
        conformal = sum(_in(r.conformal_coverage, CONFORMAL_BAND) for r in rows)
        nll = sum(results[p, method].nll <= results[p, BASELINE].nll for p in problems)
        print(
            f"| {method} | {gaussian} of {n} "
            f"| {np.median([r.coverage for r in rows]):.3f} "
            f"| {np.median([r.z_rms for r in rows]):.2f} | "
            + " | ".join(f"{c:.3f}" for c in by_class)
            + f" | {conformal} of {n} | {nll} of {n} |"
        )


def _verdict(met):
    return "**met**" if met else "**missed**"


def print_targets(problems, results):
    n = len(problems)
    print("| target | method | result |")
    print("| --- | --- | --- |")
    for method in SK_SLIM:
        inside = [
            p for p in problems if _in(results[p, method].coverage, GAUSSIAN_BAND)
        ]
        outside = [
            f"{p} {results[p, method].coverage:.3f}"
            for p in problems
            if p not in inside
        ]
        print(
            "| Gaussian 90% coverage in [0.85, 0.95] on ≥ 80% of the problems "
            f"| {method} | {_verdict(len(inside) >= SHARE * n)}: {len(inside)} of "
            f"{n}; outside: {_list(outside)} |"
        )
    for method in SK_SLIM:
        outside = [
            f"{p} {results[p, method].conformal_coverage:.3f}"
            for p in problems
            if not _in(results[p, method].conformal_coverage, CONFORMAL_BAND)
        ]
        print(
            "| MAPIE conformal (std-normalized) coverage in [0.87, 0.93] on all "
            f"| {method} | {_verdict(not outside)}: {n - len(outside)} of {n}; "
            f"outside: {_list(outside)} |"
        )
    for method in SK_SLIM:
        worse = [
            f"{p} {results[p, method].nll:.3f} vs {results[p, BASELINE].nll:.3f}"
            for p in problems
            if results[p, method].nll > results[p, BASELINE].nll
        ]
        print(
            "| NLL ≤ BayesianRidge on random features on ≥ 80% of the problems "
            f"| {method} | {_verdict(n - len(worse) >= SHARE * n)}: "
            f"{n - len(worse)} of {n}; worse: {_list(worse)} |"
        )


def main():
    start = time.perf_counter()
    problems = load_problems()
    results = {}
    with benchmark_conditions():
        first = next(iter(problems.values())).split
        warm_up(
            [SlimTrainRegressor(random_state=0), GNvproRegressor(random_state=0)],
            first.X_train,
            first.y_train,
        )
        for name, problem in problems.items():
            n_features = problem.split.X_train.shape[1]
            for method, estimator in methods(n_features).items():
                result = calibrate(estimator, problem)
                results[name, method] = result
                print(name, method, result, file=sys.stderr, flush=True)
    method_names = list(methods(1))
    seconds = time.perf_counter() - start

    print("# Calibration of `predict(X, return_std=True)` (`bench_calibration.py`)")
    print()
    print(INTRO)
    print()
    print("## Problems")
    print()
    print_problems(problems)
    print()
    print("## 90% intervals on the test rows")
    print()
    print(COLUMNS)
    print()
    print_results(results)
    print()
    print("## Heteroscedastic problems: Gaussian coverage by the true noise level")
    print()
    print_noise_thirds(results)
    print()
    print("## Summary over the problems")
    print()
    print_summary(problems, results, method_names)
    print()
    print("## Against the targets of the issue")
    print()
    print_targets(problems, results)
    print()
    print(f"Run time of the script: {seconds:.0f} s.")


if __name__ == "__main__":
    main()
