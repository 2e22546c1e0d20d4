"""Krylov solvers against dense oracles: torch.linalg.solve / lstsq / pinv."""

import pytest
import torch

from sk_slim.linalg.krylov import KrylovResult, cg, lsqr, steihaug_cg

DT = torch.float64


def _relerr(x, ref):
    return float(torch.linalg.vector_norm(x - ref) / torch.linalg.vector_norm(ref))


def _spd(n, generator, dtype=DT):
    """A = B^T B + 0.1 I: SPD with condition number in the hundreds."""
    B = torch.randn(n, n, generator=generator, dtype=dtype)
    return B.T @ B + 0.1 * torch.eye(n, dtype=dtype)  # (n, n)


def _symmetric(eigenvalues, generator):
    """Q diag(eigenvalues) Q^T with a random orthogonal Q."""
    n = eigenvalues.shape[0]
    Q, _ = torch.linalg.qr(torch.randn(n, n, generator=generator, dtype=DT))
    return Q @ torch.diag(eigenvalues) @ Q.T, Q


def _model(A, b, x):
    """The trust-region model m(x) = -b^T x + 1/2 x^T A x, evaluated densely."""
    return float(-b @ x + 0.5 * x @ (A @ x))


# ------------------------------------------------------------------------------- cg


def test_cg_matches_solve(generator):
    A = _spd(30, generator)
    b = torch.randn(30, generator=generator, dtype=DT)
    res = cg(lambda p: A @ p, b, rtol=1e-12)
    assert isinstance(res, KrylovResult)
    assert res.reason == "converged"
    assert res.x.shape == b.shape and res.residual_norm.shape == ()
    assert _relerr(res.x, torch.linalg.solve(A, b)) < 1e-9
    true_residual = torch.linalg.vector_norm(b - A @ res.x)
    assert float(res.residual_norm) <= 1e-12 * float(torch.linalg.vector_norm(b))
    assert float(true_residual) < 1e-10 * float(torch.linalg.vector_norm(b))


def test_preconditioned_cg_matches_solve_in_fewer_iterations(generator):
    # Columns scaled over six decades: plain CG crawls; with the inverse of an
    # SPD matrix near A (here A's diagonal part), far fewer iterations reach
    # the same solution, judged on the unpreconditioned residual (measured: 44
    # iterations against 618).
    D = torch.diag(torch.logspace(-3, 3, 40, dtype=DT))
    A = D @ _spd(40, generator) @ D + D
    b = torch.randn(40, generator=generator, dtype=DT)
    plain = cg(lambda p: A @ p, b, rtol=1e-10, max_iter=4000)
    diagonal = A.diagonal()
    pcg = cg(lambda p: A @ p, b, rtol=1e-10, preconditioner=lambda r: r / diagonal)
    assert pcg.reason == plain.reason == "converged"
    assert pcg.n_iter < plain.n_iter / 3
    reference = torch.linalg.solve(A, b)
    assert _relerr(pcg.x, reference) < 1e-6
    assert float(torch.linalg.vector_norm(b - A @ pcg.x)) < 1e-8 * float(
        torch.linalg.vector_norm(b)
    )
    exact = cg(lambda p: A @ p, b, preconditioner=lambda r: torch.linalg.solve(A, r))
    assert exact.n_iter == 1


def test_cg_multiple_rhs_each_column_matches_lstsq(generator):
    A = _spd(30, generator)
    scales = torch.tensor([1e-4, 1.0, 1e4], dtype=DT)
    B = torch.randn(30, 3, generator=generator, dtype=DT) * scales  # (30, 3)
    res = cg(lambda P: A @ P, B, rtol=1e-12)
    ref = torch.linalg.lstsq(A, B).solution  # (30, 3)
    assert res.reason == "converged" and res.residual_norm.shape == (3,)
    for j in range(3):
        assert _relerr(res.x[:, j], ref[:, j]) < 1e-9, j


