"""Where a default fit's seconds go: a profile of sk_slim's four estimators.

Run from the repository root::

    .venv/bin/python benchmarks/profile_fit.py --out benchmarks/profile_results.jsonl
    .venv/bin/python benchmarks/profile_fit.py --quick  # small sizes, < 1 min
    # another checkout's sk_slim (this script and problems.py stay these):
    PYTHONPATH=/tmp/sk_base .venv/bin/python benchmarks/profile_fit.py ...

``--estimators`` (class names) and ``--fits`` (``smooth outputs16 rows20k
rows1e5``) pick some of the four of each; the markdown tables go to stdout, one
JSON line per (estimator, fit) is appended to ``--out`` (seconds per category,
n_iter, wall seconds, the max_iter cap, and per wrapped function its calls and
inclusive seconds), labelled ``--label`` (default: the commit of the sk_slim
imported). ``--report`` runs nothing and prints the tables of ``--out``'s
latest records labelled ``--label``, so a run may be made in parts;
``--time-limit`` stops a fit after that many seconds and reports its time so
far (GNvproClassifier at 1e5 rows did not finish one iteration in 180 s at
b06f013); ``--first-fit skip`` leaves out the fresh-process fit. The full run
takes about 10 minutes on the 2-core VM, that fit aside.

What it measures: a default fit (only ``random_state=0`` given) of
``GNvproRegressor``, ``SlimTrainRegressor``, ``GNvproClassifier`` and
``SlimTrainClassifier`` on four fits (:data:`FITS`; generated data, X
standardized): 2000 rows of the borehole function (classes: its terciles),
1500 rows of 16 outputs (the CDR surrogate with 16 sensors; 16 classes),
20 000 rows (RobotArm; 4 classes), 1e5 rows (friedman1; 4 classes). Fits above
``--cap-above`` rows (20 000) run ``--max-iter-large`` iterations (GNvpro 10,
slimTrain 3 epochs): a full default fit there takes many minutes, and the
shares are then those of the first iterations.

Each fit's wall time is split into the categories of :data:`CATEGORIES` by
wrapping the functions that do that work (:data:`TARGETS`, patched inside this
script only, wherever sk_slim's modules look them up): a wrapper pushes its
category on a stack, and time is charged, exclusively, to the category on top,
so a head solve inside the validation scoring counts as a head solve, an SVD
inside a head solve as an SVD, and what no wrapper covers as ``other``. A
function that has gone (sk_slim changed) stops the script with the name to
update. The checks printed after the tables: the categories sum to the wall
time, and the 2000-row fits are timed unwrapped and wrapped in turn
(``--overhead`` of each), besides their wrapper calls times the measured cost
of one wrapper.

Everything runs under one torch and one BLAS thread (``benchmark_conditions``),
after one untimed 200-row fit of each estimator, so that the first profile does
not pay torch's one-time set-up. That set-up is what a new user's first fit
pays, so it is reported apart: a 200-row ``GNvproRegressor`` fit in a fresh
process (one thread there too), with the seconds of ``import sk_slim``.
"""

import argparse
import contextlib
import dataclasses
import datetime
import functools
import importlib
import inspect
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
from sklearn.datasets import make_classification, make_friedman1
from sklearn.preprocessing import StandardScaler
from torch.optim.optimizer import (
    register_optimizer_step_post_hook,
    register_optimizer_step_pre_hook,
)

sys.path.insert(0, str(Path(__file__).parent))
import problems  # noqa: E402
from _common import benchmark_conditions, warm_up  # noqa: E402

import sk_slim  # noqa: E402

# ------------------------------------------------------------------ categories

OTHER = "other"
CATEGORIES = (
    "forward",
    "products",
    "preconditioner",
    "head solves",
    "SVDs",
    "validation",
    "optimizer step",
    OTHER,
)


@dataclass(frozen=True)
class Target:
    """A function or method to charge to a category.

    ``name`` is its path inside ``module`` (``Class.method`` for a method, which
    must be defined on that class). ``result`` names a wrapper for what it
    returns (:data:`_RESULT_WRAPPERS`): a closure that does the category's work
    later.
    """

    module: str
    name: str
    category: str
    result: str | None = None
    result_category: str | None = None  # of the returned closure; category

    @property
    def label(self):
        return f"{self.module.rsplit('.', 1)[-1]}.{self.name}"


