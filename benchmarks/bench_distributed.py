"""Data-parallel slimTrain on torch.distributed: samples per second, 1 rank against 2.

Run from the repository root::

    .venv/bin/python benchmarks/bench_distributed.py > benchmarks/distributed_results.md

``SlimTrainRegressor`` with a (256, 256) tanh network on 100 000 rows of
``make_friedman1`` (10 inputs), batches of 200 rows per rank (the default) and
of 1000. Each rank is a
process with one torch and one BLAS thread; the ranks talk gloo over loopback.
The 1-rank run fits all rows in one process (no process group), the 2-rank run
gives each rank half. Timed: ``partial_fit`` epochs (one pass over the rows,
the streamed head kept, no final solve), after one untimed epoch, as the median
of :data:`EPOCHS`, on rank 0 between barriers. Samples per second = rows of
all ranks / epoch seconds. A 2-rank step takes a batch from each rank (400 rows
together), so it takes half as many steps per epoch; what a step costs besides
its rows (slimTik's eigendecomposition of the 257 x 257 memory Gram, sampled
GCV, the optimizer) is paid once per step on every rank.
"""

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import torch

N_ROWS = 100_000
WIDTH = 256
BATCHES = (200, 1000)  # rows per rank and step: the default, and a larger one
EPOCHS = 3


def data():
    from sklearn.datasets import make_friedman1

    X, y = make_friedman1(n_samples=N_ROWS, noise=0.5, random_state=0)
    return (X - X.mean(0)) / X.std(0), y


def worker(rank, world_size, batch, store, out):
    """One rank: untimed epoch, then EPOCHS timed ones; rank 0 writes the times."""
    import torch.distributed as dist

    from sk_slim import SlimTrainRegressor

    torch.set_num_threads(1)
    if world_size > 1:
        dist.init_process_group(
            "gloo",
            init_method=f"file://{store}",
            rank=rank,
            world_size=world_size,
            timeout=timedelta(seconds=600),
        )
    X, y = data()
    rows = np.array_split(np.arange(N_ROWS), world_size)[rank]
    X, y = X[rows], y[rows]
    model = SlimTrainRegressor(
        hidden_layer_sizes=(WIDTH, WIDTH), batch_size=batch, random_state=0
    )

    def barrier():
        if world_size > 1:
            dist.barrier()

    model.partial_fit(X, y)  # builds the network; not timed
    seconds = []
    for _ in range(EPOCHS):
        barrier()
        start = time.perf_counter()
        model.partial_fit(X, y)
        barrier()
        seconds.append(time.perf_counter() - start)
    record = {"seconds": seconds, "loss": float(model.loss_curve_[-1])}
    if world_size > 1:
        record["all_reduce"] = all_reduce_seconds(model)
    if rank == 0:
        Path(out).write_text(json.dumps(record))
    if world_size > 1:
        dist.barrier()
        dist.destroy_process_group()


def all_reduce_seconds(model, repeats=50):
    """Mean seconds of the step's two all-reduces alone, back to back:
    slimTik's statistics (the Gram's upper triangle, Z^T R0, residual, count)
    and theta's gradient with the loss, in float64 as the fit sends them."""
    import torch.distributed as dist

    p = model.module_.W.shape[0] + 1
    n_params = sum(q.numel() for q in model.module_.feature_extractor.parameters())
    sizes = {"statistics": p * (p + 1) // 2 + p + 2, "gradient": n_params + 1}
    seconds = {}
    for name, size in sizes.items():
        buffer = torch.zeros(size, dtype=torch.float64)
        dist.barrier()
        start = time.perf_counter()
        for _ in range(repeats):
            dist.all_reduce(buffer)
        seconds[name] = (time.perf_counter() - start) / repeats
    return seconds


def launch(world_size, batch, tmp):
    """Run ``world_size`` ranks of :func:`worker`; return rank 0's record."""
    store = Path(tmp) / f"store{world_size}-{batch}"
    out = Path(tmp) / f"out{world_size}-{batch}"
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "GLOO_SOCKET_IFNAME": "lo",
    }
    processes = [
        subprocess.Popen(
            [sys.executable, __file__, "--worker", str(rank), str(world_size)]
            + [str(batch), str(store), str(out)],
            env=env,
        )
        for rank in range(world_size)
    ]
    try:
        for process in processes:
            process.wait(timeout=1200)
    finally:
        for process in processes:
            process.kill()
    if any(p.returncode for p in processes):
        raise RuntimeError(f"a rank failed: {[p.returncode for p in processes]}")
    return json.loads(out.read_text())


def main():
    with tempfile.TemporaryDirectory() as tmp:
        runs = {(b, k): launch(k, b, tmp) for b in BATCHES for k in (1, 2)}
    print("# Data-parallel slimTrain (torch.distributed, gloo over loopback)\n")
    print(
        f"`SlimTrainRegressor`, ({WIDTH}, {WIDTH}) tanh, {N_ROWS} rows of "
        "`make_friedman1`, one thread per rank; median of "
        f"{EPOCHS} `partial_fit` epochs after one untimed epoch.\n"
    )
    print(
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, torch "
        f"{torch.__version__}, Python {platform.python_version()}.\n"
    )
    print(
        "| batch per rank | ranks | epoch (s) | ms per step | samples / s | "
        "speed-up | last epoch's loss |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for (batch, k), run in runs.items():
        seconds = statistics.median(run["seconds"])
        steps = -(-N_ROWS // (k * batch))
        base = N_ROWS / statistics.median(runs[batch, 1]["seconds"])
        rate = N_ROWS / seconds
        print(
            f"| {batch} | {k} | {seconds:.2f} | {1e3 * seconds / steps:.1f} | "
            f"{rate:,.0f} | {rate / base:.2f}x | {run['loss']:.4f} |"
        )
    for batch in BATCHES:
        one, two = runs[batch, 1], runs[batch, 2]
        step = statistics.median(one["seconds"]) / -(-N_ROWS // batch)
        comm = sum(two["all_reduce"].values())
        parts = ", ".join(f"{k} {1e3 * v:.2f} ms" for k, v in two["all_reduce"].items())
        print(
            f"\nBatch {batch}: a step's two all-reduces alone take {1e3 * comm:.1f} "
            f"ms ({parts}; 50 back to back); with the 1-rank step of "
            f"{1e3 * step:.1f} ms, 2 ranks can reach at most "
            f"{2 * step / (step + comm):.2f}x."
        )
    print(
        "\nEvery epoch's times (s): "
        + "; ".join(
            f"batch {b}, {k} rank{'s' if k > 1 else ''}: "
            + ", ".join(f"{s:.2f}" for s in run["seconds"])
            for (b, k), run in runs.items()
        )
    )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(*map(int, sys.argv[2:5]), sys.argv[5], sys.argv[6])
    else:
        main()
