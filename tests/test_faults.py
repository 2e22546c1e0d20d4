"""Fits that survive faults (#28).

Ctrl-C anywhere in an epoch keeps what was learned; an exception mid-fit
leaves the previous fitted model exactly as it was; NaN or inf weights or loss
mid-fit are undone and retried, or end in a clear FloatingPointError, never in
a model that predicts NaN.

Faults are injected by wrapping what a fit calls (monkeypatch), on tiny data
and networks: each fit takes a fraction of a second.
"""

import copy
import functools
import math
import warnings
from collections import deque

import numpy as np
import pytest
import torch
from sklearn.base import is_classifier
from sklearn.datasets import make_classification, make_friedman1
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.validation import check_is_fitted

import sk_slim.training.head as head_module
import sk_slim.training.reduced as reduced_module
import sk_slim.training.slimtrain_steps as steps_module
from sk_slim import (
    GNvproClassifier,
    GNvproRegressor,
    SlimTrainClassifier,
    SlimTrainRegressor,
)
from sk_slim._loop import _EpochLoopMixin
from sk_slim.training import (
    GNvproTrainer,
    ReducedLogisticProblem,
    ReducedProblem,
    SlimTrainTrainer,
)

INTERRUPTED = "Training interrupted by the user; keeping the best weights so far."


def _regression():
    X, y = make_friedman1(n_samples=150, noise=0.1, random_state=0)
    return (X - 0.5) * 3.5, y


def _classification():
    return make_classification(
        n_samples=150,
        n_features=5,
        n_informative=3,
        n_redundant=0,
        n_classes=3,
        n_clusters_per_class=1,
        random_state=0,
    )


# Each estimator: its class, its trainer's class, its data, its histories
# besides loss_curve_, validation_scores_ and head_alpha_curve_.
GNVPRO_HISTORIES = ("grad_norm_curve_", "trust_radius_curve_", "work_units_")
ESTIMATORS = {
    "SlimTrainRegressor": (SlimTrainRegressor, SlimTrainTrainer, _regression, ()),
    "SlimTrainClassifier": (
        SlimTrainClassifier,
        SlimTrainTrainer,
        _classification,
        (),
    ),
    "GNvproRegressor": (
        GNvproRegressor,
        GNvproTrainer,
        _regression,
        (*GNVPRO_HISTORIES, "run_curve_"),
    ),
    "GNvproClassifier": (
        GNvproClassifier,
        GNvproTrainer,
        _classification,
        (*GNVPRO_HISTORIES, "run_curve_"),
    ),
}


def _make(name, **params):
    """A small, seeded estimator (GNvpro with early stopping makes two runs of
    ``max_iter`` iterations each: alpha_init='auto'). No input scaling: the
    call counts of the interrupts below were set on the trajectory of X as given."""
    params = {
        "hidden_layer_sizes": (8,),
        "max_iter": 6,
        "random_state": 0,
        "input_scaling": None,
        **params,
    }
    return ESTIMATORS[name][0](**params)


def _data(name):
    return ESTIMATORS[name][2]()


def _trainer_class(name):
    return ESTIMATORS[name][1]