_LIN = "sk_slim.training.linearization"
_GN = "sk_slim.training.gauss_newton"
_RED = "sk_slim.training.reduced"
_LOGIT = "sk_slim.training.gnvpro_logistic"
_HEAD = "sk_slim.training.head"
_TIK = "sk_slim.linalg.tikhonov"

TARGETS = (
    # forward: the extractor's forward passes, and storing their linearization
    Target(_LIN, "linearize_features", "forward"),
    Target(_LIN, "NetworkLinearization.__init__", "forward"),
    Target(_LIN, "FuncDerivatives.__init__", "forward"),
    Target(_RED, "_ReducedBase._evaluate", "forward"),
    Target("sk_slim.networks", "SeparableNet.features", "forward"),
    Target(_HEAD, "features_of", "forward"),
    # products: Jacobian tangent/adjoint products and the Gauss-Newton matvecs
    # (their per-row Jacobians, row_jacobians, are the preconditioner's)
    Target(_LIN, "NetworkLinearization.tangent", "products"),
    Target(_LIN, "NetworkLinearization.adjoint", "products"),
    Target(_LIN, "FuncDerivatives.tangent", "products"),
    Target(_LIN, "FuncDerivatives.adjoint", "products"),
    Target(_GN, "least_squares_gauss_newton", "products", result="closure"),
    Target(_LOGIT, "ReducedLogisticProblem.gauss_newton", "products", "closure"),
    Target(_RED, "ReducedProblem.gradient", "products"),
    Target(_LOGIT, "ReducedLogisticProblem.gradient", "products"),
    Target("torch", "Tensor.backward", "products"),
    # preconditioner: Kaufman's factor, its triangular solves in the CG; for
    # cross-entropy (no Kaufman factor) the inner Hessian's assembly and factor
    Target(_GN, "kaufman_factor", "preconditioner"),
    Target(_GN, "_damped_cholesky", "preconditioner"),
    Target(_GN, "_StepSpace.of", "preconditioner", result="step_space"),
    Target(  # its solves, inside the Gauss-Newton product, are the product's
        _LOGIT,
        "ReducedLogisticProblem._hessian_solver",
        "preconditioner",
        result="closure",
        result_category="products",
    ),
    # head solves: ridge/GCV, slimTik, the logistic head, the objective at theta
    Target(_TIK, "tikhonov_factor", "head solves"),
    Target(_TIK, "TikhonovSVD.minimize_gcv", "head solves"),
    Target(_TIK, "TikhonovSVD.solve", "head solves"),
    Target(_TIK, "TikhonovSVD.covariance", "head solves"),
    Target(_TIK, "TikhonovSVD.residual_dof", "head solves"),
    Target("sk_slim.linalg.slimtik", "SlimTik.update", "head solves"),
    Target("sk_slim.linalg.logistic", "logistic_head", "head solves"),
    Target("sk_slim.linalg.logistic", "fit_temperature", "head solves"),
    Target(_HEAD, "solve_head", "head solves"),
    Target(_HEAD, "ridge_head", "head solves"),
    Target(_HEAD, "ridge_head_factored", "head solves"),
    Target(_HEAD, "solve_logistic_head", "head solves"),
    Target(_HEAD, "validated_logistic_head", "head solves"),
    Target(_HEAD, "head_posterior", "head solves"),
    Target(_HEAD, "held_out_noise", "head solves"),
    Target(_RED, "ReducedProblem.linearize", "head solves"),
    Target(_LOGIT, "ReducedLogisticProblem.linearize", "head solves"),
    # SVDs, wherever they are
    Target("torch.linalg", "svd", "SVDs"),
    # validation: early stopping's scoring, and the snapshots of the iterates
    Target("sk_slim._loop", "_EpochLoopMixin._score_validation", "validation"),
    Target("sk_slim.training.gnvpro", "GNvproTrainer.snapshot", "validation"),
    Target("sk_slim.training.gnvpro", "GNvproTrainer.restore", "validation"),
    Target("sk_slim.training.slimtrain", "SlimTrainTrainer.snapshot", "validation"),
    Target("sk_slim.training.slimtrain", "SlimTrainTrainer.restore", "validation"),
    # The numpy step's Adam or SGD update; its forward and backward passes are
    # inline in NumpyStep.step and count as 'other'.
    Target(
        "sk_slim.training.numpy_step", "NumpyStep._optimizer_step", "optimizer step"
    ),
)
# The optimizer's step is charged through torch's global step hooks.
OPTIMIZER_STEP = "optimizer step"


