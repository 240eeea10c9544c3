"""Reproduce the paper's 2-D uniformity table (Vo et al., 2024, Fig. 3).

For each clustering, a Gaussian kernel density (bandwidth 0.5) is fitted on the
top-level centroids and compared with the uniform density on [-3, 3]^2 by the
Kullback-Leibler divergence (lower is more uniform). Prints hkmeans's figure, the
median over three seeds, beside the paper's.

    python bench/paper_uniformity.py [--seeds 3]
    python bench/paper_uniformity.py --max-points-per-centroid 256 --init-points-per-centroid 40
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from sklearn.neighbors import KernelDensity

from hkmeans import HierarchicalKMeans
from hkmeans.datasets import make_uniformity_mixture

STEP = 0.02
GRID = np.stack(np.meshgrid(np.arange(-3, 3, STEP), np.arange(-3, 3, STEP)), -1).reshape(-1, 2)

# name, paper's KL, HierarchicalKMeans parameters
ROWS = [
    ("k-means, 300 clusters", 0.340, dict(n_clusters=300, n_resamples=0, n_init=10)),
    ("2 levels (1500, 300)", 0.132, dict(n_clusters=(1500, 300), n_resamples=0, n_init=10)),
    ("3 levels (3000, 1000, 300)", 0.081, dict(n_clusters=(3000, 1000, 300), n_resamples=0, n_init=10)),
    (
        "3 levels + resampling (2, 2, 2) x 10",
        0.042,
        dict(n_clusters=(3000, 1000, 300), n_resamples=10, sample_size=(2, 2, 2)),
    ),
]


def kl_to_uniform(points: np.ndarray) -> float:
    """KL divergence of the KDE of ``points`` (on the grid) from Uniform([-3, 3]^2)."""
    density = np.exp(KernelDensity(bandwidth=0.5).fit(points).score_samples(GRID))
    density /= density.sum() * STEP**2
    nz = density > 0
    return float(np.sum(density[nz] * np.log(36 * density[nz])) * STEP**2)


def table(seeds, options=None):
    results = {"the data itself": [], "300 uniform points (lower bound)": []}
    results.update({name: [] for name, _, _ in ROWS})
    seconds = {name: [] for name, _, _ in ROWS}
    for seed in seeds:
        X, _ = make_uniformity_mixture(random_state=seed)
        results["the data itself"].append(kl_to_uniform(X))
        uniform = np.random.default_rng(seed).uniform(-3, 3, (300, 2))
        results["300 uniform points (lower bound)"].append(kl_to_uniform(uniform))
        for name, _, params in ROWS:
            start = time.perf_counter()
            model = HierarchicalKMeans(max_iter=50, random_state=seed, **params, **(options or {})).fit(X)
            seconds[name].append(time.perf_counter() - start)
            results[name].append(kl_to_uniform(model.cluster_centers_))
    return results, seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--max-points-per-centroid", type=int, metavar="M", help="sampled training, every row")
    parser.add_argument("--init-points-per-centroid", type=int, metavar="M", help="seeding on a sample, every row")
    args = parser.parse_args()
    options = {
        name: getattr(args, name)
        for name in ("max_points_per_centroid", "init_points_per_centroid")
        if getattr(args, name) is not None
    }
    if options:
        print("with " + ", ".join(f"{k}={v}" for k, v in options.items()))
    results, seconds = table(range(args.seeds), options)
    paper = {"the data itself": 0.942, "300 uniform points (lower bound)": 0.040}
    paper.update({name: kl for name, kl, _ in ROWS})
    print(f"| clustering | paper | hkmeans (median of {args.seeds} seeds) | min - max | fit time (s) |")
    print("|---|---|---|---|---|")
    for name, values in results.items():
        fit = f"{np.median(seconds[name]):.2f}" if name in seconds else ""
        print(
            f"| {name} | {paper[name]:.3f} | {np.median(values):.3f} | {min(values):.3f} - {max(values):.3f} | {fit} |"
        )


if __name__ == "__main__":
    main()
