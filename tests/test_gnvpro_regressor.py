"""GNvproRegressor: scikit-learn conformance and behaviour.

The plumbing it shares with SlimTrainRegressor (validation, early stopping,
pickling, callbacks, divergence handling) is tested in
test_slimtrain_regressor.py; here, what is specific to GNvpro.
"""

import copy
import math
import pickle
import warnings

import numpy as np
import pytest
import torch
from sklearn.datasets import make_friedman1
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.utils.estimator_checks import parametrize_with_checks

from sk_slim import GNvproRegressor
from sk_slim.datasets import make_peaks
from sk_slim.networks import SeparableNet, make_mlp
from sk_slim.training import GNvproState, GNvproTrainer, ReducedProblem, gnvpro_step
from sk_slim.training.gauss_newton import ReusedKaufmanFactor
from sk_slim.training.gnvpro import _PRECONDITIONER_EVERY, _PRECONDITIONER_TRAVEL


def _expected_failed_checks(estimator):
    # As for GNvproClassifier (tests/test_classifiers.py): weights act as
    # repetitions exactly in exact arithmetic (tests/test_gnvpro.py: objective,
    # gradient and Gauss-Newton products agree to 1e-7 or better), but GNvpro's
    # steps amplify rounding, and since the continuation restarts on a collapse
    # (measured: 2e-5 relative on this check's rows) the fits can take
    # different paths.
    failed = {
        "check_sample_weight_equivalence_on_dense_data": (
            "exact in exact arithmetic (test_integer_weights_equal_repeated_rows in "
            "test_gnvpro.py); truncated-CG steps and the continuation's restart "
            "grow summation-order rounding above the check's rtol=1e-7"
        )
    }
    if estimator.dtype == "float32":
        # The preconditioned steps fit the check's 0/1/2 targets to ~1e-3, where
        # the outputs' float32 rounding shows.
        failed["check_methods_subset_invariance"] = (
            "float32 network: outputs carry float32 rounding (~5e-7 relative), "
            "above the check's 1e-7; float64 passes"
        )
    return failed


@parametrize_with_checks(
    [GNvproRegressor(), GNvproRegressor(dtype="float32")],
    expected_failed_checks=_expected_failed_checks,
)
def test_sklearn_compatible(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)


@pytest.fixture(scope="module")
def peaks():
    X, y = make_peaks(n_samples=600, noise=0.05, random_state=0)
    return train_test_split(X, y, random_state=0)


