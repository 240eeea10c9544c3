"""Split levels (``n_splits``) at 1 and 2 threads: n = 100,000, d = 64 float32 (50
blobs), ``n_clusters=1000`` reached as (1000 / s) clusters split in s.

    python bench/split_levels.py [--splits 100,10,2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

import numba
import numpy as np

from hkmeans import hierarchical_kmeans


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--splits", default="100,10,2")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    X = (rng.standard_normal((100_000, 64)) + rng.integers(0, 50, (100_000, 1))).astype(np.float32)
    hierarchical_kmeans(X[:2000], 100, n_resamples=0, n_splits=10, random_state=0)  # compile or load
    print("| n_splits | points per top cluster | 1 thread (s) | 2 threads (s) | speed-up |")
    print("|---|---|---|---|---|")
    for s in map(int, args.splits.split(",")):
        medians = []
        for threads in (1, 2):
            numba.set_num_threads(threads)
            times = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                hierarchical_kmeans(X, 1000, n_resamples=0, n_splits=s, random_state=0)
                times.append(time.perf_counter() - start)
            medians.append(float(np.median(times)))
        print(f"| {s} | {len(X) * s // 1000} | {medians[0]:.2f} | {medians[1]:.2f} | {medians[0] / medians[1]:.2f} |")


if __name__ == "__main__":
    main()
