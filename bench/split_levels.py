"""Split levels (``n_splits``) at 1 and 2 threads: n = 100,000, d = 64 float32 (50
blobs), ``n_clusters=1000`` reached as (1000 / s) clusters split in s. Times the whole
level and, apart, its split step (one k-means per top cluster, then the reassignment),
which reruns from a kept top k-means.

    python bench/split_levels.py [--splits 100,10,2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

import numba
import numpy as np

from hkmeans import hierarchical_kmeans
from hkmeans.checkpoint import Checkpoints
from hkmeans.hierarchy import split_workers


class TopKept(Checkpoints):
    """Keeps each level's first step (its top k-means), so reruns do only the split."""

    def __init__(self):
        self.kept = {}

    def load(self, key):
        return dict(self.kept[key]) if key in self.kept else None

    def save(self, key, arrays):
        if key.endswith("step0000"):
            self.kept[key] = dict(arrays)


def median_time(run, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--splits", default="100,10,2")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    X = (rng.standard_normal((100_000, 64)) + rng.integers(0, 50, (100_000, 1))).astype(np.float32)
    hierarchical_kmeans(X[:2000], 100, n_resamples=0, n_splits=10, random_state=0)  # compile or load
    print(
        "| n_splits | points per top cluster | clusters side by side | level, 1 / 2 threads (s) | speed-up "
        "| split step, 1 / 2 threads (s) | speed-up |"
    )
    print("|---|---|---|---|---|---|---|")
    for s in map(int, args.splits.split(",")):
        fit = dict(n_resamples=0, n_splits=s, random_state=0)
        kept = TopKept()
        hierarchical_kmeans(X, 1000, checkpoints=kept, **fit)
        level, step = [], []
        for threads in (1, 2):
            numba.set_num_threads(threads)
            level.append(median_time(lambda: hierarchical_kmeans(X, 1000, **fit), args.repeats))
            step.append(median_time(lambda: hierarchical_kmeans(X, 1000, checkpoints=kept, **fit), args.repeats))
        side = split_workers(X.shape, 1000 // s, s) > 1  # at 2 threads
        print(
            f"| {s} | {len(X) * s // 1000} | {'yes' if side else 'no'} | {level[0]:.2f} / {level[1]:.2f} "
            f"| {level[0] / level[1]:.2f} | {step[0]:.2f} / {step[1]:.2f} | {step[0] / step[1]:.2f} |"
        )


if __name__ == "__main__":
    main()
