"""GNvpro's cross-entropy reduced problem against dense Jacobians and finite
differences: the logistic head's matrix-free Newton solve, its sensitivity
(implicit differentiation), the reduced gradient and the Gauss-Newton products."""

import pytest
import torch

from sk_slim.linalg import logistic_loss
from sk_slim.networks import SeparableNet, make_mlp
from sk_slim.training.gnvpro import GNvproState, gnvpro_step
from sk_slim.training.gnvpro_logistic import ReducedLogisticProblem

HEAD_ALPHA, THETA_ALPHA = 0.05, 1e-3


def _problem(n=15, d=3, width=4, c=3, seed=0, alpha=THETA_ALPHA):
    g = torch.Generator().manual_seed(seed)
    extractor = make_mlp(d, (width,), "tanh", generator=g, dtype=torch.float64)
    net = SeparableNet(extractor, width, c).double()
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    labels = torch.randint(0, c, (n,), generator=g)
    Y = torch.nn.functional.one_hot(labels, c).double()
    weight = torch.rand(n, generator=g, dtype=torch.float64) + 0.5
    return ReducedLogisticProblem(net, X, Y, weight, alpha=alpha)


def _dense_head(problem, head_alpha):
    """Oracle: ``theta -> W(theta)`` with exact derivatives.

    One Newton step from the (detached) optimum: at the optimum the step's
    derivative in W vanishes, so its derivative in theta is exactly dW/dtheta.
    """

    def head(theta):
        Z = problem.features(theta)
        W_star = problem.linearize(theta.detach(), head_alpha).W

        def loss(W):
            return logistic_loss(Z, problem.Y, W, head_alpha, problem.weight)[0]

        g = torch.func.grad(loss)(W_star)
        H = torch.func.hessian(loss)(W_star).reshape(W_star.numel(), -1)
        return W_star - torch.linalg.solve(H, g.reshape(-1)).view(W_star.shape)

    return head


def test_gauss_newton_matvec_equals_dense_jacobian():
    problem = _problem()
    theta = problem.get_theta()
    lin = problem.linearize(theta, HEAD_ALPHA, differentiable=True)
    head = _dense_head(problem, HEAD_ALPHA)
    J_W = torch.autograd.functional.jacobian(head, theta).reshape(-1, theta.numel())
    J_S = torch.autograd.functional.jacobian(
        lambda t: problem.features(t) @ head(t), theta
    ).reshape(-1, theta.numel())
    # The loss's Hessian in the outputs: block i is w_i (diag(p_i) - p_i p_i^T).
    omega = problem.weight / problem.weight.sum()
    blocks = [
        w * (torch.diag(p) - torch.outer(p, p))
        for w, p in zip(omega, lin.P, strict=True)
    ]
    G = (
        J_S.T @ torch.block_diag(*blocks) @ J_S
        + HEAD_ALPHA * J_W.T @ J_W
        + THETA_ALPHA * torch.diag(problem.penalized)
    )
    matvec = problem.gauss_newton(lin)
    g = torch.Generator().manual_seed(1)
    for _ in range(3):
        v = torch.randn(theta.shape, generator=g, dtype=torch.float64)
        torch.testing.assert_close(matvec(v), G @ v, rtol=1e-7, atol=1e-10)


def test_reduced_gradient_equals_finite_differences():
    problem = _problem()
    theta = problem.get_theta()
    g = problem.gradient(problem.linearize(theta, HEAD_ALPHA, differentiable=True))
    directions = torch.randn(
        4, theta.numel(), generator=torch.Generator().manual_seed(2)
    ).double()
    eps = 1e-5
    for v in directions:
        plus = problem.linearize(theta + eps * v, HEAD_ALPHA).value
        minus = problem.linearize(theta - eps * v, HEAD_ALPHA).value
        assert float(g @ v) == pytest.approx((plus - minus) / (2 * eps), rel=1e-6)


