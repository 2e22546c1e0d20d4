"""slimTrain's numpy step against its torch step: the same iteration.

The numpy route (``sk_slim/training/numpy_step.py``) must take the steps the
hand-written torch step and the torch optimizer take, to rounding: parameters,
head, slimTik's state and the optimizer's moments, over several batches; and it
must leave the cases it does not implement to torch.
"""

import warnings
from unittest import mock

import numpy as np
import pytest
import torch
from torch import nn

from sk_slim.linalg import SlimTik
from sk_slim.networks import SeparableNet, make_mlp, make_resnet
from sk_slim.rows import LOCAL_ROWS
from sk_slim.training import make_slimtik, slimtrain_epoch, slimtrain_step
from sk_slim.training.numpy_step import NumpyStep

ACTIVATIONS = ["tanh", "logistic", "relu", "identity"]


def _net(activation="tanh", seed=0, n_in=3, n_out=2, dtype=torch.float64):
    generator = torch.Generator().manual_seed(seed)
    extractor = make_mlp(n_in, (6, 5), activation=activation, generator=generator)
    net = SeparableNet(extractor.to(dtype), 5, n_out).to(dtype)
    head = torch.randn(6, n_out, generator=generator, dtype=torch.float64)
    net.set_head(0.1 * head)
    return net


def _optimizer(net, solver):
    # As SlimTrainTrainer builds it: L2 on weight matrices, one fused kernel.
    params = list(net.feature_extractor.parameters())
    groups = [
        {"params": [p for p in params if p.ndim > 1], "weight_decay": 1e-3},
        {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0},
    ]
    if solver == "adam":
        return torch.optim.Adam(groups, lr=1e-2, fused=True)
    return torch.optim.SGD(groups, lr=1e-2, momentum=0.9, nesterov=True, fused=True)


def _data(n=37, seed=1, dtype=torch.float64):
    generator = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 3, generator=generator, dtype=dtype)
    C = torch.sin(X[:, :2]) + 0.1 * torch.randn(n, 2, generator=generator, dtype=dtype)
    weight = torch.rand(n, generator=generator, dtype=dtype) * 2
    return X, C, weight


def _run(route, activation, solver, weighted, n_steps=6):
    net = _net(activation)
    optimizer = _optimizer(net, solver)
    slimtik = make_slimtik(net.augmented_head.detach(), memory_depth=2)
    X, C, weight = _data()
    losses = []
    for step in range(n_steps):
        rows = slice(6 * step, 6 * step + 10)
        w = weight[rows] if weighted else None
        if route == "numpy":
            numpy_step = NumpyStep(net, optimizer, slimtik)
            w = None if w is None else w.numpy()
            loss = slimtrain_step(
                net,
                optimizer,
                slimtik,
                X[rows].numpy(),
                C[rows].numpy(),
                w,
                numpy_step=numpy_step,
            )
            numpy_step.finish()
        else:
            loss = float(slimtrain_step(net, optimizer, slimtik, X[rows], C[rows], w))
        losses.append(loss)
    return net, optimizer, slimtik, losses


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("solver", ["adam", "sgd"])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_numpy_step_equals_the_torch_step(activation, solver, weighted):
    # Six steps, each a new NumpyStep (as each epoch builds one): the first takes
    # torch's optimizer step (it creates the state), the others numpy's.
    net_np, opt_np, tik_np, losses_np = _run("numpy", activation, solver, weighted)
    net_t, opt_t, tik_t, losses_t = _run("torch", activation, solver, weighted)
    np.testing.assert_allclose(losses_np, losses_t, rtol=1e-11)
    for name, value in net_t.state_dict().items():
        torch.testing.assert_close(
            net_np.state_dict()[name], value, rtol=1e-10, atol=1e-12, msg=name
        )
    torch.testing.assert_close(tik_np.W, tik_t.W, rtol=1e-10, atol=1e-12)
    assert tik_np.state.Lambda == pytest.approx(tik_t.state.Lambda, rel=1e-10)
    assert tik_np.state.n_updates == tik_t.state.n_updates == 6
    assert len(tik_np.state.grams) == len(tik_t.state.grams) == 3
    for state_np, state_t in zip(
        opt_np.state_dict()["state"].values(),
        opt_t.state_dict()["state"].values(),
        strict=True,
    ):
        assert state_np.keys() == state_t.keys()
        for key in state_t:
            torch.testing.assert_close(
                state_np[key], state_t[key], rtol=1e-9, atol=1e-13, msg=key
            )


@pytest.mark.parametrize("lam", ["sgcv", 0.05])
def test_numpy_batches_update_slimtik_as_torch_batches(lam):
    # The same sGCV choice and head, batch after batch, through a full memory.
    generator = torch.Generator().manual_seed(3)
    solvers = [SlimTik(4, 2, memory_depth=2, lam=lam) for _ in range(2)]
    solvers[1].state.W = solvers[1].state.W.numpy()  # a numpy state, as NumpyStep's
    for _ in range(6):
        Z = torch.randn(9, 4, generator=generator, dtype=torch.float64)
        C = torch.randn(9, 2, generator=generator, dtype=torch.float64)
        w = torch.rand(9, generator=generator, dtype=torch.float64)
        W_torch = solvers[0].update(Z, C, w)
        W_numpy = solvers[1].update(Z.numpy(), C.numpy(), w.numpy())
        assert isinstance(W_numpy, np.ndarray)
        np.testing.assert_allclose(W_numpy, W_torch.numpy(), rtol=1e-10, atol=1e-13)
        assert solvers[1].state.lam == pytest.approx(solvers[0].state.lam, rel=1e-9)
        assert solvers[1].batch_samples == pytest.approx(solvers[0].batch_samples)
    assert all(isinstance(g, np.ndarray) for g in solvers[1].state.grams)


