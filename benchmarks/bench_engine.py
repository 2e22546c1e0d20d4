"""Benchmark the engines under the estimators: hand-written derivatives vs torch.func.

Run from the repository root (needs the ``bench`` extra: matplotlib)::

    .venv/bin/python benchmarks/bench_engine.py > benchmarks/engine_results.md
    .venv/bin/python benchmarks/bench_engine.py --quick  # smaller grid, < 3 min

``--section products`` (or ``epochs``, ``scaling``, ``iterates``; repeatable)
runs only those sections; the default runs all four:

1. products: median cost of the features' tangent ``J v``, adjoint ``J^T M``
   and the Gauss-Newton product of ``ReducedProblem`` for (w, w) tanh MLPs,
   hand-written (``NetworkLinearization``) and by ``torch.func``
   (``torch_func_only``), against a flop bound: the product's GEMM flops at
   the rate this machine multiplies an (n, w) by a (w, w) matrix.
2. epochs: milliseconds per epoch of ``SlimTrainRegressor`` (both paths),
   ``MLPRegressor(adam)`` and a plain torch Adam loop on the same network.
   The estimators' epoch is ``(fit(13 epochs) - fit(3 epochs)) / 10``, so the
   fixed cost of ``fit`` (set-up, final head solve) cancels.
3. scaling: seconds per iteration (per epoch) and peak memory of
   ``GNvproRegressor()`` and ``SlimTrainRegressor()`` (defaults, ``tol=0``)
   against the number of rows; each (estimator, n) runs in a fresh process
   (``--one``) so that its peak resident memory (``VmHWM``) is that run's. The
   figure goes to ``benchmarks/engine_scaling.png`` (``--figure``).
4. iterates: both estimators on four regression problems of the suite's
   tune half (``problems.py``: cdr_72, peaks, friedman1 at 3000 rows,
   diabetes; those the first defaults were looked at), fitted with the
   hand-written path and inside ``torch_func_only``, over several seeds.
   GNvpro's trajectory is sensitive to rounding (products that agree to 1e-14
   give different iterates after a step or two), so the two paths are
   compared as distributions of test R².

Everything runs with one torch and one BLAS thread (``benchmark_conditions``);
times are medians of repeats after a warm-up call, since sub-millisecond
operations are noisy on the 2-core VM. The products' ``faults`` column counts
page faults a call: where glibc's malloc hands the products' megabyte
temporaries back to the OS, every call faults them in afresh, which can double
a product's time, and whether it does differs between processes. Running with
``MALLOC_MMAP_THRESHOLD_=268435456 MALLOC_TRIM_THRESHOLD_=1073741824`` keeps
them in the heap (what a user gets is the default, so the default is reported).
"""

import argparse
import contextlib
import json
import math
import os
import platform
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import NamedTuple

import numpy as np
import sklearn
import torch
from _common import (
    benchmark_conditions,
    peak_mib,
    seconds_of,
    timed_fit,
    warm_up,
)
from sklearn.neural_network import MLPRegressor
from torch import nn

from sk_slim import GNvproRegressor, SlimTrainRegressor
from sk_slim.networks import SeparableNet, make_mlp
from sk_slim.training import ReducedProblem, make_slimtik
from sk_slim.training.linearization import (
    FuncDerivatives,
    NetworkLinearization,
    torch_func_only,
)
from sk_slim.training.slimtrain import _SGCV_EVERY_MAX

N_IN = 8  # inputs of the synthetic problems
N_OUT = 1
BATCH = 200  # every mini-batch method's batch size
EPOCH_ROWS = 3000  # rows of the epoch comparison
EPOCHS = (3, 13)  # per-epoch cost: (fit(13) - fit(3)) / 10
SCALING_ITERS = (1, 3)  # per-iteration cost: (fit(3) - fit(1)) / 2
FUNC_GIVE_UP_S = 2.0  # a torch.func product slower than this per call is not timed
SLOW_SCALING_S = 60.0  # per iteration at 1e5 rows: then 1e6 rows is not run
FIGURE = Path(__file__).with_name("engine_scaling.png")
SECTIONS = ("products", "epochs", "scaling", "iterates")
# The two derivative paths: sk_slim's default, and torch.func/autograd for all.
PATHS = {"hand-written": contextlib.nullcontext, "torch.func": torch_func_only}
# The reference points: (width, rows, target).
REFERENCE_ABSOLUTE = (16, 3000, 0.5e-3)  # GN product at most 0.5 ms
REFERENCE_RELATIVE = (64, 10_000, 3.0)  # GN product at most 3x its flop bound


