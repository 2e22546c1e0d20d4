"""Tests of the synthetic data sets, including the finite-difference CDR solver."""

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.sparse.linalg import spsolve
from sklearn.linear_model import RidgeCV

from sk_slim import datasets
from sk_slim.datasets import make_cdr_surrogate, make_peaks

# --- make_cdr_surrogate: the contract -------------------------------------------


def test_cdr_shapes_dtypes_and_ranges():
    X, y = make_cdr_surrogate(n_samples=7, random_state=0)
    assert X.shape == (7, 55) and y.shape == (7, 72)
    assert X.dtype == np.float64 and y.dtype == np.float64
    assert np.isfinite(y).all()
    assert X.min() >= -1 and X.max() <= 1
    # A positive source and reaction give a positive solution (maximum principle).
    assert (y > 0).all()


def test_cdr_other_sizes():
    X, y = make_cdr_surrogate(3, n_parameters=4, n_sensors=5, grid_size=4)
    assert X.shape == (3, 4) and y.shape == (3, 5)
    assert np.isfinite(y).all()


def test_cdr_seeding():
    X1, y1 = make_cdr_surrogate(5, random_state=3)
    X2, y2 = make_cdr_surrogate(5, random_state=np.random.RandomState(3))
    X3, y3 = make_cdr_surrogate(5, random_state=4)
    np.testing.assert_array_equal(X1, X2)
    np.testing.assert_array_equal(y1, y2)
    assert not np.allclose(X1, X3) and not np.allclose(y1, y3)


def test_cdr_noise_has_requested_std_and_leaves_X_alone():
    X0, y0 = make_cdr_surrogate(200, random_state=0)
    X1, y1 = make_cdr_surrogate(200, noise=0.1, random_state=0)
    np.testing.assert_array_equal(X0, X1)
    residual = y1 - y0  # 200 * 72 draws: the std is known to about 0.6%
    assert abs(residual.std() - 0.1) < 0.005
    assert abs(residual.mean()) < 0.005


def test_cdr_is_nonlinear_but_learnable():
    # The papers' split: 400 train, 200 test. Measured: test R^2 = 0.78 (seed 0),
    # 0.73 to 0.79 over seeds 0-5; an MLP reaches about 0.94 on 1000 samples.
    X, y = make_cdr_surrogate(600, random_state=0)
    ridge = RidgeCV(alphas=np.logspace(-4, 4, 17)).fit(X[:400], y[:400])
    r2 = ridge.score(X[400:], y[400:])
    assert 0.5 < r2 < 0.86


# --- the finite-difference solver, against oracles ------------------------------


def _bump_fields(theta, grid_size):
    """The reaction and source of make_cdr_surrogate for one theta, (N-1, N-1)."""
    reaction, source = datasets._cdr_fields(theta[None, :], grid_size)
    shape = (grid_size - 1, grid_size - 1)
    return reaction.reshape(shape), source.reshape(shape)


def test_fast_path_matches_a_plain_sparse_solve():
    # Oracle: assemble A + diag(r) with scipy.sparse and spsolve, no in-place tricks.
    X, y = make_cdr_surrogate(2, grid_size=20, random_state=0)
    A, _ = datasets._cdr_operator(20, datasets._KAPPA, datasets._VELOCITY)
    P = datasets._interpolation_matrix(datasets._sensor_locations(72), 20)
    reaction, source = datasets._cdr_fields(X, 20)
    for k in range(2):
        u = spsolve((A + sp.diags(reaction[k])).tocsc(), source)
        np.testing.assert_allclose(y[k], P @ u, rtol=1e-10, atol=1e-14)