class PatchError(RuntimeError):
    """A function this profile wraps is not where it was (sk_slim changed)."""


# ----------------------------------------------------------------------- timer


class CategoryTimer:
    """Exclusive seconds per category, over a stack of active categories.

    :meth:`push` charges the time since the last event to the category on top
    of the stack, then puts its own there; :meth:`pop` charges it and takes it
    off. Per label (the wrapped function), it counts calls and the inclusive
    seconds of its outermost calls.
    """

    def __init__(self):
        self.reset()

    def reset(self):
        """Forget all that was timed."""
        self.seconds = dict.fromkeys(CATEGORIES, 0.0)
        self.calls = Counter()
        self.inclusive = defaultdict(float)
        self._stack = []  # (category, label, start)
        self._active = Counter()
        self._last = 0.0

    def push(self, category, label):
        """Enter ``category`` (as ``label``)."""
        now = time.perf_counter()
        if self._stack:
            self.seconds[self._stack[-1][0]] += now - self._last
        self._stack.append((category, label, now))
        self._active[label] += 1
        self.calls[label] += 1
        self._last = now

    def pop(self):
        """Leave the category on top."""
        now = time.perf_counter()
        category, label, start = self._stack.pop()
        self.seconds[category] += now - self._last
        self._active[label] -= 1
        if not self._active[label]:
            self.inclusive[label] += now - start
        self._last = now

    @property
    def depth(self):
        return len(self._stack)


def timed(timer, category, label, function, result=None):
    """``function`` wrapped: its calls charged to ``category``.

    Parameters
    ----------
    timer : CategoryTimer
    category, label : str
    function : callable
    result : callable, default=None
        ``result(out, args, kwargs)`` replaces what the call returns (after
        the timer has left the category).
    """

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        timer.push(category, label)
        try:
            out = function(*args, **kwargs)
        finally:
            timer.pop()
        return out if result is None else result(out, args, kwargs)

    return wrapper


def _timed_closure(timer, target, function):
    """What ``function`` returns, a closure, charged to the target's category."""

    category = target.result_category or target.category

    def result(out, args, kwargs):
        return timed(timer, category, f"{target.label}.closure", out)

    return result


def _timed_step_space(timer, target, function):
    """``_StepSpace.of``'s result with its preconditioned operator and its map
    back to theta charged to the preconditioner: the triangular solves around
    the (already wrapped) Gauss-Newton product."""
    signature = inspect.signature(function)
    if "factor" not in signature.parameters:
        raise PatchError(f"{target.label} takes no 'factor' any more: update this.")

    def result(space, args, kwargs):
        if signature.bind(*args, **kwargs).arguments["factor"] is None:
            return space
        return dataclasses.replace(
            space,
            matvec=timed(timer, target.category, "StepSpace.matvec", space.matvec),
            to_theta=timed(
                timer, target.category, "StepSpace.to_theta", space.to_theta
            ),
        )

    return result


_RESULT_WRAPPERS = {"closure": _timed_closure, "step_space": _timed_step_space}


# -------------------------------------------------------------------- patching


