"""GNvpro's reduced problem against dense Jacobians and finite differences (§2, §5)."""

import math

import pytest
import torch

from sk_slim.networks import SeparableNet, make_mlp
from sk_slim.training.gnvpro import GNvproState, ReducedProblem, gnvpro_step

HEAD_ALPHA, THETA_ALPHA = 0.05, 1e-3


def _problem(n=12, d=3, width=4, c=2, seed=0, weighted=True, alpha=THETA_ALPHA):
    g = torch.Generator().manual_seed(seed)
    extractor = make_mlp(d, (width,), "tanh", generator=g, dtype=torch.float64)
    net = SeparableNet(extractor, width, c)
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    C = torch.randn(n, c, generator=g, dtype=torch.float64)
    weight = torch.rand(n, generator=g, dtype=torch.float64) + 0.5 if weighted else None
    return ReducedProblem(net, X, C, weight, alpha=alpha)


def _dense_residual(problem, head_alpha):
    """Oracle: the VarPro residual with W(theta) from a differentiable dense solve."""

    def residual(theta):
        Z = problem.features(theta)
        C = problem.C * problem.scale
        G = Z.T @ Z + head_alpha * torch.eye(Z.shape[1], dtype=torch.float64)
        W = torch.linalg.solve(G, Z.T @ C)
        penalty = (problem.alpha * problem.penalized).sqrt() * theta
        return torch.cat(
            [(Z @ W - C).reshape(-1), math.sqrt(head_alpha) * W.reshape(-1), penalty]
        )

    return residual


@pytest.mark.parametrize("n", [12, 3])  # n = 3 < p = 5: rank-deficient features
def test_gauss_newton_matvec_equals_dense_jacobian(n):
    problem = _problem(n=n)
    theta = problem.get_theta()
    lin = problem.linearize(theta, HEAD_ALPHA, differentiable=True)
    J = torch.autograd.functional.jacobian(_dense_residual(problem, HEAD_ALPHA), theta)
    matvec = problem.gauss_newton(lin)
    g = torch.Generator().manual_seed(1)
    for _ in range(3):
        v = torch.randn(theta.shape, generator=g, dtype=torch.float64)
        torch.testing.assert_close(matvec(v), J.T @ (J @ v), rtol=1e-8, atol=1e-10)


def test_reduced_objective_is_the_dense_residual_norm():
    problem = _problem()
    theta = problem.get_theta()
    r = _dense_residual(problem, HEAD_ALPHA)(theta)
    assert problem.linearize(theta, HEAD_ALPHA).value == pytest.approx(
        0.5 * float(r @ r), rel=1e-12
    )


def test_reduced_gradient_equals_finite_differences():
    problem = _problem()
    theta = problem.get_theta()
    g = problem.gradient(problem.linearize(theta, HEAD_ALPHA, differentiable=True))
    directions = torch.randn(
        4,
        theta.numel(),
        generator=torch.Generator().manual_seed(2),
        dtype=torch.float64,
    )
    eps = 1e-5
    for v in directions:
        plus = problem.linearize(theta + eps * v, HEAD_ALPHA).value
        minus = problem.linearize(theta - eps * v, HEAD_ALPHA).value
        assert float(g @ v) == pytest.approx((plus - minus) / (2 * eps), rel=1e-7)


