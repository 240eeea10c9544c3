"""hkmeans on a shared machine: the ring example and a Lloyd run alone, beside busy
processes, and two fits at once.

Each workload runs in a process of its own (kernels loaded first, then timed
``--repeats`` times; the median is kept). Busy processes are plain Python loops that
this script starts before and stops after each measurement. Prints each median in
seconds and its ratio to the time alone.

    python bench/contention.py [--repeats 3] [--busy 0,1,2] [--workloads rings,lloyd]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

BUSY = "while True: pass"


def workload(name: str):
    """The function timed for workload ``name``, its data made once."""
    if name == "rings":
        from hkmeans.demo import load_kernels, run_rings

        load_kernels()
        return lambda: run_rings(seed=0)
    if name == "lloyd":
        from hkmeans import KMeans

        X = np.random.default_rng(0).normal(size=(100_000, 128)).astype(np.float32)
        X[:, :8] *= 4.0  # some structure, so that the bounds have rows to skip
        model = KMeans(n_clusters=1000, init="random", n_init=1, max_iter=10, tol=0.0, random_state=0)
        KMeans(n_clusters=8, init="random", max_iter=2, random_state=0).fit(X[:1000])  # load the kernels
        return lambda: model.fit(X)
    raise ValueError(f"unknown workload {name!r}; choose rings or lloyd.")


def worker(name: str, repeats: int) -> None:
    fn = workload(name)
    fn()  # first call: page in data and caches
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    print(json.dumps(times))


def spawn_worker(name, repeats):
    return subprocess.Popen(
        [sys.executable, __file__, "--worker", name, "--repeats", str(repeats)], stdout=subprocess.PIPE, text=True
    )


def measure(name, repeats, busy, side_by_side=1):
    """Median times of ``side_by_side`` workers of ``name`` run at once beside ``busy``
    busy processes."""
    hogs = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(busy)]
    try:
        workers = [spawn_worker(name, repeats) for _ in range(side_by_side)]
        outs = [w.communicate()[0] for w in workers]
        if any(w.returncode for w in workers):
            raise SystemExit(f"a {name} worker failed")
    finally:
        for h in hogs:
            h.kill()
            h.wait()
    return [float(np.median(json.loads(out))) for out in outs]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--busy", default="0,1,2", help="numbers of busy processes, comma-separated")
    parser.add_argument("--workloads", default="rings,lloyd")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker, args.repeats)
    import numba

    print(
        f"cores usable: {len(os.sched_getaffinity(0))}; "
        f"hkmeans threads: {numba.config.NUMBA_NUM_THREADS} (NUMBA_NUM_THREADS) ; "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}"
    )
    print("| workload | beside | median (s) | ratio to alone |")
    print("|---|---|---|---|")
    for name in args.workloads.split(","):
        alone = None
        for busy in map(int, args.busy.split(",")):
            t = measure(name, args.repeats, busy)[0]
            alone = t if busy == 0 else alone
            ratio = f"{t / alone:.2f}" if alone else "-"
            print(f"| {name} | {busy} busy | {t:.2f} | {ratio} |", flush=True)
        both = measure(name, args.repeats, 0, side_by_side=2)
        ratio = f"{max(both) / alone:.2f}" if alone else "-"
        print(f"| {name} | another fit | {max(both):.2f} (slower of two) | {ratio} |", flush=True)


if __name__ == "__main__":
    main()