def _resolve(target):
    """The target's owner (module or class), its attribute name and raw value."""
    try:
        owner = importlib.import_module(target.module)
        *path, attribute = target.name.split(".")
        for part in path:
            owner = getattr(owner, part)
    except (ImportError, AttributeError) as error:
        raise PatchError(
            f"Cannot profile {target.module}.{target.name}: {error}. sk_slim has "
            "changed; update TARGETS in benchmarks/profile_fit.py."
        ) from error
    where = vars(owner)
    if attribute not in where:  # a method must be defined on the class named
        raise PatchError(
            f"Cannot profile {target.module}.{target.name}: no '{attribute}' "
            f"defined there. sk_slim has changed; update TARGETS in "
            "benchmarks/profile_fit.py."
        )
    return owner, attribute, where[attribute]


def _patch(timer, target):
    """Wrap one target; return the ``(owner, name, original)`` to restore."""
    owner, attribute, raw = _resolve(target)
    function = raw.__func__ if isinstance(raw, (classmethod, staticmethod)) else raw
    if not callable(function):
        raise PatchError(f"{target.module}.{target.name} is not callable.")
    result = None
    if target.result is not None:
        result = _RESULT_WRAPPERS[target.result](timer, target, function)
    wrapper = timed(timer, target.category, target.label, function, result)
    if isinstance(raw, (classmethod, staticmethod)):
        wrapper = type(raw)(wrapper)
    undo = [(owner, attribute, raw)]
    setattr(owner, attribute, wrapper)
    if isinstance(owner, ModuleType):  # also where `from x import f` copied it
        for module in list(sys.modules.values()):
            if module is owner or not module.__name__.startswith("sk_slim"):
                continue
            for name, value in list(vars(module).items()):
                if value is raw:
                    undo.append((module, name, raw))
                    setattr(module, name, wrapper)
    return undo


@contextlib.contextmanager
def instrumented(timer, targets=TARGETS):
    """Within this context the targets are wrapped, and optimizer steps timed.

    Raises
    ------
    PatchError
        If a target is missing (nothing is left patched).
    """
    undo, handles = [], []
    try:
        for target in targets:
            undo += _patch(timer, target)
        handles.append(
            register_optimizer_step_pre_hook(
                lambda optimizer, args, kwargs: timer.push(OPTIMIZER_STEP, "step")
            )
        )
        handles.append(
            register_optimizer_step_post_hook(
                lambda optimizer, args, kwargs: timer.pop()
            )
        )
        yield timer
    finally:
        for handle in handles:
            handle.remove()
        for owner, name, original in reversed(undo):
            setattr(owner, name, original)


def wrapper_cost(repeats=100_000):
    """Seconds one wrapper adds to a call (a wrapped no-op against a plain one)."""
    timer = CategoryTimer()

    def noop():
        return None

    wrapped = timed(timer, OTHER, "noop", noop)
    timer.push(OTHER, "root")
    costs = []
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(repeats):
            noop()
        plain = time.perf_counter() - start
        start = time.perf_counter()
        for _ in range(repeats):
            wrapped()
        costs.append((time.perf_counter() - start - plain) / repeats)
    return min(costs)


# ------------------------------------------------------------------- the fits


def _standardized(X, y):
    return StandardScaler().fit_transform(X), y


@dataclass(frozen=True)
class Fit:
    """One fit size: its data for a regressor and for a classifier."""

    key: str
    title: str
    n_rows: int
    quick_rows: int
    regression: Callable  # n_rows -> (X, y)
    classification: Callable

    def data(self, task, n_rows):
        X, y = (self.regression if task == "regression" else self.classification)(
            n_rows
        )
        return _standardized(X, y)


def _borehole(n):
    return problems._test_function("Borehole", n_samples=n, random_state=0)


def _borehole_terciles(n):
    return problems.get("borehole_terciles").make(n_samples=n, random_state=0)


def _cdr_16(n):
    # Between cdr_8 (20 parameters) and cdr_32 (30), on their grid and noise.
    return problems._cdr(
        n_samples=n,
        random_state=0,
        n_parameters=25,
        n_sensors=16,
        noise=0.01,
        grid_size=24,
    )


def _classes_16(n):
    return make_classification(
        n,
        n_features=20,
        n_informative=12,
        n_classes=16,
        n_clusters_per_class=1,
        random_state=0,
    )


def _robot_arm(n):
    return problems._test_function("RobotArm", n_samples=n, random_state=0)


