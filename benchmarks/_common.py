"""What the benchmark suite (``suite.py``, ``problems.py``) and the special-purpose
scripts share: splits, run conditions, timing, peers, time to target.

- :func:`split_and_scale`: a fixed 75/25 split (or ``train_size`` rows to train),
  ``random_state=0``, X standardized on the training part; ``problems.py`` loads
  every problem through it, except those whose inputs stay as they come (real
  data, the raw-units variants), which it loads through :func:`split_raw`: the
  same split, X unscaled, as a DataFrame.
- :func:`benchmark_conditions`: one torch and one BLAS thread, no convergence or
  user warnings, all restored on exit. :func:`warm_up` pays torch's one-time
  set-up before anything is timed; :func:`seconds_of`, :func:`timed_fit` and
  :func:`peak_mib` time and size a run.
- Peers on the (64, 64) tanh network: ``MLPRegressor``/``MLPClassifier``
  (:func:`mlp_regressor`, :func:`mlp_classifier`) and skorch Adam nets
  (:class:`SkorchRegressor`, :class:`SkorchClassifier`; skorch is imported when
  one is built).
- Time to target (:func:`time_to_target`): one run without early stopping; after
  every iteration a fit callback (:class:`TargetMonitor`) scores the model that
  ``fit`` would return if stopped there (sk_slim shows callbacks that model) and
  stops the run at the first that reaches the target; a fit of that many
  iterations without callbacks is then timed; medians of :data:`REPEATS` runs.
  The peers (``MLPRegressor``, ``MLPClassifier``, skorch) take no
  sklearn callbacks; they are only ever targets, timed by their whole default fit.
"""

import contextlib
import resource
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import torch
from sklearn.base import clone
from sklearn.compose import TransformedTargetRegressor
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, log_loss, r2_score
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits
from torch import nn

from sk_slim.networks import make_mlp

HIDDEN = (64, 64)  # the peers' network
REPEATS = 3  # runs to the target; medians are reported

# ------------------------------------------------------------------------ splits


class Split(NamedTuple):
    """One problem's fixed split, X standardized on the training part."""

    X_train: np.ndarray
    X_test: np.ndarray
    y_train: np.ndarray
    y_test: np.ndarray


def split_and_scale(X, y, stratify=False, train_size=None):
    """A 75/25 split, or ``train_size`` rows to train and the rest to test
    (``random_state=0``), with X standardized on the training part."""
    X_train, X_test, y_train, y_test = train_test_split(
        X,
        y,
        test_size=0.25 if train_size is None else None,
        train_size=train_size,
        random_state=0,
        stratify=y if stratify else None,
    )
    scaler = StandardScaler().fit(X_train)
    return Split(scaler.transform(X_train), scaler.transform(X_test), y_train, y_test)


def split_raw(X, y, stratify=False, train_size=None):
    """The split of :func:`split_and_scale` (the same rows), X as it comes: a
    pandas DataFrame (an array gets columns ``x0``, ``x1``, ...), not scaled."""
    if not isinstance(X, pd.DataFrame):
        X = pd.DataFrame(X, columns=[f"x{j}" for j in range(X.shape[1])])
    X_train, X_test, y_train, y_test = train_test_split(
        X,
        y,
        test_size=0.25 if train_size is None else None,
        train_size=train_size,
        random_state=0,
        stratify=y if stratify else None,
    )
    return Split(X_train, X_test, y_train, y_test)


def n_outputs(y):
    return 1 if y.ndim == 1 else y.shape[1]


# -------------------------------------------------------------------- conditions


@contextlib.contextmanager
def benchmark_conditions(threads=1):
    """What every benchmark runs under: one torch and one BLAS thread (or
    ``threads`` of each), and no convergence or user warnings (stopped-early fits
    are expected here).

    The torch thread count, the BLAS limits and the warning filters are restored
    on exit.
    """
    torch_threads = torch.get_num_threads()
    with warnings.catch_warnings(), threadpool_limits(threads):
        warnings.filterwarnings("ignore", category=ConvergenceWarning)
        warnings.filterwarnings("ignore", category=UserWarning)
        torch.set_num_threads(threads)
        try:
            yield
        finally:
            torch.set_num_threads(torch_threads)


