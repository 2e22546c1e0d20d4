"""The skorch bridge: a slimTik-solved last layer inside skorch's training loop."""

import copy
import importlib
import pickle
import sys

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.linear_model import Ridge
from sklearn.model_selection import GridSearchCV
from torch import nn

skorch = pytest.importorskip("skorch")

from skorch.callbacks import (  # noqa: E402
    Checkpoint,
    EarlyStopping,
    EpochScoring,
    ProgressBar,
)
from skorch.dataset import ValidSplit  # noqa: E402

from sk_slim.linalg import SlimTik  # noqa: E402
from sk_slim.skorch import SlimTrainNet, SlimTrainNetRegressor  # noqa: E402

# slimTik's default floor and start of Lambda, which the bridge keeps.
_LOWER_BOUND = SlimTik(1, 1).lower_bound

N_SAMPLES, BATCH_SIZE = 256, 32  # 8 full batches per epoch


class TinyConv(nn.Module):
    """Conv features of an 8x8 image, then the head ``nn.Linear(width, n_outputs)``."""

    def __init__(self, n_outputs=10, width=16, dtype=torch.float32):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(8, 16, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(256, width),
            nn.Tanh(),
        )
        self.head = nn.Linear(width, n_outputs)
        self.to(dtype)

    def forward(self, x):
        return self.head(self.features(x))


@pytest.fixture(scope="module")
def digits():
    """256 digit images (n, 1, 8, 8) in [0, 1] and their one-hot classes (n, 10)."""
    data = load_digits()
    X = data.images[:N_SAMPLES, None].astype(np.float32) / 16.0
    Y = np.eye(10, dtype=np.float32)[data.target[:N_SAMPLES]]
    return X, Y


def _net(**params):
    defaults = dict(
        module=TinyConv,
        optimizer=torch.optim.Adam,
        lr=1e-2,
        max_epochs=2,
        batch_size=BATCH_SIZE,
        train_split=None,
        verbose=0,
    )
    return SlimTrainNetRegressor(**{**defaults, **params})


def _fit(net, X, Y, seed=0):
    torch.manual_seed(seed)  # module initialization draws from the global RNG
    return net.fit(X, Y)


def test_import_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "skorch", None)  # as if not installed
    monkeypatch.delitem(sys.modules, "sk_slim.skorch")
    with pytest.raises(ImportError, match=r"pip install 'sk_slim\[skorch\]'"):
        importlib.import_module("sk_slim.skorch")


def test_bridge_learns(digits):
    # skorch's behavioural test: the training loss falls by more than half.
    X, Y = digits
    net = _fit(_net(max_epochs=10), X, Y)
    losses = net.history[:, "train_loss"]
    assert losses[0] > 2 * losses[-1]
    # And the extractor's Adam steps are part of it: a frozen extractor, with the
    # head solved alike, ends far higher.
    frozen = _fit(_net(max_epochs=10, lr=0.0), X, Y)
    assert frozen.history[-1, "train_loss"] > 2 * losses[-1]


def test_optimizer_never_sees_the_head(digits):
    X, Y = digits
    net = _net()
    torch.manual_seed(0)
    net.initialize()
    head_before = net.module_.head.weight.detach().clone()
    net.partial_fit(X, Y)
    head = {id(p) for p in net.module_.head.parameters()}
    in_groups = {id(p) for g in net.optimizer_.param_groups for p in g["params"]}
    in_state = {id(p) for p in net.optimizer_.state}
    others = {id(p) for p in net.module_.features.parameters()}
    assert not head & in_groups and not head & in_state
    assert in_groups == others and in_state == others  # Adam stepped all the rest
    assert all(
        not p.requires_grad and p.grad is None for p in net.module_.head.parameters()
    )
    # slimTik wrote the head, and its float64 copy rounds to it.
    assert not torch.equal(net.module_.head.weight, head_before)
    W = net.slimtik_.W.float()  # (17, 10)
    torch.testing.assert_close(net.module_.head.weight, W[:-1].T, rtol=0, atol=0)
    torch.testing.assert_close(net.module_.head.bias, W[-1], rtol=0, atol=0)


