"""Does ``hkmeans advise`` propose settings that balance a long-tailed pool?

On mixtures of Gaussian "concepts" with long-tailed sizes, curates the target size
with the advised settings and with a small grid of plain ones, and reports the
normalised entropy of the curated subset over the true concepts (1 = every concept
equally represented; a random subset of the pool gives its own, lower figure), the
smallest concept's share, and the time of each fit. The advice passes when its
balance is within 0.02 of the best grid setting.

    python bench/advise.py                       # both mixtures, the full grid
    python bench/advise.py --mixtures 200k --grid small
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from hkmeans import HierarchicalKMeans, advise

#: name: (rows, dimensions, concepts, Zipf exponent of their sizes, target size)
MIXTURES = {
    "200k": (200_000, 64, 200, 1.3, 20_000),
    "50k": (50_000, 32, 100, 1.3, 5_000),
}

#: Plain settings: (levels' clusters, resampling steps per level)
GRID = {
    "small": [((1000, 100), 2), ((1000,), 0), ((300,), 0)],
    "full": [
        ((1000,), 0),
        ((300,), 0),
        ((1000, 100), 2),
        ((1000, 100), 10),
        ((3000, 300), 2),
        ((2000, 400, 80), 2),
        ((300, 30), 2),
    ],
}


def long_tailed_mixture(n, d, concepts, exponent, seed=0):
    """``n`` rows in ``d`` dimensions from ``concepts`` Gaussians whose sizes fall as
    ``rank ** -exponent``, with centres spread wider than each concept; returns
    ``(X, concept of each row)``."""
    rng = np.random.default_rng(seed)
    weights = np.arange(1, concepts + 1, dtype=float) ** -exponent
    sizes = np.maximum(1, np.round(weights / weights.sum() * n)).astype(int)
    sizes[0] += n - sizes.sum()
    labels = np.repeat(np.arange(concepts), sizes)
    centres = rng.normal(scale=4.0, size=(concepts, d))
    spread = rng.uniform(0.5, 1.5, size=concepts)
    X = centres[labels] + rng.normal(size=(n, d)) * spread[labels, None]
    order = rng.permutation(n)
    return X[order].astype(np.float32), labels[order]


def balance(picked_labels, concepts):
    """Normalised entropy of the concepts of a subset, and its smallest concept's count."""
    counts = np.bincount(picked_labels, minlength=concepts)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum() / np.log(concepts)), int(counts.min())


def curate(X, labels, concepts, target, n_clusters, n_resamples, sample_size=None, seed=0):
    start = time.perf_counter()
    model = HierarchicalKMeans(
        n_clusters=n_clusters, n_resamples=n_resamples, sample_size=sample_size, random_state=seed
    ).fit(X)
    picked = model.sample(target, random_state=seed)
    return (*balance(labels[picked], concepts), time.perf_counter() - start)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mixtures", default=",".join(MIXTURES), help="which mixtures (comma-separated)")
    ap.add_argument("--grid", choices=list(GRID), default="full")
    args = ap.parse_args(argv)
    ok = True
    for name in args.mixtures.split(","):
        n, d, concepts, exponent, target = MIXTURES[name]
        X, labels = long_tailed_mixture(n, d, concepts, exponent)
        rnd = np.random.default_rng(0).choice(n, target, replace=False)
        print(
            f"\n{name}: {n} x {d}, {concepts} concepts (largest {np.bincount(labels).max() / n:.0%} of the pool), "
            f"target {target}; a random subset: balance {balance(labels[rnd], concepts)[0]:.3f}"
        )
        print(f"{'setting':<44} {'balance':>8} {'smallest':>9} {'time':>8}")
        best = 0.0
        for ks, resamples in GRID[args.grid]:
            b, small, seconds = curate(X, labels, concepts, target, ks, resamples)
            best = max(best, b)
            print(f"{'grid ' + str(ks) + f' x {resamples} resamples':<44} {b:>8.3f} {small:>9} {seconds:>7.1f}s")
        advice = advise(n, target).params
        b, small, seconds = curate(
            X, labels, concepts, target, advice["n_clusters"], advice["n_resamples"], advice["sample_size"]
        )
        setting = f"advised {tuple(advice['n_clusters'])} x {tuple(advice['n_resamples'])}"
        print(f"{setting:<44} {b:>8.3f} {small:>9} {seconds:>7.1f}s")
        verdict = "within 0.02 of the best grid setting" if b >= best - 0.02 else "MORE than 0.02 below the best"
        ok &= b >= best - 0.02
        print(f"advised - best grid: {b - best:+.3f} ({verdict})")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
