"""slimTik against batch ridge and brute-force sGCV: with unlimited memory and a
constant regularization it reproduces batch ridge regression exactly (the recursive
least-squares identity), and its closed-form sGCV equals the brute-force one."""

import math

import numpy as np
import pytest
import torch

from sk_slim.linalg import SlimTik, tikhonov_svd


def _batches(n_batches=6, n=10, p=5, c=3, seed=0, noise=0.1):
    g = torch.Generator().manual_seed(seed)
    W_true = torch.randn(p, c, generator=g, dtype=torch.float64)
    out = []
    for _ in range(n_batches):
        Z = torch.randn(n, p, generator=g, dtype=torch.float64)
        C = Z @ W_true + noise * torch.randn(n, c, generator=g, dtype=torch.float64)
        out.append((Z, C))
    return out


@pytest.mark.parametrize("memory_depth", [None, 7])
def test_full_memory_constant_lambda_equals_batch_ridge(memory_depth):
    # Recursive least squares: with every batch in memory and W0 = 0, W_k solves
    # ridge on all data seen, with weight Lambda_k = Lambda_0 + k * lam.
    n, lam0, lam = 10, 0.3, 0.05
    batches = _batches(n_batches=8, n=n)
    solver = SlimTik(5, 3, memory_depth=memory_depth, lam=lam, lam_init=lam0)
    for k, (Z, C) in enumerate(batches, start=1):
        W = solver.update(Z, C)
        Z_all = torch.cat([b[0] for b in batches[:k]])
        C_all = torch.cat([b[1] for b in batches[:k]])
        # Each batch was scaled by 1/sqrt(n), so the ridge weight scales by n.
        oracle = tikhonov_svd(Z_all, C_all, n * (lam0 + k * lam))
        torch.testing.assert_close(W, oracle, rtol=1e-10, atol=1e-12)
    assert solver.state.Lambda == pytest.approx(lam0 + len(batches) * lam)


def test_weighted_batches_equal_weighted_ridge():
    # Each batch's loss is a weighted mean, so batch j's rows carry w / sum(w_j).
    lam0 = 0.2
    batches = _batches(n_batches=4, n=10, seed=1)
    g = torch.Generator().manual_seed(2)
    weights = [torch.rand(10, generator=g, dtype=torch.float64) + 0.5 for _ in batches]
    solver = SlimTik(5, 3, memory_depth=None, lam=0.0, lam_init=lam0)
    for (Z, C), w in zip(batches, weights, strict=True):
        W = solver.update(Z, C, sample_weight=w)
    oracle = tikhonov_svd(
        torch.cat([b[0] for b in batches]),
        torch.cat([b[1] for b in batches]),
        lam0,
        sample_weight=torch.cat([w / w.sum() for w in weights]),
    )
    torch.testing.assert_close(W, oracle, rtol=1e-10, atol=1e-12)


def test_integer_weights_equal_repeated_rows():
    batches = _batches(n_batches=3, n=8, seed=9, noise=0.3)
    weight = torch.tensor([0, 1, 2, 3, 1, 1, 2, 0], dtype=torch.float64)
    weighted, repeated = SlimTik(5, 3), SlimTik(5, 3)
    for Z, C in batches:
        weighted.update(Z, C, sample_weight=weight)
        repeated.update(
            Z.repeat_interleave(weight.long(), 0), C.repeat_interleave(weight.long(), 0)
        )
        assert weighted.state.lam == pytest.approx(repeated.state.lam, rel=1e-9)
    torch.testing.assert_close(weighted.W, repeated.W, rtol=1e-9, atol=1e-12)


def test_zero_total_weight_is_an_error():
    (Z, C), *_ = _batches(n_batches=1)
    with pytest.raises(ValueError, match="sum to zero"):
        SlimTik(5, 3).update(Z, C, sample_weight=torch.zeros(10))


def test_finite_memory_forgets_old_batches():
    # With r = 0 the curvature is the current batch only: W_k = W_{k-1} - ...
    # with G = Z_k^T Z_k + Lambda_k I, Lambda_2 = 0.2 + 2 * 0.1. Dense-solve oracle.
    (Z1, C1), (Z2, C2) = _batches(n_batches=2, seed=3)
    solver = SlimTik(5, 3, memory_depth=0, lam=0.1, lam_init=0.2)
    W1 = solver.update(Z1, C1).clone()
    W2 = solver.update(Z2, C2)
    Zs, Cs = Z2 / math.sqrt(10), C2 / math.sqrt(10)
    G = Zs.T @ Zs + 0.4 * torch.eye(5, dtype=torch.float64)
    oracle = W1 - torch.linalg.solve(G, Zs.T @ (Zs @ W1 - Cs) + 0.1 * W1)
    torch.testing.assert_close(W2, oracle, rtol=1e-10, atol=1e-12)
    assert len(solver.state.grams) == 1


