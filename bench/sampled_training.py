"""Sampled training (``max_points_per_centroid``) and seeding on a sample
(``init_points_per_centroid``) against fitting and seeding on every row: time, level-0
inertia and the balance of the curated subset over the mixture's components.

The data are a mixture of Gaussians of Zipf-distributed sizes, so that a plain random
subset is unbalanced; balance is the normalised entropy of the subset's counts per
component (1: every component equally often).

    python bench/sampled_training.py [--n 1000000] [--d 64] [--k 1000,100] [--m 256] [--init-m 40]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import hkmeans


def zipf_mixture(n, d, n_components=200, seed=0):
    """Rows and their component, components of sizes proportional to 1 / rank."""
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, n_components + 1)
    comp = rng.choice(n_components, n, p=p / p.sum())
    means = 3 * rng.normal(size=(n_components, d))
    return (means[comp] + rng.normal(size=(n, d))).astype(np.float32), comp, n_components


def balance(comp, n_components):
    counts = np.bincount(comp, minlength=n_components).astype(float)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum() / np.log(n_components))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--d", type=int, default=64)
    parser.add_argument("--k", default="1000,100")
    parser.add_argument("--m", type=int, default=256, help="max_points_per_centroid")
    parser.add_argument("--init-m", type=int, default=40, help="init_points_per_centroid")
    parser.add_argument("--resamples", type=int, default=2)
    parser.add_argument("--max-iter", type=int, default=20)
    parser.add_argument("--target", type=float, default=0.1, help="curated subset, as a fraction of the rows")
    args = parser.parse_args()
    X, comp, n_comp = zipf_mixture(args.n, args.d)
    ks = tuple(int(k) for k in args.k.split(","))
    params = dict(n_clusters=ks, n_resamples=args.resamples, max_iter=args.max_iter, random_state=0)
    hkmeans.HierarchicalKMeans((20, 4), n_resamples=1, random_state=0).fit(X[:5000])  # compile or load
    print(
        f"## Sampled training: {args.n} x {args.d} float32, Zipf mixture of {n_comp} Gaussians, "
        f"n_clusters={ks}, {args.resamples} resamples, max_iter={args.max_iter}, subset {args.target:.0%}"
    )
    print(f"random subset's balance: {balance(comp[: int(args.n * args.target)], n_comp):.4f}")
    print(
        "| max_points_per_centroid | init_points_per_centroid | fit (s) | level-0 inertia per row | curated balance |"
    )
    print("|---|---|---|---|---|")
    for m, init_m in ((None, None), (args.m, None), (None, args.init_m), (args.m, args.init_m)):
        start = time.perf_counter()
        model = hkmeans.HierarchicalKMeans(**params, max_points_per_centroid=m, init_points_per_centroid=init_m).fit(X)
        seconds = time.perf_counter() - start
        level = model.levels_[0]
        subset = model.sample(int(args.n * args.target), random_state=0)
        print(
            f"| {m} | {init_m} | {seconds:.1f} | {level.sqdist.sum() / args.n:.4f} | {balance(comp[subset], n_comp):.4f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