@pytest.mark.parametrize("n", [12, 3])
def test_head_sensitivity_equals_finite_differences(n):
    problem = _problem(n=n)
    theta = problem.get_theta()
    lin = problem.linearize(theta, HEAD_ALPHA)
    v = torch.randn(
        theta.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64
    )
    _, dZ = torch.func.jvp(problem.features, (theta,), (v,))
    eps = 1e-6
    fd = (
        problem.linearize(theta + eps * v, HEAD_ALPHA).W
        - problem.linearize(theta - eps * v, HEAD_ALPHA).W
    ) / (2 * eps)
    torch.testing.assert_close(problem.delta_head(lin, dZ), fd, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("globalization", ["trust_region", "armijo"])
def test_accepted_steps_never_increase_the_objective(globalization):
    problem = _problem(n=40, width=6, seed=4, alpha=0.0)
    state = GNvproState()
    value = problem.linearize(problem.get_theta(), HEAD_ALPHA).value
    for _ in range(15):
        new_value = gnvpro_step(
            problem, state, head_alpha=HEAD_ALPHA, globalization=globalization
        )
        assert new_value <= value
        if state.accepted:
            assert new_value < value
        value = new_value
    assert value == pytest.approx(
        problem.linearize(problem.get_theta(), HEAD_ALPHA).value, rel=1e-12
    )


def test_converges_to_a_known_separable_solution():
    # Targets made by a teacher network of the same shape: a zero-residual solution
    # exists, and Gauss-Newton should drive the objective down by many orders.
    g = torch.Generator().manual_seed(5)
    teacher = make_mlp(2, (3,), "tanh", generator=g, dtype=torch.float64)
    X = torch.randn(60, 2, generator=g, dtype=torch.float64)
    with torch.no_grad():
        Z = teacher(X)
    C = Z @ torch.randn(3, 2, generator=g, dtype=torch.float64) + 0.3
    student = SeparableNet(
        make_mlp(2, (3,), "tanh", generator=g, dtype=torch.float64), 3, 2
    )
    problem = ReducedProblem(student, X, C)
    state = GNvproState()
    start = problem.linearize(problem.get_theta(), 1e-12).value
    for _ in range(60):
        value = gnvpro_step(
            problem, state, head_alpha=1e-12, krylov_max_iter=50, krylov_tol=1e-8
        )
    assert value < 1e-8 * start
    assert state.grad_norm < 1e-5


def test_gcv_head_alpha_matches_the_head_solvers():
    from sk_slim.linalg import gcv

    problem = _problem(n=30, seed=6)
    lin = problem.linearize(problem.get_theta(), "gcv")
    Z_raw = lin.Z / problem.scale
    s_max2 = (
        float(torch.linalg.matrix_norm(problem.weight.sqrt()[:, None] * Z_raw, ord=2))
        ** 2
    )
    result = gcv(
        Z_raw, problem.C, problem.weight, lam_range=(1e-8 * s_max2, 1e2 * s_max2)
    )
    expected = result.lam / float(problem.weight.sum())
    assert lin.head_alpha == pytest.approx(expected, rel=1e-12)


def test_work_units_count_passes():
    problem = _problem()
    state = GNvproState()
    gnvpro_step(problem, state, head_alpha=HEAD_ALPHA, krylov_max_iter=3)
    # 1 forward + 1 backward for the gradient, 2 per CG product (first step: a CG
    # solve for the radius plus Steihaug), 1 per trial evaluation.
    assert problem.work_units >= 2 + 2 * 2 + 1


def test_integer_weights_equal_repeated_rows():
    # The reduced problem reads weights as repetitions: value, GCV choice, gradient
    # and Gauss-Newton products agree with the repeated-rows problem.
    weighted = _problem(n=10, seed=7, weighted=False)
    weight = torch.tensor([1, 2, 3, 1, 2, 1, 1, 3, 2, 1], dtype=torch.float64)
    weighted = ReducedProblem(weighted.net, weighted.X, weighted.C, weight, alpha=1e-3)
    repeats = weight.long()
    repeated = ReducedProblem(
        weighted.net,
        weighted.X.repeat_interleave(repeats, 0),
        weighted.C.repeat_interleave(repeats, 0),
        alpha=1e-3,
    )
    theta = weighted.get_theta()
    a = weighted.linearize(theta, "gcv", differentiable=True)
    b = repeated.linearize(theta, "gcv", differentiable=True)
    assert a.head_alpha == pytest.approx(b.head_alpha, rel=1e-10)
    assert a.value == pytest.approx(b.value, rel=1e-12)
    torch.testing.assert_close(weighted.gradient(a), repeated.gradient(b))
    v = torch.randn(
        theta.shape, generator=torch.Generator().manual_seed(8), dtype=torch.float64
    )
    torch.testing.assert_close(weighted.gauss_newton(a)(v), repeated.gauss_newton(b)(v))


def test_zero_gradient_leaves_the_trust_region_usable():
    # Zero targets: W(theta) = 0, the residual and so the gradient vanish. No step
    # exists; the radius must stay positive for the next iteration (it was halved
    # to 0 by the rejected null step, and Steihaug-CG then raised).
    problem = _problem(alpha=0.0)
    problem.C = torch.zeros_like(problem.C)
    state = GNvproState()
    value = problem.linearize(problem.get_theta(), HEAD_ALPHA).value
    for _ in range(2):
        assert gnvpro_step(problem, state, head_alpha=HEAD_ALPHA) == value
        assert not state.accepted and state.radius > 0