def _classes_4(n):  # the suite's 4-class problem, at n rows
    return make_classification(
        n, n_features=20, n_informative=10, n_classes=4, random_state=0
    )


def _friedman1(n):  # the suite's friedman1, at n rows
    return make_friedman1(n, n_features=10, noise=1.0, random_state=0)


FITS = (
    Fit("smooth", "2000 rows smooth", 2000, 300, _borehole, _borehole_terciles),
    Fit("outputs16", "1500 rows 16 outputs", 1500, 300, _cdr_16, _classes_16),
    Fit("rows20k", "20 000 rows", 20_000, 1000, _robot_arm, _classes_4),
    Fit("rows1e5", "1e5 rows", 100_000, 3000, _friedman1, _classes_4),
)
ESTIMATORS = {
    "GNvproRegressor": (sk_slim.GNvproRegressor, "regression"),
    "SlimTrainRegressor": (sk_slim.SlimTrainRegressor, "regression"),
    "GNvproClassifier": (sk_slim.GNvproClassifier, "classification"),
    "SlimTrainClassifier": (sk_slim.SlimTrainClassifier, "classification"),
}


def _cap_for(name, n_rows, options):
    """``max_iter`` for a fit of ``n_rows``, or None (the default)."""
    if n_rows <= options.cap_above:
        return None
    gnvpro, slimtrain = options.max_iter_large
    return gnvpro if name.startswith("GNvpro") else slimtrain


# ------------------------------------------------------------------ profiling


class TimeLimit(BaseException):
    """Raised by the alarm of ``--time-limit`` (a BaseException: sk_slim's
    epoch loop, which keeps what a later run learned when an Exception stops
    it, lets it through, and the fit is rolled back)."""


def _alarm(signum, frame):
    raise TimeLimit


def profile(estimator, X, y, timer, time_limit=None):
    """Fit ``estimator`` with the targets wrapped.

    Parameters
    ----------
    time_limit : float, default=None
        Stop the fit after this many seconds (SIGALRM; the main thread of a
        Unix process): the profile is then that of its time so far.

    Returns
    -------
    wall : float
        Seconds of the fit (the patching excluded).
    seconds : dict
        Exclusive seconds per category (``other``: the fit's time outside all).
    finished : bool
        False if the time limit stopped it.
    """
    timer.reset()
    finished = True
    previous = signal.signal(signal.SIGALRM, _alarm) if time_limit else None
    with instrumented(timer):
        start = time.perf_counter()
        timer.push(OTHER, "fit")
        try:
            if time_limit:
                signal.setitimer(signal.ITIMER_REAL, time_limit)
            estimator.fit(X, y)
        except TimeLimit:
            finished = False
        finally:
            if time_limit:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, previous)
            timer.pop()
        wall = time.perf_counter() - start
    if timer.depth:
        raise RuntimeError(f"The timer's stack was left {timer.depth} deep.")
    return wall, dict(timer.seconds), finished


def plain_fit(estimator, X, y):
    """Seconds and iterations of an unwrapped fit."""
    start = time.perf_counter()
    estimator.fit(X, y)
    return time.perf_counter() - start, int(estimator.n_iter_)


