"""GNvpro's reduced least-squares problem against dense Jacobians and finite
differences: the objective, its envelope-theorem gradient, the head's sensitivity and
the Gauss-Newton products, the Kaufman preconditioner, and the outer iteration."""

import itertools
import math

import pytest
import torch

import sk_slim.training.gauss_newton as gnvpro_module
from sk_slim.linalg import cg
from sk_slim.networks import SeparableNet, make_mlp
from sk_slim.training.gauss_newton import ReusedKaufmanFactor, _StepSpace
from sk_slim.training.gnvpro import GNvproState, gnvpro_step
from sk_slim.training.reduced import ReducedProblem

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


@pytest.mark.parametrize("weighted", [True, False])
def test_feature_products_equal_torch_func_on_the_scaled_features(weighted):
    # The ones column and row scale are applied outside torch.func (for speed);
    # the products must equal differentiating the whole of features().
    problem = _problem(weighted=weighted)
    theta = problem.get_theta()
    lin = problem.linearize(theta, HEAD_ALPHA, differentiable=True)
    g = torch.Generator().manual_seed(3)
    v = torch.randn(theta.shape, generator=g, dtype=torch.float64)
    M = torch.randn(lin.Z.shape, generator=g, dtype=torch.float64)
    _, dZ = torch.func.jvp(problem.features, (theta,), (v,))
    _, pullback = torch.func.vjp(problem.features, theta)
    torch.testing.assert_close(
        problem.feature_tangent(lin, v), dZ, rtol=1e-12, atol=1e-15
    )
    torch.testing.assert_close(
        problem.feature_adjoint(lin, M), pullback(M)[0], rtol=1e-12, atol=1e-15
    )


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


def _dense_kaufman(problem, lin):
    """Oracle: Kaufman's Gauss-Newton matrix from the dense feature Jacobian, with
    the head's sensitivity cut to ``dW = -G^{-1} Z^T dZ W`` (no residual term)."""
    JZ = torch.autograd.functional.jacobian(problem.features, lin.theta)  # (n, p, P)
    n, p, P = JZ.shape
    dZW = torch.einsum("npj,pk->nkj", JZ, lin.W)  # (n, c, P)
    G = lin.Z.T @ lin.Z + lin.head_alpha * torch.eye(p, dtype=torch.float64)
    ZtdZW = torch.einsum("np,nkj->pkj", lin.Z, dZW).reshape(p, -1)
    dW = -torch.linalg.solve(G, ZtdZW).reshape(p, -1, P)
    data = dZW + torch.einsum("np,pkj->nkj", lin.Z, dW)
    J = torch.cat([data.reshape(-1, P), math.sqrt(lin.head_alpha) * dW.reshape(-1, P)])
    return J.T @ J + torch.diag(problem.alpha * problem.penalized)


def _undamped(factor, K):
    """``L L^T`` less the damping ``_damped_cholesky`` added (its first try)."""
    mu = gnvpro_module._DAMPING * float(K.diagonal().mean())
    return factor @ factor.T - mu * torch.eye(K.shape[0], dtype=K.dtype)


@pytest.mark.parametrize("head_alpha", [HEAD_ALPHA, 1e-9])  # 1e-9: the
# Schur-complement form A^T A - F^T G^{-1} F lost 1e-6 of K here to cancellation
def test_kaufman_preconditioner_equals_the_dense_oracle(head_alpha):
    problem = _problem(n=20, c=3, width=5)
    lin = problem.linearize(problem.get_theta(), head_alpha)
    K = _dense_kaufman(problem, lin)
    factor = problem.kaufman_factor(lin)
    torch.testing.assert_close(_undamped(factor, K), K, rtol=1e-9, atol=1e-11)


def test_kaufman_matrix_is_the_gauss_newton_matrix_at_zero_residual():
    # Targets the features reproduce (C = Z W0) and alpha_W -> 0: R = 0, so the
    # residual terms Kaufman drops vanish and K equals the exact J^T J.
    problem = _problem(n=25, c=2, width=4)
    theta = problem.get_theta()
    Z = problem.features(theta) / problem.scale
    W0 = torch.randn(Z.shape[1], 2, generator=torch.Generator().manual_seed(3))
    problem.C = Z @ W0.double()
    head_alpha = 1e-12
    lin = problem.linearize(theta, head_alpha)
    J = torch.autograd.functional.jacobian(_dense_residual(problem, head_alpha), theta)
    K = _dense_kaufman(problem, lin)
    torch.testing.assert_close(K, J.T @ J, rtol=1e-6, atol=1e-9)
    # Away from zero residual the two differ: the test above is not vacuous.
    problem.C = problem.C + torch.randn(
        problem.C.shape, generator=torch.Generator().manual_seed(4), dtype=torch.float64
    )
    lin = problem.linearize(theta, head_alpha)
    J = torch.autograd.functional.jacobian(_dense_residual(problem, head_alpha), theta)
    assert not torch.allclose(_dense_kaufman(problem, lin), J.T @ J, rtol=1e-3)


