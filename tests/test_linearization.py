"""The hand-written tangent and adjoint maps of sk_slim's networks, against
``torch.func`` (the oracle), and the fallback for any other extractor."""

import pytest
import torch
from torch import nn
from torch.func import functional_call, jacrev, jvp, vjp

from sk_slim.networks import SeparableNet, make_mlp, make_resnet
from sk_slim.training.linearization import (
    FuncDerivatives,
    NetworkLinearization,
    linearize_features,
)
from sk_slim.training.reduced import ReducedProblem

F64 = torch.float64


def _networks():
    g = torch.Generator().manual_seed(0)
    yield "mlp-tanh", make_mlp(3, (5, 4), "tanh", generator=g, dtype=F64)
    yield "mlp-relu", make_mlp(3, (6, 5, 4), "relu", generator=g, dtype=F64)
    yield "mlp-logistic", make_mlp(3, (4,), "logistic", generator=g, dtype=F64)
    yield "mlp-identity", make_mlp(3, (4, 2), "identity", generator=g, dtype=F64)
    yield "resnet", make_resnet(3, width=4, depth=3, generator=g, dtype=F64)
    yield (
        "resnet-antisymmetric",
        make_resnet(3, width=4, depth=3, antisymmetric=True, generator=g, dtype=F64),
    )
    yield (
        "resnet-relu-box",
        make_resnet(
            3,
            width=5,
            depth=2,
            activation="relu",
            init="box",
            data=torch.randn(30, 3, generator=g, dtype=F64),
            generator=g,
            dtype=F64,
        ),
    )


NETWORKS = dict(_networks())


def _setup(name, n=11):
    extractor = NETWORKS[name]
    g = torch.Generator().manual_seed(1)
    X = torch.randn(n, 3, generator=g, dtype=F64)
    theta = torch.cat([p.detach().reshape(-1) for p in extractor.parameters()])
    names = [k for k, _ in extractor.named_parameters()]
    shapes = [p.shape for p in extractor.parameters()]

    def unflatten(flat):
        chunks = flat.split([s.numel() for s in shapes])
        return {k: c.view(s) for k, c, s in zip(names, chunks, shapes, strict=True)}

    def features(flat):
        return functional_call(extractor, unflatten(flat), (X,))

    return extractor, X, theta, unflatten, features, g


@pytest.mark.parametrize("name", list(NETWORKS))
def test_hand_written_maps_equal_torch_func(name):
    extractor, X, theta, unflatten, features, g = _setup(name)
    assert NetworkLinearization.supports(extractor)
    phi, maps = linearize_features(extractor, theta, unflatten, X)
    assert isinstance(maps, NetworkLinearization)
    torch.testing.assert_close(phi, features(theta), rtol=1e-14, atol=1e-15)
    v = torch.randn(theta.shape, generator=g, dtype=F64)
    M = torch.randn(phi.shape, generator=g, dtype=F64)
    _, expected_tangent = jvp(features, (theta,), (v,))
    _, pullback = vjp(features, theta)
    torch.testing.assert_close(
        maps.tangent(v), expected_tangent, rtol=1e-12, atol=1e-14
    )
    torch.testing.assert_close(maps.adjoint(M), pullback(M)[0], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", list(NETWORKS))
def test_row_jacobians_equal_torch_func(name):
    extractor, X, theta, unflatten, features, g = _setup(name)
    _, maps = linearize_features(extractor, theta, unflatten, X)
    directions = torch.randn(maps.output.shape[1], 2, generator=g, dtype=F64)
    full = jacrev(features)(theta)  # (n, m, P)
    expected = torch.einsum("nmp,mr->nrp", full, directions)
    rows = slice(2, 9)
    torch.testing.assert_close(
        maps.row_jacobians(directions, rows), expected[rows], rtol=1e-12, atol=1e-14
    )


def test_other_extractors_take_the_torch_func_path():
    class Custom(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(3, 4, dtype=F64)

        def forward(self, x):
            return torch.sin(self.linear(x))

    g = torch.Generator().manual_seed(2)
    no_bias = nn.Sequential(nn.Linear(3, 4, bias=False, dtype=F64), nn.Tanh())
    unpaired = nn.Sequential(nn.Linear(3, 4, dtype=F64))  # no activation after it
    softplus = nn.Sequential(nn.Linear(3, 4, dtype=F64), nn.Softplus())
    for extractor in [Custom(), no_bias, unpaired, softplus]:
        assert not NetworkLinearization.supports(extractor)
        theta = torch.cat([p.detach().reshape(-1) for p in extractor.parameters()])
        names = [k for k, _ in extractor.named_parameters()]
        shapes = [p.shape for p in extractor.parameters()]

        def unflatten(flat, names=names, shapes=shapes):
            chunks = flat.split([s.numel() for s in shapes])
            return {k: c.view(s) for k, c, s in zip(names, chunks, shapes, strict=True)}

        X = torch.randn(5, 3, generator=g, dtype=F64)
        phi, maps = linearize_features(extractor, theta, unflatten, X)
        assert isinstance(maps, FuncDerivatives)
        torch.testing.assert_close(phi, extractor(X).detach())


def test_gauss_newton_product_of_a_resnet_equals_the_dense_oracle():
    # The hand-written maps inside the reduced problem, with weights (the row
    # scale) and a resnet: J^T J v against the dense Jacobian of the residual.
    g = torch.Generator().manual_seed(3)
    extractor = make_resnet(3, width=4, depth=2, generator=g, dtype=F64)
    net = SeparableNet(extractor, 4, 2)
    X = torch.randn(15, 3, generator=g, dtype=F64)
    C = torch.randn(15, 2, generator=g, dtype=F64)
    weight = torch.rand(15, generator=g, dtype=F64) + 0.5
    problem = ReducedProblem(net, X, C, weight, alpha=1e-3)
    theta = problem.get_theta()
    head_alpha = 1e-2

    def residual(theta):
        Z = problem.features(theta)
        target = problem.C * problem.scale
        G = Z.T @ Z + head_alpha * torch.eye(Z.shape[1], dtype=F64)
        W = torch.linalg.solve(G, Z.T @ target)
        penalty = (problem.alpha * problem.penalized).sqrt() * theta
        return torch.cat(
            [(Z @ W - target).reshape(-1), head_alpha**0.5 * W.reshape(-1), penalty]
        )

    J = jacrev(residual)(theta)
    lin = problem.linearize(theta, head_alpha, differentiable=True)
    assert isinstance(lin.maps, NetworkLinearization)
    matvec = problem.gauss_newton(lin)
    v = torch.randn(theta.shape, generator=g, dtype=F64)
    torch.testing.assert_close(matvec(v), J.T @ (J @ v), rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(problem.gradient(lin), J.T @ residual(theta))