@pytest.mark.parametrize("memory_depth", [None, N_SAMPLES // BATCH_SIZE - 1])
def test_frozen_extractor_head_equals_batch_ridge(digits, memory_depth):
    # With every batch in memory and a constant increment, slimTik is recursive
    # ridge regression: after K batches of n rows, each scaled by 1/sqrt(n),
    #   (A^T A + n Lambda_K I) W = A^T C + n Lambda_0 W_0,   A = [Z, 1],
    # with Lambda_K = Lambda_0 + K head_alpha and W_0 the initial head (the centre
    # of the prior of weight Lambda_0). lr=0 freezes the features Z.
    X, Y = (a.astype(np.float64) for a in digits)
    head_alpha = 0.05
    net = _net(
        max_epochs=1,
        lr=0.0,
        module__dtype=torch.float64,
        memory_depth=memory_depth,
        head_alpha=head_alpha,
    )
    torch.manual_seed(0)
    net.initialize()
    W0 = torch.cat([net.module_.head.weight.T, net.module_.head.bias[None]])
    features = copy.deepcopy(net.module_.features.state_dict())
    net.partial_fit(X, Y)

    for name, value in net.module_.features.state_dict().items():
        assert torch.equal(value, features[name])  # frozen indeed
    n, K = BATCH_SIZE, N_SAMPLES // BATCH_SIZE
    Lambda = _LOWER_BOUND + K * head_alpha
    assert net.slimtik_.state.Lambda == pytest.approx(Lambda, rel=1e-14)
    with torch.no_grad():
        Z = net.module_.features(torch.from_numpy(X)).numpy()  # (N, 16)
    A = np.hstack([Z, np.ones((len(Z), 1))])  # (N, 17)
    oracle = np.linalg.solve(
        A.T @ A + n * Lambda * np.eye(A.shape[1]),
        A.T @ Y + n * _LOWER_BOUND * W0.detach().numpy(),
    )
    W = net.slimtik_.W.numpy()
    np.testing.assert_allclose(W, oracle, rtol=1e-8, atol=1e-10)
    head = net.module_.head
    np.testing.assert_allclose(head.weight.detach().numpy(), oracle[:-1].T, rtol=1e-8)
    np.testing.assert_allclose(head.bias.detach().numpy(), oracle[-1], rtol=1e-8)


def test_changed_head_is_adopted_by_the_next_update(digits):
    # The module's head is the source of truth (load_params, EarlyStopping's
    # load_best): zero it after initialize, and one epoch with a frozen extractor
    # is plain ridge on [Z, 1], bias penalized: Ridge(alpha=n Lambda_K) without
    # intercept.
    X, Y = (a.astype(np.float64) for a in digits)
    net = _net(
        max_epochs=1,
        lr=0.0,
        module__dtype=torch.float64,
        memory_depth=None,
        head_alpha=0.05,
    )
    torch.manual_seed(0)
    net.initialize()
    with torch.no_grad():
        for p in net.module_.head.parameters():
            p.zero_()
    net.partial_fit(X, Y)

    with torch.no_grad():
        Z = net.module_.features(torch.from_numpy(X)).numpy()  # (N, 16)
    A = np.hstack([Z, np.ones((len(Z), 1))])
    Lambda = net.slimtik_.state.Lambda
    ridge = Ridge(alpha=BATCH_SIZE * Lambda, fit_intercept=False).fit(A, Y)
    np.testing.assert_allclose(net.slimtik_.W.numpy(), ridge.coef_.T, rtol=1e-8)


@pytest.mark.parametrize("head_alpha", ["auto", 0.02])
def test_history_records_lambda_per_batch(digits, head_alpha):
    X, Y = digits
    net = _fit(_net(head_alpha=head_alpha, train_split=ValidSplit(4)), X, Y)
    for epoch in net.history:
        train = [b for b in epoch["batches"] if "train_loss" in b]
        assert all("head_lambda" in b and "head_alpha" in b for b in train)
        assert not any(
            "head_lambda" in b for b in epoch["batches"] if "valid_loss" in b
        )
        assert "head_alpha" in epoch  # epoch mean, next to train_loss
    lams = [
        batch["head_lambda"]
        for epoch in net.history
        for batch in epoch["batches"]
        if "head_lambda" in batch
    ]
    assert len(lams) == 2 * 6  # 2 epochs of 6 training batches (192 rows)
    assert lams[-1] == net.slimtik_.state.lam
    if head_alpha == "auto":
        assert len(set(lams)) > 1  # sGCV chooses per batch
    else:
        assert lams == pytest.approx([head_alpha] * len(lams))
    assert net.slimtik_.state.Lambda >= _LOWER_BOUND


def test_sgcv_every_chooses_on_every_kth_batch(digits):
    # 2 epochs of 6 batches, sGCV on batches 0, 4 and 8; the others keep Lambda.
    X, Y = digits
    net = _fit(_net(sgcv_every=4, train_split=ValidSplit(4)), X, Y)
    assert net.slimtik_.sgcv_every == 4
    lams = [
        batch["head_lambda"]
        for epoch in net.history
        for batch in epoch["batches"]
        if "head_lambda" in batch
    ]
    assert len(lams) == 12
    assert all(lam == 0.0 for k, lam in enumerate(lams) if k % 4)
    with pytest.raises(ValueError, match="sgcv_every"):
        _fit(_net(sgcv_every=0), X, Y)


def test_skorch_callbacks_work(digits, tmp_path):
    X, Y = digits
    # An absolute threshold of 10 means no epoch after the first improves.
    stop = EarlyStopping(patience=2, threshold=10.0, threshold_mode="abs")
    checkpoint = Checkpoint(dirname=tmp_path, f_params=None, f_pickle="net.pkl")
    callbacks = [EpochScoring("r2", lower_is_better=False), stop, checkpoint]
    net = _net(max_epochs=10, train_split=ValidSplit(4), callbacks=callbacks)
    _fit(net.set_params(callbacks__print_log=None), X, Y)
    assert len(net.history) == 3  # stopped after two epochs without improvement
    r2 = net.history[:, "r2"]
    assert all(np.isfinite(r2)) and max(r2) <= 1.0
    # Checkpoint's pickle holds the net of its last save, slimTik state included.
    best = max(e["epoch"] for e in net.history if e.get("event_cp"))
    with open(tmp_path / "net.pkl", "rb") as f:
        saved = pickle.load(f)
    assert len(saved.history) == best
    assert saved.slimtik_.state.n_updates == best * 6  # 6 training batches/epoch
    assert saved.predict(X).shape == Y.shape


def test_progress_bar(digits):
    X, Y = digits
    net = _fit(_net(callbacks=[ProgressBar()]), X, Y)
    assert len(net.history) == 2


def test_closure_re_evaluations_keep_the_head(digits):
    # LBFGS evaluates the loss closure up to 25 times per step: one head update.
    X, Y = digits
    net = _fit(_net(optimizer=torch.optim.LBFGS, lr=0.1, max_epochs=1), X, Y)
    assert net.slimtik_.state.n_updates == N_SAMPLES // BATCH_SIZE
    assert np.isfinite(net.history[-1, "train_loss"])


def test_grid_search_over_lr_and_head_alpha(digits):
    X, Y = digits
    grid = {"lr": [1e-3, 1e-2], "head_alpha": ["auto", 0.01]}
    search = GridSearchCV(_net(max_epochs=1), grid, cv=2).fit(X, Y)
    assert len(search.cv_results_["params"]) == 4
    assert np.all(np.isfinite(search.cv_results_["mean_test_score"]))
    best = search.best_estimator_
    assert {k: best.get_params()[k] for k in grid} == search.best_params_
    assert best.slimtik_.lam == (
        "sgcv" if best.head_alpha == "auto" else best.head_alpha
    )


def test_set_params_reinitializes_with_skorch(digits):
    X, Y = digits
    net = _fit(_net(max_epochs=1), X, Y)
    slimtik = net.slimtik_
    net.set_params(lr=0.5)  # a virtual optimizer parameter: nothing rebuilt
    assert net.optimizer_.param_groups[0]["lr"] == 0.5 and net.slimtik_ is slimtik
    net.set_params(module__width=8)  # a new module: new optimizer and head solver
    assert net.slimtik_ is not slimtik
    assert net.slimtik_.W.shape == (9, 10)
    net.partial_fit(X, Y)
    assert net.predict(X).shape == Y.shape


def test_pickle_round_trip(digits):
    X, Y = digits
    net = _fit(_net(), X, Y)
    loaded = pickle.loads(pickle.dumps(net))
    np.testing.assert_array_equal(loaded.predict(X), net.predict(X))
    assert loaded.slimtik_.state.Lambda == net.slimtik_.state.Lambda
    assert loaded.slimtik_.state.n_updates == net.slimtik_.state.n_updates
    # The whole fitted state survived: both continue identically.
    net.partial_fit(X, Y)
    loaded.partial_fit(X, Y)
    np.testing.assert_array_equal(loaded.predict(X), net.predict(X))


@pytest.mark.parametrize("warm_start", [False, True])
def test_warm_start_keeps_the_head_solver(digits, warm_start):
    X, Y = digits
    net = _fit(_net(max_epochs=1, warm_start=warm_start), X, Y)
    first = net.slimtik_
    net.fit(X, Y)
    batches = N_SAMPLES // BATCH_SIZE
    assert (net.slimtik_ is first) == warm_start
    assert net.slimtik_.state.n_updates == (2 if warm_start else 1) * batches


def test_runs_on_device(digits, device):
    X, Y = digits
    net = _fit(_net(device=str(device)), X, Y)
    assert net.slimtik_.W.device.type == device.type
    assert net.predict(X).shape == Y.shape


def test_plain_net_with_a_named_head(digits):
    # Registration order differs from the forward order: name the head.
    class OutFirst(nn.Module):
        def __init__(self):
            super().__init__()
            self.out = nn.Linear(16, 10)
            self.hidden = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.Tanh())

        def forward(self, x):
            return self.out(self.hidden(x))

    X, Y = digits
    params = dict(module=OutFirst, optimizer=torch.optim.Adam, max_epochs=1)
    params.update(batch_size=BATCH_SIZE, train_split=None, verbose=0)
    with pytest.raises(ValueError, match="head's output"):
        SlimTrainNet(**params).fit(X, Y)  # took hidden's Linear(64, 16)
    net = SlimTrainNet(**params, head="out").fit(X, Y)
    assert net.slimtik_.W.shape == (17, 10)


def test_a_layer_after_the_head_is_an_error(digits):
    X, Y = digits
    module = nn.Sequential(
        nn.Flatten(), nn.Linear(64, 16), nn.Tanh(), nn.Linear(16, 10), nn.Sigmoid()
    )
    with pytest.raises(ValueError, match="not its head's output"):
        _fit(_net(module=module), X, Y)
    with pytest.raises(TypeError, match="not an nn.Linear"):
        _fit(_net(module=module, head="4"), X, Y)
    with pytest.raises(ValueError, match="besides the head"):
        _fit(_net(module=nn.Sequential(nn.Flatten(), nn.Linear(64, 10))), X, Y)


def test_bad_head_alpha_is_an_error(digits):
    X, Y = digits
    with pytest.raises(ValueError, match="head_alpha"):
        _fit(_net(head_alpha=-1.0), X, Y)