def _quietly(call, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return call(*args, **kwargs)


class _Fault:
    """Raise ``error`` on the ``at``-th call of the wrapped functions (all
    counted together), after running the call when ``after`` (the call's
    changes are then made: a step taken, a head stored)."""

    def __init__(self, error, at, after=False):
        self.error, self.at, self.after = error, at, after
        self.calls, self.fired = 0, False

    def wrap(self, function):
        @functools.wraps(function)
        def faulty(*args, **kwargs):
            self.calls += 1
            if self.calls != self.at:
                return function(*args, **kwargs)
            self.fired = True
            if self.after:
                function(*args, **kwargs)
            raise self.error("injected fault")

        return faulty


class _Epochs:
    """A callback that counts the epochs whose end it saw (the epochs a fit
    completed); it raises KeyboardInterrupt at the end of epoch
    ``interrupt_at``, or stops the fit after ``stop_at`` epochs."""

    def __init__(self, interrupt_at=None, stop_at=None):
        self.interrupt_at, self.stop_at = interrupt_at, stop_at
        self.epochs = self.setups = self.teardowns = 0

    def setup(self, estimator, context):
        self.setups += 1

    def teardown(self, estimator, context):
        self.teardowns += 1

    def on_fit_task_begin(self, estimator, context):
        pass

    def on_fit_task_end(self, estimator, context):
        if context.task_name != "epoch":
            return False
        self.epochs += 1
        if self.epochs == self.interrupt_at:
            raise KeyboardInterrupt
        return self.epochs == self.stop_at


def _histories(model):
    name = type(model).__name__
    return (
        "loss_curve_",
        "validation_scores_",
        "head_alpha_curve_",
        *ESTIMATORS[name][3],
    )


def _outputs(model, X):
    """What the model predicts: labels and probabilities, or values."""
    if is_classifier(model):
        return {"predict": model.predict(X), "predict_proba": model.predict_proba(X)}
    return {"predict": model.predict(X)}


def _assert_predicts_finite(model, X):
    check_is_fitted(model)
    outputs = _outputs(model, X)
    if is_classifier(model):
        proba = outputs["predict_proba"]
        assert np.isfinite(proba).all()
        np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    else:
        assert np.isfinite(outputs["predict"]).all()
    for parameter in model.module_.parameters():
        assert torch.isfinite(parameter).all()
    assert np.isfinite(model.coef_).all() and np.isfinite(model.intercept_).all()


def _assert_equal(a, b, where="model", rtol=0.0):
    """``a`` and ``b`` hold the same values (NaN equal to NaN), floats to
    ``rtol``: arrays, tensors, modules (their state), containers, plain
    objects (their attributes)."""
    if isinstance(a, torch.nn.Module):
        assert type(a) is type(b), where
        _assert_equal(a.state_dict(), b.state_dict(), where, rtol)
    elif isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor), where
        torch.testing.assert_close(
            a, b, rtol=rtol, atol=0, equal_nan=True, msg=lambda m: f"{where}: {m}"
        )
    elif isinstance(a, np.ndarray):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=0, err_msg=where)
        assert a.dtype == b.dtype, where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            _assert_equal(a[key], b[key], f"{where}[{key!r}]", rtol)
    elif isinstance(a, (list, tuple, deque)):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_equal(x, y, f"{where}[{i}]", rtol)
    elif isinstance(a, float):
        assert isinstance(b, float), where
        if math.isnan(a) or math.isinf(a) or rtol == 0:
            assert a == b or (math.isnan(a) and math.isnan(b)), (where, a, b)
        else:
            assert b == pytest.approx(a, rel=rtol, abs=0), where
    elif hasattr(a, "__dict__") and not isinstance(a, type):
        assert type(a) is type(b), where
        _assert_equal(vars(a), vars(b), where, rtol)
    else:
        assert a == b, (where, a, b)


def _state(model):
    """A deep copy of everything the model holds."""
    return copy.deepcopy(vars(model))


def _assert_same_model(model, other, X, rtol=0.0):
    """The same fitted model: its outputs and every fitted attribute (the
    network, the head, the histories, the counts; ``name_``)."""
    _assert_equal(_outputs(model, X), _outputs(other, X), "outputs", rtol)
    assert set(vars(model)) == set(vars(other))
    for name, value in vars(model).items():
        if name.endswith("_") and not name.startswith("_"):
            _assert_equal(value, getattr(other, name), name, rtol)


# ------------------------------------------------------------------ Ctrl-C

# Where the interrupt lands, and on which call of what is patched there: in
# the third epoch (the snapshot: in the second or third), two epochs done.
PLACES = {
    "step": 3,  # the trainer's epoch, after it changed the network
    # Inside the third epoch: its second mini-batch step (slimTrain, batches
    # of 50), or linearization (GNvpro's trust-region trials), once taken.
    "mid_step": 3,
    "validation_head_solve": 3,  # after the head was stored in the network
    "snapshot": 5,  # one at the start of an epoch, one of each better epoch
    # tikhonov_factor once an epoch (the validation head), three to five times
    # in GNvproRegressor's step; GNvproClassifier's logistic_head once an epoch.
    "head_factorization": 3,
    "callback": 3,  # at the end of epoch 3: a complete epoch
    # Right after the best score and snapshot were updated, before the epoch
    # counts as done (a signal may land on any line).
    "best_update": 3,
}