def test_solver_manufactured_solution_converges_at_second_order():
    # Oracle: u* = sin(pi x) sin(pi y) solves the PDE with the f computed below.
    kappa, (vx, vy) = 0.05, (0.8, 0.4)
    errors = []
    for N in (16, 32, 64):
        x, y = datasets._interior_grid(N)
        u_star = np.sin(np.pi * x) * np.sin(np.pi * y)
        reaction = 5.0 + 20.0 * x * y**2  # a variable field exercises the diagonal
        source = (
            2 * np.pi**2 * kappa * u_star
            + vx * np.pi * np.cos(np.pi * x) * np.sin(np.pi * y)
            + vy * np.pi * np.sin(np.pi * x) * np.cos(np.pi * y)
            + reaction * u_star
        )
        u = datasets._solve_cdr(reaction, source, N, kappa, (vx, vy))
        errors.append(np.abs(u - u_star).max())
    ratios = np.array(errors[:-1]) / np.array(errors[1:])
    assert errors[-1] < 1e-3
    np.testing.assert_allclose(ratios, 4.0, atol=0.3)


def test_solver_poisson_centre_value():
    # -kappa Lap u = 1 on the unit square: u(1/2, 1/2) = 0.0736713532814/kappa.
    kappa, N = 0.5, 64
    ones = np.ones((N - 1, N - 1))
    u = datasets._solve_cdr(0 * ones, ones, N, kappa, (0.0, 0.0))
    centre = u[N // 2 - 1, N // 2 - 1]
    assert centre == u.max()
    np.testing.assert_allclose(centre, 0.0736713532814 / kappa, rtol=1e-3)


def test_solver_converges_on_the_cdr_fields():
    # Nodes at multiples of 1/16 are shared by every grid; there, successive
    # differences of a second-order scheme shrink by ~4 (measured: 4.01 and 4.01
    # for this theta, 3.2 to 4.1 over other random thetas).
    theta = np.random.RandomState(0).uniform(-1, 1, 55)
    kappa, velocity = datasets._KAPPA, datasets._VELOCITY
    shared = {}
    for N in (16, 32, 64, 128):
        u = datasets._solve_cdr(*_bump_fields(theta, N), N, kappa, velocity)
        k = N // 16
        shared[N] = u[k - 1 :: k, k - 1 :: k]  # (15, 15)
    diffs = [np.abs(shared[N] - shared[2 * N]).max() for N in (16, 32, 64)]
    ratios = np.array(diffs[:-1]) / np.array(diffs[1:])
    np.testing.assert_allclose(ratios, 4.0, atol=0.5)


def test_sensor_readings_converge_under_refinement():
    # Bilinear interpolation puts each sensor at a different place in its cell on
    # every grid, so single-step ratios scatter around 4 (measured 2.2 to 6.3);
    # over two refinements the differences still shrink by far more than 8
    # (measured 19).
    y = {N: make_cdr_surrogate(3, grid_size=N, random_state=0)[1] for N in (16, 32, 64)}
    y[128] = make_cdr_surrogate(1, grid_size=128, random_state=0)[1]
    d16 = np.abs(y[16][:1] - y[32][:1]).max()
    d32 = np.abs(y[32] - y[64]).max(axis=1)
    d64 = np.abs(y[64][:1] - y[128]).max()
    assert d64 < d16 / 8
    assert (d32 < np.abs(y[16] - y[32]).max(axis=1) / 2).all()
    # The default grid is within 2% of the 128 x 128 reading.
    assert np.abs(y[32][:1] - y[128]).max() < 0.02 * np.abs(y[128]).max()


def test_interpolation_is_second_order():
    points = datasets._sensor_locations(72)
    errors = []
    for N in (16, 64):
        x, y = datasets._interior_grid(N)
        u = np.sin(np.pi * x) * np.sin(np.pi * y)
        P = datasets._interpolation_matrix(points, N)
        exact = np.sin(np.pi * points[:, 0]) * np.sin(np.pi * points[:, 1])
        # Bilinear error <= h^2 / 8 (|u_xx| + |u_yy|) <= pi^2 h^2 / 4.
        errors.append(np.abs(P @ u.ravel() - exact).max())
        assert errors[-1] <= np.pi**2 / (4 * N**2)
    assert errors[1] < errors[0] / 10


def test_sensor_lattice():
    points = datasets._sensor_locations(72)
    assert points.shape == (72, 2)
    assert len(np.unique(points[:, 0])) == 9 and len(np.unique(points[:, 1])) == 8
    assert (points > 0).all() and (points < 1).all()
    assert datasets._sensor_locations(5).shape == (5, 2)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_samples": 0}, "n_samples must be an integer >= 1"),
        ({"n_samples": 2.5}, "n_samples must be an integer >= 1"),
        ({"n_parameters": 0}, "n_parameters must be an integer >= 1"),
        ({"n_sensors": 0}, "n_sensors must be an integer >= 1"),
        ({"grid_size": 3}, "grid_size must be an integer >= 4"),
        ({"noise": -0.1}, "noise must be a finite number >= 0"),
        ({"noise": np.nan}, "noise must be a finite number >= 0"),
    ],
)
def test_cdr_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_cdr_surrogate(**kwargs)


