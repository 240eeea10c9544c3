"""Greedy k-means++ seeding: the kernel of before the screen against today's, same data,
same draws, alternating in one process.

"before" is the unscreened kernel for wide rows (:func:`kmeans_plusplus_wide`, every
row against every candidate in float dot products) or the boxed one for few features;
"now" is what :func:`hkmeans._kernels.cpu.seeding.kmeans_plusplus` picks (the rows
screened by 8-bit copies first where AVX2 is there). Both must choose the same rows;
the potential is that of the chosen centres.

    python bench/seeding.py                      # the three shapes, 3 runs each
    python bench/seeding.py --shapes mixture --repeats 5
"""

from __future__ import annotations

import argparse
import os
import time

import numba
import numpy as np

from hkmeans import _config
from hkmeans._kernels.cpu import seeding
from hkmeans._kernels.cpu.seeding import kmeans_plusplus_boxed, kmeans_plusplus_wide
from hkmeans._threads import single_threaded_blas
from hkmeans.kmeans import assign


def mixture(n, d, n_components, seed=0):
    """``n_components`` overlapping Gaussians (means N(0, 1), unit spread), float32."""
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(n_components, d))
    return (means[rng.integers(0, n_components, n)] + rng.normal(size=(n, d))).astype(np.float32)


#: name: (rows, features, clusters, data)
SHAPES = {
    "mixture": (200_000, 128, 1000, lambda n, d: mixture(n, d, 200)),
    "mixture-32": (200_000, 32, 1000, lambda n, d: mixture(n, d, 200)),
    "few-8": (200_000, 8, 1000, lambda n, d: mixture(n, d, 200)),
}


def before(X, w, order, first, rand, chunk, n_tasks):
    if X.shape[1] > _config.SMALL_D:
        return kmeans_plusplus_wide(X, w, order, first, rand, chunk, n_tasks)
    return kmeans_plusplus_boxed(X, w, order, first, rand, chunk)


def now(X, w, order, first, rand, chunk, n_tasks):
    return seeding.kmeans_plusplus(X, w, order, first, rand, chunk, _config.SMALL_D, n_tasks)


def potential(X, rows):
    with single_threaded_blas():
        return float(np.sum(assign(X, X[rows])[1]))


def run_shape(name, repeats):
    n, d, k, make = SHAPES[name]
    X = make(n, d)
    rng = np.random.default_rng(1)
    w = np.ones(n)
    order = rng.permutation(n)
    rand = rng.random((k - 1, 2 + int(np.log(k))))
    first = int(rng.integers(n))
    args = (w, order, first, rand, _config.SEEDING_ROWS, numba.get_num_threads())
    small = slice(0, 3000)
    for fn in (before, now):  # compile or load first
        fn(X[small], w[small], np.arange(3000), 0, rand[:3], *args[4:])
    times = {"before": [], "now": []}
    picks = {}
    for _ in range(repeats):
        for label, fn in (("before", before), ("now", now)):
            start = time.perf_counter()
            picks[label] = fn(X, *args)
            times[label].append(time.perf_counter() - start)
    same = bool(np.array_equal(picks["before"], picks["now"]))
    med = {label: float(np.median(ts)) for label, ts in times.items()}
    pots = {label: potential(X, rows) for label, rows in picks.items()}
    print(f"\n## {name}: {n} x {d} float32, k = {k}, {rand.shape[1]} candidates per step, {args[-1]} threads")
    print("| kernel | median (s) | runs (s) | potential |")
    print("|---|---|---|---|")
    for label in ("before", "now"):
        runs = ", ".join(f"{t:.2f}" for t in times[label])
        print(f"| {label} | {med[label]:.2f} | {runs} | {pots[label]:.6g} |")
    ratios = ", ".join(f"{b / a:.2f}" for a, b in zip(times["before"], times["now"]))
    print(f"now / before: {med['now'] / med['before']:.2f} (runs: {ratios}); same rows: {same}")
    return same


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shapes", default=",".join(SHAPES), help="which shapes (comma-separated)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    print(f"load average before: {', '.join(f'{v:.2f}' for v in os.getloadavg())}")
    same = [run_shape(name, args.repeats) for name in args.shapes.split(",")]
    print(f"\nload average after: {', '.join(f'{v:.2f}' for v in os.getloadavg())}")
    if not all(same):
        raise SystemExit("the kernels chose different rows")


if __name__ == "__main__":
    main()
