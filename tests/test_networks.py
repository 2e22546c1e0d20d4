"""SeparableNet, MLP/ResNet builders and box initialization."""

import pytest
import torch
from torch import nn

from sk_slim import networks
from sk_slim.linalg import tikhonov_svd
from sk_slim.networks import SeparableNet, box_init_, make_mlp, make_resnet


def test_head_is_buffers_not_parameters():
    net = SeparableNet(make_mlp(3, (8, 5), generator=torch.Generator()), 5, 2)
    names = {name for name, _ in net.named_parameters()}
    assert not {"W", "b"} & names
    assert {"W", "b"} <= set(net.state_dict())
    # An optimizer built from parameters() cannot change the head.
    net.set_head(torch.ones(6, 2))
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    net(torch.randn(4, 3, generator=torch.Generator().manual_seed(0))).sum().backward()
    optimizer.step()
    assert torch.equal(net.W, torch.ones(5, 2)) and torch.equal(net.b, torch.ones(2))


def test_forward_is_features_times_head_and_set_head_splits_bias():
    g = torch.Generator().manual_seed(1)
    net = SeparableNet(make_mlp(4, (6,), generator=g, dtype=torch.float64), 6, 3)
    x = torch.randn(10, 4, generator=g, dtype=torch.float64)
    Z = net.features(x)
    C = torch.randn(10, 3, generator=g, dtype=torch.float64)
    W_aug = tikhonov_svd(SeparableNet.augment(Z), C, 1e-3)  # (7, 3)
    net.set_head(W_aug)
    torch.testing.assert_close(net(x), SeparableNet.augment(Z) @ W_aug)
    torch.testing.assert_close(net.augmented_head, W_aug)


def test_head_follows_module_dtype_and_device(device):
    net = SeparableNet(make_mlp(3, (4,), generator=torch.Generator()), 4, 2)
    assert net.W.dtype == torch.get_default_dtype()
    net = net.to(device=device, dtype=torch.float64)
    assert net.W.dtype == torch.float64 and net.W.device.type == device.type
    net.set_head(torch.zeros(5, 2, dtype=torch.float32, device=device))
    assert net.b.dtype == torch.float64


@pytest.mark.parametrize("builder", [make_mlp, make_resnet])
def test_builders_are_reproducible_and_leave_global_rng_alone(builder):
    state = torch.get_rng_state()
    a = builder(5, generator=torch.Generator().manual_seed(3))
    b = builder(5, generator=torch.Generator().manual_seed(3))
    c = builder(5, generator=torch.Generator().manual_seed(4))
    unseeded = builder(5)
    assert torch.equal(torch.get_rng_state(), state)
    assert _same(a, b) and not _same(a, c) and not _same(a, unseeded)


def _same(net_a, net_b):
    pairs = zip(net_a.parameters(), net_b.parameters(), strict=True)
    return all(torch.equal(p, q) for p, q in pairs)


def test_make_mlp_matches_sklearn_glorot_bounds_and_shapes():
    net = make_mlp(10, (20, 7), activation="relu", generator=torch.Generator())
    linears = [m for m in net if isinstance(m, nn.Linear)]
    assert [tuple(m.weight.shape) for m in linears] == [(20, 10), (7, 20)]
    bound = (6.0 / (10 + 20)) ** 0.5
    assert linears[0].weight.abs().max() <= bound
    assert linears[0].weight.abs().max() > 0.9 * bound  # uniform fills the range
    assert isinstance(net[1], nn.ReLU)
    assert net(torch.zeros(2, 10)).shape == (2, 7)


def test_make_resnet_is_forward_euler():
    g = torch.Generator().manual_seed(5)
    net = make_resnet(3, width=4, depth=2, step=0.5, generator=g, dtype=torch.float64)
    x = torch.randn(6, 3, generator=g, dtype=torch.float64)
    h = torch.tanh(net[0](x))
    for block in net[2:]:
        h = h + 0.5 * torch.tanh(block.linear(h))
    torch.testing.assert_close(net(x), h)


