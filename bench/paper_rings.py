"""The paper's ring example (from its code's README) over several seeds.

Five rings of 20000, 200, 1000, 500 and 8000 points; hierarchical k-means
``n_clusters=(1000, 300)``, ``sample_size=(15, 2)``, 10 resamples; ``sample(1000)``.
Prints the points picked per ring (curated and uniformly random) and the fit + sample
time of each seed, then the medians.

    python bench/paper_rings.py [--seeds 5]
"""

from __future__ import annotations

import argparse

import numpy as np

from hkmeans.datasets import RING_SIZES
from hkmeans.demo import run_rings


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    run_rings(seed=0, target_size=10)  # load the compiled kernels before timing
    print("| seed | curated per ring | random per ring | fit + sample (s) |")
    print("|---|---|---|---|")
    curated, seconds = [], []
    for seed in range(args.seeds):
        res = run_rings(seed=seed)
        c, r, s = res.counts(res.curated), res.counts(res.random), res.seconds
        curated.append(c)
        seconds.append(s)
        print(f"| {seed} | {c.tolist()} | {r.tolist()} | {s:.2f} |")
    smallest = int(np.argmin(RING_SIZES))
    median = np.median(np.array(curated), axis=0)
    print(
        f"\nmedian per ring: {median.tolist()}; the {RING_SIZES[smallest]}-point ring: "
        f"{median[smallest]:.0f}; median time {np.median(seconds):.2f} s"
    )


if __name__ == "__main__":
    main()
