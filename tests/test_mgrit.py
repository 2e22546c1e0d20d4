"""Layer-parallel propagation by MGRIT (the ``parallel`` extra): at convergence,
the serial forward pass and autograd's gradient."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("pymgrit")
pytest.importorskip("mpi4py")

from sk_slim.networks import make_mlp, make_resnet  # noqa: E402
from sk_slim.training.mgrit import mgrit_backward, mgrit_forward  # noqa: E402

F64 = torch.float64


def _resnet(depth, **params):
    g = torch.Generator().manual_seed(depth)
    extractor = make_resnet(3, width=5, depth=depth, generator=g, dtype=F64, **params)
    X = torch.randn(17, 3, generator=g, dtype=F64)
    M = torch.randn(17, 5, generator=g, dtype=F64)
    return extractor, X, M


def _autograd_gradient(extractor, X, M):
    loss = (extractor(X) * M).sum()
    grads = torch.autograd.grad(loss, list(extractor.parameters()))
    return torch.cat([g.reshape(-1) for g in grads])


@pytest.mark.parametrize("depth", [8, 32])
@pytest.mark.parametrize(
    "params", [{}, {"antisymmetric": True}, {"activation": "relu"}], ids=str
)
def test_mgrit_equals_serial_propagation(depth, params):
    extractor, X, M = _resnet(depth, **params)
    states, info = mgrit_forward(extractor, X, levels=3, coarsening=2)
    torch.testing.assert_close(states[-1], extractor(X), rtol=0, atol=1e-10)
    gradient, _ = mgrit_backward(extractor, X, states, M, levels=3, coarsening=2)
    torch.testing.assert_close(
        gradient, _autograd_gradient(extractor, X, M), rtol=1e-8, atol=1e-10
    )


def test_inexact_propagation_converges_with_iterations():
    # One MGRIT iteration is not the serial solution at depth 32; more are.
    extractor, X, _ = _resnet(32)
    exact = extractor(X).detach()
    errors = [
        float((mgrit_forward(extractor, X, max_iter=k)[0][-1] - exact).abs().max())
        for k in (1, 2, 4)
    ]
    assert errors[0] > 1e-6
    assert errors[0] > errors[1] > errors[2]


def test_only_resnets_are_propagated_by_mgrit():
    g = torch.Generator().manual_seed(0)
    mlp = make_mlp(3, (4, 4), generator=g, dtype=F64)
    with pytest.raises(ValueError, match="make_resnet"):
        mgrit_forward(mlp, torch.zeros(2, 3, dtype=F64))


_TWO_PROCESSES = """
import torch
from mpi4py import MPI
from sk_slim.networks import make_resnet
from sk_slim.training.mgrit import mgrit_backward, mgrit_forward
torch.set_num_threads(1)
g = torch.Generator().manual_seed(16)
extractor = make_resnet(3, width=5, depth=16, generator=g, dtype=torch.float64)
X = torch.randn(17, 3, generator=g, dtype=torch.float64)
M = torch.randn(17, 5, generator=g, dtype=torch.float64)
states, _ = mgrit_forward(extractor, X, comm_time=MPI.COMM_WORLD)
gradient, _ = mgrit_backward(extractor, X, states, M, comm_time=MPI.COMM_WORLD)
out = extractor(X)
loss = (out * M).sum()
grads = torch.autograd.grad(loss, list(extractor.parameters()))
auto = torch.cat([a.reshape(-1) for a in grads])
out = out.detach()
ok = len(states) == 17 and float((states[-1] - out).abs().max()) < 1e-10
ok = ok and float((gradient - auto).abs().max()) < 1e-8 * float(auto.abs().max())
results = MPI.COMM_WORLD.gather(ok)  # one line, from rank 0: no interleaving
if MPI.COMM_WORLD.Get_rank() == 0:
    print("RANKS", " ".join("OK" if r else "FAILED" for r in results))
"""


def _mpiexec():
    """The mpiexec of the ``mpich`` wheel beside this Python, or one on the PATH."""
    beside = Path(sys.executable).parent / "mpiexec"
    return str(beside) if beside.exists() else shutil.which("mpiexec")


@pytest.mark.skipif(_mpiexec() is None, reason="needs mpiexec (the mpich wheel)")
def test_two_mpi_processes_share_the_time_points(tmp_path):
    # Two processes on loopback, one thread each, every wait bounded.
    script = tmp_path / "two.py"
    script.write_text(_TWO_PROCESSES)
    run = subprocess.run(
        [_mpiexec(), "-n", "2", "-host", "127.0.0.1", sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "RANKS OK OK" in run.stdout.splitlines()


def test_training_with_two_mgrit_iterations_reaches_the_serial_score():
    from sklearn.model_selection import train_test_split

    from sk_slim import SlimTrainRegressor

    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, (600, 3))
    y = np.sin(2 * X[:, 0]) + X[:, 1] ** 2 - X[:, 2] + 0.05 * rng.standard_normal(600)
    X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)
    fits = {}
    for iterations in (None, 2):
        # make_resnet draws from system entropy without a generator (random_state
        # does not reach it): both fits start from this network.
        network = {"width": 8, "depth": 16, "generator": torch.Generator()}
        network["generator"].manual_seed(0)
        model = SlimTrainRegressor(
            feature_extractor=make_resnet,
            feature_extractor_kwargs=network,
            mgrit_iterations=iterations,
            max_iter=100,
            random_state=0,
            dtype="float64",  # float32 fits differed between machines by 0.01
        )
        fits[iterations] = model.fit(X_train, y_train)
    serial, inexact = fits[None], fits[2]
    # The propagation is inexact (another path), yet the score is the same.
    assert inexact.loss_curve_ != serial.loss_curve_
    assert inexact.score(X_test, y_test) == pytest.approx(
        serial.score(X_test, y_test), abs=0.01
    )
    assert serial.score(X_test, y_test) > 0.95


def test_mgrit_iterations_need_a_resnet_and_a_mini_batch_solver():
    from sk_slim import SlimTrainRegressor

    X, y = np.random.default_rng(0).standard_normal((50, 3)), np.arange(50.0)
    with pytest.raises(ValueError, match="make_resnet"):
        SlimTrainRegressor(mgrit_iterations=2, max_iter=2).fit(X, y)
    with pytest.raises(ValueError, match="lsgd"):
        SlimTrainRegressor(
            feature_extractor=make_resnet, mgrit_iterations=2, solver="lsgd"
        ).fit(X, y)