def _fit(X, y, **params):
    # Short runs test the Gauss-Newton mechanics at a constant theta penalty:
    # the continuation path (alpha_init) needs ~40 iterations to come down.
    # No input scaling: the network (and the replays below) see X as given.
    params = {
        "input_scaling": None,
        "random_state": 0,
        "max_iter": 15,
        "early_stopping": False,
        "hidden_layer_sizes": (16, 16),
        "alpha_init": None,
        **params,
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return GNvproRegressor(**params).fit(X, y)


@pytest.mark.parametrize("globalization", ["trust_region", "armijo"])
def test_learns_a_nonlinear_function(peaks, globalization):
    X_train, X_test, y_train, y_test = peaks
    model = _fit(X_train, y_train, globalization=globalization)
    assert model.loss_curve_[0] > 2 * model.loss_curve_[-1]
    assert model.score(X_test, y_test) > 0.9


class _RecordingMLP(torch.nn.Module):
    """A ``feature_extractor``: the (16, 16) tanh MLP from a fixed seed, which
    keeps a copy of itself as built in ``initial`` and appends the input of every
    forward call to ``inputs``."""

    def __init__(self, n_features_in, *, initial, inputs):
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.mlp = make_mlp(
            n_features_in, (16, 16), "tanh", generator=generator, dtype=torch.float64
        )
        initial.append(copy.deepcopy(self.mlp))
        self.inputs = inputs

    def forward(self, X):
        self.inputs.append(X)
        return self.mlp(X)


class _Unrecorded(torch.nn.Module):
    """An extractor wrapped as _RecordingMLP wraps it, without the recording."""

    def __init__(self, mlp):
        super().__init__()
        self.mlp = mlp

    def forward(self, X):
        return self.mlp(X)


def _fit_recorded(X, y, **params):
    """``_fit`` with a _RecordingMLP: the model, its initial extractor, and the
    inputs of its forward calls. On the CPU, in float64, as the replays below."""
    initial, inputs = [], []
    model = _fit(
        X,
        y,
        feature_extractor=_RecordingMLP,
        feature_extractor_kwargs={"initial": initial, "inputs": inputs},
        device="cpu",
        **params,
    )
    return model, initial[0], inputs


def _standardized(y):
    """The targets as the estimator fits them (standardized), a (n, 1) tensor."""
    return torch.as_tensor((y - y.mean()) / y.std())[:, None]


def _replay(extractor, samples, globalization="trust_region", alpha=1e-4):
    """GNvpro's iterations redone with sk_slim.training alone.

    From the extractor ``extractor`` (copied), one ``gnvpro_step`` per (X, C) in
    ``samples``, with the estimator's defaults (GCV head, Kaufman preconditioner
    reused as the estimator does, 20 CG iterations to 1e-2) and its documented
    theta penalty ``alpha / (2 n) ||theta_w||^2``, one GNvproState carried
    through. Returns each iteration's objective, gradient norm, head ridge
    weight, trust radius and passes.
    """
    # Wrapped like _RecordingMLP, so that both take the torch.func path (GNvpro's
    # steps are sensitive to rounding: the hand-written maps of a plain MLP agree
    # to 1e-14 per product, yet change the iterates after a step or two).
    net = SeparableNet(_Unrecorded(copy.deepcopy(extractor)), 16, 1)
    state = GNvproState()
    preconditioner = ReusedKaufmanFactor(_PRECONDITIONER_EVERY, _PRECONDITIONER_TRAVEL)
    history = {"loss": [], "grad_norm": [], "head_alpha": [], "radius": [], "work": []}
    for X, C in samples:
        problem = ReducedProblem(net, X, C, alpha=alpha / len(X))
        value = gnvpro_step(
            problem,
            state,
            head_alpha="gcv",
            globalization=globalization,
            krylov_max_iter=20,
            krylov_tol=1e-2,
            preconditioner=preconditioner,
        )
        history["loss"].append(value)
        history["grad_norm"].append(state.grad_norm)
        history["head_alpha"].append(state.head_alpha)
        history["radius"].append(math.nan if state.radius is None else state.radius)
        history["work"].append(problem.work_units)
    return history


def _dense_objective(extractor, X, C, head_alpha, alpha=1e-4):
    """Oracle: the reduced objective from a dense ridge solve, differentiable in
    the extractor's parameters (no ReducedProblem, no envelope theorem):
    ``1/(2n) ||Z W - C||^2 + head_alpha/2 ||W||^2 + alpha/(2n) ||theta_w||^2``
    with ``Z = [phi(X), 1]`` and ``W`` the ridge solution on the mean loss."""
    n = len(X)
    Z = torch.cat([extractor(X), torch.ones(n, 1, dtype=X.dtype)], dim=1)
    Z, C = Z / math.sqrt(n), C / math.sqrt(n)  # the mean loss as a sum
    G = Z.T @ Z + head_alpha * torch.eye(Z.shape[1], dtype=Z.dtype)
    W = torch.linalg.solve(G, Z.T @ C)
    weights = sum(p.square().sum() for p in extractor.parameters() if p.ndim > 1)
    data = (Z @ W - C).square().sum() + head_alpha * W.square().sum()
    return 0.5 * data + 0.5 * alpha / n * weights


@pytest.mark.parametrize("globalization, n_iter", [("trust_region", 5), ("armijo", 3)])
def test_history_attributes(peaks, globalization, n_iter):
    X_train, _, y_train, _ = peaks
    model, initial, inputs = _fit_recorded(
        X_train, y_train, max_iter=n_iter, globalization=globalization
    )
    assert model.n_iter_ == n_iter
    X, C = torch.as_tensor(X_train), _standardized(y_train)
    # Each iteration is one gnvpro_step on all rows, and the curves record its
    # values: objective after it, reduced gradient norm at its start, GCV's head
    # ridge weight, trust radius after it (nan with Armijo) and the passes so far.
    # Recorded one iteration off, or with another theta penalty, they would differ.
    replayed = _replay(initial, [(X, C)] * n_iter, globalization=globalization)
    np.testing.assert_allclose(model.loss_curve_, replayed["loss"], rtol=1e-12)
    np.testing.assert_allclose(
        model.grad_norm_curve_, replayed["grad_norm"], rtol=1e-12
    )
    np.testing.assert_allclose(
        model.head_alpha_curve_, replayed["head_alpha"], rtol=1e-12
    )
    np.testing.assert_allclose(
        model.trust_radius_curve_, replayed["radius"], rtol=1e-12
    )
    assert model.work_units_ == list(np.cumsum(replayed["work"]))
    # The passes against the network's own forward calls on all rows (less the
    # final head solve's one). An iteration with M CG products and T trial steps
    # calls it 1 + M + T times (the gradient's forward, a jvp per product, a
    # forward per trial) and counts 1 + 1 + 2 + 2 M + T = 2 (1 + M + T) + 2 - T
    # passes (the gradient's forward and backward, the preconditioner's 1 + rank
    # with rank 1, a jvp and a vjp per product, the trials), with 1 <= T <= 8.
    n_forward = sum(len(x) == len(X_train) for x in inputs) - 1
    total = model.work_units_[-1]
    assert 2 * n_forward - 6 * n_iter <= total <= 2 * n_forward + n_iter
    increments = np.diff([0, *model.work_units_])
    assert all(float(w).is_integer() and w >= 7 for w in increments)
    if globalization == "trust_region":
        assert np.all(np.isfinite(model.trust_radius_curve_))
        assert np.all(np.asarray(model.trust_radius_curve_) > 0)
    else:
        assert np.isnan(model.trust_radius_curve_).all()
    # Against the dense oracle, independently of ReducedProblem: the first
    # gradient norm is that of the objective at the initial network (autograd
    # through the head's solve), and the last loss is the objective at the
    # fitted network, which is the last iterate.
    start = copy.deepcopy(initial)
    _dense_objective(start, X, C, model.head_alpha_curve_[0]).backward()
    grad_norm = torch.linalg.vector_norm(
        torch.cat([p.grad.reshape(-1) for p in start.parameters()])
    )
    assert model.grad_norm_curve_[0] == pytest.approx(float(grad_norm), rel=1e-9)
    with torch.no_grad():
        end = _dense_objective(
            model.module_.feature_extractor.mlp, X, C, model.head_alpha_curve_[-1]
        )
    assert model.loss_curve_[-1] == pytest.approx(float(end), rel=1e-10)


def test_stops_on_the_gradient_tolerance(peaks):
    X_train, _, y_train, _ = peaks
    model = _fit(
        X_train,
        y_train,
        max_iter=200,
        tol=1e-2,
        hidden_layer_sizes=(4,),
        n_iter_no_change=10**6,
    )
    assert model.n_iter_ < 200
    assert model.grad_norm_curve_[-1] <= 1e-2 * model.grad_norm_curve_[0]


def test_sub_sampled_mode(peaks):
    X_train, X_test, y_train, y_test = peaks
    model = _fit(X_train, y_train, batch_size=100, max_iter=20)
    assert model.t_ == 20 * len(X_train)  # the epoch counter still counts rows seen
    assert model.score(X_test, y_test) > 0.8
    # The rows of each iteration of a shorter run: the extractor's 100-row
    # inputs, one fresh sample per iteration (the first of its forward calls; the
    # others reuse it).
    model, initial, inputs = _fit_recorded(X_train, y_train, batch_size=100, max_iter=8)
    samples = []
    for x in inputs:
        if len(x) == 100 and not (samples and torch.equal(x, samples[-1])):
            samples.append(x)
    assert len(samples) == 8
    row_of = {tuple(x): i for i, x in enumerate(X_train)}
    rows = [[row_of[tuple(x)] for x in sample.numpy()] for sample in samples]
    assert all(len(set(r)) == 100 for r in rows)  # drawn without replacement
    # work_units_ counts passes over the sub-sample (its docstring: "passes over
    # the (sub-sampled) data"): each iteration adds exactly the passes of one
    # gnvpro_step on its 100 rows, in whole passes. A pass missed or counted
    # twice, or the passes scaled by 100/450 as shares of a full pass (which
    # only the sampled curvature within an iteration is: none here, as 100 rows
    # are under its floor of twice the 320 parameters), would change the sum.
    X, C = torch.as_tensor(X_train), _standardized(y_train)
    replayed = _replay(initial, [(X[r], C[r]) for r in rows])
    assert model.work_units_ == list(np.cumsum(replayed["work"]))
    assert all(float(w).is_integer() for w in replayed["work"])
    np.testing.assert_allclose(model.loss_curve_, replayed["loss"], rtol=1e-12)


def test_auto_batch_grows_geometrically_from_a_sample_above_its_threshold(
    peaks, monkeypatch
):
    X_train, X_test, y_train, y_test = peaks  # 450 rows
    import sk_slim.training.gnvpro as trainer_module

    monkeypatch.setattr(trainer_module, "_AUTO_FULL_BATCH_ROWS", 300)
    monkeypatch.setattr(trainer_module, "_AUTO_BATCH_START", 100)
    monkeypatch.setattr(trainer_module, "_AUTO_BATCH_GROWTH", 1.5)
    sizes = []
    problem_of = GNvproTrainer._problem

    def recording(self):
        problem = problem_of(self)
        sizes.append(len(problem.X))
        return problem

    monkeypatch.setattr(GNvproTrainer, "_problem", recording)
    model = _fit(X_train, y_train, batch_size="auto", max_iter=7)
    # ceil(100 * 1.5**k) rows, all 450 from k = 4 (100 * 1.5**4 = 506)
    assert sizes == [100, 150, 225, 338, 450, 450, 450]
    assert model.score(X_test, y_test) > 0.8
    # At or below the threshold: all rows from the first iteration.
    monkeypatch.setattr(trainer_module, "_AUTO_FULL_BATCH_ROWS", 450)
    sizes.clear()
    _fit(X_train, y_train, batch_size="auto", max_iter=3)
    assert sizes == [450, 450, 450]


def test_fixed_head_alpha_is_used(peaks):
    X_train, _, y_train, _ = peaks
    model = _fit(X_train, y_train, head_alpha=1e-3, max_iter=6)
    assert model.head_alpha_ == 1e-3
    assert model.head_alpha_curve_ == [1e-3] * 6
    # One objective throughout (GCV would change it per iteration): it never
    # increases, since only decreasing steps are accepted.
    assert np.all(np.diff(model.loss_curve_) <= 0)


def test_warm_start_carries_network_and_radius(peaks):
    X_train, _, y_train, _ = peaks
    model = _fit(X_train, y_train, max_iter=4)
    radius = model.trust_radius_curve_[-1]
    model.set_params(warm_start=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X_train, y_train)
    assert model.n_iter_ == 8 and len(model.grad_norm_curve_) == 8
    assert (
        model._trainer_state.radius != radius
        or model.loss_curve_[4] < model.loss_curve_[3]
    )
    assert model.loss_curve_[-1] <= model.loss_curve_[3]


def test_early_stopping_on_noisy_data_beats_running_to_the_end():
    X, y = make_friedman1(n_samples=600, noise=3.0, random_state=0)
    X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)
    params = dict(hidden_layer_sizes=(32, 32), max_iter=60, n_iter_no_change=5)
    stopped = _fit(X_train, y_train, early_stopping=True, **params)
    to_the_end = _fit(X_train, y_train, early_stopping=False, **params)
    assert stopped.n_iter_ < to_the_end.n_iter_
    best = int(np.argmax(stopped.validation_scores_))
    assert stopped.best_validation_score_ == stopped.validation_scores_[best]
    # Gauss-Newton fits noise fast (measured: 0.53 stopped vs -0.09 at the end).
    assert stopped.score(X_test, y_test) > to_the_end.score(X_test, y_test) + 0.3