def test_preconditioned_cg_needs_fewer_products():
    # Smooth targets (small residual, where Kaufman's matrix is close): measured
    # 413 products without the preconditioner and 117 with it (damped 1e-2).
    problem = _problem(n=300, d=4, width=12, c=1, seed=5, alpha=1e-6)
    X = problem.X
    problem.C = torch.sin(X[:, :1] + X[:, 1:2]) * X[:, 2:3]
    theta = problem.get_theta()
    lin = problem.linearize(theta, "gcv", differentiable=True)
    g = problem.gradient(lin)
    matvec = problem.gauss_newton(lin)
    counts = {}
    for name, factor in {"plain": None, "kaufman": problem.kaufman_factor(lin)}.items():
        space = _StepSpace.of(matvec, g, factor)
        counts[name] = cg(space.matvec, space.rhs, rtol=1e-6, max_iter=500).n_iter
    assert counts["kaufman"] < counts["plain"] / 2, counts


def test_preconditioner_beyond_the_budget_is_that_of_a_strided_sample(monkeypatch):
    problem = _problem(n=900, d=4, width=12, c=1, seed=5, alpha=1e-6)
    X = problem.X
    problem.C = torch.sin(X[:, :1] + X[:, 1:2]) * X[:, 2:3]
    theta = problem.get_theta()
    lin = problem.linearize(theta, "gcv", differentiable=True)
    n_params = theta.numel()  # 60: a budget of 400 rows, every 3rd row of 900
    monkeypatch.setattr(gnvpro_module, "_PRECONDITIONER_FLOPS", 400 * n_params**2)
    factor = problem.kaufman_factor(lin)
    sample = problem.on_rows(torch.arange(0, 900, 3))
    expected = gnvpro_module.kaufman_factor(
        sample,
        sample.linearize(theta, lin.head_alpha, differentiable=True),
        head=lin.W,  # the directions of all rows' head
    )
    torch.testing.assert_close(factor, expected, rtol=1e-12, atol=0)
    # An estimate of all rows' matrix (both damped alike): measured 0.22 off
    # (0.15 on every 2nd row, 0.48 on every 9th).
    monkeypatch.undo()
    full = problem.kaufman_factor(lin)
    K, K_sample = full @ full.T, factor @ factor.T
    error = float(torch.linalg.matrix_norm(K_sample - K) / torch.linalg.matrix_norm(K))
    assert error < 0.3
    budget = 4 * n_params - 1  # rows: under 4 residuals per parameter
    monkeypatch.setattr(gnvpro_module, "_PRECONDITIONER_FLOPS", budget * n_params**2)
    assert problem.kaufman_factor(lin) is None


def test_preconditioner_is_skipped_when_too_costly(monkeypatch):
    problem = _problem()
    lin = problem.linearize(problem.get_theta(), HEAD_ALPHA)
    monkeypatch.setattr(gnvpro_module, "_PRECONDITIONER_FLOPS", 10)
    assert problem.kaufman_factor(lin) is None
    before = problem.work_units
    value = problem.linearize(problem.get_theta(), HEAD_ALPHA).value
    assert gnvpro_step(problem, GNvproState(), head_alpha=HEAD_ALPHA) <= value
    assert problem.work_units > before


