"""The trainers, driven directly on tensors as the estimators' loop drives them."""

import copy
import math

import pytest
import torch

from sk_slim.linalg import gcv, tikhonov_svd
from sk_slim.networks import SeparableNet, make_mlp
from sk_slim.training import (
    FitData,
    GNvproConfig,
    GNvproTrainer,
    SlimTrainConfig,
    SlimTrainTrainer,
    Trainer,
    lsgd_epoch,
    solve_head,
)


def _data(n=120, seed=0, weighted=False):
    g = torch.Generator().manual_seed(seed)
    X = torch.rand(n, 2, generator=g, dtype=torch.float64) * 2 - 1
    C = torch.cat([torch.sin(3 * X[:, :1]) * X[:, 1:], X[:, :1] ** 2], dim=1)
    weight = torch.rand(n, generator=g, dtype=torch.float64) + 0.5 if weighted else None
    return FitData(X, C, weight, g)


def _net(seed=1, width=6, c=2):
    g = torch.Generator().manual_seed(seed)
    extractor = make_mlp(2, (width,), "tanh", generator=g, dtype=torch.float64)
    return SeparableNet(extractor, width, c)


TRAINERS = {
    "slimtrain": lambda net: SlimTrainTrainer(net, SlimTrainConfig(batch_size=32)),
    "gnvpro": lambda net: GNvproTrainer(net, GNvproConfig(preconditioner="auto")),
    "gnvpro-ce": lambda net: GNvproTrainer(net, GNvproConfig(loss="cross_entropy")),
}


def _started(name, seed=0):
    data = _data(seed=seed)
    if name == "gnvpro-ce":  # one-hot targets
        labels = (data.C[:, 0] > 0).long()
        data = FitData(
            data.X, torch.eye(2, dtype=torch.float64)[labels], None, data.generator
        )
    trainer = TRAINERS[name](_net())
    trainer.start(data)
    return trainer


@pytest.mark.parametrize("name", TRAINERS)
def test_trainers_implement_the_protocol_and_reduce_the_loss(name):
    trainer = _started(name)
    assert isinstance(trainer, Trainer)
    losses = [trainer.epoch() for _ in range(8)]
    assert all(math.isfinite(loss) for loss in losses)
    assert losses[-1] < 0.7 * losses[0]
    assert set(trainer.record()) == set(trainer.history_names)


@pytest.mark.parametrize("name", TRAINERS)
def test_restore_undoes_an_epoch_exactly(name):
    trainer = _started(name)
    trainer.epoch()
    snapshot = trainer.snapshot()
    before = {k: v.clone() for k, v in trainer.net.state_dict().items()}
    first = trainer.epoch()
    trainer.restore(snapshot)
    for key, value in trainer.net.state_dict().items():
        torch.testing.assert_close(value, before[key], rtol=0, atol=0)
    # The same epoch again gives the same loss: the algorithm's state (moments,
    # slimTik memory, trust radius) was restored with the network. GNvpro draws
    # nothing here; slimTrain's shuffling moves on, so compare without it.
    if name != "slimtrain":
        assert trainer.epoch() == first