def test_cg_converged_columns_stop_updating(generator):
    # With an absolute tolerance, columns of scale 1e-4, 1, 1e4 need relative
    # accuracies 1e-2, 1e-6, 1e-10: they converge at different iterations, and
    # each must end where its own single-column solve ends.
    A, _ = _symmetric(torch.logspace(0, 2, 30, dtype=DT), generator)
    scales = torch.tensor([1e-4, 1.0, 1e4], dtype=DT)
    B = torch.randn(30, 3, generator=generator, dtype=DT) * scales
    res = cg(lambda P: A @ P, B, rtol=0.0, atol=1e-6)
    solos = [cg(lambda p: A @ p, B[:, j], rtol=0.0, atol=1e-6) for j in range(3)]
    iters = [s.n_iter for s in solos]
    assert len(set(iters)) == 3 and res.n_iter == max(iters)
    assert res.reason == "converged"
    for j, solo in enumerate(solos):
        # gemm-vs-gemv rounding moves a stopped CG iterate by ~1e-7 relative; a
        # column that kept iterating would move by ~1e-3.
        assert _relerr(res.x[:, j], solo.x) < 1e-5, j
    # Every column stopped near its tolerance, none was refined further.
    true_residual = torch.linalg.vector_norm(B - A @ res.x, dim=0)
    assert bool((true_residual <= 1e-6).all() and (true_residual >= 1e-8).all())
    torch.testing.assert_close(res.residual_norm, true_residual, rtol=1e-3, atol=0)
    # The error is bounded by ||A^-1|| * atol = atol.
    err = torch.linalg.vector_norm(res.x - torch.linalg.solve(A, B), dim=0)
    assert bool((err <= 1.01 * 1e-6).all())


def test_cg_zero_rhs(generator):
    A = _spd(10, generator)
    res = cg(lambda p: A @ p, torch.zeros(10, dtype=DT))
    assert res.reason == "converged" and res.n_iter == 0
    assert bool((res.x == 0).all()) and float(res.residual_norm) == 0.0

    B = torch.randn(10, 2, generator=generator, dtype=DT)
    B[:, 0] = 0.0
    x0 = torch.ones(10, 2, dtype=DT)
    res = cg(lambda P: A @ P, B, x0, rtol=1e-12)
    assert bool((res.x[:, 0] == 0).all())
    assert _relerr(res.x[:, 1], torch.linalg.solve(A, B[:, 1])) < 1e-9


def test_cg_warm_start_at_solution_does_not_iterate(generator):
    A = _spd(20, generator)
    b = torch.randn(20, generator=generator, dtype=DT)
    xstar = torch.linalg.solve(A, b)
    res = cg(lambda p: A @ p, b, xstar, rtol=1e-8)
    assert res.reason == "converged" and res.n_iter == 0
    assert torch.equal(res.x, xstar)


def test_cg_negative_curvature(generator):
    A, _ = _symmetric(torch.linspace(-1.0, 5.0, 20, dtype=DT), generator)
    b = torch.randn(20, generator=generator, dtype=DT)
    res = cg(lambda p: A @ p, b, rtol=1e-12)
    assert res.reason == "negative_curvature"
    assert bool(torch.isfinite(res.x).all())


def test_cg_max_iter(generator):
    A = _spd(30, generator)
    b = torch.randn(30, generator=generator, dtype=DT)
    res = cg(lambda p: A @ p, b, rtol=1e-12, max_iter=3)
    assert res.reason == "max_iter" and res.n_iter == 3


def test_cg_rejects_bad_rhs():
    with pytest.raises(ValueError, match="shape"):
        cg(lambda p: p, torch.zeros(2, 2, 2, dtype=DT))
    with pytest.raises(TypeError, match="floating"):
        cg(lambda p: p, torch.zeros(3, dtype=torch.int64))


# ---------------------------------------------------------------------- steihaug_cg


def test_steihaug_large_radius_is_cg(generator):
    A = _spd(30, generator)
    b = torch.randn(30, generator=generator, dtype=DT)
    res = steihaug_cg(lambda p: A @ p, b, radius=1e6, rtol=1e-12)
    ref = cg(lambda p: A @ p, b, rtol=1e-12)
    assert res.reason == "converged" and res.n_iter == ref.n_iter
    assert _relerr(res.x, ref.x) < 1e-12
    # At the minimiser the decrease is b^T x* / 2.
    assert res.predicted_reduction == pytest.approx(0.5 * float(b @ ref.x), rel=1e-10)


def test_steihaug_small_radius_ends_on_boundary(generator):
    A = _spd(30, generator)
    b = torch.randn(30, generator=generator, dtype=DT)
    radius = 0.1 * float(torch.linalg.vector_norm(torch.linalg.solve(A, b)))
    res = steihaug_cg(lambda p: A @ p, b, radius, rtol=1e-12)
    assert res.reason == "boundary"
    assert float(torch.linalg.vector_norm(res.x)) == pytest.approx(radius, rel=1e-12)

    # Tiny radius: the first CG step leaves the ball, so x is along b.
    tiny = 1e-8
    res = steihaug_cg(lambda p: A @ p, b, tiny)
    assert res.reason == "boundary" and res.n_iter == 1
    expected = tiny * b / torch.linalg.vector_norm(b)
    assert _relerr(res.x, expected) < 1e-12


