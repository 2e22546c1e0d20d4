"""Derivative data (``fit(X, y, y_grad=G)``) and the model's input gradient.

Oracles: ``torch.func`` Jacobians of the network in its inputs and parameters,
``numpy.linalg`` solves of the explicitly stacked ridge problem, finite
differences of ``predict``.
"""

import contextlib
import math

import numpy as np
import pytest
import sklearn
import torch
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from torch import nn

import sk_slim.training.gauss_newton as gauss_newton
from sk_slim import GNvproRegressor, SlimTrainRegressor
from sk_slim.networks import SeparableNet, make_mlp, make_resnet
from sk_slim.training import (
    DerivativeData,
    DerivativeReducedProblem,
    head_posterior,
    held_out_stacked_r2,
    input_jacobian,
    solve_head,
)
from sk_slim.training.input_derivatives import (
    FuncStackedMaps,
    NetworkStackedMaps,
    stacked_feature_maps,
)
from sk_slim.training.linearization import torch_func_only

HEAD_ALPHA = 0.05


def _oracle_input_jacobian(extractor, X):
    """(q=d, n, m) by autograd, one row at a time."""
    rows = [
        torch.autograd.functional.jacobian(lambda x: extractor(x[None])[0], x)
        for x in X
    ]
    return torch.stack(rows).permute(2, 0, 1)  # (n, m, d) -> (d, n, m)


class _Quadratic(nn.Module):
    """Not a built-in network: the torch.func path."""

    def __init__(self, d, m):
        super().__init__()
        self.linear = nn.Linear(d, m, dtype=torch.float64)

    def forward(self, x):
        return torch.sin(self.linear(x)) * self.linear(x) ** 2


def _extractors(d=3):
    g = torch.Generator().manual_seed(0)
    kwargs = {"generator": g, "dtype": torch.float64}
    return {
        "mlp_tanh": make_mlp(d, (5, 4), "tanh", **kwargs),
        "mlp_logistic": make_mlp(d, (5,), "logistic", **kwargs),
        "mlp_relu": make_mlp(d, (6, 4), "relu", **kwargs),
        "mlp_identity": make_mlp(d, (4,), "identity", **kwargs),
        "resnet": make_resnet(d, 5, 3, activation="tanh", antisymmetric=True, **kwargs),
        "custom": _Quadratic(d, 4),
    }


@pytest.mark.parametrize("name", list(_extractors()))
def test_input_derivatives_equal_autograd(name):
    extractor = _extractors()[name]
    X = torch.randn(
        7, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64
    )
    phi, D = input_jacobian(extractor, None, X, 2)
    torch.testing.assert_close(phi, extractor(X), rtol=1e-12, atol=1e-12)
    oracle = _oracle_input_jacobian(extractor, X)[:2]
    torch.testing.assert_close(D, oracle, rtol=1e-10, atol=1e-12)


def _problem(name="mlp_tanh", n=9, d=3, c=2, q=2, seed=0, missing=True):
    g = torch.Generator().manual_seed(seed)
    extractor = _extractors(d)[name]
    m = extractor(torch.zeros(1, d, dtype=torch.float64)).shape[1]
    net = SeparableNet(extractor, m, c).double()
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    C = torch.randn(n, c, generator=g, dtype=torch.float64)
    G = torch.randn(n, q, c, generator=g, dtype=torch.float64)
    weight = torch.full((n, q), 0.7, dtype=torch.float64)
    if missing:
        weight[1, 0] = weight[4, 1] = 0.0
    sample_weight = torch.rand(n, generator=g, dtype=torch.float64) + 0.5
    derivatives = DerivativeData(G, weight)
    problem = DerivativeReducedProblem(
        net, X, C, derivatives, sample_weight, alpha=1e-3
    )
    return problem, (X, C, G, weight, sample_weight)