def warm_up(models, X, y, n_rows=200):
    """Fit each model once on a few rows, untimed.

    torch's one-time set-up (lazy imports, the first ``torch.func`` and autograd
    calls: 1-2 s here) would otherwise be charged to whichever timed fit runs first.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for model in models:
            model.fit(X[:n_rows], y[:n_rows])


def seconds_of(call):
    """Wall-clock seconds of one ``call()``."""
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def timed_fit(model, X, y):
    """Fit ``model``; return the seconds it took."""
    return seconds_of(lambda: model.fit(X, y))


def peak_mib():
    """This process's peak resident memory so far, in MiB.

    On Linux ``VmHWM``, the high-water mark of this address space, not
    ``ru_maxrss``: Linux carries that over fork and exec, so a child of a large
    benchmark process would report at least its parent's size at the fork.
    """
    status = Path("/proc/self/status")
    if status.exists():
        line = next(line for line in status.read_text().splitlines() if "VmHWM" in line)
        return int(line.split()[1]) / 1024  # kB
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss / 2**20 if sys.platform == "darwin" else maxrss / 1024


# ----------------------------------------------------------------------- results


@dataclass(frozen=True)
class ClassificationResult:
    """A fitted classifier: test accuracy and log-loss, fit seconds, iterations
    (None for a model that counts none)."""

    accuracy: float
    log_loss: float
    seconds: float
    n_iter: int | None


@dataclass(frozen=True)
class Reach:
    """The first iteration whose model reaches the target, and what it cost."""

    iterations: int
    seconds: float  # of a fit stopped there, the scoring excluded
    passes: float | None  # over the training data (GNvpro's work_units_), or None


def r2(model, X, y):
    return r2_score(y, model.predict(X))


def accuracy(model, X, y):
    return accuracy_score(y, model.predict(X))


def n_iter_of(model):
    """Epochs or iterations of a fitted model (the last step of a pipeline, the
    inner one of a target wrapper; boosted trees: their trees or rounds; the
    largest of several ``n_iter_``), or None for a model that counts none (a GP,
    RidgeCV, RealMLP-TD)."""
    if isinstance(model, Pipeline):
        model = model[-1]
    if isinstance(model, TransformedTargetRegressor):
        model = model.regressor_
    if hasattr(model, "tree_count_"):  # CatBoost
        return int(model.tree_count_)
    n_iter = getattr(model, "n_iter_", None)
    if n_iter is None:
        return None
    return int(np.max(n_iter))


def evaluate_classifier(model, split):
    """Fit ``model`` on the split; accuracy, log-loss (probabilities clipped at
    1e-15), seconds and iterations."""
    seconds = timed_fit(model, split.X_train, split.y_train)
    proba = np.clip(model.predict_proba(split.X_test), 1e-15, 1)
    classes = model.classes_
    return ClassificationResult(
        accuracy=accuracy_score(split.y_test, classes[proba.argmax(axis=1)]),
        log_loss=log_loss(split.y_test, proba, labels=classes),
        seconds=seconds,
        n_iter=n_iter_of(model),
    )


# ------------------------------------------------------------------ the networks


def mlp_regressor(lr=1e-3, hidden=HIDDEN, **params):
    """``MLPRegressor`` (tanh, ``max_iter=200`` unless given), targets standardized."""
    model = MLPRegressor(
        hidden_layer_sizes=hidden,
        activation="tanh",
        learning_rate_init=lr,
        random_state=0,
        **{"max_iter": 200, **params},
    )
    return TransformedTargetRegressor(model, transformer=StandardScaler())


def mlp_classifier(lr=1e-3, hidden=HIDDEN, **params):
    """``MLPClassifier`` (tanh, ``max_iter=200`` unless given)."""
    return MLPClassifier(
        hidden_layer_sizes=hidden,
        activation="tanh",
        learning_rate_init=lr,
        random_state=0,
        **{"max_iter": 200, **params},
    )


class _MLP(nn.Module):
    """The same (64, 64) tanh MLP plus a linear output layer, for skorch."""

    def __init__(self, n_in, n_out):
        super().__init__()
        self.body = make_mlp(
            n_in, HIDDEN, "tanh", generator=torch.Generator().manual_seed(0)
        )
        self.out = nn.Linear(HIDDEN[-1], n_out)

    def forward(self, x):
        return self.out(self.body(x))


def _skorch_options(lr, max_epochs, early_stopping):
    """Adam, batch 200; ``EarlyStopping(patience=10)`` on a 20% split if asked.

    skorch is imported here, so that only the skorch peers need it.
    """
    from skorch.callbacks import EarlyStopping
    from skorch.dataset import ValidSplit

    return {
        "optimizer": torch.optim.Adam,
        "lr": lr,
        "max_epochs": max_epochs,
        "batch_size": 200,
        "callbacks": [EarlyStopping(patience=10)] if early_stopping else [],
        "train_split": ValidSplit(0.2, random_state=0) if early_stopping else None,
        "verbose": 0,
    }


class SkorchRegressor:
    """skorch's Adam net on :class:`_MLP`: float32 inputs, standardized 2-D
    targets; predictions in y's units and shape."""

    def __init__(self, n_in, n_out, lr=1e-2, max_epochs=200, early_stopping=True):
        from skorch import NeuralNetRegressor

        torch.manual_seed(0)  # skorch initializes the output layer from the global RNG
        self.net = NeuralNetRegressor(
            _MLP,
            module__n_in=n_in,
            module__n_out=n_out,
            **_skorch_options(lr, max_epochs, early_stopping),
        )

    def fit(self, X, y):
        self._1d = y.ndim == 1
        y2d = y.reshape(len(y), -1)
        self.scaler = StandardScaler().fit(y2d)
        self.net.fit(
            X.astype(np.float32), self.scaler.transform(y2d).astype(np.float32)
        )
        return self

    def predict(self, X):
        out = self.scaler.inverse_transform(self.net.predict(X.astype(np.float32)))
        return out.ravel() if self._1d else out

    @property
    def n_iter_(self):
        return len(self.net.history)