def _brute_force_sgcv(memory, Z, C, W, Lambda, lam):
    """Oracle: the sGCV definition with explicit inverses (no SVD, no closed form)."""
    n, c = C.shape
    Zs, Cs = Z / math.sqrt(n), C / math.sqrt(n)
    M = torch.cat([*memory, Zs])  # all scaled batches in memory, (rows, p)
    G_inv = torch.linalg.inv(
        M.T @ M + (Lambda + lam) * torch.eye(M.shape[1], dtype=torch.float64)
    )
    W_lam = W - G_inv @ (Zs.T @ (Zs @ W - Cs) + lam * W)
    rho = ((Zs @ W_lam - Cs) ** 2).sum()
    trace = c * torch.trace(Zs @ G_inv @ Zs.T)
    return float(rho / (n * c - trace) ** 2)


@pytest.mark.parametrize("p", [4, 40])  # p = 40 > (r + 1) n: a rank-deficient Gram
def test_sgcv_closed_form_equals_brute_force(p):
    r, n = 2, 6
    batches = _batches(n_batches=4, n=n, p=p, seed=4)
    solver = SlimTik(p, 3, memory_depth=r, lam=0.05, lam_init=0.2)
    for Z, C in batches[:3]:
        solver.update(Z, C)
    Z, C = batches[3]
    # The new batch pushes out the oldest: memory = batches 1, 2 and the new one.
    memory = [b[0] / math.sqrt(n) for b in batches[1:3]]
    lams = torch.tensor([-0.05, 0.0, 0.3, 2.0], dtype=torch.float64)
    closed = solver.sgcv(Z, C, lams)
    Lambda, W = solver.state.Lambda, solver.state.W
    brute = [_brute_force_sgcv(memory, Z, C, W, Lambda, float(lam)) for lam in lams]
    np.testing.assert_allclose(closed.numpy(), brute, rtol=1e-9)


def test_update_picks_the_sgcv_minimiser_and_respects_lower_bound():
    batches = _batches(n_batches=5, seed=5, noise=0.5)
    solver = SlimTik(5, 3, memory_depth=2)
    for Z, C in batches:
        trials = solver.trial_increments()
        scores = solver.sgcv(Z, C, trials)
        before = solver.state.Lambda
        solver.update(Z, C)
        state = solver.state
        assert state.sgcv == pytest.approx(float(scores.min()), rel=1e-12)
        assert state.Lambda == pytest.approx(before + state.lam)
        assert state.Lambda >= solver.lower_bound
    assert state.n_updates == 5


@pytest.mark.parametrize("namespace", ["torch", "numpy"])
def test_sgcv_every_chooses_on_every_kth_batch_and_keeps_lambda_between(namespace):
    # Batches 0 and 3 choose by sGCV exactly as an every-batch solver would from
    # the same state; batches 1, 2 and 4 keep Lambda (increment 0) and take the
    # dense-solve step W - (memory Gram + Lambda I)^{-1} Z^T (Z W - C) / n.
    r, n = 2, 10
    batches = _batches(n_batches=5, n=n, seed=6, noise=0.5)
    solver = SlimTik(5, 3, memory_depth=r, sgcv_every=3)
    if namespace == "numpy":
        solver.state.W = solver.state.W.numpy()
        batches = [(Z.numpy(), C.numpy()) for Z, C in batches]
    for k, (Z, C) in enumerate(batches):
        before = solver.state.clone() if namespace == "torch" else None
        W_prev = torch.as_tensor(solver.state.W).clone()
        Lambda_prev = solver.state.Lambda
        in_memory = batches[max(0, k - r) : k]
        memory = [torch.as_tensor(b[0]) / math.sqrt(n) for b in in_memory]
        W = torch.as_tensor(solver.update(Z, C))
        state = solver.state
        if k % 3 == 0:
            assert math.isfinite(state.sgcv)
            if before is not None:
                reference = SlimTik(5, 3, memory_depth=r)
                reference.state = before
                reference.update(Z, C)
                torch.testing.assert_close(W, reference.W, rtol=1e-12, atol=1e-14)
                assert state.lam == reference.state.lam
            continue
        assert math.isnan(state.sgcv)
        assert state.lam == 0.0 and state.Lambda == Lambda_prev
        Zs = torch.as_tensor(Z) / math.sqrt(n)
        Cs = torch.as_tensor(C) / math.sqrt(n)
        gram = sum((M.T @ M for M in memory), Zs.T @ Zs)
        G = gram + state.Lambda * torch.eye(5, dtype=torch.float64)
        oracle = W_prev - torch.linalg.solve(G, Zs.T @ (Zs @ W_prev - Cs))
        torch.testing.assert_close(W, oracle, rtol=1e-10, atol=1e-12)
    assert state.n_updates == 5