def test_numpy_step_gives_slimtik_its_tensors_back():
    # Snapshots and device moves read slimTik's state as tensors between epochs.
    net = _net()
    optimizer = _optimizer(net, "adam")
    slimtik = make_slimtik(net.augmented_head.detach(), memory_depth=1)
    X, C, _ = _data()
    for _ in range(2):  # the second epoch starts from a full memory of tensors
        slimtrain_epoch(net, optimizer, slimtik, X, C, batch_size=10)
        assert isinstance(slimtik.state.W, torch.Tensor)
        assert len(slimtik.state.grams) == 2
        assert all(isinstance(g, torch.Tensor) for g in slimtik.state.grams)
        assert slimtik.state.grams.maxlen == 2
    assert isinstance(slimtik.state.clone().W, torch.Tensor)


def test_a_non_finite_batch_gives_a_nan_head_not_an_error():
    # numpy's eigh raises where torch's returns nan: the epoch loop undoes a
    # non-finite epoch either way, so the numpy update gives nan too.
    solver = SlimTik(3, 1)
    solver.state.W = solver.state.W.numpy()
    Z = np.ones((4, 3))
    Z[0, 0] = np.inf
    W = solver.update(Z, np.ones((4, 1)))
    assert np.isnan(W).all()


def test_numpy_trial_grid_equals_torch_grid():
    solver = SlimTik(3, 1)
    solver.state.Lambda = 0.37
    np.testing.assert_allclose(
        solver.trial_increments(np), solver.trial_increments().numpy(), rtol=1e-14
    )


def test_an_epoch_takes_the_numpy_route_where_it_applies(monkeypatch):
    net = _net()
    optimizer = _optimizer(net, "adam")
    slimtik = make_slimtik(net.augmented_head.detach())
    X, C, _ = _data()
    batches, step = [], NumpyStep.step

    def counted_step(self, X, C, sample_weight=None):
        batches.append(type(X))
        return step(self, X, C, sample_weight)

    monkeypatch.setattr(NumpyStep, "step", counted_step)
    loss = slimtrain_epoch(net, optimizer, slimtik, X, C, batch_size=10)
    assert batches == [np.ndarray] * 4  # 37 rows in batches of 10
    assert torch.isfinite(loss)
    # The head buffers hold slimTik's last head, as after a torch step.
    torch.testing.assert_close(net.augmented_head, slimtik.W)


def test_the_numpy_and_torch_epochs_draw_the_same_batches():
    X, C, _ = _data()
    heads = []
    for supported in (True, False):
        net = _net()
        optimizer = _optimizer(net, "adam")
        slimtik = make_slimtik(net.augmented_head.detach())
        generator = torch.Generator().manual_seed(5)
        with mock.patch.object(NumpyStep, "supports", return_value=supported):
            slimtrain_epoch(
                net, optimizer, slimtik, X, C, batch_size=10, generator=generator
            )
        heads.append(slimtik.W.clone())
    torch.testing.assert_close(heads[0], heads[1], rtol=1e-10, atol=1e-12)


def _supports(net, optimizer=None, X=None, **kwargs):
    optimizer = _optimizer(net, "adam") if optimizer is None else optimizer
    X = _data()[0] if X is None else X
    options = {"rows": LOCAL_ROWS, "derivatives": None, "mgrit_iterations": None}
    return NumpyStep.supports(net, optimizer, X, **{**options, **kwargs})


def test_numpy_route_leaves_other_cases_to_torch():
    net = _net()
    assert _supports(net)
    generator = torch.Generator().manual_seed(0)
    resnet = SeparableNet(make_resnet(3, 5, depth=2, generator=generator), 5, 2)
    assert not _supports(resnet.to(torch.float64))
    assert not _supports(net, derivatives=object())
    assert not _supports(net, mgrit_iterations=2)
    assert not _supports(net, X=_data(dtype=torch.float32)[0])  # mixed dtypes
    params = list(net.feature_extractor.parameters())
    assert not _supports(net, torch.optim.Adam(params, amsgrad=True))
    assert not _supports(net, torch.optim.SGD(params, lr=0.1, momentum=0.9))
    assert not _supports(net, torch.optim.RMSprop(params))
    assert not _supports(net, torch.optim.Adam(params[:2]))  # not all parameters
    frozen = _net()
    frozen.feature_extractor[0].weight.requires_grad_(False)
    assert not _supports(frozen)
    custom = SeparableNet(nn.Sequential(nn.Linear(3, 5), nn.Softplus()), 5, 2)
    assert not _supports(custom.to(torch.float64))


def test_float32_network_takes_the_numpy_route():
    net = _net(dtype=torch.float32)
    X, C, _ = _data(dtype=torch.float32)
    optimizer = _optimizer(net, "adam")
    assert _supports(net, optimizer, X)
    slimtik = make_slimtik(net.augmented_head.detach())
    loss = slimtrain_epoch(net, optimizer, slimtik, X, C, batch_size=10)
    assert torch.isfinite(loss)
    assert all(p.dtype == torch.float32 for p in net.parameters())


@pytest.mark.parametrize("activation", ["relu", "identity"])
def test_a_diverging_numpy_step_warns_as_little_as_torch(activation):
    # Overflow and NaN pass silently, as in torch: the epoch loop detects and
    # undoes the epoch (here until it gives up), with no numpy RuntimeWarning.
    from sklearn.datasets import make_friedman1

    from sk_slim import SlimTrainRegressor

    X, y = make_friedman1(500, random_state=0)
    model = SlimTrainRegressor(
        activation=activation, learning_rate_init=1e8, max_iter=20, random_state=0
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        with pytest.raises(FloatingPointError, match="diverged"):
            model.fit(X, y)