def test_steihaug_negative_curvature_goes_to_boundary(generator):
    eigenvalues = torch.linspace(1.0, 10.0, 30, dtype=DT)
    eigenvalues[0] = -0.5
    A, _ = _symmetric(eigenvalues, generator)
    b = torch.randn(30, generator=generator, dtype=DT)
    radius = 1e3
    res = steihaug_cg(lambda p: A @ p, b, radius, rtol=1e-12)
    assert res.reason == "negative_curvature" and res.n_iter > 1
    assert float(torch.linalg.vector_norm(res.x)) == pytest.approx(radius, rel=1e-12)
    assert res.predicted_reduction > 0


@pytest.mark.parametrize(
    ("indefinite", "radius", "reason"),
    [(False, 1e6, "converged"), (False, 0.5, "boundary"), (True, 10.0, None)],
)
def test_steihaug_predicted_reduction_is_model_decrease(
    generator, indefinite, radius, reason
):
    eigenvalues = torch.linspace(0.1, 10.0, 25, dtype=DT)
    if indefinite:
        eigenvalues[:3] = -1.0
    A, _ = _symmetric(eigenvalues, generator)
    b = torch.randn(25, generator=generator, dtype=DT)
    calls = []

    def matvec(p):
        calls.append(1)
        return A @ p

    res = steihaug_cg(matvec, b, radius, rtol=1e-10)
    if reason is not None:
        assert res.reason == reason
    assert len(calls) == res.n_iter  # the reduction costs no extra product
    explicit = -_model(A, b, res.x)
    assert explicit > 0
    assert res.predicted_reduction == pytest.approx(explicit, rel=1e-10)
    # residual_norm is ||b - A x|| for the returned x, boundary step included.
    true_residual = torch.linalg.vector_norm(b - A @ res.x)
    assert float(res.residual_norm) == pytest.approx(float(true_residual), rel=1e-8)


@pytest.mark.parametrize("indefinite", [False, True])
def test_steihaug_radius_sweep(generator, indefinite):
    # Steihaug's theorem: along the CG path ||x_i|| increases and m(x_i)
    # decreases, so the model value at the result is non-increasing in the radius.
    eigenvalues = torch.logspace(-2, 1, 25, dtype=DT)
    if indefinite:
        eigenvalues[0] = -0.1
    A, _ = _symmetric(eigenvalues, generator)
    b = torch.randn(25, generator=generator, dtype=DT)
    values = []
    for radius in torch.logspace(-3, 3, 25).tolist():
        res = steihaug_cg(lambda p: A @ p, b, radius, rtol=1e-10)
        assert float(torch.linalg.vector_norm(res.x)) <= radius * (1 + 1e-12)
        values.append(_model(A, b, res.x))
    for small, large in zip(values, values[1:], strict=False):
        assert large <= small + 1e-12 * abs(small)
    assert values[-1] < values[0]


def test_steihaug_max_iter_and_validation(generator):
    A = _spd(30, generator)
    b = torch.randn(30, generator=generator, dtype=DT)
    res = steihaug_cg(lambda p: A @ p, b, 1e6, rtol=1e-12, max_iter=2)
    assert res.reason == "max_iter" and res.n_iter == 2
    res = steihaug_cg(lambda p: A @ p, torch.zeros(30, dtype=DT), 1.0)
    assert res.reason == "converged" and res.n_iter == 0
    assert res.predicted_reduction == 0.0
    with pytest.raises(ValueError, match="shape"):
        steihaug_cg(lambda p: p, torch.zeros(3, 2, dtype=DT), 1.0)
    with pytest.raises(ValueError, match="radius"):
        steihaug_cg(lambda p: p, torch.ones(3, dtype=DT), 0.0)


# ----------------------------------------------------------------------------- lsqr


def _lsqr(A, b, **kwargs):
    return lsqr(lambda V: A @ V, lambda U: A.T @ U, b, **kwargs)


def test_lsqr_matches_lstsq_overdetermined(generator):
    A = torch.randn(50, 20, generator=generator, dtype=DT)
    b = torch.randn(50, generator=generator, dtype=DT)
    res = _lsqr(A, b, atol=1e-12, btol=1e-12)
    ref = torch.linalg.lstsq(A, b.unsqueeze(-1)).solution.squeeze(-1)
    assert res.reason == "converged" and res.x.shape == (20,)
    assert _relerr(res.x, ref) < 1e-8
    true_residual = torch.linalg.vector_norm(b - A @ res.x)
    assert float(res.residual_norm) == pytest.approx(float(true_residual), rel=1e-8)