def test_pickle_round_trip(peaks):
    X_train, X_test, y_train, _ = peaks
    model = _fit(X_train, y_train, max_iter=2)
    restored = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(model.predict(X_test), restored.predict(X_test))


def test_theta_penalty_follows_the_continuation_path(peaks, monkeypatch):
    X_train, _, y_train, _ = peaks
    penalties = []
    make_problem = GNvproTrainer._problem

    def recording(trainer):
        problem = make_problem(trainer)
        penalties.append(problem.alpha * len(problem.X))  # back to MLP's scale
        return problem

    monkeypatch.setattr(GNvproTrainer, "_problem", recording)
    model = GNvproRegressor(
        alpha=1e-3, alpha_init=10.0, max_iter=4, early_stopping=False
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X_train[:200], y_train[:200])
        # A warm start goes on along the path: iterations 4 and 5.
        model.set_params(warm_start=True, max_iter=2).fit(X_train[:200], y_train[:200])
    expected = [1e-3 + 10.0 * 0.8**k for k in range(6)]
    np.testing.assert_allclose(penalties, expected, rtol=1e-12)


def test_preconditioner_reaches_the_same_fit_in_fewer_passes(peaks):
    X_train, X_test, y_train, y_test = peaks
    plain = _fit(X_train, y_train, preconditioner=None, max_iter=30)
    kaufman = _fit(X_train, y_train, max_iter=30)
    score = plain.score(X_test, y_test)
    assert kaufman.score(X_test, y_test) > score - 0.01
    # Passes until the preconditioned run first gets within 10% of the plain
    # run's final training loss.
    target = 1.1 * plain.loss_curve_[-1]
    first = next(i for i, loss in enumerate(kaufman.loss_curve_) if loss <= target)
    assert kaufman.work_units_[first] < plain.work_units_[-1] / 2


