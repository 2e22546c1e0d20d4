"""tikhonov_svd and gcv against independent oracles: the normal equations,
scikit-learn's Ridge, and GCV's hat-matrix formula."""

import numpy as np
import pytest
import torch
from sklearn.linear_model import Ridge

from sk_slim.linalg import gcv, tikhonov_factor, tikhonov_svd


def _problem(n=40, p=8, c=3, seed=0, noise=0.1):
    g = torch.Generator().manual_seed(seed)
    Z = torch.randn(n, p, generator=g, dtype=torch.float64)
    W_true = torch.randn(p, c, generator=g, dtype=torch.float64)
    C = Z @ W_true + noise * torch.randn(n, c, generator=g, dtype=torch.float64)
    return Z, C


def _hat_matrix_gcv(Z, C, lam, weight=None, gcv_weight=1.0):
    """Oracle: GCV from the explicit hat matrix H = Z (Z^T Z + lam I)^{-1} Z^T
    (weighted GCV, ``n - gcv_weight tr H`` in the denominator, for gcv_weight != 1)."""
    Z, C = Z.numpy(), C.numpy()
    n_eff = Z.shape[0]
    if weight is not None:
        root = np.sqrt(weight.numpy())[:, None]
        Z, C, n_eff = root * Z, root * C, weight.numpy().sum()
    p, c = Z.shape[1], C.shape[1]
    H = Z @ np.linalg.solve(Z.T @ Z + lam * np.eye(p), Z.T)
    residual = ((C - H @ C) ** 2).sum()
    return residual / (c * (n_eff - gcv_weight * np.trace(H))) ** 2