def _inject(name, place, fault, monkeypatch):
    trainer = _trainer_class(name)
    if place == "mid_step":
        _inject_mid_step(name, fault, monkeypatch)
    elif place == "step":
        monkeypatch.setattr(trainer, "epoch", fault.wrap(trainer.epoch))
    elif place == "validation_head_solve":
        monkeypatch.setattr(trainer, "solve_head", fault.wrap(trainer.solve_head))
    elif place == "snapshot":
        monkeypatch.setattr(trainer, "snapshot", fault.wrap(trainer.snapshot))
    elif place == "best_update":
        update = fault.wrap(_EpochLoopMixin._update_best)
        monkeypatch.setattr(_EpochLoopMixin, "_update_best", update)
    elif name == "GNvproClassifier":  # its heads are logistic: no tikhonov_factor
        logistic_head = fault.wrap(head_module.logistic_head)
        monkeypatch.setattr(head_module, "logistic_head", logistic_head)
    else:  # the full-data head solve, and GNvpro's reduced problem in the step
        for module in (head_module, reduced_module):
            factor = fault.wrap(module.tikhonov_factor)
            monkeypatch.setattr(module, "tikhonov_factor", factor)


def _inject_mid_step(name, fault, monkeypatch):
    """Arm ``fault`` at the start of epoch ``fault.at``: it then fires on the
    second call of what the step calls repeatedly."""
    if name.startswith("SlimTrain"):
        owner, inner = steps_module, "slimtrain_step"
    elif name == "GNvproRegressor":
        owner, inner = ReducedProblem, "linearize"
    else:
        owner, inner = ReducedLogisticProblem, "linearize"
    trainer, at, fault.at = _trainer_class(name), fault.at, None
    epoch, epochs = trainer.epoch, []

    def counted_epoch(self):
        epochs.append(None)
        if len(epochs) == at:
            fault.calls, fault.at = 0, 2
        return epoch(self)

    monkeypatch.setattr(trainer, "epoch", counted_epoch)
    monkeypatch.setattr(owner, inner, fault.wrap(getattr(owner, inner)))


# Without early stopping the network is not reset to a best epoch at the end:
# the undone epoch's step must have been undone itself.
CTRL_C_CASES = [
    *(pytest.param(place, True, id=place) for place in PLACES),
    *(
        pytest.param(place, False, id=f"{place}-no_early_stopping")
        for place in ("step", "mid_step", "snapshot", "callback", "best_update")
    ),
]


@pytest.mark.parametrize(("place", "early_stopping"), CTRL_C_CASES)
@pytest.mark.parametrize("name", ESTIMATORS)
def test_ctrl_c_keeps_what_was_learned(name, place, early_stopping, monkeypatch):
    at = PLACES[place]
    if place == "head_factorization" and name == "GNvproRegressor":
        at = 8
    params = {"early_stopping": early_stopping}
    if place == "mid_step" and name.startswith("SlimTrain"):
        params["batch_size"] = 50  # three steps an epoch
    model = _interrupted_fit(name, place, at, monkeypatch, **params)
    if name.startswith("GNvpro"):
        assert model.run_curve_ == [0] * model.n_iter_


@pytest.mark.parametrize("place", ["step", "snapshot", "validation_head_solve"])
@pytest.mark.parametrize("name", ["GNvproRegressor", "GNvproClassifier"])
def test_ctrl_c_in_the_second_run_keeps_both_runs(name, place, monkeypatch):
    # alpha_init='auto' with early stopping: 6 iterations along the
    # continuation, then a run without it (snapshots: one or two a step).
    at = {"step": 8, "snapshot": 13, "validation_head_solve": 8}[place]
    model = _interrupted_fit(name, place, at, monkeypatch, early_stopping=True)
    assert model.n_iter_ > 6
    assert model.run_curve_ == [0] * 6 + [1] * (model.n_iter_ - 6)