class SkorchClassifier:
    """skorch's Adam net on :class:`_MLP` with cross-entropy: float32 inputs,
    int64 class indices; labels back."""

    def __init__(self, n_in, n_classes, lr=1e-2, max_epochs=200, early_stopping=True):
        from skorch import NeuralNetClassifier

        torch.manual_seed(0)  # skorch initializes the output layer from the global RNG
        self.net = NeuralNetClassifier(
            _MLP,
            module__n_in=n_in,
            module__n_out=n_classes,
            criterion=nn.CrossEntropyLoss,
            **_skorch_options(lr, max_epochs, early_stopping),
        )

    def fit(self, X, y):
        self.classes_, indices = np.unique(y, return_inverse=True)
        self.net.fit(X.astype(np.float32), indices.astype(np.int64))
        return self

    def predict_proba(self, X):
        logits = self.net.forward(X.astype(np.float32)).numpy().astype(np.float64)
        logits -= logits.max(axis=1, keepdims=True)
        proba = np.exp(logits)
        return proba / proba.sum(axis=1, keepdims=True)

    def predict(self, X):
        return self.classes_[self.predict_proba(X).argmax(axis=1)]

    @property
    def n_iter_(self):
        return len(self.net.history)


# ---------------------------------------------------------------- time to target


class _Hit(NamedTuple):
    iterations: int
    passes: float | None
    score: float


class TargetMonitor:
    """A fit callback: after every iteration (the ``'epoch'`` task), score the
    model that ``fit`` would return if stopped there on the test set; stop the
    fit once it reaches ``target``.

    ``hit`` is then ``(iterations, passes, score)`` at that iteration.
    """

    def __init__(self, split, target, score):
        self.split, self.target, self.score = split, target, score
        self.hit = None

    def setup(self, estimator, context):
        pass

    def teardown(self, estimator, context):
        pass

    def on_fit_task_begin(self, estimator, context):
        pass

    def on_fit_task_end(self, estimator, context, *, fitted_estimator=None):
        if context.task_name != "epoch" or fitted_estimator is None:
            return False
        split = self.split
        score = self.score(fitted_estimator, split.X_test, split.y_test)
        reached = score >= self.target
        if reached:
            work_units = getattr(estimator, "work_units_", None)
            passes = work_units[-1] if work_units else None
            self.hit = _Hit(estimator.n_iter_, passes, score)
        return reached


def time_to_target(estimator, split, target, score, max_iter, repeats=REPEATS):
    """The first iteration at which ``estimator`` reaches ``target``, or None.

    Each run fits a clone with ``max_iter`` and no early stopping, scored after
    every iteration by :class:`TargetMonitor` and stopped at the target; then a
    clone fitted for that many iterations, without callbacks, is timed (so the
    scoring and sklearn's copies for the callback are not counted) and must score
    what the monitor saw. Returns the medians over ``repeats`` runs as a
    :class:`Reach` (the path can differ between runs in rounding), or None if a
    run does not reach the target within ``max_iter``.
    """
    hits, seconds = [], []
    for _ in range(repeats):
        model = clone(estimator).set_params(max_iter=max_iter, early_stopping=False)
        monitor = TargetMonitor(split, target, score)
        model.set_callbacks(monitor)
        timed_fit(model, split.X_train, split.y_train)
        if monitor.hit is None:
            return None
        stopped = clone(estimator).set_params(
            max_iter=monitor.hit.iterations, early_stopping=False
        )
        seconds.append(timed_fit(stopped, split.X_train, split.y_train))
        returned = score(stopped, split.X_test, split.y_test)
        if not np.isclose(returned, monitor.hit.score, rtol=0, atol=1e-9):
            raise RuntimeError(
                f"A fit of {monitor.hit.iterations} iterations scores {returned}, "
                f"the model its callback saw {monitor.hit.score}."
            )
        hits.append(monitor.hit)
    passes = [hit.passes for hit in hits]
    return Reach(
        iterations=int(np.median([hit.iterations for hit in hits])),
        seconds=float(np.median(seconds)),
        passes=None if None in passes else float(np.median(passes)),
    )
