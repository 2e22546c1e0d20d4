"""The logistic head and temperature calibration against independent oracles."""

import math

import numpy as np
import pytest
import torch
from scipy.optimize import minimize_scalar
from sklearn.linear_model import LogisticRegression

import sk_slim.linalg.logistic as logistic_module
from sk_slim.linalg import (
    fit_temperature,
    logistic_head,
    logistic_hessian,
    logistic_hessian_dense,
    logistic_loss,
)


def _data(n=60, p=4, c=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    Z = torch.randn(n, p, generator=g, dtype=torch.float64)
    Z = torch.cat([Z, torch.ones(n, 1, dtype=torch.float64)], dim=1)  # bias column
    labels = torch.randint(0, c, (n,), generator=g)
    W_true = 2 * torch.randn(p + 1, c, generator=g, dtype=torch.float64)
    labels = torch.where(
        torch.rand(n, generator=g) < 0.7, (Z @ W_true).argmax(dim=1), labels
    )
    Y = torch.nn.functional.one_hot(labels, c).double()
    weight = torch.rand(n, generator=g, dtype=torch.float64) + 0.5
    return Z, Y, labels, weight


def test_head_equals_sklearn_logistic_regression_multinomial():
    # sklearn minimizes 1/2 ||W||^2 + C sum_i CE_i; dividing by C n gives ours with
    # alpha = 1 / (C n), the bias penalized like the rest (fit_intercept=False on
    # augmented features).
    Z, Y, labels, _ = _data()
    alpha = 0.02
    result = logistic_head(Z, Y, alpha)
    assert result.converged and result.grad_norm <= 1e-10
    reference = LogisticRegression(
        C=1 / (len(Z) * alpha), fit_intercept=False, tol=1e-12, max_iter=10_000
    ).fit(Z.numpy(), labels.numpy())
    np.testing.assert_allclose(result.W.numpy(), reference.coef_.T, atol=1e-6)
    np.testing.assert_allclose(
        result.P.numpy(), reference.predict_proba(Z.numpy()), atol=1e-7
    )


def test_binary_head_equals_sklearn_binomial():
    # Two softmax columns with a ridge on both: the optimum has w_1 = -w_0, so the
    # log-odds d = w_1 - w_0 solve binomial logistic regression with the penalty
    # alpha/4 ||d||^2, i.e. sklearn's C = 2 / (n alpha).
    Z, _, labels, _ = _data(c=2, seed=1)
    Y = torch.nn.functional.one_hot(labels, 2).double()
    alpha = 0.05
    result = logistic_head(Z, Y, alpha)
    reference = LogisticRegression(
        C=2 / (len(Z) * alpha), fit_intercept=False, tol=1e-12, max_iter=10_000
    ).fit(Z.numpy(), labels.numpy())
    d = result.W[:, 1] - result.W[:, 0]
    np.testing.assert_allclose(d.numpy(), reference.coef_[0], atol=1e-6)
    np.testing.assert_allclose(result.W.sum(dim=1).numpy(), 0.0, atol=1e-10)


def test_weights_act_as_repetitions():
    Z, Y, _, _ = _data(n=30)
    counts = torch.randint(1, 4, (30,), generator=torch.Generator().manual_seed(3))
    weighted = logistic_head(Z, Y, 0.01, counts.double())
    repeated = logistic_head(
        Z.repeat_interleave(counts, dim=0), Y.repeat_interleave(counts, dim=0), 0.01
    )
    torch.testing.assert_close(weighted.W, repeated.W, rtol=0, atol=1e-9)


def test_gradient_and_hessian_equal_autograd():
    Z, Y, _, weight = _data(n=20)
    W = torch.randn(Z.shape[1], Y.shape[1], generator=torch.Generator().manual_seed(4))
    W = W.double()
    alpha = 0.1

    def loss(W):
        return logistic_loss(Z, Y, W, alpha, weight)[0]

    value, grad, P = logistic_loss(Z, Y, W, alpha, weight)
    torch.testing.assert_close(grad, torch.func.grad(loss)(W), rtol=1e-12, atol=1e-14)
    H = torch.func.hessian(loss)(W).reshape(W.numel(), W.numel())
    dense = logistic_hessian_dense(Z, P, alpha, weight)
    torch.testing.assert_close(dense, H, rtol=1e-10, atol=1e-12)
    for block_rows in (1, 7):  # assembled by blocks of rows: the same matrix
        blocked = logistic_hessian_dense(Z, P, alpha, weight, block_rows=block_rows)
        torch.testing.assert_close(blocked, H, rtol=1e-10, atol=1e-12)
    V = torch.randn(W.shape, generator=torch.Generator().manual_seed(5)).double()
    torch.testing.assert_close(
        logistic_hessian(Z, P, alpha, weight)(V).reshape(-1),
        H @ V.reshape(-1),
        rtol=1e-10,
        atol=1e-12,
    )


def test_warm_start_converges_in_fewer_newton_steps():
    Z, Y, _, _ = _data(n=200, p=6, c=4, seed=6)
    cold = logistic_head(Z, Y, 1e-3)
    nearby = Z + 1e-3 * torch.randn(Z.shape, generator=torch.Generator().manual_seed(7))
    warm = logistic_head(nearby, Y, 1e-3, W0=cold.W)
    fresh = logistic_head(nearby, Y, 1e-3)
    assert warm.converged and fresh.converged
    assert warm.n_iter < fresh.n_iter
    torch.testing.assert_close(warm.W, fresh.W, rtol=0, atol=1e-8)


def test_probabilities_are_finite_for_extreme_logits():
    Z, Y, _, _ = _data(n=40, seed=8)
    Z = 1e3 * Z  # logits in the thousands at any reasonable W
    result = logistic_head(Z, Y, 1e-4, max_iter=30)
    assert torch.isfinite(result.W).all() and torch.isfinite(result.P).all()
    torch.testing.assert_close(result.P.sum(dim=1), torch.ones(40, dtype=Z.dtype))


def test_alpha_must_be_positive():
    Z, Y, _, _ = _data()
    with pytest.raises(ValueError, match="alpha must be > 0"):
        logistic_head(Z, Y, 0.0)


def _smoothed_log_loss(S, labels, weight, beta):
    """Oracle: the weighted cross-entropy against the smoothed targets, in numpy."""
    S, labels, weight = S.numpy(), labels.numpy(), weight.numpy()
    c, n = S.shape[1], weight.sum()
    T = np.full(S.shape, 1 / (n + 2) / (c - 1))
    T[np.arange(len(labels)), labels] = (n + 1) / (n + 2)
    logits = beta * S
    logits = logits - logits.max(axis=1, keepdims=True)
    log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    return -np.sum(weight * (T * log_p).sum(axis=1)) / weight.sum()


def test_temperature_minimizes_the_smoothed_log_loss():
    g = torch.Generator().manual_seed(9)
    labels = torch.randint(0, 3, (300,), generator=g)
    # Scores like a least-squares head's: the one-hot target plus noise.
    S = torch.nn.functional.one_hot(labels, 3).double()
    S = S + 0.4 * torch.randn(S.shape, generator=g, dtype=torch.float64)
    weight = torch.rand(300, generator=g, dtype=torch.float64)
    beta = fit_temperature(S, labels, weight)
    reference = minimize_scalar(
        lambda b: _smoothed_log_loss(S, labels, weight, b),
        bounds=(1e-3, 100),
        method="bounded",
        options={"xatol": 1e-10},
    )
    assert beta == pytest.approx(reference.x, rel=1e-5)


def test_temperature_stays_finite_on_separated_scores():
    # Perfect separation: the plain log-loss decreases all the way to beta = inf;
    # the targets (n + 1) / (n + 2) = 5/6 here give the finite optimum
    # softmax(beta [1, 0]) = 5/6, beta = log 5.
    labels = torch.tensor([0, 1, 0, 1])
    separable = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    assert fit_temperature(separable, labels) == pytest.approx(math.log(5), rel=1e-8)
    uninformative = torch.zeros(4, 2)
    assert fit_temperature(uninformative, labels) == 0.0


@pytest.mark.parametrize("weighted", [False, True])
def test_head_preconditioned_by_a_sampled_hessian_is_the_same_minimizer(
    monkeypatch, weighted
):
    # On many rows the Newton systems are solved by CG preconditioned with the
    # Hessian of every 7th row (forced here at 2000 rows): the same minimizer
    # (both to ||grad|| <= 1e-10), in fewer Hessian products.
    Z, Y, _, weight = _data(n=2000, p=6, c=4, seed=3)
    weight = weight if weighted else None
    products, hessian = [], logistic_module.logistic_hessian

    def counted(*args):
        matvec = hessian(*args)
        return lambda V: (products.append(1), matvec(V))[1]

    monkeypatch.setattr(logistic_module, "logistic_hessian", counted)
    plain = logistic_head(Z, Y, 1e-4, weight)
    n_plain, products[:] = len(products), []
    monkeypatch.setattr(logistic_module, "_PRECONDITION_ABOVE", 0)
    monkeypatch.setattr(logistic_module, "_SAMPLED_HESSIAN_ENTRIES", 286 * 7 * 4)
    preconditioned = logistic_head(Z, Y, 1e-4, weight)
    assert plain.converged and preconditioned.converged
    torch.testing.assert_close(preconditioned.W, plain.W, rtol=0, atol=1e-8)
    assert len(products) < 0.6 * n_plain  # measured: 14 against 26
