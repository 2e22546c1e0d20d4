"""One story of a fit: what callbacks see, the histories and the returned model
agree, whatever a fit does inside (two runs for alpha_init='auto', a restart
after a collapse, the validated head path, the temperature, rollbacks)."""

import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import make_classification, make_friedman1
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import log_loss

from sk_slim import (
    GNvproClassifier,
    GNvproRegressor,
    SlimTrainClassifier,
    SlimTrainRegressor,
)


class Recorder:
    """A callback that counts its hooks and scores the model it is handed at
    the end of every epoch (stopping the fit after ``stop_at`` epochs)."""

    def __init__(self, X_score, y_score, stop_at=None):
        self.X_score, self.y_score, self.stop_at = X_score, y_score, stop_at
        self.setups = self.teardowns = self.epochs = 0
        self.scores = []

    def setup(self, estimator, context):
        self.setups += 1

    def teardown(self, estimator, context):
        self.teardowns += 1

    def on_fit_task_begin(self, estimator, context):
        pass

    def on_fit_task_end(self, estimator, context, *, fitted_estimator=None):
        if context.task_name != "epoch":
            return False
        self.epochs += 1
        self.scores.append(_score(fitted_estimator, self.X_score, self.y_score))
        return self.stop_at is not None and self.epochs >= self.stop_at


def _score(model, X, y):
    """R^2, or the log-loss of predict_proba: what depends on every part of
    the returned model (features, head, temperature)."""
    if hasattr(model, "predict_proba"):
        return -log_loss(y, model.predict_proba(X), labels=model.classes_)
    return model.score(X, y)


def _regression():
    X, y = make_friedman1(n_samples=400, noise=0.1, random_state=0)
    return (X - 0.5) * 3.5, y


def _classification(n_classes):
    return make_classification(
        n_samples=400,
        n_features=6,
        n_informative=4,
        n_classes=n_classes,
        n_clusters_per_class=1,
        random_state=0,
    )


# Each estimator with what its fit does besides training, on data where it
# does it (400 rows: early stopping on a validation split).
CASES = {
    # alpha_init='auto': a run along the continuation, one without it.
    "gnvpro_regressor_two_runs": (
        lambda: GNvproRegressor(hidden_layer_sizes=(8,), max_iter=15, random_state=0),
        _regression,
    ),
    # A collapse: converged under a huge penalty, restarted without it.
    "gnvpro_regressor_collapse": (
        lambda: GNvproRegressor(
            hidden_layer_sizes=(8,),
            alpha_init=1e6,
            tol=0.5,
            max_iter=15,
            random_state=0,
        ),
        _regression,
    ),
    # Two runs and the returned head's validated ridge.
    "gnvpro_classifier": (
        lambda: GNvproClassifier(hidden_layer_sizes=(8,), max_iter=10, random_state=0),
        lambda: _classification(3),
    ),
    "slimtrain_regressor": (
        lambda: SlimTrainRegressor(
            hidden_layer_sizes=(16,), max_iter=6, random_state=0
        ),
        _regression,
    ),
    # Three classes: the logistic final head along its validated ridge path.
    "slimtrain_classifier_logistic": (
        lambda: SlimTrainClassifier(
            hidden_layer_sizes=(16,), max_iter=6, random_state=0
        ),
        lambda: _classification(3),
    ),
    # Two classes: least squares and a temperature fitted on the split.
    "slimtrain_classifier_temperature": (
        lambda: SlimTrainClassifier(
            hidden_layer_sizes=(16,), max_iter=6, random_state=0
        ),
        lambda: _classification(2),
    ),
}