def test_antisymmetric_block_uses_k_minus_k_transpose():
    net = make_resnet(
        2,
        width=3,
        depth=1,
        antisymmetric=True,
        activation="identity",
        generator=torch.Generator().manual_seed(6),
    )
    block = net[2]
    K = block.linear.weight
    x = torch.randn(4, 3, generator=torch.Generator().manual_seed(7))
    expected = x + block.step * (x @ (K - K.T).T + block.linear.bias)
    torch.testing.assert_close(block(x), expected)


def test_box_init_puts_hyperplanes_in_the_box_with_unit_peak():
    g = torch.Generator().manual_seed(8)
    linear = box_init_(nn.Linear(4, 200, dtype=torch.float64), generator=g)
    W, b = linear.weight.double(), linear.bias.double()
    # At the corner farthest along each normal the pre-activation is exactly 1, and
    # over all 16 corners of [0, 1]^4 it ranges from < 0 to 1: every hyperplane
    # cuts the box.
    corners = torch.cartesian_prod(*[torch.tensor([0.0, 1.0])] * 4).double()
    pre = corners @ W.T + b  # (16, 200)
    torch.testing.assert_close(
        pre.max(dim=0).values, torch.ones(200, dtype=torch.float64)
    )
    assert (pre.min(dim=0).values < 0).all()


def _relu_stats(net, x):
    """Fraction of ReLUs that never fire on x, and the rank of the last features."""
    h, dead, total = x, 0, 0
    first_layer_dead = None
    for layer in net:
        h = layer(h)
        if isinstance(layer, nn.ReLU):
            n_dead = int((h.max(dim=0).values <= 0).sum())
            first_layer_dead = n_dead if first_layer_dead is None else first_layer_dead
            dead, total = dead + n_dead, total + h.shape[1]
    s = torch.linalg.svdvals(h - h.mean(dim=0))
    return dead / total, first_layer_dead, int((s > 1e-6 * s[0]).sum())


def test_box_init_keeps_more_relus_alive_than_glorot():
    # Cyr et al.'s motivation: on inputs filling the box, the first layer has no
    # dead ReLU by construction; on the default (64, 64) shape box init also keeps
    # far more neurons alive and a richer basis than Glorot (measured: 5% vs 32%
    # dead, rank 57 vs 42). Deeper layers see a low-dimensional image of the data
    # rather than a full box, so there the guarantee is statistical only.
    x = torch.rand(2000, 2, generator=torch.Generator().manual_seed(9))
    stats = {
        init: [
            _relu_stats(
                make_mlp(
                    2,
                    (64, 64),
                    "relu",
                    init=init,
                    generator=torch.Generator().manual_seed(seed),
                ),
                x,
            )
            for seed in range(5)
        ]
        for init in ("box", "glorot")
    }
    assert all(first_dead == 0 for _, first_dead, _ in stats["box"])
    mean = {
        k: [sum(v[i] for v in rows) / 5 for i in (0, 2)] for k, rows in stats.items()
    }
    assert mean["box"][0] < 0.5 * mean["glorot"][0]
    assert mean["box"][1] > mean["glorot"][1] + 5


def test_resnet_box_init_bounds_growth():
    net = make_resnet(
        3,
        width=16,
        depth=10,
        activation="relu",
        init="box",
        generator=torch.Generator().manual_seed(10),
    )
    x = torch.rand(500, 3, generator=torch.Generator().manual_seed(11))
    out = net(x)
    assert out.min() >= 0 and out.max() <= (1 + 0.1) ** 10 + 1e-6


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: make_mlp(3, (), generator=torch.Generator()), "hidden_layer_sizes"),
        (lambda: make_mlp(3, (4,), "swish"), "activation"),
        (lambda: make_mlp(3, (4,), init="he"), "init"),
        (lambda: make_resnet(3, init="box", antisymmetric=True), "antisymmetric"),
    ],
)
def test_invalid_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()


F64 = torch.float64


def _dead_fraction(net, x):
    """Fraction of the ReLUs of ``net`` that never fire on the rows of ``x``."""
    h, dead, total = x, 0, 0
    for layer in net:
        h = layer(h)
        if isinstance(layer, nn.ReLU):
            dead += int((h.max(dim=0).values <= 0).sum())
            total += h.shape[1]
    return dead / total