@pytest.mark.parametrize("lam", [1e-8, 0.1, 3.0])
def test_tikhonov_svd_equals_normal_equations(lam):
    Z, C = _problem()
    W = tikhonov_svd(Z, C, lam)
    oracle = torch.linalg.solve(
        Z.T @ Z + lam * torch.eye(Z.shape[1], dtype=torch.float64), Z.T @ C
    )
    torch.testing.assert_close(W, oracle, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("lam", [1e-3, 0.5])
def test_tikhonov_svd_equals_sklearn_ridge_with_weights(lam):
    Z, C = _problem(n=30, p=6, c=2, seed=1)
    weight = torch.rand(30, generator=torch.Generator().manual_seed(2)) + 0.1
    W = tikhonov_svd(Z, C, lam, sample_weight=weight)
    ridge = Ridge(alpha=lam, fit_intercept=False, solver="svd", tol=1e-12)
    ridge.fit(Z.numpy(), C.numpy(), sample_weight=weight.numpy())
    np.testing.assert_allclose(W.numpy(), ridge.coef_.T, rtol=1e-9, atol=1e-12)


def test_integer_weights_equal_repeated_rows():
    Z, C = _problem(n=20, p=5, c=2, seed=3)
    weight = torch.tensor([1, 2, 3, 1, 2] * 4, dtype=torch.float64)
    repeats = weight.long()
    W_weighted = tikhonov_svd(Z, C, 0.3, sample_weight=weight)
    W_repeated = tikhonov_svd(
        Z.repeat_interleave(repeats, 0), C.repeat_interleave(repeats, 0), 0.3
    )
    torch.testing.assert_close(W_weighted, W_repeated, rtol=1e-10, atol=1e-12)
    # GCV reads weights as repetitions too, so its choice of lam agrees.
    chosen = gcv(Z, C, sample_weight=weight).lam
    chosen_repeated = gcv(
        Z.repeat_interleave(repeats, 0), C.repeat_interleave(repeats, 0)
    ).lam
    assert chosen == pytest.approx(chosen_repeated, rel=1e-6)


def test_zero_lam_is_minimum_norm_least_squares():
    # Underdetermined and rank-deficient: only the pseudo-inverse is well defined.
    Z, C = _problem(n=6, p=10, c=2, seed=4)
    Z[:, -1] = Z[:, 0]
    W = tikhonov_svd(Z, C, 0.0)
    torch.testing.assert_close(W, torch.linalg.pinv(Z) @ C, rtol=1e-9, atol=1e-10)


def test_one_dimensional_targets_and_dtype_round_trip():
    Z, C = _problem(c=1)
    W = tikhonov_svd(Z.float(), C[:, 0].float(), 0.1)
    assert W.shape == (Z.shape[1],) and W.dtype == torch.float32
    oracle = tikhonov_svd(Z, C, 0.1)[:, 0]
    torch.testing.assert_close(W.double(), oracle, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("weighted", [False, True])
def test_gcv_function_equals_hat_matrix_formula(weighted):
    Z, C = _problem(n=25, p=7, c=3, seed=5, noise=0.5)
    weight = torch.linspace(0.5, 2.0, 25, dtype=torch.float64) if weighted else None
    factors = tikhonov_factor(Z, C, weight)
    lams = torch.tensor([1e-6, 1e-2, 0.7, 5.0, 80.0], dtype=torch.float64)
    scores = factors.gcv(lams)
    oracle = [_hat_matrix_gcv(Z, C, float(lam), weight) for lam in lams]
    np.testing.assert_allclose(scores.numpy(), oracle, rtol=1e-9)


@pytest.mark.parametrize("gcv_weight", [1.5, 3.0])
def test_weighted_gcv_equals_hat_matrix_formula_and_regularizes_more(gcv_weight):
    Z, C = _problem(n=25, p=7, c=3, seed=5, noise=0.5)
    factors = tikhonov_factor(Z, C)
    lams = torch.tensor([1e-2, 0.7, 5.0, 80.0], dtype=torch.float64)
    oracle = [_hat_matrix_gcv(Z, C, float(lam), gcv_weight=gcv_weight) for lam in lams]
    np.testing.assert_allclose(factors.gcv(lams, gcv_weight).numpy(), oracle, rtol=1e-9)
    # Each fitted degree of freedom costs more: the minimiser moves up.
    lam = factors.minimize_gcv(weight=gcv_weight)[0]
    assert lam > factors.minimize_gcv()[0]
    neighbours = [
        _hat_matrix_gcv(Z, C, lam * f, gcv_weight=gcv_weight) for f in (0.8, 1, 1.25)
    ]
    assert neighbours[1] <= min(neighbours[0], neighbours[2])


def test_weighted_gcv_is_infinite_where_its_residual_count_is_not_positive():
    # n = 25, q = 7: n - 4 tr H <= 0 while tr H >= 6.25, i.e. at tiny lam.
    Z, C = _problem(n=25, p=7, c=1, seed=11, noise=0.5)
    scores = tikhonov_factor(Z, C).gcv(
        torch.tensor([1e-10, 1e6], dtype=torch.float64), 4.0
    )
    assert torch.isinf(scores[0]) and torch.isfinite(scores[1])


def test_gcv_minimiser_beats_its_neighbourhood_and_solves_at_it():
    Z, C = _problem(n=30, p=20, c=2, seed=6, noise=1.0)
    result = gcv(Z, C)
    lam = result.lam
    oracle = [_hat_matrix_gcv(Z, C, lam * f) for f in (0.8, 1.0, 1.25)]
    assert oracle[1] <= min(oracle[0], oracle[2])
    assert result.score == pytest.approx(oracle[1], rel=1e-9)
    assert result.score <= float(result.scores.min()) * (1 + 1e-12)
    torch.testing.assert_close(result.W, tikhonov_svd(Z, C, lam))


def test_gcv_regularizes_more_for_noisier_targets():
    Z, clean = _problem(n=60, p=15, c=2, seed=7, noise=0.0)
    noise = torch.randn(clean.shape, generator=torch.Generator().manual_seed(8))
    lams = [gcv(Z, clean + level * noise.double()).lam for level in (0.1, 1.0, 10.0)]
    assert lams[0] < lams[1] < lams[2]


def test_gcv_is_scale_equivariant():
    # Scaling Z by a scales the GCV-optimal lam by a^2 (the default range follows).
    Z, C = _problem(n=30, p=6, c=2, seed=9, noise=0.5)
    lam = gcv(Z, C).lam
    assert gcv(10.0 * Z, C).lam == pytest.approx(100.0 * lam, rel=1e-6)


def test_gcv_refuses_weights_that_leave_no_degrees_of_freedom():
    Z, C = _problem(n=20, p=8, c=1, seed=10)
    with pytest.raises(ValueError, match="GCV is undefined"):
        gcv(Z, C, sample_weight=torch.full((20,), 1e-4, dtype=torch.float64))


def test_runs_on_device(device):
    Z, C = _problem()
    result = gcv(Z.to(device), C.to(device))
    assert result.W.device.type == device.type
    W_cpu = tikhonov_svd(Z, C, result.lam)
    torch.testing.assert_close(result.W.cpu(), W_cpu, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("n", [40, 6])  # n = 6 < p = 8: a complement to the span
def test_covariance_and_residual_dof_equal_the_dense_formulas(n):
    g = torch.Generator().manual_seed(5)
    Z = torch.randn(n, 8, generator=g, dtype=torch.float64)
    C = torch.randn(n, 2, generator=g, dtype=torch.float64)
    w = torch.rand(n, generator=g, dtype=torch.float64) + 0.5
    factors = tikhonov_factor(Z, C, w)
    lam = 0.3
    G = Z.T @ (w[:, None] * Z) + lam * torch.eye(8, dtype=torch.float64)
    torch.testing.assert_close(factors.covariance(lam), torch.linalg.inv(G))
    hat = Z @ torch.linalg.solve(G, Z.T * w)  # weighted hat matrix
    assert factors.residual_dof(lam) == pytest.approx(
        float(w.sum() - torch.trace(hat)), rel=1e-12
    )