def test_slimtrain_full_data_head_is_the_ridge_solution():
    trainer = _started("slimtrain")
    trainer.epoch()
    alpha = trainer.solve_head()
    data, net = trainer.data, trainer.net
    with torch.no_grad():
        Z = net.augment(net.features(data.X))
    W = tikhonov_svd(Z, data.C, alpha * len(data.X))
    torch.testing.assert_close(net.augmented_head, W, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", TRAINERS)
@pytest.mark.parametrize("weighted", [False, True])
def test_head_of_max_rows_is_the_head_of_the_first_rows(name, weighted):
    # The validation head: solved on the first 50 rows only, with the ridge
    # weight it chose there; the final head (no max_rows) is that of all rows.
    # GNvpro's exact head of the last iterate, free from its factors on all
    # rows, is taken before any sample, and its cross-entropy head keeps all
    # rows (on fewer it would lose the preconditioner of many).
    trainer = _started(name)
    if weighted:
        data = trainer.data
        weight = torch.linspace(0.5, 1.5, len(data.X), dtype=torch.float64)
        trainer.start(FitData(data.X, data.C, weight, data.generator))
    trainer.epoch()
    data = trainer.data
    sampled, alone, full = (copy.deepcopy(trainer.net) for _ in range(3))
    alpha = trainer.solve_head(sampled, max_rows=50)
    trainer.solve_head(full)
    if name == "gnvpro-ce":
        torch.testing.assert_close(sampled.augmented_head, full.augmented_head)
        return
    if name == "gnvpro":
        torch.testing.assert_close(sampled.augmented_head, full.augmented_head)
        trainer._current = None
        alpha = trainer.solve_head(sampled, max_rows=50)
    first = data.first_rows(50)
    assert len(first.X) == len(first.C) == 50
    solve_head(alone, first.X, first.C, first.weight, alpha)
    torch.testing.assert_close(
        sampled.augmented_head, alone.augmented_head, rtol=1e-8, atol=1e-10
    )
    assert (sampled.augmented_head - full.augmented_head).abs().max() > 1e-6
    assert data.first_rows(None) is data and data.first_rows(len(data.X)) is data


def test_slimtrain_streaming_continues_the_state_and_a_fit_does_not():
    trainer = _started("slimtrain")
    trainer.epoch()
    state = trainer.state
    n_updates = state.slimtik.state.n_updates  # 4 batches of 32 rows
    assert n_updates == 4
    streaming = SlimTrainTrainer(
        trainer.net, SlimTrainConfig(batch_size=32, streaming=True)
    )
    streaming.start(_data(seed=3), state)
    streaming.epoch()
    assert streaming.state.slimtik.state.n_updates == n_updates + 4
    assert state.slimtik.state.n_updates == n_updates  # the stored state is a copy
    assert streaming.finish() == streaming.head_alpha  # the streamed head is kept
    fresh = SlimTrainTrainer(trainer.net, SlimTrainConfig(batch_size=32))
    fresh.start(_data(seed=3), state)
    assert fresh.state.slimtik.state.n_updates == 0


def test_gnvpro_continuation_and_shrink_step():
    config = GNvproConfig(alpha=1e-3, alpha_init=10.0, alpha_decay=0.5)
    trainer = GNvproTrainer(_net(), config)
    trainer.start(_data())
    penalties = []
    for _ in range(3):
        penalties.append(trainer.theta_alpha())
        trainer.epoch()
    assert penalties == pytest.approx([10.001, 5.001, 2.501], rel=1e-12)
    radius = trainer.state.radius
    trainer.shrink_step(0.5)
    assert trainer.state.radius == 0.5 * radius
    # A warm start goes on along the path and keeps counting passes.
    warm = GNvproTrainer(trainer.net, config)
    warm.start(_data(), trainer.state)
    assert warm.theta_alpha() == pytest.approx(1e-3 + 10.0 * 0.5**3, rel=1e-12)
    passes = warm.state.work_units
    warm.epoch()
    assert warm.record()["work_units"] > passes


class _CheckingAdam(torch.optim.Adam):
    """Adam that, before every step, compares the network's head with the ridge
    solution on all rows at the current theta (the slow oracle of LSGD)."""

    def __init__(self, params, *, net, data, alpha, **kwargs):
        super().__init__(params, **kwargs)
        self.net, self.data, self.alpha, self.n_steps = net, data, alpha, 0

    def step(self, closure=None):
        net, data = self.net, self.data
        with torch.no_grad():
            Z = net.augment(net.features(data.X))  # (n, p)
        n_eff = data.n_effective
        if self.alpha == "gcv":
            W = gcv(Z, data.C, data.weight).W
        else:
            W = tikhonov_svd(Z, data.C, self.alpha * n_eff, data.weight)
        torch.testing.assert_close(net.augmented_head, W, rtol=1e-10, atol=1e-12)
        self.n_steps += 1
        return super().step(closure)


@pytest.mark.parametrize("alpha", ["gcv", 1e-3])
@pytest.mark.parametrize("batch_size", [None, 32])
@pytest.mark.parametrize("weighted", [False, True])
def test_lsgd_steps_theta_with_the_exact_ridge_head_of_all_rows(
    alpha, batch_size, weighted
):
    data, net = _data(weighted=weighted), _net()
    params = list(net.feature_extractor.parameters())
    optimizer = _CheckingAdam(params, net=net, data=data, alpha=alpha, lr=1e-2)
    losses = [
        float(
            lsgd_epoch(
                net,
                optimizer,
                data.X,
                data.C,
                data.weight,
                head_alpha=alpha,
                batch_size=batch_size,
                generator=data.generator,
            )[0]
        )
        for _ in range(5)
    ]
    assert optimizer.n_steps == 5 * (1 if batch_size is None else 4)
    assert losses[-1] < losses[0]


def test_lsgd_trainer_is_slimtrain_with_the_exact_head():
    trainer = SlimTrainTrainer(_net(), SlimTrainConfig(head_update="exact"))
    trainer.start(_data())
    assert trainer.config.batch_size_for(120) == 120  # full batches, as published
    losses = [trainer.epoch() for _ in range(30)]
    assert losses[-1] < 0.7 * losses[0]  # 30 full-batch steps: 0.020 -> 0.011
    assert trainer.state.slimtik is None
    assert 0 < trainer.head_alpha < 1  # the last step's GCV weight


@pytest.mark.parametrize("weighted", [False, True])
def test_gnvpro_head_from_the_last_iterate_equals_a_fresh_solve(weighted):
    # solve_head reuses the last iteration's SVD of all rows' features when the
    # network still has that theta; after a restore it must not (the parameters
    # are copied from snapshots, not aliased with the iterate's theta).
    data = _data(weighted=weighted)
    trainer = GNvproTrainer(_net(), GNvproConfig())
    trainer.start(data)
    trainer.epoch()
    early = trainer.snapshot()
    for _ in range(3):
        trainer.epoch()
    for restore in (None, early):
        if restore is not None:
            trainer.restore(restore)
        reused, fresh = copy.deepcopy(trainer.net), copy.deepcopy(trainer.net)
        alpha = trainer.solve_head(reused)
        expected = solve_head(fresh, data.X, data.C, data.weight, "gcv")
        assert alpha == pytest.approx(expected, rel=1e-6)
        torch.testing.assert_close(
            reused.augmented_head, fresh.augmented_head, rtol=1e-6, atol=1e-9
        )


def test_a_retried_epoch_leaves_the_snapshot_as_it_was():
    # Optimizer.load_state_dict shares the snapshot's tensors: a retried epoch
    # once moved the snapshot's Adam moments, so a second retry restored others.
    trainer = _started("slimtrain")
    trainer.epoch()
    snapshot = trainer.snapshot()
    trainer.epoch()
    trainer.restore(snapshot)
    trainer.epoch()  # the retry
    trainer.restore(snapshot)
    moments = trainer.optimizer.state_dict()["state"]
    for key, saved in snapshot["optimizer"]["state"].items():
        for name in ("exp_avg", "exp_avg_sq"):
            torch.testing.assert_close(moments[key][name], saved[name])
    trainer.epoch()
    assert not torch.equal(
        trainer.optimizer.state_dict()["state"][0]["exp_avg"],
        snapshot["optimizer"]["state"][0]["exp_avg"],
    )


def test_threads_count_the_rows_a_step_touches():
    from sk_slim._runtime import n_threads

    cores = min(4, torch.get_num_threads() or 1)
    # A mini-batch of 200 rows on narrow layers: one thread.
    assert n_threads([64, 64], 8, 200) == 1
    # The same layers in a Gauss-Newton step over 20 000 rows: all it may use.
    assert n_threads([64, 64], 8, 20_000) == cores
    assert n_threads([512], 8, 200) == cores
    # What the trainers report: a mini-batch, or all rows.
    data = _data(n=2000)
    slim = SlimTrainTrainer(_net(), SlimTrainConfig())
    slim.start(data)
    assert slim.rows_per_step() == 200
    gnvpro = GNvproTrainer(_net(), GNvproConfig())
    gnvpro.start(data)
    assert gnvpro.rows_per_step() == 2000
    fixed = GNvproTrainer(_net(), GNvproConfig(batch_size=300))
    fixed.start(data)
    assert fixed.rows_per_step() == 300