# --- make_peaks -----------------------------------------------------------------


def test_peaks_regression():
    X, y = make_peaks(500, random_state=0)
    assert X.shape == (500, 2) and y.shape == (500,)
    assert X.dtype == np.float64 and y.dtype == np.float64
    assert X.min() >= -3 and X.max() <= 3
    x1, x2 = X.T
    expected = (
        3 * (1 - x1) ** 2 * np.exp(-(x1**2) - (x2 + 1) ** 2)
        - 10 * (x1 / 5 - x1**3 - x2**5) * np.exp(-(x1**2) - x2**2)
        - np.exp(-((x1 + 1) ** 2) - x2**2) / 3
    )
    np.testing.assert_allclose(y, expected, rtol=1e-14, atol=1e-14)


def test_peaks_known_values():
    # peaks(0, 0) = 3/e - 1/(3e); peaks(1, 0) = -10 (1/5 - 1)/e - e^{-4}/3.
    values = datasets._peaks(np.array([0.0, 1.0]), np.array([0.0, 0.0]))
    expected = [8 / 3 / np.e, 8 / np.e - np.exp(-4) / 3]
    np.testing.assert_allclose(values, expected, rtol=1e-14)
    np.testing.assert_allclose(values[0], 0.98101, atol=1e-5)


def test_peaks_seeding_and_noise():
    X1, y1 = make_peaks(300, random_state=1)
    X2, y2 = make_peaks(300, noise=0.2, random_state=1)
    X3, _ = make_peaks(300, random_state=2)
    np.testing.assert_array_equal(X1, X2)
    assert not np.allclose(X1, X3)
    assert 0.17 < (y2 - y1).std() < 0.23


@pytest.mark.parametrize("n_classes", [2, 3, 5])
def test_peaks_classification(n_classes):
    X, y = make_peaks(2000, n_classes=n_classes, random_state=0)
    assert y.dtype == np.int64 and y.shape == (2000,)
    counts = np.bincount(y, minlength=n_classes)
    assert counts.size == n_classes
    assert (counts >= 0.5 * 2000 / n_classes).all()
    # Labels are a monotone binning of the value: class ranges do not overlap.
    value = datasets._peaks(X[:, 0], X[:, 1])
    for k in range(n_classes - 1):
        assert value[y == k].max() <= value[y == k + 1].min()


def test_peaks_label_map_does_not_depend_on_the_sample():
    X, y = make_peaks(50, n_classes=4, random_state=0)
    X_big, y_big = make_peaks(5000, n_classes=4, random_state=0)
    np.testing.assert_array_equal(X, X_big[:50])
    np.testing.assert_array_equal(y, y_big[:50])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_samples": 0}, "n_samples must be an integer >= 1"),
        ({"noise": -1.0}, "noise must be a finite number >= 0"),
        ({"n_classes": 1}, "n_classes must be an integer >= 2"),
        ({"n_classes": 2.0}, "n_classes must be an integer >= 2"),
    ],
)
def test_peaks_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_peaks(**kwargs)