def test_head_sensitivity_equals_finite_differences():
    problem = _problem()
    theta = problem.get_theta()
    lin = problem.linearize(theta, HEAD_ALPHA, differentiable=True)
    v = torch.randn(theta.shape, generator=torch.Generator().manual_seed(3)).double()
    _, dZ = torch.func.jvp(problem.features, (theta,), (v,))
    # Inner solves far below the difference quotient's resolution.
    problem.inner_tol, eps = 1e-13, 1e-4
    fd = (
        problem.linearize(theta + eps * v, HEAD_ALPHA).W
        - problem.linearize(theta - eps * v, HEAD_ALPHA).W
    ) / (2 * eps)
    torch.testing.assert_close(problem.delta_head(lin, dZ), fd, rtol=1e-5, atol=1e-8)


def test_matrix_free_hessian_solve_equals_the_dense_one(monkeypatch):
    import sk_slim.training.gnvpro_logistic as module

    problem = _problem()
    theta = problem.get_theta()
    v = torch.randn(theta.shape, generator=torch.Generator().manual_seed(4)).double()
    dense = problem.gauss_newton(
        problem.linearize(theta, HEAD_ALPHA, differentiable=True)
    )(v)
    monkeypatch.setattr(module, "_DENSE_HESSIAN_MAX", 0)
    free = problem.gauss_newton(
        problem.linearize(theta, HEAD_ALPHA, differentiable=True)
    )(v)
    torch.testing.assert_close(free, dense, rtol=1e-7, atol=1e-10)


def test_trust_region_steps_decrease_the_cross_entropy():
    problem = _problem(n=80, width=6, seed=5, alpha=0.0)
    state = GNvproState()
    first = value = problem.linearize(problem.get_theta(), HEAD_ALPHA).value
    for _ in range(10):
        new_value = gnvpro_step(problem, state, head_alpha=HEAD_ALPHA)
        assert new_value <= value
        value = new_value
    assert value < 0.9 * first
    # The head left in the network is the optimal head of the final theta.
    lin = problem.linearize(problem.get_theta(), HEAD_ALPHA)
    torch.testing.assert_close(problem.net.augmented_head, lin.W, rtol=0, atol=1e-8)


def test_integer_weights_equal_repeated_rows():
    # Weights are repetitions in the value, gradient and Gauss-Newton products.
    base = _problem(n=10, seed=7)
    weight = torch.tensor([1, 2, 3, 1, 2, 1, 1, 3, 2, 1], dtype=torch.float64)
    weighted = ReducedLogisticProblem(base.net, base.X, base.Y, weight, alpha=1e-3)
    repeats = weight.long()
    repeated = ReducedLogisticProblem(
        base.net,
        base.X.repeat_interleave(repeats, 0),
        base.Y.repeat_interleave(repeats, 0),
        alpha=1e-3,
    )
    theta = weighted.get_theta()
    a = weighted.linearize(theta, HEAD_ALPHA, differentiable=True)
    b = repeated.linearize(theta, HEAD_ALPHA, differentiable=True)
    assert a.value == pytest.approx(b.value, rel=1e-12)
    torch.testing.assert_close(a.W, b.W, rtol=0, atol=1e-10)
    torch.testing.assert_close(weighted.gradient(a), repeated.gradient(b))
    v = torch.randn(theta.shape, generator=torch.Generator().manual_seed(8)).double()
    torch.testing.assert_close(weighted.gauss_newton(a)(v), repeated.gauss_newton(b)(v))


def test_problem_on_rows_is_the_problem_of_those_rows():
    problem = _problem(n=20, seed=7)
    rows = torch.tensor([4, 19, 0, 9, 12, 6, 2])
    theta = problem.get_theta()
    built = ReducedLogisticProblem(
        problem.net, problem.X[rows], problem.Y[rows], problem.weight[rows], THETA_ALPHA
    )
    lin = problem.on_rows(rows).linearize(theta, HEAD_ALPHA, differentiable=True)
    expected = built.linearize(theta, HEAD_ALPHA, differentiable=True)
    assert lin.value == pytest.approx(expected.value, rel=1e-10)
    torch.testing.assert_close(lin.W, expected.W, rtol=1e-8, atol=1e-10)


def test_sampled_curvature_steps_descend():
    problem = _problem(n=60, seed=8)
    start = problem.linearize(problem.get_theta(), HEAD_ALPHA).value
    rows = torch.randperm(60, generator=torch.Generator().manual_seed(3))[:30]
    value = gnvpro_step(
        problem, GNvproState(), head_alpha=HEAD_ALPHA, curvature_rows=rows
    )
    assert value < start