def _interrupted_fit(name, place, at, monkeypatch, **params):
    """Fit with a KeyboardInterrupt at ``place`` (its ``at``-th call); check
    what the fit kept against a fit stopped after the same epochs."""
    early_stopping = params["early_stopping"]
    X, y = _data(name)
    after = place in ("step", "mid_step", "validation_head_solve", "best_update")
    fault = _Fault(KeyboardInterrupt, at, after=after)
    epochs = _Epochs(interrupt_at=at if place == "callback" else None)
    model = _make(name, **params).set_callbacks(epochs)
    if place != "callback":
        _inject(name, place, fault, monkeypatch)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model.fit(X, y)
        except KeyboardInterrupt:  # not re-raised here: it would end the session
            pytest.fail("The interrupt escaped fit.")
    monkeypatch.undo()
    assert fault.fired or place == "callback"
    interrupted = [w for w in caught if str(w.message) == INTERRUPTED]
    assert len(interrupted) == 1 and interrupted[0].category is UserWarning
    assert (epochs.setups, epochs.teardowns) == (1, 1)

    # The completed epochs are kept (in the callback's case the interrupted
    # epoch was complete), the unfinished one is in no history.
    completed = epochs.epochs
    assert completed >= 2
    assert model.n_iter_ == completed
    for history in _histories(model):
        if early_stopping or history != "validation_scores_":
            assert len(getattr(model, history)) == completed, history
    if early_stopping:
        assert model.best_validation_score_ == max(model.validation_scores_)
    else:
        assert model.validation_scores_ is None
        assert model.best_loss_ == min(model.loss_curve_)
    _assert_predicts_finite(model, X)
    # The model of a fit that stopped after those epochs (GNvproRegressor's
    # final head solve reuses the last step's factorization, or factors anew:
    # rounding).
    stopped = _make(name, **params)
    _quietly(stopped.set_callbacks(_Epochs(stop_at=completed)).fit, X, y)
    assert stopped.n_iter_ == completed
    _assert_same_model(model, stopped, X, rtol=1e-12)
    return model


# ------------------------------------------------------ failure and rollback


def _call(model, how, X, y):
    """fit, or (incrementally) partial_fit: the classifier's first call names
    the classes."""
    if how != "partial_fit":
        return model.fit(X, y)
    if is_classifier(model) and not hasattr(model, "classes_"):
        return model.partial_fit(X, y, classes=np.unique(y))
    return model.partial_fit(X, y)


CALLS = [
    (name, how)
    for name in ESTIMATORS
    for how in ("fit", "warm_start", "partial_fit")
    if how != "partial_fit" or name.startswith("SlimTrain")
]


@pytest.mark.parametrize("failure", ["in_the_second_epoch", "invalid_input"])
@pytest.mark.parametrize(("name", "how"), CALLS)
def test_a_failed_call_leaves_the_previous_model_intact(
    name, how, failure, monkeypatch
):
    X, y = _data(name)
    warm_start = how == "warm_start"
    model = _make(name, max_iter=3, warm_start=warm_start)
    _quietly(_call, model, how, X, y)
    before, outputs = _state(model), _outputs(model, X)

    if failure == "invalid_input":  # fails before any training
        with pytest.raises(ValueError):
            _call(model, how, X[:, :3], np.full(len(y), np.nan))
    else:  # fails after a step changed the network (partial_fit: one epoch)
        trainer = _trainer_class(name)
        at = 1 if how == "partial_fit" else 2
        fault = _Fault(RuntimeError, at, after=True)
        monkeypatch.setattr(trainer, "epoch", fault.wrap(trainer.epoch))
        with pytest.raises(RuntimeError, match="injected fault"):
            _quietly(_call, model, how, X, y)
        assert fault.fired
        monkeypatch.undo()

    _assert_equal(vars(model), before)
    _assert_equal(_outputs(model, X), outputs)
    # The next call works, as on a model that never failed (the trainer's
    # state and the random stream included).
    _quietly(_call, model, how, X, y)
    never_failed = _make(name, max_iter=3, warm_start=warm_start)
    for _ in range(2):
        _quietly(_call, never_failed, how, X, y)
    _assert_equal(vars(model), vars(never_failed))
    _assert_equal(_outputs(model, X), _outputs(never_failed, X))


# ------------------------------------------------------------- NaN and inf

POISONS = ["inf_weights", "nan_weights", "nan_loss"]


class _Poison:
    """Wrap a trainer's ``epoch``: on the calls ``at`` picks (1-based), after
    the real step, make a weight of the feature extractor inf or NaN and return
    the step's finite loss (``'inf_weights'``, ``'nan_weights'``), or return
    a NaN loss (``'nan_loss'``)."""

    def __init__(self, kind, at):
        self.kind, self.at = kind, at
        self.calls = self.poisoned = 0

    def wrap(self, epoch):
        @functools.wraps(epoch)
        def poisoned_epoch(trainer):
            self.calls += 1
            loss = epoch(trainer)
            if not self.at(self.calls):
                return loss
            self.poisoned += 1
            if self.kind == "nan_loss":
                return math.nan
            assert math.isfinite(loss)  # what only the weights check catches
            value = math.inf if self.kind == "inf_weights" else math.nan
            weight = next(trainer.net.feature_extractor.parameters())
            with torch.no_grad():
                weight.view(-1)[0] = value
            return loss

        return poisoned_epoch


