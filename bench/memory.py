"""Peak memory of a k-means fit: by default n = 1,000,000 x 128 float32 (512 MB of
data) and k = 10,000, random initialisation, 3 Lloyd iterations.

    python bench/memory.py [--n 1000000] [--d 128] [--k 10000] [--init random] [--max-iter 3]

Prints the data size, the process's peak resident memory (getrusage) before and after
the fit, and what the fit added beyond the data.
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np

from hkmeans import KMeans


def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--d", type=int, default=128)
    parser.add_argument("--k", type=int, default=10_000)
    parser.add_argument("--init", default="random")
    parser.add_argument("--max-iter", type=int, default=3)
    args = parser.parse_args()
    KMeans(4, random_state=0).fit(np.random.default_rng(0).normal(size=(100, args.d)).astype(np.float32))
    base = peak_mb()
    X = np.random.default_rng(0).standard_normal((args.n, args.d), dtype=np.float32)
    with_data = peak_mb()
    start = time.perf_counter()
    km = KMeans(args.k, init=args.init, n_init=1, max_iter=args.max_iter, tol=0, random_state=0).fit(X)
    seconds = time.perf_counter() - start
    peak = peak_mb()
    print(f"n={args.n}, d={args.d}, k={args.k}, init={args.init}, {km.n_iter_} iterations, {seconds:.0f} s")
    print(
        f"data {X.nbytes / 2**20:.0f} MiB; peak RSS: {base:.0f} MiB before the data, {with_data:.0f} MiB "
        f"with it, {peak:.0f} MiB after the fit ({peak - with_data:.0f} MiB added by the fit)"
    )


if __name__ == "__main__":
    main()