def profile_one(name, fit, options, timer, cost):
    """Profile the default ``name`` on ``fit``; return its record."""
    cls, task = ESTIMATORS[name]
    n_rows = fit.quick_rows if options.quick else fit.n_rows
    X, y = fit.data(task, n_rows)
    cap = _cap_for(name, n_rows, options)
    params = (
        {"random_state": 0} if cap is None else {"random_state": 0, "max_iter": cap}
    )
    record = {
        "label": options.label,
        "estimator": name,
        "fit": fit.title,
        "n_rows": n_rows,
        "n_features": X.shape[1],
        "n_targets": (y.shape[1] if y.ndim > 1 else 1)
        if task == "regression"
        else len(np.unique(y)),
        "max_iter_cap": cap,
    }
    # On the overhead check's fit: unwrapped and wrapped fits in turn (the
    # record is the last wrapped one), so that a drift in the machine's speed
    # falls on both.
    rounds = options.overhead if fit is options.overhead_fit else 0
    plain, walls = [], []
    for _ in range(max(rounds, 1)):
        if rounds:
            plain.append(plain_fit(cls(**params), X, y))
        estimator = cls(**params)
        wall, seconds, finished = profile(estimator, X, y, timer, options.time_limit)
        walls.append(wall)
    if plain:
        record["unwrapped_wall_s"] = [seconds for seconds, _ in plain]
        record["wrapped_wall_s"] = walls
        if any(n_iter != int(estimator.n_iter_) for _, n_iter in plain):
            record["overhead_note"] = "the unwrapped fits ran other iterations"
    n_calls = sum(timer.calls.values())
    runs = getattr(estimator, "run_curve_", None)  # GNvpro: along the path, after
    if not finished:  # rolled back: the epochs scored so far, at least
        record["time_limit_s"] = options.time_limit
    record.update(
        n_iter=int(estimator.n_iter_)
        if finished
        else timer.calls["_loop._EpochLoopMixin._score_validation"],
        finished=finished,
        runs=1 + max(runs) if runs else 1,
        wall_s=wall,
        seconds=seconds,
        sum_s=sum(seconds.values()),
        wrapper_calls=n_calls,
        wrapper_cost_s=cost,  # of one call, measured by wrapper_cost
        wrapper_overhead_est_s=n_calls * cost,
        functions={
            label: {"calls": timer.calls[label], "inclusive_s": timer.inclusive[label]}
            for label in sorted(timer.calls)
        },
    )
    return record


# --------------------------------------------------------- the first fit ever

_FIRST_FIT = """
import json, time
start = time.perf_counter()
import numpy as np
import sk_slim
imported = time.perf_counter()
rng = np.random.default_rng(0)
X = rng.standard_normal((200, 8))
y = np.sin(X).sum(axis=1)
times = []
for _ in range(2):
    begin = time.perf_counter()
    sk_slim.GNvproRegressor(random_state=0).fit(X, y)
    times.append(time.perf_counter() - begin)
print(json.dumps({"import_s": imported - start, "first_fit_s": times[0],
                  "second_fit_s": times[1], "sk_slim": sk_slim.__file__}))
"""


def first_fit_in_fresh_process(repeats):
    """Seconds of ``import sk_slim`` and of a 200-row ``GNvproRegressor`` fit,
    first and second, in fresh processes (one thread); medians of ``repeats``."""
    threads = {
        name: "1"
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
    }
    runs = []
    for _ in range(repeats):
        out = subprocess.run(
            [sys.executable, "-c", _FIRST_FIT],
            env={**os.environ, **threads},
            cwd=tempfile.gettempdir(),  # not a checkout: its sk_slim would shadow
            capture_output=True,
            text=True,
            check=True,
        )
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    if runs[0]["sk_slim"] != sk_slim.__file__:
        raise RuntimeError(
            f"The fresh process imported {runs[0]['sk_slim']}, this one "
            f"{sk_slim.__file__}."
        )
    keys = ("import_s", "first_fit_s", "second_fit_s")
    return {
        key: {
            "median": statistics.median(run[key] for run in runs),
            "min": min(run[key] for run in runs),
            "max": max(run[key] for run in runs),
        }
        for key in keys
    } | {"repeats": repeats}


# ------------------------------------------------------------------- reporting


def _machine():
    processor = platform.processor()
    if not processor and Path("/proc/cpuinfo").exists():
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                processor = line.split(":", 1)[1].strip()
                break
    return f"{processor or platform.machine()}, {os.cpu_count()} cores"


def _sk_slim_version():
    """Where sk_slim was imported from, and its checkout's commit."""
    root = Path(sk_slim.__file__).resolve().parent.parent

    def git(*args):
        done = subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True
        )
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD")
    dirty = bool(git("status", "--porcelain", "--", "sk_slim"))
    return str(root), (commit + (" + uncommitted changes" if dirty else "")) or "?"


def _command():
    prefix = (
        f"PYTHONPATH={os.environ['PYTHONPATH']} " if "PYTHONPATH" in os.environ else ""
    )
    return f"{prefix}.venv/bin/python {' '.join(sys.argv)}"