def _count_calls(owner, name, monkeypatch):
    """Count the calls of ``owner.name`` (a list that grows by one per call)."""
    calls, function = [], getattr(owner, name)

    @functools.wraps(function)
    def counted(*args, **kwargs):
        calls.append(None)
        return function(*args, **kwargs)

    monkeypatch.setattr(owner, name, counted)
    return calls


@pytest.mark.parametrize("kind", POISONS)
@pytest.mark.parametrize("name", ESTIMATORS)
def test_a_non_finite_epoch_is_undone_and_retried(name, kind, monkeypatch):
    X, y = _data(name)
    clean = _quietly(_make(name, early_stopping=False, max_iter=4).fit, X, y)
    trainer = _trainer_class(name)
    poison = _Poison(kind, at=lambda call: call == 3)
    monkeypatch.setattr(trainer, "epoch", poison.wrap(trainer.epoch))
    shrinks = _count_calls(trainer, "shrink_step", monkeypatch)
    model = _quietly(_make(name, early_stopping=False, max_iter=4).fit, X, y)
    monkeypatch.undo()
    assert poison.poisoned == 1 and len(shrinks) == 1  # undone, step shrunk
    # The bad epoch is in no history: it was retried.
    assert poison.calls == model.n_iter_ + 1 == clean.n_iter_ + 1
    for history in _histories(model):
        if history != "validation_scores_":
            assert len(getattr(model, history)) == model.n_iter_, history
    assert np.isfinite(model.loss_curve_).all()
    # The epochs before it are those of a fit without the fault.
    _assert_equal(model.loss_curve_[:2], clean.loss_curve_[:2])
    _assert_predicts_finite(model, X)


@pytest.mark.parametrize("previous", ["none", "fitted"])
@pytest.mark.parametrize("kind", POISONS)
@pytest.mark.parametrize("name", ESTIMATORS)
def test_an_epoch_that_keeps_diverging_fails_cleanly(name, kind, previous, monkeypatch):
    X, y = _data(name)
    model = _make(name, early_stopping=False, max_iter=3, warm_start=True)
    if previous == "fitted":
        _quietly(model.fit, X, y)
    before = _state(model)
    outputs = _outputs(model, X) if previous == "fitted" else None
    trainer = _trainer_class(name)
    poison = _Poison(kind, at=lambda call: call >= 2)  # every retry too
    monkeypatch.setattr(trainer, "epoch", poison.wrap(trainer.epoch))
    with pytest.raises(FloatingPointError, match="diverged"):
        _quietly(model.fit, X, y)
    monkeypatch.undo()
    assert poison.poisoned == 6  # the epoch and 5 retries
    _assert_equal(vars(model), before)  # no model, or the previous one
    if previous == "fitted":
        _assert_equal(_outputs(model, X), outputs)
    else:
        assert not hasattr(model, "module_")


@pytest.mark.parametrize("name", ESTIMATORS)
def test_huge_inputs_give_finite_predictions_or_a_clear_error(name):
    # Features of relu units on inputs of 1e150 overflow in the head's Gram
    # matrix; a learning rate of 1e3 (the GNvpro estimators have none) blows
    # the weights up.
    X, y = _data(name)
    params = {"activation": "relu", "early_stopping": False, "max_iter": 4}
    if name.startswith("SlimTrain"):
        params["learning_rate_init"] = 1e3
    model = _make(name, **params)
    try:
        _quietly(model.fit, X * 1e150, y)
    except FloatingPointError as error:
        assert "diverged" in str(error)
        assert not hasattr(model, "module_")
    else:
        _assert_predicts_finite(model, X * 1e150)