@dataclass(frozen=True)
class Plan:
    """The grid and repeats of one run (full or ``--quick``)."""

    widths: tuple[int, ...]  # of the (w, w) MLPs, products
    product_rows: tuple[int, ...]
    budget_s: float  # per timed product: repeats to fill it (5 to 50)
    epoch_widths: tuple[int, ...]
    epoch_repeats: int  # (fit(13) - fit(3)) pairs per estimator
    scaling_rows: tuple[int, ...]
    scaling_budget_s: float  # per (estimator, n): pairs of fits (1 to 5)
    gnvpro_seeds: tuple[int, ...]
    slimtrain_seeds: tuple[int, ...]


FULL = Plan(
    widths=(16, 64, 256),
    product_rows=(1_000, 10_000, 100_000),
    budget_s=1.0,
    epoch_widths=(16, 64),
    epoch_repeats=7,
    scaling_rows=(1_000, 10_000, 100_000, 1_000_000),
    scaling_budget_s=20.0,
    gnvpro_seeds=tuple(range(10)),
    slimtrain_seeds=tuple(range(5)),
)
QUICK = Plan(
    widths=(16, 64),
    product_rows=(1_000, 3_000),
    budget_s=0.3,
    epoch_widths=(16, 64),
    epoch_repeats=3,
    scaling_rows=(1_000, 10_000),
    scaling_budget_s=2.0,
    gnvpro_seeds=(0, 1, 2),
    slimtrain_seeds=(0, 1),
)

# ------------------------------------------------------------------------ timing


class Timing(NamedTuple):
    """Medians over repeated calls."""

    seconds: float
    faults: float  # minor page faults per call


def minor_faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def timed_call(call):
    """Seconds and minor page faults of one ``call()``."""
    faults = minor_faults()
    seconds = seconds_of(call)
    return seconds, minor_faults() - faults


def median_timing(call, budget_s, give_up_s=math.inf, min_repeats=5, max_repeats=50):
    """Median seconds and page faults of ``call`` over repeats that fill about
    ``budget_s``.

    One untimed warm-up call, then one that sizes the repeats (clipped to
    ``min_repeats``..``max_repeats``: 50 for sub-millisecond calls). Page
    faults are counted because they make large temporaries' cost bimodal:
    where malloc hands a freed block back to the OS, the next call's buffer
    is fresh pages, faulted in and zeroed on first touch.

    Returns
    -------
    Timing or None
        The medians; None when the sizing call took over ``give_up_s``.
    """
    call()
    first = seconds_of(call)
    if first > give_up_s:
        return None
    repeats = int(np.clip(budget_s / max(first, 1e-9), min_repeats, max_repeats))
    seconds, faults = zip(*(timed_call(call) for _ in range(repeats)), strict=True)
    return Timing(float(np.median(seconds)), float(np.median(faults)))


# -------------------------------------------------------------------------- data


def synthetic_data(n_rows):
    """``X ~ N(0, 1)`` of shape (n, 8) (numpy seed 0), ``y = sum(sin(X), axis=1)``."""
    X = np.random.default_rng(0).standard_normal((n_rows, N_IN))
    return X, np.sin(X).sum(axis=1)


def tanh_mlp(width, generator):
    """The (width, width) tanh feature extractor, float64."""
    return make_mlp(
        N_IN, (width, width), "tanh", generator=generator, dtype=torch.float64
    )


# ---------------------------------------------------------------- 1. products


@dataclass(frozen=True)
class ProductTiming:
    """One product at one (width, n): median seconds of both paths and its bound."""

    width: int
    n_rows: int
    product: str
    hand: Timing
    func: Timing | None  # None: one call took over FUNC_GIVE_UP_S
    bound_s: float
    rel_diff: float  # ||hand - torch.func|| / ||torch.func||

    @property
    def hand_s(self):
        return self.hand.seconds

    @property
    def func_s(self):
        return None if self.func is None else self.func.seconds

    @property
    def hand_over_bound(self):
        return self.hand_s / self.bound_s

    @property
    def func_over_hand(self):
        return None if self.func_s is None else self.func_s / self.hand_s


