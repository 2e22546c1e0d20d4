"""One rank of the data-parallel fits of ``test_distributed.py`` (not a test).

Usage: ``python distributed_worker.py RANK WORLD_SIZE INIT_FILE CASES_JSON OUT_DIR``.
With ``WORLD_SIZE`` 1 it fits on all rows without a process group (the
reference). Each case fits one estimator on this rank's shard of a seeded data
set and saves what the test compares to ``OUT_DIR/<case>-<rank>.npz``; a fit
that raises saves its error message instead.

``python distributed_worker.py RANK WORLD_SIZE INIT_FILE --fault FAULT_JSON``
runs one fit in which one rank fails mid-fit (see :func:`run_fault`); a rank
whose fit raises exits with status 1.
"""

import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as dist
from sklearn.datasets import make_friedman1

import sk_slim
import sk_slim.training
from sk_slim.networks import SeparableNet
from sk_slim.rows import local_fits, row_group
from sk_slim.training import validated_logistic_head


def shard(n_rows, world_size, rank, fractions):
    """This rank's rows: contiguous blocks, of the given fractions of n."""
    if world_size == 1:
        return np.arange(n_rows)
    bounds = np.round(np.cumsum([0.0, *fractions]) * n_rows).astype(int)
    return np.arange(bounds[rank], bounds[rank + 1])


def run_logistic_head_path(case, rank, world_size):
    """``validated_logistic_head`` on a fixed network: training and held-out
    rows both split over the ranks."""
    n, n_val = case["n"], case["n_val"]
    rng = np.random.default_rng(0)
    X = torch.as_tensor(rng.normal(size=(n + n_val, 4)))
    labels = (X[:, 0] + torch.as_tensor(rng.normal(size=n + n_val)) > 0).long()
    labels = labels + (X[:, 1] > 0.5).long()
    Y = torch.nn.functional.one_hot(labels, 3).double()
    weight = torch.as_tensor(rng.integers(1, 4, n + n_val).astype(float))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        extractor = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Tanh())
    net = SeparableNet(extractor, 6, 3).double()
    fractions = case["fractions"]
    train = shard(n, world_size, rank, fractions)
    held_out = n + shard(n_val, world_size, rank, fractions)
    alpha = validated_logistic_head(
        net,
        X[train],
        Y[train],
        weight[train],
        X[held_out],
        Y[held_out],
        weight[held_out],
        rows=row_group(),
    )
    return {"alpha": np.asarray(alpha), "coef": net.augmented_head.detach().numpy()}


def run_case(case, rank, world_size):
    if case.get("function") == "validated_logistic_head":
        return run_logistic_head_path(case, rank, world_size)
    X, y = make_friedman1(n_samples=case["n"], noise=0.3, random_state=0)
    X_test, _ = make_friedman1(n_samples=50, noise=0.0, random_state=1)
    weight = None
    if case.get("weighted"):
        weight = np.random.default_rng(2).integers(1, 4, case["n"]).astype(float)
    if "Classifier" in case["estimator"]:  # labels: quantiles of the target
        n_classes = case.get("classes", 2)
        edges = np.quantile(y, np.arange(1, n_classes) / n_classes)
        y = np.searchsorted(edges, y)
        if n_classes > 2:  # sorted by label: the first rank lacks the last class
            order = np.argsort(y, kind="stable")
            X, y = X[order], y[order]
            weight = None if weight is None else weight[order]
    rows = shard(case["n"], world_size, rank, case.get("fractions", [0.5, 0.5]))
    X_rank, y_rank = X[rows], y[rows]
    if case.get("nan_on_rank") == rank:  # in y: a NaN in X is a missing value
        y_rank = y_rank.astype(float)
        y_rank[0] = np.nan
    estimator = getattr(sk_slim, case["estimator"])(**case["params"])
    if case.get("local"):  # each rank its own model, on its own rows (in a thread)
        with local_fits(), ThreadPoolExecutor(1) as pool:
            pool.submit(estimator.fit, X[rows], y[rows]).result()
        return {"predict": estimator.predict(X_test), "n_rows": len(rows)}
    if case.get("zero_weight_on_rank") == rank:
        weight = weight.copy()
        weight[rows] = 0.0
    fit_params = {}
    if case.get("y_grad"):  # friedman1's exact gradient
        G = np.zeros_like(X)
        wave = 10 * np.pi * np.cos(np.pi * X[:, 0] * X[:, 1])
        G[:, 0], G[:, 1] = wave * X[:, 1], wave * X[:, 0]
        G[:, 2], G[:, 3], G[:, 4] = 40 * (X[:, 2] - 0.5), 10.0, 5.0
        fit_params["y_grad"] = G[rows]
    estimator.fit(
        X_rank,
        y_rank,
        sample_weight=None if weight is None else weight[rows],
        **fit_params,
    )
    result = {
        "predict": estimator.predict(X_test),
        "coef": estimator.coef_,
        "loss_curve": np.asarray(estimator.loss_curve_),
        "n_iter": estimator.n_iter_,
        "t": estimator.t_,
        "theta": torch.cat(
            [p.detach().reshape(-1) for p in estimator.module_.parameters()]
        ).numpy(),
    }
    if estimator.validation_scores_ is not None:
        result["validation_scores"] = np.asarray(estimator.validation_scores_)
    if hasattr(estimator, "predict_proba"):
        result["proba"] = estimator.predict_proba(X_test)
        result["classes"] = estimator.classes_
        X_check, y_check = make_friedman1(n_samples=400, noise=0.3, random_state=3)
        labels = np.searchsorted(edges, y_check)
        result["accuracy"] = estimator.score(X_check, labels)
    if case.get("return_std"):
        result["std"] = estimator.predict(X_test, return_std=True)[1]
    return result