@pytest.mark.parametrize("name", ESTIMATORS)
def test_ctrl_c_when_a_run_ends_keeps_what_was_learned(name, monkeypatch):
    # When a run ends the loop asks the trainer for another one (_next_run: a
    # snapshot, then trainer.next_run()) outside the try that handles the
    # interrupt: a Ctrl-C there escapes fit, which rolls the whole fit back.
    X, y = _data(name)
    trainer = _trainer_class(name)
    fault = _Fault(KeyboardInterrupt, 1)
    monkeypatch.setattr(trainer, "next_run", fault.wrap(trainer.next_run))
    model = _make(name, early_stopping=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model.fit(X, y)
        except KeyboardInterrupt:  # not re-raised here: it would end the session
            pytest.fail("The interrupt escaped fit.")
    monkeypatch.undo()
    assert fault.fired
    assert [str(w.message) for w in caught].count(INTERRUPTED) == 1
    stopped = _make(name, early_stopping=True)
    _quietly(stopped.set_callbacks(_Epochs(stop_at=6)).fit, X, y)
    model.set_callbacks(_Epochs())  # the same attributes as `stopped`
    _assert_same_model(model, stopped, X, rtol=1e-12)


@pytest.mark.parametrize("name", ESTIMATORS)
def test_an_interrupted_fit_goes_on_as_a_stopped_one(name, monkeypatch):
    # The undone epoch leaves no trace: a warm start from the interrupted fit
    # is the warm start from a fit stopped after the same epochs. Fails: the
    # random stream the undone epoch drew from is not rewound (_rng_state:
    # slimTrain's shuffles), and GNvproTrainer's snapshot/restore leave the
    # undone iteration's count (the continuation's place), gradient norm and
    # head alpha in _trainer_state.
    X, y = _data(name)
    params = {"early_stopping": False, "warm_start": True}
    if name.startswith("SlimTrain"):
        params["batch_size"] = 32  # shuffles that matter
    fault = _Fault(KeyboardInterrupt, 3, after=True)
    _inject(name, "step", fault, monkeypatch)
    model = _make(name, **params)
    with pytest.warns(UserWarning, match="interrupted by the user"):
        model.fit(X, y)
    monkeypatch.undo()
    assert model.n_iter_ == 2
    stopped = _make(name, **params)
    _quietly(stopped.set_callbacks(_Epochs(stop_at=2)).fit, X, y)
    stopped.set_callbacks()
    _assert_equal(_outputs(model, X), _outputs(stopped, X), "outputs", rtol=1e-12)
    for fitted in (model, stopped):  # warm starts
        _quietly(fitted.fit, X, y)
    _assert_equal(_outputs(model, X), _outputs(stopped, X), "outputs", rtol=1e-9)


@pytest.mark.parametrize("name", ["GNvproRegressor", "GNvproClassifier"])
def test_a_retried_gnvpro_step_does_not_move_the_path_on(name, monkeypatch):
    # A step with a finite value but non-finite weights is undone and retried;
    # GNvproTrainer.epoch had already counted it (state.n_iter, the place on
    # the continuation path) and restore does not take the count back.
    X, y = _data(name)
    trainer = _trainer_class(name)
    poison = _Poison("nan_weights", at=lambda call: call == 3)
    monkeypatch.setattr(trainer, "epoch", poison.wrap(trainer.epoch))
    model = _quietly(_make(name, early_stopping=False, max_iter=4).fit, X, y)
    monkeypatch.undo()
    assert poison.poisoned == 1 and model.n_iter_ == 4
    assert model._trainer_state.n_iter == model.n_iter_


@pytest.mark.parametrize("targets", ["times_1e160", "constant_1e300"])
@pytest.mark.parametrize("name", ["SlimTrainRegressor", "GNvproRegressor"])
def test_huge_targets_give_finite_predictions_or_a_clear_error(name, targets):
    # _targets.py _target_scaling squares y - mean: the variance overflows to
    # inf for |y| > ~1e154, the scale is inf, the standardized targets are 0
    # and every prediction 0 * inf = NaN.
    X, y = _data(name)
    y = y * 1e160 if targets == "times_1e160" else np.full_like(y, 1e300)
    model = _make(name, early_stopping=False, max_iter=3)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            _quietly(model.fit, X, y)
    except (ValueError, FloatingPointError):
        assert not hasattr(model, "module_")
    else:
        _assert_predicts_finite(model, X)
        np.testing.assert_allclose(model.predict(X).mean(), y.mean(), rtol=0.1)


def test_fit_s_warnings_point_at_the_caller(monkeypatch):
    # stacklevel counts fit's frames without sklearn's _fit_context wrapper:
    # both warnings point at `return self._fit(...)` in sk_slim/_slimtrain.py.
    X, y = _data("SlimTrainRegressor")
    fault = _Fault(KeyboardInterrupt, 3, after=True)
    _inject("SlimTrainRegressor", "step", fault, monkeypatch)
    with pytest.warns(UserWarning, match="interrupted by the user") as caught:
        _make("SlimTrainRegressor").fit(X, y)
    monkeypatch.undo()
    assert caught[0].filename == __file__
    with pytest.warns(ConvergenceWarning) as caught:
        _make("SlimTrainRegressor", max_iter=2).fit(X, y)
    assert caught[0].filename == __file__
