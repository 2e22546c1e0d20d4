"""The least-squares head of many rows, factored block by block: the same
factors, head, GCV choice and posterior as the one-SVD path, checked against
numpy oracles (SVD, normal equations, the hat matrix) and against that path."""

import math

import numpy as np
import pytest
import torch

import sk_slim._inference as inference_module
import sk_slim.training.head as head_module
from sk_slim import GNvproClassifier, SlimTrainRegressor
from sk_slim.linalg import streamed_tikhonov_factor
from sk_slim.networks import SeparableNet, make_mlp
from sk_slim.rows import LOCAL_ROWS
from sk_slim.training import head_posterior, solve_head

F64 = torch.float64


def _rows(n=300, p=7, c=2, seed=0):
    """Features with two nearly parallel columns (a direction below rcond is
    dropped), noisy targets, positive weights."""
    g = torch.Generator().manual_seed(seed)
    Z = torch.randn(n, p, generator=g, dtype=F64)
    Z[:, 3] = Z[:, 2] + 1e-17 * Z[:, 0]
    C = Z @ torch.randn(p, c, generator=g, dtype=F64)
    C = C + 0.3 * torch.randn(n, c, generator=g, dtype=F64)
    w = 0.5 + torch.rand(n, generator=g, dtype=F64)
    return Z, C, w


def _blocks(Z, C, w, sizes):
    """Row-weighted blocks of the given sizes (one smaller than p)."""
    root = w.sqrt()[:, None]
    starts = np.cumsum([0, *sizes])
    assert starts[-1] == len(Z)
    return [
        (root[a:b] * Z[a:b], root[a:b] * C[a:b])
        for a, b in zip(starts[:-1], starts[1:], strict=True)
    ]


def test_streamed_factor_equals_numpy_oracles():
    Z, C, w = _rows()
    factors = streamed_tikhonov_factor(
        _blocks(Z, C, w, [120, 3, 100, 77]), float(w.sum())
    )
    A = np.sqrt(w.numpy())[:, None] * Z.numpy()
    B = np.sqrt(w.numpy())[:, None] * C.numpy()
    s, Vh = np.linalg.svd(A, full_matrices=False)[1:]
    kept = s > np.finfo(float).eps * len(A) * s[0]
    assert factors.s.numel() == kept.sum() == Z.shape[1] - 1
    np.testing.assert_allclose(factors.s.numpy(), s[kept], rtol=1e-12)
    p = Z.shape[1]
    for lam in (1e-6, 0.5, 20.0):
        # Ridge as least squares on [A; sqrt(lam) I] (stable: no squared A).
        stacked = np.vstack([A, np.sqrt(lam) * np.eye(p)])
        targets = np.vstack([B, np.zeros((p, B.shape[1]))])
        ridge = np.linalg.lstsq(stacked, targets, rcond=None)[0]
        V = Vh[kept].T  # the dropped direction (s ~ 1e-16) is left out by design
        np.testing.assert_allclose(
            factors.solve(lam).numpy(), V @ (V.T @ ridge), rtol=1e-9
        )
        H = A @ np.linalg.solve(A.T @ A + lam * np.eye(p), A.T)
        residual = ((B - H @ B) ** 2).sum()
        np.testing.assert_allclose(
            float(factors.residual(torch.tensor([lam], dtype=F64))[0]),
            residual,
            rtol=1e-9,
        )
        np.testing.assert_allclose(
            factors.residual_dof(lam), w.sum().item() - np.trace(H), rtol=1e-10
        )
        covariance = np.linalg.inv(A.T @ A + lam * np.eye(p))
        np.testing.assert_allclose(
            factors.covariance(lam).numpy(), covariance, rtol=1e-7, atol=1e-9
        )


def test_streamed_factor_is_blocking_invariant_and_needs_rows():
    Z, C, w = _rows(seed=1)
    one = streamed_tikhonov_factor(_blocks(Z, C, w, [300]), float(w.sum()))
    many = streamed_tikhonov_factor(_blocks(Z, C, w, [5] * 60), float(w.sum()))
    torch.testing.assert_close(one.s, many.s, rtol=1e-12, atol=0)
    torch.testing.assert_close(one.solve(1e-3), many.solve(1e-3), rtol=1e-9, atol=0)
    assert one.minimize_gcv()[0] == pytest.approx(many.minimize_gcv()[0], rel=1e-8)
    with pytest.raises(ValueError, match="at least one block"):
        streamed_tikhonov_factor([], 0.0)


@pytest.fixture
def small_stream(monkeypatch):
    """Stream from 100 rows on, in blocks of 37 (of 7 features)."""
    monkeypatch.setattr(head_module, "_STREAMED_HEAD_ROWS", 100)
    monkeypatch.setattr(head_module, "_HEAD_BLOCK_ENTRIES", 37 * 7)