def test_reused_factor_is_formed_again_after_k_uses_a_long_travel_or_a_rejection():
    problem = _problem(n=40, width=5, seed=3)
    formed = []

    class Counting(ReducedProblem):
        def kaufman_factor(self, lin):
            formed.append(lin.theta.clone())
            return super().kaufman_factor(lin)

    counting = Counting(problem.net, problem.X, problem.C, problem.weight, 1e-3)
    reused = ReusedKaufmanFactor(every=3, max_travel=1.0)
    theta = counting.get_theta()
    lins = [counting.linearize(theta + 0.01 * k, HEAD_ALPHA) for k in range(9)]
    factors = [reused(counting, lin, step_norm=0.1) for lin in lins[:4]]
    assert len(formed) == 2  # at the 1st and 4th use
    assert factors[1] is factors[0] and factors[2] is factors[0]
    torch.testing.assert_close(factors[3], problem.kaufman_factor(lins[3]))
    reused(counting, lins[4], step_norm=0.6)
    assert len(formed) == 2
    reused(counting, lins[5], step_norm=0.6)  # 1.2 travelled since the 4th
    assert len(formed) == 3
    reused(counting, lins[6], step_norm=0.0)  # no step accepted
    assert len(formed) == 4
    state = reused.get_state()
    reused(counting, lins[7], step_norm=0.1)
    reused.set_state(state)  # undone: the same factor serves again
    assert reused(counting, lins[7], step_norm=0.1) is state[0]
    reused.reset()
    reused(counting, lins[8], step_norm=0.1)
    assert len(formed) == 5
    torch.testing.assert_close(formed[-1], lins[8].theta)


def test_steps_with_a_reused_factor_descend_like_fresh_ones():
    # The factor is only a preconditioner: the same objective is decreased, never
    # increased (trust region). After ten iterations, two factors (formed at the
    # 1st and 6th) reach within 2% of a fresh factor each (measured 0.6%).
    values = {}
    for name, preconditioner in {
        "fresh": "auto",
        "reused": ReusedKaufmanFactor(every=5, max_travel=math.inf),
    }.items():
        problem, state = _problem(n=80, width=6, seed=11), GNvproState()
        path = [problem.linearize(problem.get_theta(), HEAD_ALPHA).value]
        for _ in range(10):
            path.append(
                gnvpro_step(
                    problem, state, head_alpha=HEAD_ALPHA, preconditioner=preconditioner
                )
            )
        assert all(b <= a for a, b in itertools.pairwise(path)), name
        values[name] = path[-1]
    assert values["reused"] < 0.9 * path[0]
    assert values["reused"] == pytest.approx(values["fresh"], rel=2e-2)


def test_kaufman_preconditioner_reads_weights_as_repetitions():
    weight = torch.tensor([1, 2, 3, 1, 2, 1, 1, 3, 2, 1], dtype=torch.float64)
    base = _problem(n=10, seed=7, weighted=False)
    weighted = ReducedProblem(base.net, base.X, base.C, weight, alpha=1e-3)
    repeats = weight.long()
    repeated = ReducedProblem(
        base.net,
        base.X.repeat_interleave(repeats, 0),
        base.C.repeat_interleave(repeats, 0),
        alpha=1e-3,
    )
    theta = base.get_theta()
    a = weighted.kaufman_factor(weighted.linearize(theta, HEAD_ALPHA))
    b = repeated.kaufman_factor(repeated.linearize(theta, HEAD_ALPHA))
    torch.testing.assert_close(a @ a.T, b @ b.T, rtol=1e-10, atol=1e-12)


def test_problem_on_rows_is_the_problem_of_those_rows():
    problem = _problem(n=20, seed=9)
    rows = torch.tensor([3, 17, 0, 8, 11, 5])
    theta = problem.get_theta()
    built = ReducedProblem(
        problem.net, problem.X[rows], problem.C[rows], problem.weight[rows], THETA_ALPHA
    )
    sampled = problem.on_rows(rows)
    lin = sampled.linearize(theta, HEAD_ALPHA, differentiable=True)
    expected = built.linearize(theta, HEAD_ALPHA, differentiable=True)
    assert lin.value == pytest.approx(expected.value, rel=1e-14)
    torch.testing.assert_close(
        sampled.gradient(lin), built.gradient(expected), rtol=1e-13, atol=0
    )
    # A mean loss over the sample: all rows of equal weight give the full value.
    assert problem.on_rows(torch.arange(20)).linearize(
        theta, HEAD_ALPHA
    ).value == pytest.approx(problem.linearize(theta, HEAD_ALPHA).value, rel=1e-14)


def _one_step(curvature_rows, preconditioner="auto"):
    problem = _problem(n=60, width=5, seed=10)
    value = gnvpro_step(
        problem,
        GNvproState(),
        head_alpha=HEAD_ALPHA,
        curvature_rows=curvature_rows,
        preconditioner=preconditioner,
    )
    return problem, value


