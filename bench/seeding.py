"""Greedy k-means++ seeding: the kernel of before the screen against today's, same data,
same draws, alternating in one process.

"before" is the unscreened kernel for wide rows (:func:`kmeans_plusplus_wide`, every
row against every candidate in float dot products) or the boxed one for few features;
"now" is what :func:`hkmeans._kernels.cpu.seeding.kmeans_plusplus` picks (the rows
screened by 8-bit copies first where AVX2 is there). Both must choose the same rows;
the potential is that of the chosen centres.

    python bench/seeding.py                      # every shape, 3 runs each
    python bench/seeding.py --shapes mixture --repeats 5

With ``--sample M[,M...]``: seeding from every row against seeding from a random sample
of ``k x M`` rows (``init_points_per_centroid``), one run per seed: seeding time,
potential over every row, and the inertia after 10 Lloyd iterations from those centres.

    python bench/seeding.py --shapes mixture --sample 40,100 --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import os
import time

import numba
import numpy as np
from mixtures import mixture

import hkmeans
from hkmeans import _config
from hkmeans._kernels.cpu import seeding, simd
from hkmeans._kernels.cpu.seeding import kmeans_plusplus_boxed, kmeans_plusplus_wide
from hkmeans._threads import single_threaded_blas
from hkmeans.backends import resolve
from hkmeans.kmeans import assign, seeding_rows
from hkmeans.seeding import init_centers

#: name: (rows, features, clusters, data)
SHAPES = {
    "mixture": (200_000, 128, 1000, lambda n, d: mixture(n, d, n_components=200)),
    "mixture-32": (200_000, 32, 1000, lambda n, d: mixture(n, d, n_components=200)),
    "few-8": (200_000, 8, 1000, lambda n, d: mixture(n, d, n_components=200)),
    # the other two shapes of `bench/compare.py --sections peers` (the first is "mixture")
    "peers-64": (1_000_000, 64, 10_000, lambda n, d: mixture(n, d, n_components=200)),
    "peers-768": (100_000, 768, 1000, lambda n, d: mixture(n, d, n_components=200)),
    # a resampling step of the paper's large example: 10 rows per centre
    "paper-step": (50_000, 256, 5000, lambda n, d: np.random.default_rng(0).normal(size=(n, d)).astype(np.float32)),
}


def before(X, w, order, first, rand, chunk, n_tasks):
    if X.shape[1] > _config.SMALL_D:
        return kmeans_plusplus_wide(X, w, order, first, rand, chunk, n_tasks)
    return kmeans_plusplus_boxed(X, w, order, first, rand, chunk)


def now(X, w, order, first, rand, chunk, n_tasks):
    return seeding.kmeans_plusplus(X, w, order, first, rand, chunk, _config.SMALL_D, n_tasks)


def potential(X, rows_or_centres):
    """Sum of squared distances of the rows to the nearest of the centres (given as
    rows of ``X`` or as an array)."""
    C = X[rows_or_centres] if rows_or_centres.ndim == 1 else rows_or_centres
    with single_threaded_blas():
        return float(np.sum(assign(X, C)[1]))


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
    for fn in (before, now, seeding.kmeans_plusplus_screened):  # compile or load first
        extra = (args[4] // 4,) if fn is seeding.kmeans_plusplus_screened else ()
        if fn is not seeding.kmeans_plusplus_screened or simd.LANES_PAY:
            fn(X[small], w[small], np.arange(3000), 0, rand[:3], *args[4:], *extra)
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


def sample_shape(name, per_centre, seeds):
    """Seeding from every row and from ``k x M`` sampled rows, each seed one run."""
    n, d, k, make = SHAPES[name]
    X = make(n, d)
    data = resolve(X)
    hkmeans.KMeans(10, n_init=1, max_iter=2).fit(X[:3000])  # compile or load first
    print(f"\n## {name}: {n} x {d} float32, k = {k}, seeds {', '.join(map(str, seeds))}")
    print("| rows per centre | seeding (s), median | potential per row, mean | after 10 Lloyd iterations, mean |")
    print("|---|---|---|---|")
    for m in (None, *per_centre):
        runs = []
        for seed in seeds:
            rng = np.random.default_rng(seed)
            start = time.perf_counter()
            with single_threaded_blas():
                C, _ = init_centers(seeding_rows(data, k, "k-means++", m, rng), k, "k-means++", rng)
            seconds = time.perf_counter() - start
            lloyd = hkmeans.KMeans(k, init=C, n_init=1, max_iter=10, tol=0).fit(X)
            runs.append((seconds, potential(X, C) / n, lloyd.inertia_ / n))
        t, pot, inertia = np.array(runs).T
        label = "every row" if m is None else m
        print(f"| {label} | {np.median(t):.2f} | {pot.mean():.4f} | {inertia.mean():.4f} |", flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shapes", default="mixture,mixture-32,few-8,paper-step", help="which shapes (comma-separated)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--sample", help="rows per centre of the seeding samples (comma-separated)")
    ap.add_argument("--seeds", default="0,1,2", help="seeds of --sample's runs (comma-separated)")
    args = ap.parse_args(argv)
    print(f"load average before: {', '.join(f'{v:.2f}' for v in os.getloadavg())}")
    if args.sample:
        for name in args.shapes.split(","):
            sample_shape(name, [int(m) for m in args.sample.split(",")], [int(s) for s in args.seeds.split(",")])
        return
    same = [run_shape(name, args.repeats) for name in args.shapes.split(",")]
    print(f"\nload average after: {', '.join(f'{v:.2f}' for v in os.getloadavg())}")
    if not all(same):
        raise SystemExit("the kernels chose different rows")


if __name__ == "__main__":
    main()