def _net_and_rows(seed=0):
    g = torch.Generator().manual_seed(seed)
    net = SeparableNet(make_mlp(3, (6,), "tanh", generator=g, dtype=F64), 6, 2)
    X = torch.randn(250, 3, generator=g, dtype=F64)
    C = torch.stack([X[:, 0].sin(), X[:, 1] * X[:, 2]], dim=1)
    C = C + 0.1 * torch.randn(250, 2, generator=g, dtype=F64)
    w = 0.5 + torch.rand(250, generator=g, dtype=F64)
    return net, X, C, w


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("alpha", ["gcv", 1e-3])
def test_streamed_head_and_posterior_equal_the_one_svd_path(
    weighted, alpha, monkeypatch
):
    net, X, C, w = _net_and_rows()
    w = w if weighted else None
    alpha_svd = solve_head(net, X, C, w, alpha)
    W_svd = net.augmented_head.clone()
    posterior_svd = head_posterior(net, X, C, w, alpha_svd)
    monkeypatch.setattr(head_module, "_STREAMED_HEAD_ROWS", 100)
    monkeypatch.setattr(head_module, "_HEAD_BLOCK_ENTRIES", 37 * 7)
    alpha_streamed = solve_head(net, X, C, w, alpha)
    assert alpha_streamed == pytest.approx(alpha_svd, rel=1e-8)
    torch.testing.assert_close(net.augmented_head, W_svd, rtol=1e-8, atol=1e-10)
    posterior = head_posterior(net, X, C, w, alpha_streamed)
    torch.testing.assert_close(
        posterior.covariance, posterior_svd.covariance, rtol=1e-8, atol=1e-10
    )
    torch.testing.assert_close(
        posterior.noise_variance, posterior_svd.noise_variance, rtol=1e-8, atol=0
    )


def test_small_heads_are_streamed_where_the_factor_is_cheaper_than_u():
    # Rows times the squared head width decide below _STREAMED_HEAD_ROWS: width
    # 64 streams a few hundred rows, width 16 does not; nor do fewer rows than
    # twice the width.
    def streams(n_rows, width):
        net = SeparableNet(make_mlp(3, (width,), "tanh", dtype=F64), width, 1)
        return head_module._streams(net, torch.zeros(n_rows, 3), LOCAL_ROWS, None)

    assert streams(383, 64) and streams(1025, 16)
    assert not streams(383, 16) and not streams(100, 64)


def test_streamed_head_refuses_features_that_are_not_finite(small_stream):
    net, X, C, _ = _net_and_rows()
    X[200, 0] = np.nan
    head = net.augmented_head.clone()
    with pytest.raises(FloatingPointError, match="not finite"):
        solve_head(net, X, C)
    torch.testing.assert_close(net.augmented_head, head, rtol=0, atol=0)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_estimator_fit_with_a_streamed_head_predicts_as_the_one_svd_fit(monkeypatch):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 4))
    y = np.sin(X[:, 0]) + X[:, 1] * X[:, 2] + 0.05 * rng.normal(size=300)
    params = dict(max_iter=3, early_stopping=False, random_state=0)
    monkeypatch.setattr(head_module, "_STREAMED_HEAD_WORK", math.inf)
    reference = SlimTrainRegressor(**params).fit(X, y)
    monkeypatch.setattr(head_module, "_STREAMED_HEAD_ROWS", 100)
    monkeypatch.setattr(head_module, "_HEAD_BLOCK_ENTRIES", 64 * 65)  # 64 rows
    streamed = SlimTrainRegressor(**params).fit(X, y)
    np.testing.assert_allclose(streamed.predict(X), reference.predict(X), rtol=1e-8)
    assert streamed.head_alpha_ == pytest.approx(reference.head_alpha_, rel=1e-8)


def test_predictions_by_blocks_of_rows_equal_one_pass(monkeypatch):
    # predict (and the validation score) run the network on blocks of rows:
    # blocks of 7 rows give the predictions, standard deviations and class
    # probabilities of one pass over all 50 rows.
    X = np.random.default_rng(0).standard_normal((50, 3))
    y = np.sin(X[:, 0]) + X[:, 1]
    regressor = SlimTrainRegressor(hidden_layer_sizes=(8,), max_iter=3, random_state=0)
    classifier = GNvproClassifier(hidden_layer_sizes=(8,), max_iter=3, random_state=0)
    regressor.fit(X, y)
    classifier.fit(X, y > 0.5)

    def predictions():
        mean, std = regressor.predict(X, return_std=True)
        return mean, std, classifier.predict_proba(X)

    whole = predictions()
    monkeypatch.setattr(inference_module, "_PREDICT_ROWS", 7)
    for blocked, one_pass in zip(predictions(), whole, strict=True):
        np.testing.assert_allclose(blocked, one_pass, rtol=1e-13, atol=1e-13)