def test_sgcv_every_gives_the_same_heads_in_torch_and_numpy():
    batches = _batches(n_batches=7, n=12, seed=7, noise=0.3)
    torch_solver = SlimTik(5, 3, memory_depth=2, sgcv_every=2)
    numpy_solver = SlimTik(5, 3, memory_depth=2, sgcv_every=2)
    numpy_solver.state.W = numpy_solver.state.W.numpy()
    for Z, C in batches:
        torch_solver.update(Z, C)
        numpy_solver.update(Z.numpy(), C.numpy())
    np.testing.assert_allclose(numpy_solver.W, torch_solver.W.numpy(), rtol=1e-10)
    assert numpy_solver.state.Lambda == pytest.approx(torch_solver.state.Lambda)


def test_sgcv_chooses_more_regularization_for_noisier_data():
    def final_alpha(noise):
        solver = SlimTik(20, 2, memory_depth=5)
        for Z, C in _batches(n_batches=30, n=16, p=20, c=2, seed=6, noise=noise):
            solver.update(Z, C)
        return solver.state.alpha

    assert final_alpha(0.01) < final_alpha(1.0) < final_alpha(10.0)


def test_streaming_head_approaches_ridge_solution():
    # With sGCV and finite memory, after many batches of a noise-free consistent
    # problem the head is close to the truth.
    g = torch.Generator().manual_seed(7)
    W_true = torch.randn(6, 2, generator=g, dtype=torch.float64)
    solver = SlimTik(6, 2, memory_depth=5)
    for _ in range(50):
        Z = torch.randn(16, 6, generator=g, dtype=torch.float64)
        solver.update(Z, Z @ W_true)
    rel_error = torch.linalg.norm(solver.W - W_true) / torch.linalg.norm(W_true)
    assert rel_error < 1e-3


def test_clone_undoes_an_update():
    (Z1, C1), (Z2, C2) = _batches(n_batches=2, seed=8)
    solver = SlimTik(5, 3, memory_depth=3)
    solver.update(Z1, C1)
    saved = solver.state.clone()
    solver.update(Z2, C2)
    assert not torch.equal(solver.W, saved.W)
    solver.state = saved
    assert solver.state.n_updates == 1 and len(solver.state.grams) == 1


def test_numpy_scalar_lam_is_accepted():
    import numpy as np

    solver = SlimTik(5, 3, lam=np.float32(0.1))
    (Z, C), *_ = _batches(n_batches=1)
    solver.update(Z, C)
    assert solver.state.lam == pytest.approx(0.1)
    assert SlimTik(5, 3, sgcv_every=np.int64(4)).sgcv_every == 4  # a grid's value


def test_float32_batches_and_device(device):
    (Z, C), *_ = _batches(n_batches=1)
    solver = SlimTik(5, 3, device=device)
    W = solver.update(Z.float().to(device), C.float().to(device))
    assert W.dtype == torch.float64 and W.device.type == device.type


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"memory_depth": -1}, "memory_depth"),
        ({"lam": "gcv"}, "lam"),
        ({"lam": -1.0}, "lam"),
        ({"lam": True}, "lam"),
        ({"lower_bound": 0.0}, "lower_bound"),
        ({"sgcv_every": 0}, "sgcv_every"),
        ({"sgcv_every": 2.0}, "sgcv_every"),
        ({"sgcv_every": True}, "sgcv_every"),
    ],
)
def test_invalid_parameters(kwargs, match):
    """Also: numpy scalars are accepted as lam and sgcv_every, booleans are not."""
    with pytest.raises(ValueError, match=match):
        SlimTik(3, 1, **kwargs)