def inject_fault(fault, rank):
    """Make rank ``fault["rank"]`` fail at the start of its ``fault["epoch"]``-th
    epoch: raise, or die at once (``os._exit``: no cleanup, no message to the
    others but its closed connections)."""
    trainer = getattr(sk_slim.training, fault["trainer"])
    epoch, calls = trainer.epoch, [0]

    def failing_epoch(self):
        calls[0] += 1
        if rank == fault["rank"] and calls[0] == fault["epoch"]:
            print(f"rank {rank}: fault at {time.time():.3f}", flush=True)
            if fault["action"] == "exit":
                os._exit(3)
            raise RuntimeError(f"injected fault in epoch {calls[0]}")
        return epoch(self)

    trainer.epoch = failing_epoch


def run_fault(rank, world_size, init_file, fault):
    """One data-parallel fit in which one rank fails mid-fit.

    ``fault``: ``estimator``, ``trainer`` (the class whose ``epoch`` fails),
    ``rank``, ``epoch``, ``action`` (``"raise"`` or ``"exit"``), ``timeout``
    (the process group's, in seconds) and ``release`` (a path or None: the rank
    that raised stays alive, its connections open, until this file appears, as
    a script that catches the error and goes on would). A rank whose fit raises
    prints when, and raises on (exit status 1, the traceback on stderr).
    """
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo",
        init_method=f"file://{init_file}",
        rank=rank,
        world_size=world_size,
        timeout=timedelta(seconds=fault["timeout"]),
    )
    inject_fault(fault, rank)
    X, y = make_friedman1(n_samples=300, noise=0.3, random_state=0)
    rows = shard(len(X), world_size, rank, [1 / world_size] * world_size)
    estimator = getattr(sk_slim, fault["estimator"])(
        hidden_layer_sizes=(8,), max_iter=50, tol=0.0, random_state=0
    )
    try:
        estimator.fit(X[rows], y[rows])
    except Exception:
        print(f"rank {rank}: fit raised at {time.time():.3f}", flush=True)
        if rank == fault["rank"] and fault["release"]:
            deadline = time.monotonic() + 120
            while not os.path.exists(fault["release"]) and time.monotonic() < deadline:
                time.sleep(0.1)
        raise
    print(f"rank {rank}: fit returned", flush=True)


def main(rank, world_size, init_file, cases_json, out_dir):
    torch.set_num_threads(1)
    if world_size > 1:
        dist.init_process_group(
            "gloo",
            init_method=f"file://{init_file}",
            rank=rank,
            world_size=world_size,
            timeout=timedelta(seconds=60),
        )
    with open(cases_json) as file:
        cases = json.load(file)
    for name, case in cases.items():
        try:
            result = run_case(case, rank, world_size)
        except Exception as error:  # the test reads the message
            result = {"error": np.asarray(f"{type(error).__name__}: {error}")}
        np.savez(f"{out_dir}/{name}-{rank}.npz", **result)
    if world_size > 1:
        dist.barrier()  # no rank tears down its connections while another reads
        dist.destroy_process_group()


if __name__ == "__main__":
    rank, world_size = int(sys.argv[1]), int(sys.argv[2])
    if sys.argv[4] == "--fault":
        run_fault(rank, world_size, sys.argv[3], json.loads(sys.argv[5]))
    else:
        main(rank, world_size, *sys.argv[3:6])