def test_data_driven_box_init_leaves_no_dead_relus_in_a_deep_narrow_net():
    # Cyr et al.'s claim at depth 8, width 16: with each layer's box taken from
    # its inputs on the training rows (and misses redrawn), no unit is dead on
    # those rows, and under 5% on fresh inputs filling the box (measured: 0.08%
    # over 20 seeds at d = 8; the fixed [0, 1] boxes: 36%, Glorot: 32%).
    fractions = {"box": [], "glorot": [], "fixed box": []}
    for seed in range(5):
        g = torch.Generator().manual_seed(seed)
        X = torch.rand(1000, 3, generator=g, dtype=torch.float64)
        fresh = torch.rand(5000, 3, generator=g, dtype=torch.float64)
        box = make_mlp(3, (16,) * 8, "relu", init="box", data=X, generator=g, dtype=F64)
        assert _dead_fraction(box, X) == 0
        fractions["box"].append(_dead_fraction(box, fresh))
        for name, init in (("glorot", "glorot"), ("fixed box", "box")):
            net = make_mlp(3, (16,) * 8, "relu", init=init, generator=g, dtype=F64)
            fractions[name].append(_dead_fraction(net, fresh))
    mean = {k: sum(v) / len(v) for k, v in fractions.items()}
    assert mean["box"] < 0.05
    assert mean["glorot"] > 0.15 and mean["fixed box"] > 0.15


def test_box_init_uses_each_features_own_range():
    # Inputs on very different scales: every first-layer hyperplane still cuts
    # their bounding box, with the peak pre-activation 1 at its far corner.
    g = torch.Generator().manual_seed(3)
    lo = torch.tensor([-1000.0, 0.0, 5.0], dtype=torch.float64)
    hi = torch.tensor([1000.0, 1e-3, 6.0], dtype=torch.float64)
    X = lo + (hi - lo) * torch.rand(400, 3, generator=g, dtype=torch.float64)
    linear = make_mlp(3, (50,), "relu", init="box", data=X, generator=g, dtype=F64)[0]
    box_lo, box_hi = X.min(dim=0).values, X.max(dim=0).values
    corners = torch.cartesian_prod(
        *[torch.stack(ab) for ab in zip(box_lo, box_hi, strict=True)]
    )
    pre = corners @ linear.weight.T + linear.bias  # (8, 50)
    torch.testing.assert_close(pre.max(dim=0).values, torch.ones(50).double())
    assert (pre.min(dim=0).values < 0).all()


def test_resnet_box_init_from_data_keeps_relus_alive():
    g = torch.Generator().manual_seed(4)
    X = torch.rand(500, 3, generator=g, dtype=torch.float64)
    net = make_resnet(3, 16, 8, activation="relu", init="box", data=X, generator=g)
    opening = net[1](net[0](X.float()))
    assert (opening.max(dim=0).values > 0).all()
    h = opening
    for block in list(net)[2:]:
        pre = h @ block.linear.weight.T + block.linear.bias
        assert (pre.max(dim=0).values > 0).all()  # no block unit dead on the data
        h = block(h)


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_data_driven_box_init_is_the_same_read_block_by_block(monkeypatch, activation):
    # Many rows are read in blocks (each layer's inputs computed again from the
    # data); the boxes (min/max) and the dead-unit test (all rows <= 0) do not
    # depend on the blocking, so neither do the parameters. Blocks of 7 rows,
    # one smaller than a layer's width, against all 100 rows at once.
    g = torch.Generator().manual_seed(5)
    X = 3 * torch.randn(100, 4, generator=g, dtype=F64)

    def build():
        mlp = make_mlp(
            4, (6, 6, 5), activation, init="box", data=X,
            generator=torch.Generator().manual_seed(1), dtype=F64,
        )  # fmt: skip
        resnet = make_resnet(
            4, width=5, depth=3, activation=activation, init="box", data=X,
            generator=torch.Generator().manual_seed(2), dtype=F64,
        )  # fmt: skip
        return [p.detach().clone() for p in (*mlp.parameters(), *resnet.parameters())]

    whole = build()
    monkeypatch.setattr(networks, "_BOX_ROWS", 7)
    blocked = build()
    for a, b in zip(whole, blocked, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