def _cell(seconds, wall):
    share = 100 * seconds / wall if wall > 0 else float("nan")
    return f"{seconds:.2f} ({share:.0f}%)"


def estimator_table(name, records):
    """The markdown table of one estimator's fits."""
    header = ["fit", "rows", "n_iter", "wall s", *CATEGORIES]
    lines = [
        f"**{name}**",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|",
    ]
    for record in records:
        n_iter = str(record["n_iter"])
        if not record.get("finished", True):
            n_iter = f">= {n_iter}, stopped at {record['time_limit_s']:.0f} s"
        if record.get("runs", 1) > 1:
            n_iter += f" in {record['runs']} runs"
        if record["max_iter_cap"] is not None:
            n_iter += f" (max_iter={record['max_iter_cap']})"
        wall = record["wall_s"]
        cells = [_cell(record["seconds"][c], wall) for c in CATEGORIES]
        row = [record["fit"], f"{record['n_rows']:,}", n_iter, f"{wall:.2f}", *cells]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def checks_table(records):
    """Sum of the categories against the wall time, and the wrappers' cost."""
    lines = [
        "| estimator | fit | wall s | sum of categories s | wrapper calls | "
        "their cost (est.) | unwrapped fits s | wrapped / unwrapped, medians |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in records:
        unwrapped, ratio = "", ""
        if "unwrapped_wall_s" in r:
            plain = statistics.median(r["unwrapped_wall_s"])
            walls = r.get("wrapped_wall_s", [r["wall_s"]])
            unwrapped = ", ".join(f"{s:.2f}" for s in r["unwrapped_wall_s"])
            ratio = f"{statistics.median(walls) / plain:.3f}"
            if len(walls) > 1:
                ratio += " (wrapped: " + ", ".join(f"{s:.2f}" for s in walls) + ")"
            if "overhead_note" in r:
                ratio += " (n_iter differs)"
        share = 100 * r["wrapper_overhead_est_s"] / r["wall_s"]
        lines.append(
            f"| {r['estimator']} | {r['fit']} | {r['wall_s']:.3f} | "
            f"{r['sum_s']:.3f} | {r['wrapper_calls']:,} | "
            f"{r['wrapper_overhead_est_s']:.3f} s ({share:.1f}%) | {unwrapped} | "
            f"{ratio} |"
        )
    return "\n".join(lines)


def report(records, first, options):
    """The markdown of a run's records (and of its first fit, if any)."""
    root, commit = _sk_slim_version()
    lines = [
        f"Command: `{_command()}`  ",
        f"One torch thread, one BLAS thread (`benchmark_conditions`); "
        f"{datetime.datetime.now().isoformat(timespec='minutes')}; "
        f"{_machine()}; torch {torch.__version__}; sk_slim from `{root}` "
        f"(commit {commit}).",
        "",
    ]
    if first is not None:
        lines += [
            f"First fit in a fresh process (200-row `GNvproRegressor()`, median of "
            f"{first['repeats']} processes, min-max): `import sk_slim` "
            f"{_spread(first['import_s'])} s, first fit "
            f"{_spread(first['first_fit_s'])} s, a second fit in the same process "
            f"{_spread(first['second_fit_s'])} s.",
            "",
        ]
    lines += [
        "Seconds of each fit, and share of its wall time, by category (exclusive: "
        "the innermost category active). A max_iter in the n_iter column marks "
        f"a capped fit (above {options.cap_above:,} rows: `--max-iter-large`): "
        "its shares are those of the first iterations (GNvpro's default makes "
        "two runs, along its penalty continuation and without it, of up to "
        "max_iter iterations each).",
        "",
    ]
    for name in options.estimators:
        mine = [r for r in records if r["estimator"] == name]
        if mine:
            lines += [estimator_table(name, mine), ""]
    cost = statistics.median(r["wrapper_cost_s"] for r in records) if records else 0
    lines += [
        f"Checks (one wrapper costs {1e6 * cost:.2f} us a call here):",
        "",
        checks_table(records),
    ]
    return "\n".join(lines)


def _spread(values):
    return f"{values['median']:.2f} ({values['min']:.2f}-{values['max']:.2f})"


# ------------------------------------------------------------------------ main


def _save(options, record):
    if options.out is not None:
        with open(options.out, "a") as out:
            out.write(json.dumps(record) + "\n")


def run(options):
    """Profile the chosen fits; print and save the results."""
    timer, records = CategoryTimer(), []
    first = None
    if options.first_fit != "skip":
        first = first_fit_in_fresh_process(1 if options.quick else 3)
        _save(options, {"label": options.label, "first_fit": first})
    if options.first_fit == "only":
        options.estimators = []
    with benchmark_conditions():
        cost = wrapper_cost()
        with instrumented(timer):  # every target is there before anything runs
            pass
        for cls, task in ESTIMATORS.values():  # one untimed fit of each, 200 rows
            X, y = FITS[0].data(task, 200)
            warm_up([cls(random_state=0)], X, y)
        for name in options.estimators:
            for fit in options.fits:
                record = profile_one(name, fit, options, timer, cost)
                records.append(record)
                print(
                    f"{name}, {fit.title}: {record['wall_s']:.2f} s, "
                    f"n_iter {record['n_iter']}",
                    file=sys.stderr,
                    flush=True,
                )
                _save(options, record)
    print(report(records, first, options))


def report_saved(options):
    """Print the report of the records in ``--out`` labelled ``--label``: the
    latest of each (estimator, fit), and the latest first fit."""
    latest, first = {}, None
    for line in options.out.read_text().splitlines():
        record = json.loads(line)
        if record.get("label") != options.label:
            continue
        if "first_fit" in record:
            first = record["first_fit"]
        else:
            latest[record["estimator"], record["fit"]] = record
    titles = [fit.title for fit in FITS]
    records = sorted(
        latest.values(),
        key=lambda r: (list(ESTIMATORS).index(r["estimator"]), titles.index(r["fit"])),
    )
    print(report(records, first, options))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--estimators", nargs="+", choices=list(ESTIMATORS), default=list(ESTIMATORS)
    )
    parser.add_argument(
        "--fits", nargs="+", choices=[fit.key for fit in FITS], default=None
    )
    parser.add_argument("--quick", action="store_true", help="small sizes")
    parser.add_argument(
        "--max-iter-large",
        nargs=2,
        type=int,
        default=(10, 3),
        metavar=("GNVPRO", "SLIMTRAIN"),
        help="max_iter of fits above --cap-above rows (default: 10 3)",
    )
    parser.add_argument("--cap-above", type=int, default=20_000)
    parser.add_argument(
        "--time-limit",
        type=float,
        default=None,
        help="stop a fit after this many seconds and report its time so far",
    )
    parser.add_argument(
        "--overhead",
        type=int,
        default=3,
        help="unwrapped fits of the 2000-row size, each followed by a wrapped one",
    )
    parser.add_argument(
        "--first-fit",
        choices=["run", "skip", "only"],
        default="run",
        help="the fresh-process first fit: with the fits, not at all, or alone",
    )
    parser.add_argument("--out", type=Path, default=None, help="JSON lines, appended")
    parser.add_argument("--label", default=None, help="default: sk_slim's commit")
    parser.add_argument(
        "--report",
        action="store_true",
        help="run nothing: print the tables of --out's records labelled --label",
    )
    options = parser.parse_args(argv)
    keys = options.fits or [fit.key for fit in FITS]
    options.fits = [fit for fit in FITS if fit.key in keys]
    # The wrappers' overhead is measured on the 2000-row fit, if it is run.
    options.overhead_fit = next(
        (fit for fit in options.fits if fit.key == "smooth"), None
    )
    if options.quick:  # the last size capped, the rest as they come
        options.cap_above = min(options.cap_above, FITS[-1].quick_rows - 1)
    if options.label is None:
        options.label = _sk_slim_version()[1]
    return options


if __name__ == "__main__":
    options = parse_args()
    if options.report:
        report_saved(options)
    else:
        run(options)