def product_calls(width, n_rows):
    """``{path: {product: call}}`` at a Glorot-initialized theta on random rows.

    The Gauss-Newton closure reads ``lin.maps`` when called, so the one built
    from a linearization made inside ``torch_func_only`` keeps using torch.func.
    """
    generator = torch.Generator().manual_seed(0)
    net = SeparableNet(tanh_mlp(width, generator), width, N_OUT)
    X = torch.randn(n_rows, N_IN, generator=generator, dtype=torch.float64)
    C = torch.sin(X).sum(dim=1, keepdim=True)
    problem = ReducedProblem(net, X, C, alpha=1e-4)
    theta = problem.get_theta()
    v = torch.randn(theta.numel(), generator=generator, dtype=torch.float64)
    M = torch.randn(n_rows, width, generator=generator, dtype=torch.float64)
    expected = {"hand-written": NetworkLinearization, "torch.func": FuncDerivatives}
    calls = {}
    for path, context in PATHS.items():
        with context():
            lin = problem.linearize(theta, "gcv", differentiable=True)
            matvec = problem.gauss_newton(lin)
        if not isinstance(lin.maps, expected[path]):  # the switch must work
            raise TypeError(f"{path}: got {type(lin.maps).__name__}")
        calls[path] = {
            "tangent": partial(lin.maps.tangent, v),
            "adjoint": partial(lin.maps.adjoint, M),
            "Gauss-Newton": partial(matvec, v),
        }
    return calls


def product_flops(width, n_rows):
    """GEMM flops of each product (elementwise work and reductions not counted).

    Tangent: layer 1 ``x dW1^T`` (2 n d w), layer 2 ``x dW2^T`` and
    ``dx W2^T`` (2 * 2 n w^2); the adjoint mirrors it. The Gauss-Newton
    product adds its rank-c projections, counted as 8 n (w + 1) c.
    """
    first_layer = 2 * n_rows * N_IN * width
    second_layer = 2 * 2 * n_rows * width * width
    tangent = adjoint = first_layer + second_layer
    projections = 8 * n_rows * (width + 1) * N_OUT
    return {
        "tangent": tangent,
        "adjoint": adjoint,
        "Gauss-Newton": tangent + adjoint + projections,
    }


def gemm_rate(width, n_rows, budget_s):
    """Flops per second of ``A @ B``, A (n, w), B (w, w), float64, one thread."""
    A = torch.randn(n_rows, width, dtype=torch.float64)
    B = torch.randn(width, width, dtype=torch.float64)
    timing = median_timing(partial(torch.mm, A, B), budget_s)
    return 2 * n_rows * width * width / timing.seconds


def relative_difference(hand, func):
    """``||hand() - func()|| / ||func()||``."""
    expected = func()
    return float(torch.linalg.vector_norm(hand() - expected)) / float(
        torch.linalg.vector_norm(expected)
    )


def measure_products(width, n_rows, budget_s):
    """A :class:`ProductTiming` for each product at one (width, n)."""
    calls = product_calls(width, n_rows)
    rate = gemm_rate(width, n_rows, budget_s)
    timings = []
    for product, flops in product_flops(width, n_rows).items():
        hand, func = calls["hand-written"][product], calls["torch.func"][product]
        timings.append(
            ProductTiming(
                width,
                n_rows,
                product,
                hand=median_timing(hand, budget_s),
                func=median_timing(func, budget_s, give_up_s=FUNC_GIVE_UP_S),
                bound_s=flops / rate,
                rel_diff=relative_difference(hand, func),
            )
        )
    return timings


def run_products(plan):
    """``{(width, n): [ProductTiming]}`` over the plan's grid and the reference
    points."""
    grid = [(w, n) for w in plan.widths for n in plan.product_rows]
    references = [REFERENCE_ABSOLUTE[:2], REFERENCE_RELATIVE[:2]]
    points = grid + [point for point in references if point not in grid]
    return {point: measure_products(*point, plan.budget_s) for point in points}


