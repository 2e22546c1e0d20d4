"""Training past memory: ``partial_fit`` over chunks of a ``numpy.memmap``.

Run from the repository root::

    .venv/bin/python benchmarks/bench_streaming.py > benchmarks/streaming_results.md

Writes 10 million rows (8 inputs, float64: 640 MB, and the targets) to a memory-mapped
file in a temporary directory, chunk by chunk, then streams them through
``SlimTrainRegressor.partial_fit`` one chunk at a time (one epoch of mini-batches
per chunk, the head's slimTik memory and the optimizer's moments carried over; see
the user guide), under ``_common.benchmark_conditions()`` (one torch and one BLAS
thread). Peak resident memory (``_common.peak_mib``: ``VmHWM``) is read in a fresh
process per chunk size: it is bounded by the chunk, not by the file. Test R² on a
held-out 100 000 rows.

Separate from the suite (``suite.py``): its data is generated here, at a size no
suite problem has.
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

N_IN = 8
CHUNKS = (100_000, 1_000_000)


def target(X):
    return np.sin(X).sum(axis=1) + 0.1 * X[:, 0] * X[:, 1]


def write_memmap(path, n_rows, chunk, seed=0):
    """The inputs and targets as two memory-mapped arrays, written chunk by chunk."""
    rng = np.random.default_rng(seed)
    X = np.lib.format.open_memmap(
        path / "X.npy", mode="w+", dtype=np.float64, shape=(n_rows, N_IN)
    )
    y = np.lib.format.open_memmap(
        path / "y.npy", mode="w+", dtype=np.float64, shape=(n_rows,)
    )
    for start in range(0, n_rows, chunk):
        rows = slice(start, min(start + chunk, n_rows))
        X[rows] = rng.standard_normal((rows.stop - rows.start, N_IN))
        y[rows] = target(X[rows])
    X.flush()
    y.flush()


def read_chunk(path, rows):
    """Rows of the memory-mapped arrays, copied; the maps are closed again, since
    the file's pages a live map has touched count in the process's resident
    memory (all 687 MiB of them by the end, with one map kept open)."""
    arrays = []
    for name in ("X.npy", "y.npy"):
        mapped = np.load(path / name, mmap_mode="r")
        arrays.append(np.array(mapped[rows]))
        del mapped  # unmapped: the copy holds no reference to it
    return arrays


def stream(path, chunk):
    """One run: partial_fit over every chunk; prints a JSON record."""
    from _common import benchmark_conditions, peak_mib

    from sk_slim import SlimTrainRegressor

    n_rows = len(np.load(path / "y.npy", mmap_mode="r"))
    rng = np.random.default_rng(1)
    X_test = rng.standard_normal((100_000, N_IN))
    y_test = target(X_test)
    model = SlimTrainRegressor(hidden_layer_sizes=(64, 64), random_state=0)
    base = peak_mib()
    with benchmark_conditions():
        start = time.perf_counter()
        for begin in range(0, n_rows, chunk):
            rows = slice(begin, min(begin + chunk, n_rows))
            model.partial_fit(*read_chunk(path, rows))
        seconds = time.perf_counter() - start
    record = {
        "chunk": chunk,
        "rows": n_rows,
        "seconds": seconds,
        "rows_per_second": n_rows / seconds,
        "base_mib": base,
        "peak_mib": peak_mib(),
        "chunk_mib": chunk * (N_IN + 1) * 8 / 2**20,
        "test_r2": float(model.score(X_test, y_test)),
    }
    print(json.dumps(record))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=float, default=1e7)
    parser.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        stream(Path(args.one[0]), int(args.one[1]))
        return
    n_rows = int(args.rows)
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory)
        start = time.perf_counter()
        write_memmap(path, n_rows, max(CHUNKS))
        written = time.perf_counter() - start
        file_mib = sum(f.stat().st_size for f in path.iterdir()) / 2**20
        records = []
        for chunk in CHUNKS:
            run = subprocess.run(
                [sys.executable, __file__, "--one", str(path), str(chunk)],
                capture_output=True,
                text=True,
                check=True,
                timeout=3600,
            )
            records.append(json.loads(run.stdout.strip().splitlines()[-1]))
    print("# Streaming a memory-mapped file through partial_fit\n")
    print(
        f"{n_rows:,} rows x {N_IN} inputs, float64: {file_mib:,.0f} MiB on disk "
        f"(written in {written:.0f} s); SlimTrainRegressor (64, 64), one thread.\n"
    )
    print(
        "| chunk rows | chunk MiB | rows / s | base MiB | peak MiB | peak - base "
        "| test R² |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in records:
        print(
            f"| {r['chunk']:,} | {r['chunk_mib']:.0f} | {r['rows_per_second']:,.0f} "
            f"| {r['base_mib']:.0f} | {r['peak_mib']:.0f} "
            f"| {r['peak_mib'] - r['base_mib']:.0f} | {r['test_r2']:.4f} |"
        )


if __name__ == "__main__":
    main()