def test_lsqr_multiple_rhs(generator):
    A = torch.randn(50, 20, generator=generator, dtype=DT)
    scales = torch.tensor([1e-3, 1.0, 1e3], dtype=DT)
    B = torch.randn(50, 3, generator=generator, dtype=DT) * scales  # (50, 3)
    B[:, 1] = A @ torch.randn(20, generator=generator, dtype=DT)  # compatible
    res = _lsqr(A, B, atol=1e-12, btol=1e-12)
    ref = torch.linalg.lstsq(A, B).solution  # (20, 3)
    assert res.reason == "converged" and res.residual_norm.shape == (3,)
    for j in range(3):
        assert _relerr(res.x[:, j], ref[:, j]) < 1e-8, j
        solo = _lsqr(A, B[:, j], atol=1e-12, btol=1e-12)
        assert _relerr(res.x[:, j], solo.x) < 1e-12, j


def test_lsqr_damped_matches_stacked_lstsq(generator):
    A = torch.randn(50, 20, generator=generator, dtype=DT)
    b = torch.randn(50, 2, generator=generator, dtype=DT)
    damp = 3.0
    res = _lsqr(A, b, damp=damp, atol=1e-12, btol=1e-12)
    stacked = torch.cat([A, damp * torch.eye(20, dtype=DT)])  # (70, 20)
    rhs = torch.cat([b, torch.zeros(20, 2, dtype=DT)])  # (70, 2)
    ref = torch.linalg.lstsq(stacked, rhs).solution
    for j in range(2):
        assert _relerr(res.x[:, j], ref[:, j]) < 1e-8, j
    true_residual = torch.linalg.vector_norm(rhs - stacked @ res.x, dim=0)
    torch.testing.assert_close(res.residual_norm, true_residual, rtol=1e-8, atol=0)


def test_lsqr_underdetermined_gives_minimum_norm(generator):
    A = torch.randn(15, 40, generator=generator, dtype=DT)
    # A has full row rank, so A x = b is consistent with infinitely many solutions.
    b = torch.randn(15, generator=generator, dtype=DT)
    res = _lsqr(A, b, atol=1e-12, btol=1e-12)
    assert res.reason == "converged"
    assert _relerr(res.x, torch.linalg.pinv(A) @ b) < 1e-8


def test_lsqr_zero_rhs_and_max_iter(generator):
    A = torch.randn(50, 20, generator=generator, dtype=DT)
    res = _lsqr(A, torch.zeros(50, dtype=DT))
    assert res.reason == "converged" and res.n_iter == 0
    assert res.x.shape == (20,) and bool((res.x == 0).all())

    B = torch.randn(50, 2, generator=generator, dtype=DT)
    B[:, 0] = 0.0
    res = _lsqr(A, B, atol=1e-12, btol=1e-12)
    assert bool((res.x[:, 0] == 0).all()) and float(res.residual_norm[0]) == 0.0

    res = _lsqr(A, B, atol=1e-12, btol=1e-12, max_iter=3)
    assert res.reason == "max_iter" and res.n_iter == 3


# ------------------------------------------------------------- dtypes and devices


def _well_conditioned(n, generator, dtype):
    """SPD with eigenvalues in [1, 4], and a right-hand side."""
    A, _ = _symmetric(torch.linspace(1.0, 4.0, n, dtype=DT), generator)
    b = torch.randn(n, generator=generator, dtype=DT)
    return A.to(dtype), b.to(dtype), torch.linalg.solve(A, b)


def _solve_all(A, b):
    """Each solver on the SPD system A x = b; steihaug_cg with an inactive radius."""
    return {
        "cg": cg(lambda p: A @ p, b, rtol=1e-6),
        "steihaug_cg": steihaug_cg(lambda p: A @ p, b, 1e3, rtol=1e-6),
        "lsqr": lsqr(lambda v: A @ v, lambda u: A.T @ u, b, atol=1e-6, btol=1e-6),
    }


def test_float32_keeps_dtype(generator):
    A, b, ref = _well_conditioned(20, generator, torch.float32)
    for name, res in _solve_all(A, b).items():
        assert res.x.dtype == torch.float32, name
        assert res.residual_norm.dtype == torch.float32, name
        assert res.reason == "converged", name
        assert _relerr(res.x.double(), ref) < 1e-4, name


def test_solvers_stay_on_device(generator, device):
    A, b, ref = _well_conditioned(20, generator, DT)
    A, b = A.to(device), b.to(device)
    for name, res in _solve_all(A, b).items():
        assert res.x.device.type == device.type, name
        assert res.residual_norm.device.type == device.type, name
        assert _relerr(res.x.cpu(), ref) < 1e-5, name