@pytest.mark.parametrize("preconditioner", ["auto", None])
def test_curvature_on_every_row_is_the_full_step(preconditioner):
    # The sample's rows in another order: the same matrix, so the same step (to
    # rounding, which 20 unpreconditioned CG steps amplify to ~4e-8 in theta and
    # ~1.4e-9 in the value over 200 permutations).
    full, full_value = _one_step(None, preconditioner=preconditioner)
    order = torch.randperm(60, generator=torch.Generator().manual_seed(3))
    every, every_value = _one_step(order, preconditioner=preconditioner)
    assert every_value == pytest.approx(full_value, rel=1e-8)
    torch.testing.assert_close(every.get_theta(), full.get_theta(), rtol=0, atol=1e-7)
    assert every.work_units == full.work_units + 1  # the sample's own forward pass


def test_sampled_curvature_steps_descend_and_count_their_share():
    rows = torch.randperm(60, generator=torch.Generator().manual_seed(11))[:20]
    problem, value = _one_step(rows)
    start = _problem(n=60, width=5, seed=10)
    assert value < start.linearize(start.get_theta(), HEAD_ALPHA).value
    # Of one iteration's passes on all rows, only the gradient, the objective and
    # the trials are whole; the CG products count a third of a pass each.
    full, _ = _one_step(None)
    assert problem.work_units != int(problem.work_units)  # a share of a pass
    assert problem.work_units < full.work_units


def test_relinearize_equals_a_fresh_linearization():
    # The next iteration rebuilds the accepted trial point's linearization from
    # its features and SVD: the same head, GCV weight, objective and products.
    problem = _problem(n=30, width=5, seed=8)
    theta = problem.get_theta() + 0.05
    trial = problem.trial_linearize(theta, HEAD_ALPHA)
    assert trial.maps is not None  # the hand-written MLP keeps them
    problem.alpha = 3e-3  # a later iteration of the continuation: another penalty
    fresh = problem.linearize(theta, "gcv", differentiable=True)
    rebuilt = problem.relinearize(trial, "gcv")
    assert rebuilt.head_alpha == fresh.head_alpha
    assert rebuilt.value == fresh.value
    for name in ("Z", "W", "R", "U", "V", "s"):
        assert torch.equal(getattr(rebuilt, name), getattr(fresh, name)), name
    v = torch.randn(theta.numel(), generator=torch.Generator().manual_seed(0))
    v = v.to(theta)
    assert torch.equal(problem.gauss_newton(rebuilt)(v), problem.gauss_newton(fresh)(v))
    assert torch.equal(problem.gradient(rebuilt), problem.gradient(fresh))


def test_steps_started_from_the_last_iterate_are_the_fresh_steps():
    # gnvpro_step with start= (what the trainer passes) takes the same steps as
    # without, in fewer passes over the data.
    runs = []
    for reuse in (False, True):
        problem = _problem(n=40, width=6, seed=4)
        state, start, values = GNvproState(), None, []
        for _ in range(8):
            values.append(
                gnvpro_step(
                    problem, state, head_alpha="gcv", start=start if reuse else None
                )
            )
            start = problem.current
        runs.append((values, problem.get_theta(), problem.work_units))
    (values, theta, passes), (reused_values, reused_theta, reused_passes) = runs
    assert reused_values == values
    assert torch.equal(reused_theta, theta)
    assert reused_passes < passes


def test_a_start_at_another_theta_is_not_reused():
    # After a restore or a restart the last linearization is of another iterate.
    values = []
    for stale in (False, True):
        problem = _problem(n=40, width=6, seed=4)
        state = GNvproState()
        gnvpro_step(problem, state, head_alpha="gcv")
        start = problem.current
        with torch.no_grad():
            problem.set_theta(problem.get_theta() + 0.1)
        values.append(
            gnvpro_step(
                problem, state, head_alpha="gcv", start=start if stale else None
            )
        )
    assert values[1] == values[0]


def test_trial_points_keep_no_maps_above_the_row_budget(monkeypatch):
    # Two linearizations' maps at once: above the budget the trial keeps none
    # (and the next iteration linearizes afresh).
    import sk_slim.training.reduced as reduced_module

    problem = _problem(n=30, width=5, seed=8)
    theta = problem.get_theta() + 0.05
    assert problem.trial_linearize(theta, HEAD_ALPHA).maps is not None
    monkeypatch.setattr(reduced_module, "_TRIAL_MAPS_MAX_ROWS", 29)
    assert problem.trial_linearize(theta, HEAD_ALPHA).maps is None