def _oracle_stacked(problem, theta):
    """Value rows ``[phi, 1]`` and derivative rows ``[d phi / d x_j, 0]`` from
    ``torch.func`` (a Jacobian in the inputs under a parameter function)."""
    extractor, X = problem.net.feature_extractor, problem.X
    q = problem.derivatives.n_columns
    params = problem._unflatten(theta)

    def row(x):
        return torch.func.functional_call(extractor, params, (x[None],))[0]

    phi = torch.func.functional_call(extractor, params, (X,))
    J = torch.func.vmap(torch.func.jacrev(row))(X)  # (n, m, d)
    D = J[..., :q].permute(2, 0, 1).reshape(-1, phi.shape[1])
    ones = torch.cat([torch.ones(len(X), 1), torch.zeros(len(D), 1)]).double()
    return torch.cat([torch.cat([phi, D]), ones], dim=1)


@pytest.mark.parametrize("name", list(_extractors()))
def test_stacked_feature_maps_equal_torch_func(name):
    problem, _ = _problem(name)
    theta = problem.get_theta()
    g = torch.Generator().manual_seed(3)
    v = torch.randn(theta.shape, generator=g, dtype=torch.float64)

    def oracle(t):
        return _oracle_stacked(problem, t)[:, :-1]

    value, tangent = torch.func.jvp(oracle, (theta,), (v,))
    M = torch.randn(value.shape, generator=g, dtype=torch.float64)
    _, pullback = torch.func.vjp(oracle, theta)
    args = (problem.net.feature_extractor, theta, problem._unflatten, problem.X, 2)
    maps = stacked_feature_maps(*args)
    assert isinstance(maps, FuncStackedMaps if name == "custom" else NetworkStackedMaps)
    with torch_func_only():  # the torch.func path of every network
        generic = stacked_feature_maps(*args)
    assert isinstance(generic, FuncStackedMaps)
    for each in (maps, generic):
        torch.testing.assert_close(each.output, value, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(each.tangent(v), tangent, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(
            each.adjoint(M), pullback(M)[0], rtol=1e-10, atol=1e-12
        )


@pytest.mark.parametrize("name", ["mlp_tanh", "mlp_logistic", "mlp_relu", "resnet"])
def test_stacked_row_jacobians_equal_torch_func(name):
    # What Kaufman's preconditioner is built from.
    problem, _ = _problem(name)
    theta = problem.get_theta()
    directions = torch.randn(
        problem.net.W.shape[0], 2, generator=torch.Generator().manual_seed(4)
    ).double()

    def projected(t):
        return _oracle_stacked(problem, t)[:, :-1] @ directions

    J = torch.func.jacrev(projected)(theta)  # (n + q n, r, P)
    args = (problem.net.feature_extractor, theta, problem._unflatten, problem.X, 2)
    maps = stacked_feature_maps(*args)
    for rows in (slice(0, None), slice(5, 23)):
        torch.testing.assert_close(
            maps.row_jacobians(directions, rows), J[rows], rtol=1e-10, atol=1e-12
        )


def test_kaufman_factor_of_the_stacked_rows_is_the_exact_matrix_at_zero_residual():
    # Targets the model fits exactly: Kaufman's matrix is then the Gauss-Newton
    # matrix of the stacked residual (checked in the dense basis).
    problem, (X, C, G, weight, sample_weight) = _problem(missing=False)
    theta = problem.get_theta()
    Z = _oracle_stacked(problem, theta).detach()
    W_true = torch.randn(Z.shape[1], 2, generator=torch.Generator().manual_seed(6))
    exact = Z @ W_true.double()
    n = len(X)
    fitted = DerivativeReducedProblem(
        problem.net,
        X,
        exact[:n],
        DerivativeData(exact[n:].view(2, n, 2).transpose(0, 1), weight),
        sample_weight,
        alpha=1e-3,
    )
    lin = fitted.linearize(theta, 1e-12, differentiable=True)
    L = fitted.kaufman_factor(lin)
    matvec = fitted.gauss_newton(lin)
    dense = torch.stack([matvec(e) for e in torch.eye(theta.numel()).double()])
    # Less the damping the factorization adds (a multiple of the mean diagonal).
    mu = gauss_newton._DAMPING * float(dense.diagonal().mean())
    K = L @ L.T - mu * torch.eye(theta.numel(), dtype=torch.float64)
    torch.testing.assert_close(K, dense, rtol=1e-6, atol=1e-9)


def test_slimtrain_step_with_derivatives_hand_written_equals_autograd():
    import copy

    from sk_slim.training import make_slimtik, slimtrain_step

    problem, (X, C, G, weight, sample_weight) = _problem(missing=True)
    derivatives = DerivativeData(G, weight)
    results = []
    for generic in (False, True):
        net = copy.deepcopy(problem.net)
        slimtik = make_slimtik(net.augmented_head.detach().clone(), memory_depth=2)
        optimizer = torch.optim.SGD(net.feature_extractor.parameters(), lr=0.1)
        context = torch_func_only() if generic else contextlib.nullcontext()
        with context:
            losses = [
                float(
                    slimtrain_step(
                        net,
                        optimizer,
                        slimtik,
                        X[rows],
                        C[rows],
                        sample_weight[rows],
                        derivatives=derivatives.on_rows(rows),
                    )
                )
                for rows in (slice(0, 5), slice(4, 9), slice(0, 9))
            ]
        theta = torch.cat([p.detach().reshape(-1) for p in net.parameters()])
        results.append((losses, theta, net.augmented_head.clone()))
    (loss_a, theta_a, head_a), (loss_b, theta_b, head_b) = results
    np.testing.assert_allclose(loss_a, loss_b, rtol=1e-10)
    torch.testing.assert_close(theta_a, theta_b, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(head_a, head_b, rtol=1e-10, atol=1e-12)


def _dense_residual(problem, head_alpha):
    """The stacked VarPro residual, W(theta) by a differentiable dense solve."""
    row_weight = problem.derivatives.stack_weights(problem.weight, len(problem.X))
    scale = (row_weight / row_weight.sum()).sqrt()[:, None]
    C = problem.C * scale

    def residual(theta):
        Z = scale * _oracle_stacked(problem, theta)
        G = Z.T @ Z + head_alpha * torch.eye(Z.shape[1], dtype=torch.float64)
        W = torch.linalg.solve(G, Z.T @ C)
        penalty = (problem.alpha * problem.penalized).sqrt() * theta
        return torch.cat(
            [(Z @ W - C).reshape(-1), math.sqrt(head_alpha) * W.reshape(-1), penalty]
        )

    return residual


def test_reduced_objective_gradient_and_gauss_newton_of_the_stacked_rows():
    problem, _ = _problem()
    theta = problem.get_theta()
    residual = _dense_residual(problem, HEAD_ALPHA)
    lin = problem.linearize(theta, HEAD_ALPHA, differentiable=True)
    r = residual(theta)
    assert lin.value == pytest.approx(0.5 * float(r @ r), rel=1e-12)
    J = torch.autograd.functional.jacobian(residual, theta)
    torch.testing.assert_close(problem.gradient(lin), J.T @ r, rtol=1e-8, atol=1e-11)
    matvec = problem.gauss_newton(lin)
    v = torch.randn(theta.shape, generator=torch.Generator().manual_seed(5)).double()
    torch.testing.assert_close(matvec(v), J.T @ (J @ v), rtol=1e-8, atol=1e-10)


def test_problem_on_rows_keeps_its_samples_derivatives():
    problem, (X, C, G, weight, sample_weight) = _problem()
    rows = torch.tensor([0, 2, 3, 4, 7])
    sub = problem.on_rows(rows)
    direct = DerivativeReducedProblem(
        problem.net,
        X[rows],
        C[rows],
        DerivativeData(G[rows], weight[rows]),
        sample_weight[rows],
        alpha=1e-3,
    )
    theta = problem.get_theta()
    assert sub.linearize(theta, HEAD_ALPHA).value == pytest.approx(
        direct.linearize(theta, HEAD_ALPHA).value, rel=1e-14
    )


def _numpy_stacked(problem):
    Z = _oracle_stacked(problem, problem.get_theta()).detach().numpy()
    w = problem.derivatives.stack_weights(problem.weight, len(problem.X)).numpy()
    return Z, problem.C.numpy(), w


def test_head_and_posterior_equal_the_numpy_stacked_ridge():
    problem, (X, C, G, weight, sample_weight) = _problem()
    derivatives = DerivativeData(G, weight)
    alpha = solve_head(problem.net, X, C, sample_weight, 0.01, derivatives=derivatives)
    Z, C_s, w = _numpy_stacked(problem)
    lam = 0.01 * w.sum()
    A = Z.T @ (w[:, None] * Z) + lam * np.eye(Z.shape[1])
    W = np.linalg.solve(A, Z.T @ (w[:, None] * C_s))
    assert alpha == 0.01
    np.testing.assert_allclose(
        problem.net.augmented_head.numpy(), W, rtol=1e-8, atol=1e-10
    )
    posterior = head_posterior(
        problem.net, X, C, sample_weight, 0.01, derivatives=derivatives
    )
    np.testing.assert_allclose(
        posterior.covariance.numpy(), np.linalg.inv(A), rtol=1e-8, atol=1e-10
    )
    R = Z @ W - C_s
    H_trace = np.trace(np.linalg.solve(A, Z.T @ (w[:, None] * Z)))
    noise = (w[:, None] * R**2).sum(axis=0) / (w.sum() - H_trace)
    np.testing.assert_allclose(posterior.noise_variance.numpy(), noise, rtol=1e-8)


def test_gcv_head_minimizes_the_stacked_gcv():
    problem, (X, _, _, weight, sample_weight) = _problem(n=30, missing=False)
    # Targets with a signal in the features, so that GCV has an inner minimum.
    Z, _, w = _numpy_stacked(problem)
    rng = np.random.default_rng(0)
    C_s = Z @ rng.normal(size=(Z.shape[1], 2)) + 0.3 * rng.normal(size=(len(Z), 2))
    C, G = torch.as_tensor(C_s[:30]), torch.as_tensor(C_s[30:]).view(2, 30, 2)
    alpha = solve_head(
        problem.net,
        X,
        C,
        sample_weight,
        "gcv",
        derivatives=DerivativeData(G.transpose(0, 1), weight),
    )
    sw = np.sqrt(w)[:, None]
    U, s, _ = np.linalg.svd(sw * Z, full_matrices=False)
    b = U.T @ (sw * C_s)
    n = w.sum()

    def gcv(a):
        f = s**2 / (s**2 + a * n)
        residual = (sw * C_s) ** 2
        fit = ((1 - f)[:, None] ** 2 - 1) * b**2
        return (residual.sum() + fit.sum()) / (n - f.sum()) ** 2

    # Its minimizer, up to the bounded search's tolerance.
    grid = np.exp(np.linspace(np.log(alpha) - 2, np.log(alpha) + 2, 41))
    assert gcv(alpha) <= min(gcv(a) for a in grid) * (1 + 1e-4)
    assert gcv(alpha) < gcv(alpha * 2) and gcv(alpha) < gcv(alpha / 2)


# ------------------------------------------------------------------- estimator


def _smooth(X):
    return np.sin(X[:, 0]) * np.cos(X[:, 1]) + 0.5 * X[:, 2] ** 2 + X[:, 3] * X[:, 0]


def _smooth_grad(X):
    G = np.zeros_like(X)
    G[:, 0] = np.cos(X[:, 0]) * np.cos(X[:, 1]) + X[:, 3]
    G[:, 1] = -np.sin(X[:, 0]) * np.sin(X[:, 1])
    G[:, 2] = X[:, 2]
    G[:, 3] = X[:, 0]
    return G


def _data(n, d=6, seed=0):
    X = np.random.default_rng(seed).uniform(-2, 2, (n, d))
    return X, _smooth(X), _smooth_grad(X)


def test_derivatives_cut_the_error_at_few_runs():
    X, y, G = _data(40)
    X_test, y_test, _ = _data(2000, seed=1)
    errors = {}
    for use in (False, True):
        model = GNvproRegressor(random_state=0)
        model.fit(X, y, y_grad=G if use else None)
        errors[use] = np.sqrt(np.mean((model.predict(X_test) - y_test) ** 2))
    # Measured: 0.60 (values) against 0.012 relative error (with derivatives).
    assert errors[True] < errors[False] / 5


def test_slimtrain_derivatives_cut_the_error():
    X, y, G = _data(100)
    X_test, y_test, _ = _data(2000, seed=1)
    errors = {}
    for use in (False, True):
        model = SlimTrainRegressor(random_state=0)
        model.fit(X, y, y_grad=G if use else None)
        errors[use] = np.sqrt(np.mean((model.predict(X_test) - y_test) ** 2))
    # Measured: 0.39 (values) against 0.043 relative RMSE (with derivatives).
    assert errors[True] < errors[False] / 4
    with pytest.raises(ValueError, match="lsgd"):
        SlimTrainRegressor(solver="lsgd").fit(X, y, y_grad=G)


def test_slimtrain_patience_is_longer_with_derivative_data():
    # tol=10: no epoch improves on the first, so a fit ends when patience does.
    X, y, G = _data(60)
    params = dict(hidden_layer_sizes=(8,), tol=10.0, max_iter=400, random_state=0)

    def epochs(n_iter_no_change, y_grad):
        model = SlimTrainRegressor(n_iter_no_change=n_iter_no_change, **params)
        return model.fit(X, y, y_grad=y_grad).n_iter_

    assert epochs("auto", G) == epochs(50, G) > epochs(20, G)
    assert epochs("auto", None) == epochs(20, None) < epochs(50, None)


def test_gnvpro_patience_is_longer_with_derivative_data(capsys):
    X, y, G = _data(60)
    params = dict(hidden_layer_sizes=(4,), max_iter=60, verbose=1, random_state=0)
    for y_grad, patience in ((G, 20), (None, 10)):
        GNvproRegressor(**params).fit(X, y, y_grad=y_grad)
        stops = [line for line in capsys.readouterr().out.splitlines() if "No " in line]
        assert stops and all(
            stop == f"No improvement for {patience} iterations: stopping."
            for stop in stops
        )


def test_gnvpro_auto_continuation_runs_the_path_only_with_derivative_data():
    X, y, G = _data(60)
    params = dict(hidden_layer_sizes=(4,), max_iter=30, random_state=0)
    auto = GNvproRegressor(**params).fit(X, y, y_grad=G)
    path = GNvproRegressor(alpha_init=100.0, **params).fit(X, y, y_grad=G)
    assert set(auto.run_curve_) == {0}
    assert auto.n_iter_ == path.n_iter_
    np.testing.assert_array_equal(auto.predict(X), path.predict(X))
    # Without derivatives 'auto' also runs without the path.
    assert set(GNvproRegressor(**params).fit(X, y).run_curve_) == {0, 1}


def test_partial_fit_streams_derivative_data():
    X, y, G = _data(400)
    X_test, y_test, _ = _data(2000, seed=1)
    errors = {}
    for use in (False, True):
        model = SlimTrainRegressor(random_state=0)
        for _ in range(20):
            for rows in np.array_split(np.arange(len(X)), 4):
                grad = G[rows] if use else None
                model.partial_fit(X[rows], y[rows], y_grad=grad)
        errors[use] = np.sqrt(np.mean((model.predict(X_test) - y_test) ** 2))
    # Measured: 0.226 against 0.181 (the streamed slimTik head, no final solve).
    assert errors[True] < 0.9 * errors[False]


@pytest.mark.parametrize("Estimator", [GNvproRegressor, SlimTrainRegressor])
def test_fitted_head_and_return_std_are_those_of_the_stacked_rows(Estimator):
    X, y, G = _data(30, d=4)
    G[3, 1] = np.nan
    options = {"input_scaling": "standard", "early_stopping": False, "max_iter": 5}
    model = Estimator(random_state=0, **options)
    model.fit(X, y, y_grad=G)
    encoder = model.input_encoder_
    X_enc = torch.as_tensor(encoder.transform(X))
    G_enc = G * encoder.scale_ / model._y_scale  # d c / d x_encoded
    with torch.no_grad():
        phi, D = input_jacobian(model.module_.feature_extractor, None, X_enc, 4)
    n = len(X)
    Z = np.vstack(
        [
            np.c_[phi.numpy(), np.ones(n)],
            np.c_[D.reshape(-1, phi.shape[1]), np.zeros(4 * n)],
        ]
    )
    targets = np.r_[(y - model._y_mean) / model._y_scale, G_enc.T.reshape(-1)]
    w = np.r_[np.ones(n), np.where(np.isnan(targets[n:]), 0.0, model.grad_weight)]
    targets = np.nan_to_num(targets)
    lam = model.head_alpha_ * w.sum()
    A = Z.T @ (w[:, None] * Z) + lam * np.eye(Z.shape[1])
    W = np.linalg.solve(A, Z.T @ (w * targets))
    # Coefficients up to ~30 from a solve of condition ~1e7: 1e-9 of the
    # largest is rounding, a wrong stacked system is off by O(1).
    np.testing.assert_allclose(
        model.module_.augmented_head.numpy()[:, 0],
        W,
        rtol=1e-8,
        atol=1e-9 * np.abs(W).max(),
    )
    residual = Z @ W - targets
    dof = w.sum() - np.trace(np.linalg.solve(A, Z.T @ (w[:, None] * Z)))
    noise = (w * residual**2).sum() / dof
    _, std = model.predict(X[:5], return_std=True)
    z = Z[:5]
    expected = np.sqrt(noise * (1 + np.einsum("ip,pq,iq->i", z, np.linalg.inv(A), z)))
    np.testing.assert_allclose(std, expected * model._y_scale[0], rtol=1e-7)


@pytest.mark.parametrize("Estimator", [GNvproRegressor, SlimTrainRegressor])
@pytest.mark.parametrize("scaling", ["standard", "robust-clip"])
def test_derivatives_follow_the_input_units(Estimator, scaling):
    # Inputs in other units, derivatives by the chain rule: the network sees the
    # same encoded data, so the fits agree. Powers of two keep the data exactly
    # equal (GCV's small head ridge would amplify rounding differences).
    X, y, G = _data(40)
    unit = 2.0 ** np.array([10, -7, 2, 0, 4, -3])
    options = {"input_scaling": scaling, "max_iter": 8, "random_state": 0}
    base = Estimator(**options).fit(X, y, y_grad=G)
    scaled = Estimator(**options).fit(X * unit, y, y_grad=G / unit)
    np.testing.assert_allclose(
        scaled.predict(X[:20] * unit), base.predict(X[:20]), rtol=1e-7, atol=1e-8
    )
    y_base, grad_base = base.predict(X[:5], return_grad=True)
    _, grad_scaled = scaled.predict(X[:5] * unit, return_grad=True)
    np.testing.assert_allclose(grad_scaled, grad_base / unit, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("scaling", ["standard", "robust-clip", None])
def test_return_grad_equals_finite_differences(scaling):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3)) * [1.0, 100.0, 0.01] + [0.0, 5000.0, 3.0]
    Y = np.c_[np.sin(X[:, 0]) + X[:, 1] / 1e3, np.exp(X[:, 2] - 3) * X[:, 0]]
    model = GNvproRegressor(input_scaling=scaling, max_iter=10, random_state=0)
    model.fit(X, Y)
    x = X[:4]
    _, grad = model.predict(x, return_grad=True)
    assert grad.shape == (4, 2, 3)
    step = 1e-6 * np.abs(X).max(axis=0)
    for j in range(3):
        e = np.eye(3)[j] * step[j]
        fd = (model.predict(x + e) - model.predict(x - e)) / (2 * step[j])
        np.testing.assert_allclose(grad[:, :, j], fd, rtol=1e-5, atol=1e-7)


def test_return_grad_is_nan_for_categorical_and_missing_inputs():
    pd = pytest.importorskip("pandas")
    X, y, G = _data(50, d=4)
    frame = pd.DataFrame(X, columns=list("abcd"))
    frame["kind"] = pd.Categorical(np.where(X[:, 0] > 0, "hot", "cold"))
    G_frame = np.c_[G, np.full(len(G), np.nan)]
    model = GNvproRegressor(max_iter=5, random_state=0).fit(frame, y, y_grad=G_frame)
    query = frame.iloc[:3].copy()
    query.loc[query.index[0], "b"] = np.nan
    _, grad = model.predict(query, return_grad=True)
    assert grad.shape == (3, 5)
    assert np.isnan(grad[:, 4]).all() and np.isnan(grad[0, 1])
    assert np.isfinite(grad[1:, :4]).all()


def test_held_out_stacked_r2_equals_the_numpy_formula():
    problem, (X, C, G, weight, sample_weight) = _problem()
    net = problem.net
    solve_head(net, X, C, sample_weight, 0.01, derivatives=DerivativeData(G, weight))
    score = held_out_stacked_r2(net, X, C, DerivativeData(G, weight), sample_weight)
    Z, T, w = _numpy_stacked(problem)
    residual = Z @ net.augmented_head.numpy() - T
    n, sst = len(X), 0.0
    for block in (slice(0, n), slice(n, 2 * n), slice(2 * n, 3 * n)):
        mean = np.average(T[block], axis=0, weights=w[block])
        sst += (w[block, None] * (T[block] - mean) ** 2).sum()
    expected = 1 - (w[:, None] * residual**2).sum() / sst
    assert score == pytest.approx(expected, rel=1e-10)


def test_early_stopping_scores_held_out_values_and_derivatives():
    from sklearn.model_selection import train_test_split

    X, y, G = _data(60, d=4)
    model = GNvproRegressor(max_iter=1, alpha_init=None, random_state=0)
    model.fit(X, y, y_grad=G)
    # The same held-out rows (12 of 60, seeded), scored independently.
    X_enc = model.input_encoder_.transform(X)
    encoded = model._encode_y_grad(X, G, model.input_encoder_, 1)
    split = train_test_split(
        X_enc,
        y,
        *encoded,
        test_size=12,
        random_state=np.random.RandomState(model._seed),
    )
    X_val, y_val, G_val, factor_val = split[1::2]
    C_val = torch.as_tensor((y_val - model._y_mean) / model._y_scale)[:, None]

    def score(G_held_out):
        held_out = model._derivative_data((G_held_out, factor_val))
        return held_out_stacked_r2(
            model.module_, torch.as_tensor(X_val), C_val, held_out
        )

    assert model.validation_scores_ == [pytest.approx(score(G_val), rel=1e-10)]
    shuffled = G_val[np.random.default_rng(0).permutation(len(G_val))]
    assert score(shuffled) < score(G_val) - 0.1


def test_zero_weight_samples_and_their_derivatives_are_no_samples(monkeypatch):
    # The trainer gets the same rows and derivatives as from the kept samples
    # alone (the fits themselves then agree up to amplified rounding).
    from sk_slim.training import GNvproTrainer

    seen = []
    start = GNvproTrainer.start

    def record(trainer, data, state=None):
        seen.append(data)
        return start(trainer, data, state)

    monkeypatch.setattr(GNvproTrainer, "start", record)
    X, y, G = _data(50, d=4)
    weight = np.ones(len(X))
    weight[::5] = 0.0
    kept = weight > 0
    options = {"early_stopping": False, "max_iter": 1, "random_state": 0}
    GNvproRegressor(**options).fit(X, y, weight, y_grad=G)
    GNvproRegressor(**options).fit(X[kept], y[kept], y_grad=G[kept])
    weighted, subset = seen
    assert len(weighted.X) == kept.sum()
    torch.testing.assert_close(weighted.X, subset.X, rtol=1e-12, atol=1e-12)
    for name in ("G", "weight"):
        torch.testing.assert_close(
            getattr(weighted.derivatives, name),
            getattr(subset.derivatives, name),
            rtol=1e-12,
            atol=1e-12,
        )


def test_a_failure_inside_a_fit_with_derivatives_leaves_the_model(monkeypatch):
    import sk_slim._loop

    X, y, G = _data(40, d=4)
    model = GNvproRegressor(max_iter=3, random_state=0).fit(X, y, y_grad=G)
    before = model.predict(X)
    n_iter = model.n_iter_

    def fail(*args, **kwargs):
        raise RuntimeError("scoring failed")

    monkeypatch.setattr(sk_slim._loop, "held_out_stacked_r2", fail)
    with pytest.raises(RuntimeError, match="scoring failed"):
        model.set_params(warm_start=True).fit(X, y, y_grad=G)
    np.testing.assert_array_equal(model.predict(X), before)
    assert model.n_iter_ == n_iter


def test_missing_derivative_entries_are_left_out():
    # A NaN derivative weighs nothing: the head equals that of the rows kept.
    problem, (X, C, G, weight, sample_weight) = _problem(missing=False)
    G_nan = G.clone()
    G_nan[2, 1, 0] = torch.nan  # one output missing: the row goes for both
    model = GNvproRegressor(grad_weight=0.7)
    model._y_scale = np.ones(2)
    model._dtype, model.device_ = torch.float64, "cpu"
    derivatives = model._derivative_data((G_nan.numpy(), np.ones((9, 2))))
    dropped = weight.clone()
    dropped[2, 1] = 0.0
    torch.testing.assert_close(derivatives.weight, dropped)
    solve_head(problem.net, X, C, sample_weight, 0.01, derivatives=derivatives)
    W = problem.net.augmented_head.clone()
    G_zero = G.clone()
    G_zero[2, 1] = 12345.0  # whatever it holds, a zero-weight row is not seen
    solve_head(
        problem.net,
        X,
        C,
        sample_weight,
        0.01,
        derivatives=DerivativeData(G_zero, dropped),
    )
    torch.testing.assert_close(problem.net.augmented_head, W, rtol=1e-12, atol=1e-12)


def test_bad_derivative_data_gets_a_clear_error_and_leaves_the_model():
    X, y, G = _data(30, d=4)
    model = GNvproRegressor(max_iter=3, random_state=0).fit(X, y)
    before = model.predict(X)
    with pytest.raises(ValueError, match="y_grad has shape"):
        model.fit(X, y, y_grad=G[:, :3])
    with pytest.raises(ValueError, match="infinity"):
        model.fit(X, y, y_grad=np.where(G > 1, np.inf, G))
    np.testing.assert_array_equal(model.predict(X), before)
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(X, columns=list("abcd"))
    frame["kind"] = pd.Categorical(np.where(X[:, 0] > 0, "hot", "cold"))
    with pytest.raises(ValueError, match="categorical"):
        model.fit(frame, y, y_grad=np.c_[G, np.ones(len(G))])


def test_y_grad_is_routed_through_grid_search_and_pipelines():
    X, y, G = _data(40, d=4)
    search = GridSearchCV(
        GNvproRegressor(max_iter=3, random_state=0), {"grad_weight": [0.5, 2.0]}, cv=2
    )
    search.fit(X, y, y_grad=G)  # sliced with the rows of each fold
    direct = GNvproRegressor(max_iter=3, random_state=0, grad_weight=0.5)
    direct.set_params(grad_weight=search.best_params_["grad_weight"])
    direct.fit(X, y, y_grad=G)
    np.testing.assert_allclose(search.predict(X), direct.predict(X), rtol=1e-10)
    with sklearn.config_context(enable_metadata_routing=True):
        model = GNvproRegressor(max_iter=3, random_state=0).set_fit_request(y_grad=True)
        pipe = Pipeline([("model", model)]).fit(X, y, y_grad=G)
    np.testing.assert_allclose(
        pipe.predict(X),
        GNvproRegressor(max_iter=3, random_state=0).fit(X, y, y_grad=G).predict(X),
        rtol=1e-10,
    )


@pytest.mark.parametrize("name", ["mlp_tanh", "resnet", "custom"])
def test_relinearize_equals_a_fresh_linearization(name):
    # A trial point's stacked features serve the next iteration (built-in
    # networks: the maps come with them); others keep no maps and are not reused.
    problem, _ = _problem(name)
    theta = problem.get_theta() + 0.03
    trial = problem.trial_linearize(theta, 0.05)
    if name == "custom":
        assert trial.maps is None
        return
    fresh = problem.linearize(theta, "gcv", differentiable=True)
    rebuilt = problem.relinearize(trial, "gcv")
    assert rebuilt.head_alpha == fresh.head_alpha
    assert rebuilt.value == fresh.value
    for field in ("Z", "W", "R", "s"):
        assert torch.equal(getattr(rebuilt, field), getattr(fresh, field)), field
    assert torch.equal(problem.gradient(rebuilt), problem.gradient(fresh))