def print_products(timings, plan):
    print("## 1. Per-product cost (median ms, float64, one thread)\n")
    print(
        f"(w, w) tanh MLP, d = {N_IN}, c = {N_OUT}, random rows, Glorot theta. "
        "Flop bound: the product's GEMM flops at the measured rate of an "
        "(n, w) @ (w, w) product. torch.func is not timed where one call takes "
        f"over {FUNC_GIVE_UP_S:g} s. rel. diff: ||hand - torch.func|| / "
        "||torch.func||. faults: median minor page faults per hand-written call "
        "(4 KiB pages that its temporaries had to fault in afresh: where they "
        "are not 0 the product pays for them, and its time is bimodal between "
        "processes).\n"
    )
    print(
        "| width | n | product | hand-written ms | torch.func ms | flop-bound ms "
        "| hand / bound | torch.func / hand | rel. diff | faults |"
    )
    print("| ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    grid = {(w, n) for w in plan.widths for n in plan.product_rows}
    for point, rows in timings.items():
        if point not in grid:
            continue
        for t in rows:
            print(
                f"| {t.width} | {t.n_rows:,} | {t.product} | {ms(t.hand_s)} | "
                f"{ms(t.func_s)} | {ms(t.bound_s)} | {t.hand_over_bound:.1f} | "
                f"{ratio(t.func_over_hand)} | {t.rel_diff:.1e} | "
                f"{t.hand.faults:.0f} |"
            )
    print_references(timings)


def print_references(timings):
    """The issue's two reference points for the Gauss-Newton product."""

    def gauss_newton(width, n_rows):
        return next(t for t in timings[width, n_rows] if t.product == "Gauss-Newton")

    width, n_rows, target_s = REFERENCE_ABSOLUTE
    t = gauss_newton(width, n_rows)
    verdict = "met" if t.hand_s <= target_s else "MISSED"
    print(
        f"\nReference, width {width}, n = {n_rows:,}: Gauss-Newton product "
        f"{ms(t.hand_s)} ms hand-written (target ≤ {ms(target_s)} ms: {verdict}; "
        f"torch.func {ms(t.func_s)} ms, flop bound {ms(t.bound_s)} ms, "
        f"{t.hand.faults:.0f} page faults a call)."
    )
    width, n_rows, target_ratio = REFERENCE_RELATIVE
    t = gauss_newton(width, n_rows)
    verdict = "met" if t.hand_over_bound <= target_ratio else "MISSED"
    print(
        f"Reference, width {width}, n = {n_rows:,}: Gauss-Newton product "
        f"{ms(t.hand_s)} ms hand-written = {t.hand_over_bound:.1f}× its flop bound "
        f"{ms(t.bound_s)} ms (target ≤ {target_ratio:g}×: {verdict}; torch.func "
        f"{ms(t.func_s)} ms, {t.hand.faults:.0f} page faults a call).\n"
    )


# ------------------------------------------------------------------ 2. epochs


def slimtrain_for_epochs(width, max_iter, **params):
    return SlimTrainRegressor(
        hidden_layer_sizes=(width, width),
        early_stopping=False,
        tol=0,
        random_state=0,
        max_iter=max_iter,
        **params,
    )


def mlp_for_epochs(width, max_iter):
    return MLPRegressor(
        hidden_layer_sizes=(width, width),
        activation="tanh",
        solver="adam",
        batch_size=BATCH,
        early_stopping=False,
        tol=0,
        random_state=0,
        max_iter=max_iter,
    )


def fit_epoch_seconds(make, X, y, repeats, context=contextlib.nullcontext):
    """Seconds per epoch of ``make(max_iter)``: the median over ``repeats`` of
    ``(fit(E2) - fit(E1)) / (E2 - E1)``, which cancels fit's fixed cost."""
    short, long = EPOCHS

    def one_pair():
        with context():
            seconds = timed_fit(make(long), X, y) - timed_fit(make(short), X, y)
        return seconds / (long - short)

    one_pair()  # warm-up
    return float(np.median([one_pair() for _ in range(repeats)]))


def torch_adam_epoch_seconds(width, X, y, repeats):
    """Median seconds of a plain torch Adam epoch: make_mlp + nn.Linear, float64,
    shuffled mini-batches of 200, forward, MSE, backward, step."""
    generator = torch.Generator().manual_seed(0)
    with torch.random.fork_rng(devices=[]):  # nn.Linear draws from the global RNG
        torch.manual_seed(0)
        model = nn.Sequential(
            tanh_mlp(width, generator), nn.Linear(width, N_OUT, dtype=torch.float64)
        )
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    X_t, y_t = torch.from_numpy(X), torch.from_numpy(y)[:, None]

    def epoch():
        for batch in torch.randperm(len(X_t), generator=generator).split(BATCH):
            optimizer.zero_grad(set_to_none=True)
            loss = nn.functional.mse_loss(model(X_t[batch]), y_t[batch])
            loss.backward()
            optimizer.step()

    epoch()  # warm-up
    return float(np.median([seconds_of(epoch) for _ in range(10 * repeats)]))


def slimtik_epoch_seconds(width, repeats, sgcv_every):
    """The slimTik head updates of one epoch alone (sGCV on every
    ``sgcv_every``-th batch, the solve on each), on (BATCH, width) features
    given as numpy arrays, as the CPU epoch gives them: the share of slimTrain's
    epoch that an MLP does not have."""
    generator = torch.Generator().manual_seed(0)
    n_batches = math.ceil(EPOCH_ROWS / BATCH)
    features = torch.tanh(
        torch.randn(BATCH, width, generator=generator, dtype=torch.float64)
    )
    Z = torch.cat([features, torch.ones(BATCH, 1, dtype=torch.float64)], dim=1)
    C = torch.randn(BATCH, 1, generator=generator, dtype=torch.float64)
    slimtik = make_slimtik(
        torch.zeros(width + 1, 1, dtype=torch.float64), sgcv_every=sgcv_every
    )

    Z, C = Z.numpy(), C.numpy()
    slimtik.state.W = slimtik.state.W.numpy()  # a numpy state, as NumpyStep's

    def epoch():
        for _ in range(n_batches):
            slimtik.update(Z, C)

    epoch()  # warm-up, and a full memory
    return float(np.median([seconds_of(epoch) for _ in range(10 * repeats)]))


def run_epochs(plan):
    """``{width: {method: seconds per epoch}}`` on the synthetic data."""
    X, y = synthetic_data(EPOCH_ROWS)
    # What the estimators' sgcv_every='auto' gives: at most 8, once an epoch.
    default_sgcv_every = min(_SGCV_EVERY_MAX, math.ceil(EPOCH_ROWS / BATCH))
    results = {}
    for width in plan.epoch_widths:
        slimtrain = partial(slimtrain_for_epochs, width)
        repeats = plan.epoch_repeats
        results[width] = {
            "MLPRegressor adam (numpy)": fit_epoch_seconds(
                partial(mlp_for_epochs, width), X, y, repeats
            ),
            "SlimTrainRegressor (default: the numpy step)": fit_epoch_seconds(
                slimtrain, X, y, repeats
            ),
            "SlimTrainRegressor (sgcv_every=1: sGCV on every batch, as published)": (
                fit_epoch_seconds(partial(slimtrain, sgcv_every=1), X, y, repeats)
            ),
            "SlimTrainRegressor (torch_func_only: autograd)": fit_epoch_seconds(
                slimtrain, X, y, repeats, context=torch_func_only
            ),
            "torch Adam loop (make_mlp + nn.Linear)": torch_adam_epoch_seconds(
                width, X, y, repeats
            ),
            "slimTik updates alone (in SlimTrainRegressor's epoch)": (
                slimtik_epoch_seconds(width, repeats, default_sgcv_every)
            ),
            "slimTik updates alone, sGCV on every batch": (
                slimtik_epoch_seconds(width, repeats, 1)
            ),
        }
    return results


def print_epochs(results, plan):
    n_batches = math.ceil(EPOCH_ROWS / BATCH)
    print("## 2. One epoch: slimTrain against its peers (median ms per epoch)\n")
    print(
        f"n = {EPOCH_ROWS:,} rows, d = {N_IN}, batch {BATCH} ({n_batches} batches), "
        "tanh, float64, one thread, X ~ N(0, 1), y = sum(sin X). Estimators: "
        f"(fit of {EPOCHS[1]} epochs - fit of {EPOCHS[0]}) / "
        f"{EPOCHS[1] - EPOCHS[0]}, median of {plan.epoch_repeats} pairs "
        "(no early stopping, tol = 0); the torch loop: the epoch timed directly, "
        f"median of {10 * plan.epoch_repeats}.\n"
    )
    print("| width | method | ms / epoch | ratio to MLPRegressor |")
    print("| ---: | --- | ---: | ---: |")
    for width, methods in results.items():
        reference = methods["MLPRegressor adam (numpy)"]
        for method, seconds in methods.items():
            print(
                f"| ({width}, {width}) | {method} | {ms(seconds)} | "
                f"{seconds / reference:.2f} |"
            )
    print()


# ----------------------------------------------------------------- 3. scaling


SCALING_ESTIMATORS = {
    "GNvproRegressor": GNvproRegressor,
    "SlimTrainRegressor": SlimTrainRegressor,
}


def scaling_estimator(name, max_iter):
    """An estimator at its defaults, ``tol=0`` so that no run stops early."""
    return SCALING_ESTIMATORS[name](tol=0, max_iter=max_iter, random_state=0)


def iteration_seconds(make, X, y, budget_s):
    """Median of ``(fit(3) - fit(1)) / 2`` over pairs of fits: 1 to 5 pairs,
    as many as start within ``budget_s``."""
    few, many = SCALING_ITERS
    pairs, start = [], time.perf_counter()
    while len(pairs) < 5 and (not pairs or time.perf_counter() - start < budget_s):
        seconds = timed_fit(make(many), X, y) - timed_fit(make(few), X, y)
        pairs.append(seconds / (many - few))
    return float(np.median(pairs))


def run_one(name, n_rows, budget_s):
    """The ``--one`` mode: time one estimator on n rows; print JSON."""
    X, y = synthetic_data(n_rows)
    make = partial(scaling_estimator, name)
    with benchmark_conditions():
        warm_up([make(1)], X, y)
        baseline = peak_mib()  # imports, data and torch's set-up
        seconds = iteration_seconds(make, X, y, budget_s)
    record = {"seconds": seconds, "peak_mib": peak_mib(), "base_mib": baseline}
    print(json.dumps(record))


@dataclass(frozen=True)
class ScalingPoint:
    """One (estimator, n) run in its own process."""

    estimator: str
    n_rows: int
    seconds: float | None  # per iteration (epoch); None: skipped or failed
    peak_mib: float | None
    base_mib: float | None
    note: str = ""


def measure_in_subprocess(name, n_rows, budget_s):
    """Run ``--one`` in a fresh interpreter, so its peak memory is this run's."""
    command = [sys.executable, __file__, "--one", name, str(n_rows)]
    command += ["--budget", str(budget_s)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        tail = done.stderr.strip().splitlines()[-1:] or ["no stderr"]
        return ScalingPoint(name, n_rows, None, None, None, f"failed: {tail[0]}")
    record = json.loads(done.stdout.strip().splitlines()[-1])
    return ScalingPoint(
        name, n_rows, record["seconds"], record["peak_mib"], record["base_mib"]
    )


def run_scaling(plan):
    """A :class:`ScalingPoint` per estimator and n; after a run over
    ``SLOW_SCALING_S`` per iteration the larger n are skipped."""
    points = []
    for name in SCALING_ESTIMATORS:
        too_slow = False
        for n_rows in plan.scaling_rows:
            if too_slow:
                note = f"skipped: over {SLOW_SCALING_S:g} s/iteration at fewer rows"
                points.append(ScalingPoint(name, n_rows, None, None, None, note))
                continue
            point = measure_in_subprocess(name, n_rows, plan.scaling_budget_s)
            points.append(point)
            too_slow = point.seconds is None or point.seconds > SLOW_SCALING_S
    return points


def print_scaling(points, figure_note):
    print("## 3. Scaling: time per iteration and peak memory against n\n")
    print(
        f"Defaults (``tol=0``), d = {N_IN}, X ~ N(0, 1), y = sum(sin X). "
        f"Per iteration (GNvpro) or epoch (slimTrain): (fit of {SCALING_ITERS[1]} "
        f"- fit of {SCALING_ITERS[0]}) / {SCALING_ITERS[1] - SCALING_ITERS[0]}, "
        "median of up to 5 pairs; early stopping's validation scoring included. "
        "Each row is a fresh process: peak = its peak resident memory (VmHWM; "
        "ru_maxrss would include this parent's size, inherited over fork), "
        "base = the same after the imports, the data and a 200-row warm-up "
        "fit.\n"
    )
    print("| estimator | n | s / iteration | peak MiB | base MiB | fit's MiB | note |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | --- |")
    for p in points:
        measured = p.seconds is not None
        print(
            f"| {p.estimator} | {p.n_rows:,} | "
            f"{f'{p.seconds:.4g}' if measured else '—'} | "
            f"{f'{p.peak_mib:.0f}' if measured else '—'} | "
            f"{f'{p.base_mib:.0f}' if measured else '—'} | "
            f"{f'{p.peak_mib - p.base_mib:.0f}' if measured else '—'} | {p.note} |"
        )
    print(f"\n{figure_note}\n")


def plot_scaling(points, path):
    """Log-log panels of seconds per iteration and peak MiB against n; returns
    a line saying where the figure went (or why there is none)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: no figure."
    figure, (time_axis, memory_axis) = plt.subplots(1, 2, figsize=(10, 4))
    for name in SCALING_ESTIMATORS:
        measured = [p for p in points if p.estimator == name and p.seconds]
        n_rows = [p.n_rows for p in measured]
        time_axis.loglog(n_rows, [p.seconds for p in measured], "o-", label=name)
        memory_axis.loglog(n_rows, [p.peak_mib for p in measured], "o-", label=name)
    time_axis.set(xlabel="rows n", ylabel="seconds per iteration (epoch)")
    memory_axis.set(xlabel="rows n", ylabel="peak resident MiB (whole process)")
    for axis in (time_axis, memory_axis):
        axis.grid(True, which="both", alpha=0.3)
        axis.legend()
    figure.suptitle(f"Defaults, d = {N_IN}, one thread")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return f"Figure: `{path.name}`."


# ---------------------------------------------------------------- 4. iterates


@dataclass(frozen=True)
class Fit:
    """One fitted model: test R², iterations (epochs), fit seconds."""

    r2: float
    n_iter: int
    seconds: float


def fit_both_paths(estimator_class, split, seeds):
    """``{path: [Fit per seed]}``: ``estimator_class(random_state=seed)`` (its
    defaults otherwise) fitted on each path."""
    fits = {path: [] for path in PATHS}
    for seed in seeds:
        for path, context in PATHS.items():
            model = estimator_class(random_state=seed)
            with context():
                seconds = timed_fit(model, split.X_train, split.y_train)
            r2 = model.score(split.X_test, split.y_test)
            fits[path].append(Fit(r2, model.n_iter_, seconds))
    return fits


# The iterate problems: {name: (registry name, n_samples if not the registry's)}.
ITERATE_PROBLEMS = {
    "cdr": ("cdr_72", None),
    "peaks": ("peaks", None),
    "friedman1": ("friedman1", 3000),
    "diabetes": ("diabetes", None),
}


def iterate_problems():
    """``{name: Split}`` of :data:`ITERATE_PROBLEMS` (problems.py is imported
    here: the ``--one`` processes of the scaling section do not need it)."""
    import dataclasses

    import problems as registry

    splits = {}
    for name, (registered, n_samples) in ITERATE_PROBLEMS.items():
        problem = registry.get(registered)
        if n_samples is not None:
            problem = dataclasses.replace(problem, n_samples=n_samples)
        splits[name] = problem.load()
    return splits


def run_iterates(plan):
    """``{estimator: {problem: {path: [Fit]}}}`` on :data:`ITERATE_PROBLEMS`."""
    problems = iterate_problems()
    estimators = {
        "GNvproRegressor": (GNvproRegressor, plan.gnvpro_seeds),
        "SlimTrainRegressor": (SlimTrainRegressor, plan.slimtrain_seeds),
    }
    return {
        name: {
            problem: fit_both_paths(cls, split, seeds)
            for problem, split in problems.items()
        }
        for name, (cls, seeds) in estimators.items()
    }


def agreement(fits):
    """Share of seeds whose two R² agree to 4 decimals (|ΔR²| < 5e-5), and the
    largest |ΔR²|."""
    hand, func = (np.array([f.r2 for f in fits[path]]) for path in PATHS)
    gaps = np.abs(hand - func)
    return float(np.mean(gaps < 5e-5)), float(gaps.max())


def r2_summary(fits):
    """``median (min–max)`` of the R² of some fits."""
    r2 = [f.r2 for f in fits]
    return f"{np.median(r2):.4f} ({min(r2):.4f}–{max(r2):.4f})"


def print_iterates(results):
    print("## 4. Iterates: hand-written path against torch.func\n")
    print(
        "Defaults, ``random_state`` = each seed; each model fitted once normally "
        "and once inside ``torch_func_only()``. R²: median (min–max) over seeds; "
        "iterations and seconds: medians; agree: share of seeds whose test R² "
        "agree to 4 decimals (|ΔR²| < 5e-5).\n"
    )
    hand, func = PATHS
    for name, problems in results.items():
        n_seeds = len(next(iter(problems.values()))[hand])
        print(f"### {name} ({n_seeds} seeds)\n")
        print(
            f"| problem | R² {hand} | R² {func} | iterations {hand} / {func} | "
            f"seconds {hand} / {func} | agree | max abs ΔR² |"
        )
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        for problem, fits in problems.items():
            share, gap = agreement(fits)
            iters = [np.median([f.n_iter for f in fits[p]]) for p in PATHS]
            seconds = [np.median([f.seconds for f in fits[p]]) for p in PATHS]
            print(
                f"| {problem} | {r2_summary(fits[hand])} | {r2_summary(fits[func])} "
                f"| {iters[0]:g} / {iters[1]:g} | {seconds[0]:.2f} / "
                f"{seconds[1]:.2f} | {share:.0%} | {gap:.1e} |"
            )
        print()


# ------------------------------------------------------------------------ main


def ms(seconds):
    """Milliseconds with 3-4 significant digits; an em dash for None."""
    if seconds is None:
        return "—"
    value = 1e3 * seconds
    if value < 1:
        return f"{value:.3f}"
    return f"{value:.3g}" if value < 100 else f"{value:.0f}"


def ratio(value):
    return "—" if value is None else f"{value:.1f}"


def print_conditions(plan, quick):
    """The machine and run conditions, at the top of the report."""
    with benchmark_conditions():
        threads = torch.get_num_threads()
    print(f"# Engine benchmark{' (--quick)' if quick else ''}\n")
    print(
        f"- {time.strftime('%Y-%m-%d %H:%M')}; Python {platform.python_version()}, "
        f"torch {torch.__version__}, numpy {np.__version__}, scikit-learn "
        f"{sklearn.__version__}\n"
        f"- {platform.machine()}, {os.cpu_count()} CPUs; torch threads "
        f"{threads}, BLAS threads 1 (threadpoolctl), float64\n"
        f"- product widths {plan.widths}, rows {plan.product_rows}\n"
    )


def warm_up_torch():
    """Pay torch's one-time set-up (lazy imports, the first torch.func and
    autograd calls) before anything is timed, on both paths."""
    X, y = synthetic_data(200)
    for context in PATHS.values():
        with context():
            warm_up(
                [
                    GNvproRegressor(max_iter=2, random_state=0),
                    SlimTrainRegressor(max_iter=2, random_state=0),
                ],
                X,
                y,
            )


def parse_arguments():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller grid, < 3 min")
    parser.add_argument(
        "--section", action="append", choices=SECTIONS, help="repeatable; default all"
    )
    parser.add_argument("--figure", type=Path, default=FIGURE)
    parser.add_argument(
        "--one", nargs=2, metavar=("ESTIMATOR", "N"), help=argparse.SUPPRESS
    )
    parser.add_argument("--budget", type=float, default=2.0, help=argparse.SUPPRESS)
    return parser.parse_args()


def main():
    arguments = parse_arguments()
    if arguments.one:
        name, n_rows = arguments.one
        run_one(name, int(n_rows), arguments.budget)
        return
    plan = QUICK if arguments.quick else FULL
    sections = arguments.section or SECTIONS
    print_conditions(plan, arguments.quick)
    with benchmark_conditions():
        warm_up_torch()
        if "products" in sections:
            print_products(run_products(plan), plan)
        if "epochs" in sections:
            print_epochs(run_epochs(plan), plan)
    if "scaling" in sections:  # fresh processes, each under benchmark_conditions
        points = run_scaling(plan)
        print_scaling(points, plot_scaling(points, arguments.figure))
    if "iterates" in sections:
        with benchmark_conditions():
            print_iterates(run_iterates(plan))


if __name__ == "__main__":
    main()