def _fit(model, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(X, y)


@pytest.mark.parametrize("case", CASES)
def test_callbacks_histories_and_the_model_tell_one_story(case):
    make, data = CASES[case]
    X, y = data()
    recorder = Recorder(X, y)
    model = _fit(make().set_callbacks(recorder), X, y)
    assert (recorder.setups, recorder.teardowns) == (1, 1)
    assert recorder.epochs == model.n_iter_ == len(model.loss_curve_)
    assert len(model.validation_scores_) == model.n_iter_
    assert len(model.head_alpha_curve_) == model.n_iter_
    if isinstance(model, (GNvproRegressor, GNvproClassifier)):
        assert len(model.run_curve_) == len(model.grad_norm_curve_) == model.n_iter_
        # Two runs where the fit makes two: the second from iteration 1 again.
        assert model.run_curve_ == sorted(model.run_curve_)
        if case != "gnvpro_regressor_collapse":
            assert model.run_curve_[-1] == 1
        else:
            assert model.run_curve_.count(0) < 15  # the path ended by the collapse
    # The model a callback got at the best epoch is the model fit returned.
    best = int(np.argmax(model.validation_scores_))
    assert recorder.scores[best] == pytest.approx(_score(model, X, y), rel=1e-10)


@pytest.mark.parametrize("case", CASES)
def test_a_callback_that_stops_the_fit_saw_the_returned_model(case):
    make, data = CASES[case]
    X, y = data()
    full = _fit(make(), X, y)
    # Stop late: for two runs, inside the second.
    stop_at = max(2, full.n_iter_ - 2)
    recorder = Recorder(X, y, stop_at=stop_at)
    model = _fit(make().set_callbacks(recorder), X, y)
    assert model.n_iter_ == recorder.epochs == stop_at
    assert (recorder.setups, recorder.teardowns) == (1, 1)
    assert recorder.scores[-1] == pytest.approx(_score(model, X, y), rel=1e-10)


@pytest.mark.parametrize(
    "case", ["slimtrain_classifier_temperature", "gnvpro_classifier"]
)
def test_a_refit_shows_callbacks_the_same_model_as_a_fresh_fit(case):
    # The model handed to callbacks once kept the previous fit's temperature.
    make, data = CASES[case]
    X, y = data()
    fresh, again = Recorder(X, y), Recorder(X, y)
    _fit(make().set_callbacks(fresh), X, y)
    model = _fit(make().set_callbacks(again), X, y)
    _fit(model, X, y)  # the same object, fitted once more
    np.testing.assert_allclose(again.scores[len(fresh.scores) :], fresh.scores)


def test_a_failed_fit_tears_its_callbacks_down():
    X, y = _regression()
    recorder = Recorder(X, y)
    model = SlimTrainRegressor(max_iter=3, random_state=0).set_callbacks(recorder)
    with pytest.raises(ValueError):
        model.fit(X, y[:-1])  # validation fails before any setup
    assert (recorder.setups, recorder.teardowns) == (0, 0)

    class Failing(Recorder):
        def on_fit_task_end(self, estimator, context, *, fitted_estimator=None):
            raise RuntimeError("callback fails")

    failing = Failing(X, y)
    model.set_callbacks(failing)
    with pytest.raises(RuntimeError, match="callback fails"):
        model.fit(X, y)
    assert (failing.setups, failing.teardowns) == (1, 1)
    assert not hasattr(model, "module_")  # and the model is left unfitted


@pytest.mark.parametrize(
    "estimator",
    [
        "GNvproRegressor",
        "GNvproClassifier",
        "SlimTrainRegressor",
        "SlimTrainClassifier",
    ],
)
def test_a_process_with_a_progress_bar_exits(estimator):
    # Two setups and one teardown once left ProgressBar's monitor thread
    # running: fit returned and the interpreter never exited.
    script = textwrap.dedent(
        f"""
        import numpy as np
        from sklearn.callback import ProgressBar
        from sk_slim import {estimator}

        rng = np.random.default_rng(0)
        X = rng.standard_normal((300, 4))
        y = X[:, 0] if "{estimator}".endswith("Regressor") else X[:, 0] > 0
        model = {estimator}(max_iter=5, random_state=0).set_callbacks(ProgressBar())
        model.fit(X, y)
        print("fitted", model.n_iter_)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "fitted" in done.stdout


@pytest.mark.parametrize("with_generator", [True, False])
def test_random_state_reaches_a_factory_s_generator(with_generator):
    # A generator in feature_extractor_kwargs was consumed by fit, so refitting
    # the same object with random_state=0 gave another model; without one,
    # make_resnet drew from system entropy.
    import torch

    from sk_slim.networks import make_resnet

    X, y = _regression()
    kwargs = {"width": 8, "depth": 2, "dtype": torch.float64}
    if with_generator:
        kwargs["generator"] = torch.Generator().manual_seed(0)
        state = kwargs["generator"].get_state()
    model = SlimTrainRegressor(
        feature_extractor=make_resnet,
        feature_extractor_kwargs=kwargs,
        max_iter=2,
        random_state=0,
    )
    first = _fit(model, X, y).predict(X)
    again = _fit(model, X, y).predict(X)
    other = _fit(clone(model), X, y).predict(X)
    np.testing.assert_array_equal(first, again)
    np.testing.assert_array_equal(first, other)
    if with_generator:
        assert torch.equal(kwargs["generator"].get_state(), state)  # not consumed
    else:
        reseeded = _fit(clone(model).set_params(random_state=1), X, y).predict(X)
        assert not np.allclose(first, reseeded)


def test_a_failing_second_run_keeps_the_first(monkeypatch):
    # Once two fits, where the second failing kept the first; in one fit a
    # failure in the second run must not roll the first back.
    from sk_slim.training import GNvproTrainer

    epoch = GNvproTrainer.epoch

    def failing_without_the_path(self):
        if self.state.continuation_over:
            raise RuntimeError("out of memory")
        return epoch(self)

    X, y = _regression()
    monkeypatch.setattr(GNvproTrainer, "epoch", failing_without_the_path)
    model = GNvproRegressor(hidden_layer_sizes=(8,), max_iter=8, random_state=0)
    with pytest.warns(UserWarning, match="run 2 failed"):
        _fit(model, X, y)
    assert model.run_curve_ == [0] * model.n_iter_ and model.alpha_init_ == 100.0
    assert model.score(X, y) > 0.5


def test_restoring_the_path_s_iterate_restores_its_place_on_the_path():
    # A warm start from a kept iterate of the path goes on along the path from
    # where that run ended, not from the second run's iteration count.
    import torch

    from sk_slim.networks import SeparableNet, make_mlp
    from sk_slim.training import FitData, GNvproConfig, GNvproTrainer

    g = torch.Generator().manual_seed(0)
    X = torch.randn(100, 3, generator=g, dtype=torch.float64)
    net = SeparableNet(make_mlp(3, (5,), generator=g, dtype=torch.float64), 5, 1)
    config = GNvproConfig(alpha_init=100.0, compare_without_continuation=True)
    trainer = GNvproTrainer(net, config)
    trainer.start(FitData(X, torch.sin(X[:, :1]), None, g))
    for _ in range(3):
        trainer.epoch()
    on_path, penalty = trainer.snapshot(), trainer.theta_alpha()
    first_grad_norm = trainer.state.first_grad_norm
    assert trainer.next_run()
    for _ in range(4):
        trainer.epoch()
    trainer.restore(on_path)
    assert trainer.state.n_iter == 3 and trainer.theta_alpha() == penalty
    assert trainer.state.first_grad_norm == first_grad_norm
    assert trainer.alpha_init == 100.0 and trainer.record()["run"] == 0


def test_a_warning_when_an_earlier_run_reached_max_iter(monkeypatch):
    from sk_slim.training import GNvproTrainer

    # The path's run stops at max_iter; the run without it converges at once.
    monkeypatch.setattr(
        GNvproTrainer, "converged", lambda self: self.state.continuation_over
    )
    X, y = _regression()
    model = GNvproRegressor(
        hidden_layer_sizes=(8,), max_iter=4, n_iter_no_change=50, random_state=0
    )
    with pytest.warns(ConvergenceWarning, match="max_iter=4"):
        model.fit(X, y)
    assert model.run_curve_ == [0, 0, 0, 0, 1]


def test_a_model_a_callback_keeps_does_not_change_as_the_fit_goes_on():
    X, y = _regression()

    class Keeper(Recorder):
        def on_fit_task_end(self, estimator, context, *, fitted_estimator=None):
            if context.task_name == "epoch" and not hasattr(self, "kept"):
                self.kept = fitted_estimator
            return False

    keeper = Keeper(X, y)
    model = SlimTrainRegressor(max_iter=4, random_state=0).set_callbacks(keeper)
    _fit(model, X, y)
    assert model.n_iter_ == 4
    assert keeper.kept.n_iter_ == len(keeper.kept.loss_curve_) == 1
