"""Layer-parallel forward propagation by MGRIT: iterations, wall time under
``mpiexec -n 1`` and ``-n 2``, and a cost model for more processes.

Run from the repository root (needs the ``parallel`` extra)::

    .venv/bin/python benchmarks/bench_mgrit.py > benchmarks/mgrit_results.md

A (width 16) tanh ``make_resnet`` on 1000 rows of 8 inputs, float64, depths 16, 64
and 256; MGRIT with coarsening factor 4 and as many levels as leave at least 4
coarse intervals, to a residual tolerance of 1e-8. Each configuration runs in a
fresh ``mpiexec -n P`` (one thread per process, loopback); the wall time of a solve
is the median of 3, after a warm-up solve. The serial time is the blocks applied
one after the other in one process.
"""

import argparse
import json
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path

N_ROWS, N_IN, WIDTH = 1000, 8, 16
DEPTHS = (16, 64, 256)
COARSENING = 4
TOL = 1e-8
PROCESSES = (1, 2)
PROJECTED = (8, 16, 32, 64, 128, 256)
MESSAGE_SECONDS = 50e-6  # the model's cost of one message between processes


def levels_for(depth):
    """Levels such that the coarsest grid keeps at least 4 intervals."""
    return max(2, int(math.log(depth / 4, COARSENING)) + 1)


def worker(depth):
    """One configuration inside mpiexec: rank 0 prints a JSON record."""
    import torch
    from mpi4py import MPI

    from sk_slim.networks import make_resnet
    from sk_slim.training.mgrit import mgrit_forward

    torch.set_num_threads(1)
    comm = MPI.COMM_WORLD
    generator = torch.Generator().manual_seed(0)
    extractor = make_resnet(
        N_IN, width=WIDTH, depth=depth, generator=generator, dtype=torch.float64
    )
    X = torch.randn(N_ROWS, N_IN, generator=generator, dtype=torch.float64)
    options = {
        "levels": levels_for(depth),
        "coarsening": COARSENING,
        "tol": TOL,
        "comm_time": comm,
    }
    states, info = mgrit_forward(extractor, X, **options)  # warm-up
    seconds = []
    for _ in range(3):
        comm.Barrier()
        start = time.perf_counter()
        states, info = mgrit_forward(extractor, X, **options)
        comm.Barrier()
        seconds.append(time.perf_counter() - start)
    with torch.no_grad():
        serial = [timed(lambda: extractor(X)) for _ in range(5)]
        error = float((states[-1] - extractor(X)).abs().max())
    if comm.Get_rank() == 0:
        record = {
            "depth": depth,
            "processes": comm.Get_size(),
            "levels": options["levels"],
            "iterations": len(info["conv"]),
            "mgrit_seconds": statistics.median(seconds),
            "serial_seconds": statistics.median(serial),
            "error": error,
        }
        print(json.dumps(record))


def timed(call):
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def run(depth, processes):
    mpiexec = Path(sys.executable).parent / "mpiexec"
    command = [str(mpiexec), "-n", str(processes), "-host", "127.0.0.1"]
    command += [sys.executable, __file__, "--worker", str(depth)]
    env = {"OMP_NUM_THREADS": "1", "PATH": str(Path(sys.executable).parent)}
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=1800, check=True, env=env
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def step_costs(P, depth, levels):
    """Block steps per MGRIT iteration on the busiest of P processes: every level
    but the coarsest relaxes its points twice (F- then C-relaxation), spread
    over the processes; the coarsest level is solved serially."""
    costs, points = 0.0, float(depth)
    for _ in range(levels - 1):
        costs += 2 * points / P
        points /= COARSENING
    return costs + points


def model_seconds(P, depth, levels, iterations, mgrit_step, serial_step):
    """MGRIT's time by the model: its step costs at the calibrated cost of an
    MGRIT step, plus two messages per level and iteration when P > 1."""
    messages = 2 * (levels - 1) * iterations if P > 1 else 0
    return iterations * step_costs(P, depth, levels) * mgrit_step + (
        messages * MESSAGE_SECONDS
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker)
        return
    records = [run(depth, P) for depth in DEPTHS for P in PROCESSES]
    print("# Layer-parallel propagation by MGRIT (`bench_mgrit.py`)\n")
    print(
        f"(16) tanh ResNet, {N_ROWS} rows x {N_IN} inputs, float64; coarsening "
        f"{COARSENING}, tolerance {TOL:g}; one thread per process, loopback.\n"
    )
    print(
        "| depth | processes | levels | MGRIT iterations | MGRIT s | serial s "
        "| MGRIT / serial | max error |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in records:
        print(
            f"| {r['depth']} | {r['processes']} | {r['levels']} | {r['iterations']} "
            f"| {r['mgrit_seconds']:.4f} | {r['serial_seconds']:.4f} "
            f"| {r['mgrit_seconds'] / r['serial_seconds']:.1f} | {r['error']:.1e} |"
        )
    deepest = [r for r in records if r["depth"] == max(DEPTHS)]
    by_processes = {r["processes"]: r for r in deepest}
    print(
        f"\nDepth {max(DEPTHS)}: 2 processes {by_processes[2]['mgrit_seconds']:.3f} s "
        f"against 1 process {by_processes[1]['mgrit_seconds']:.3f} s."
    )
    one, two = by_processes[1], by_processes[2]
    serial_step = one["serial_seconds"] / one["depth"]
    # One MGRIT step (a block applied inside pymgrit, with its vector algebra)
    # calibrated on the 1-process run; the 2-process run checks the model.
    mgrit_step = one["mgrit_seconds"] / (
        one["iterations"] * step_costs(1, one["depth"], one["levels"])
    )
    predicted = model_seconds(
        2, one["depth"], one["levels"], one["iterations"], mgrit_step, serial_step
    )
    print("\n## Cost model\n")
    print(
        f"Per iteration, every level but the coarsest relaxes its points twice "
        f"(F then C), spread over P processes; the coarsest is solved serially; "
        f"each level adds two messages ({MESSAGE_SECONDS * 1e6:.0f} us each, "
        f"assumed). Calibrated at depth {one['depth']} ({one['levels']} levels, "
        f"coarsening {COARSENING}): a serial block step takes "
        f"{serial_step * 1e6:.0f} us, an MGRIT step {mgrit_step * 1e6:.0f} us "
        f"(pymgrit's vector algebra and Python around each block). Check: "
        f"2 processes predicted {predicted:.3f} s, measured "
        f"{two['mgrit_seconds']:.3f} s.\n"
    )
    cases = [
        (one["depth"], one["iterations"], f"to {TOL:g}"),
        (one["depth"], 2, "inexact, as in training"),
        (1024, one["iterations"], f"to {TOL:g}"),
        (1024, 2, "inexact"),
    ]
    print(
        "| depth | MGRIT iterations | " + " | ".join(f"P={P}" for P in PROJECTED) + " |"
    )
    print("| ---: | --- | " + " | ".join("---:" for _ in PROJECTED) + " |")
    for depth, iterations, label in cases:
        levels = levels_for(depth)
        serial = depth * serial_step
        speedups = [
            serial
            / model_seconds(P, depth, levels, iterations, mgrit_step, serial_step)
            for P in PROJECTED
        ]
        print(
            f"| {depth} | {iterations} ({label}) | "
            + " | ".join(f"{x:.1f}" for x in speedups)
            + " |"
        )
    print(
        "\nSpeed-up over serial propagation; the depth-1024 rows assume the "
        "depth-256 iteration counts (MGRIT's are roughly depth-independent)."
    )


if __name__ == "__main__":
    main()