def test_sampled_curvature_reaches_the_same_fit_in_fewer_passes():
    X, y = make_friedman1(n_samples=2400, noise=0.5, random_state=0)  # 1800 to fit
    X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)
    full = _fit(X_train, y_train, curvature_fraction=None)
    half = _fit(X_train, y_train, curvature_fraction=0.5)
    assert half.score(X_test, y_test) > full.score(X_test, y_test) - 0.01
    assert half.work_units_[-1] < 0.8 * full.work_units_[-1]


def test_curvature_is_not_sampled_below_twice_the_parameters_in_residuals():
    # 10 inputs, (16, 16): 448 parameters, so 896 rows at least; 300 are all used.
    X, y = make_friedman1(n_samples=300, random_state=0)
    full = _fit(X, y, curvature_fraction=None, max_iter=3)
    half = _fit(X, y, curvature_fraction=0.5, max_iter=3)
    assert half.work_units_ == full.work_units_
    np.testing.assert_array_equal(half.predict(X), full.predict(X))


def test_auto_width_gives_at_least_as_many_features_as_outputs():
    # 24 outputs of full rank (an orthogonal linear map): 16 features can hold
    # at most 16 of the 24 equal directions, R^2 <= 2/3 (Eckart-Young). 'auto'
    # gives 2 * 24 = 48, and one output 16.
    rng = np.random.RandomState(0)
    rotation = np.linalg.qr(rng.normal(size=(24, 24)))[0]
    X, X_test = rng.normal(size=(400, 24)), rng.normal(size=(400, 24))
    params = {"max_iter": 10, "random_state": 0}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        wide = GNvproRegressor(**params).fit(X, X @ rotation)
        narrow = GNvproRegressor(hidden_layer_sizes=(16, 16), **params)
        narrow.fit(X, X @ rotation)
        one_output = GNvproRegressor(**params).fit(X, X @ rotation[:, 0])
    assert wide.coef_.shape == (48, 24)
    assert wide.score(X_test, X_test @ rotation) > 0.99
    assert narrow.coef_.shape == (16, 24)  # an explicit size is kept
    assert narrow.score(X_test, X_test @ rotation) < 2 / 3 + 0.01
    assert one_output.coef_.shape == (16,)
    widths = [GNvproRegressor()._auto_hidden_width(c) for c in (1, 8, 20, 40, 100)]
    assert widths == [16, 16, 40, 64, 100]


def test_max_iter_warning_counts_iterations(peaks):
    X, y = peaks[0], peaks[2]
    with pytest.warns(ConvergenceWarning, match="maximum number of iterations"):
        GNvproRegressor(max_iter=1, alpha_init=None, random_state=0).fit(X, y)
