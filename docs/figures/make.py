"""Remake the figures of the "How it works" page into docs/img/.

    python docs/figures/make.py [density] [uniformity] [rings] [scaling]   (default: all)

- ``density``: in 1-D, k-means centroids follow p^(1/3), and each level of the
  hierarchy flattens them further (the paper's Fig. 1a);
- ``uniformity``: the kernel density of the top-level centroids on the paper's 2-D
  mixture, with its KL divergence from the uniform density (the paper's Fig. 3; the
  data and the metric of ``bench/paper_uniformity.py``);
- ``rings``: the ring example of ``hkmeans demo``;
- ``scaling``: the measurements of the scaling page's table, drawn.

Each takes under a minute on two cores; the PNGs are committed, so the site builds
without running this.
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from hkmeans import HierarchicalKMeans  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "docs" / "img"
DPI = 90
sys.path.insert(0, str(ROOT / "bench"))


def density():
    """Centroid density per level against p and p^(1/3), on a truncated exponential."""
    rng = np.random.default_rng(0)
    top = 7.0
    x = -np.log(1 - rng.uniform(size=200_000) * (1 - np.exp(-top)))  # p(x) ∝ exp(-x) on [0, 7]
    levels = (3000, 1000, 300)
    model = HierarchicalKMeans(levels, n_resamples=0, max_iter=100, random_state=0).fit(x[:, None])
    bins = np.linspace(0, top, 29)
    mid = (bins[1:] + bins[:-1]) / 2
    fig, ax = plt.subplots(figsize=(6.4, 4.2))

    def law(a):
        f = np.exp(-a * mid)
        return f / (f.sum() * (bins[1] - bins[0]))

    ax.semilogy(mid, law(1), "k-", lw=2, label="data density p")
    ax.semilogy(mid, law(1 / 3), "k--", lw=1.5, label="p^(1/3)")
    for t, (k, level) in enumerate(zip(levels, model.levels_)):
        hist, _ = np.histogram(level.centroids[:, 0], bins=bins, density=True)
        name = "k-means" if t == 0 else f"level {t}"
        ax.semilogy(mid, np.where(hist > 0, hist, np.nan), "o-", ms=3, label=f"{name}: {k} centroids")
    ax.set(xlabel="x", ylabel="density (normalised)", ylim=(2e-3, 2),
           title="1-D: centroid density per level of the hierarchy")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(OUT / "density-1d.png", dpi=DPI)
    plt.close(fig)


def uniformity():
    """KDE of the data and of the top-level centroids of each clustering, with the KL."""
    from sklearn.neighbors import KernelDensity

    from hkmeans.datasets import make_uniformity_mixture
    from paper_uniformity import ROWS, kl_to_uniform

    X, _ = make_uniformity_mixture(random_state=0)
    panels = [("the data (9000 points)", X)]
    for name, _, params in ROWS:
        panels.append((name, HierarchicalKMeans(max_iter=50, random_state=0, **params).fit(X).cluster_centers_))
    panels.append(("300 uniform points", np.random.default_rng(0).uniform(-3, 3, (300, 2))))
    step = 0.06
    axis = np.arange(-3, 3, step)
    grid = np.stack(np.meshgrid(axis, axis), -1).reshape(-1, 2)
    fig, axes = plt.subplots(2, 3, figsize=(9, 6.4), sharex=True, sharey=True)
    for ax, (name, points) in zip(axes.flat, panels):
        dens = np.exp(KernelDensity(bandwidth=0.5).fit(points).score_samples(grid)).reshape(len(axis), len(axis))
        ax.contourf(axis, axis, dens / dens.sum() * dens.size, levels=np.linspace(0, 3, 13), extend="max",
                    cmap="viridis")
        ax.set_aspect("equal")
        if len(points) <= 300:
            ax.scatter(*points.T, s=2, c="white", linewidths=0)
        ax.set_title(f"{name}\nKL = {kl_to_uniform(points):.3f}", fontsize=9)
    fig.suptitle("Kernel density (bandwidth 0.5) of the top-level centroids\n"
                 "(colour saturates at 3x the uniform density; lower KL is more uniform)", fontsize=10)
    fig.tight_layout()
    fig.savefig(OUT / "uniformity-kde.png", dpi=DPI)
    plt.close(fig)


def rings():
    """The ``hkmeans demo`` figure: the pool, the curated and a random subset."""
    from hkmeans.demo import run_rings

    result = run_rings(seed=0)
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4), sharex=True, sharey=True)
    panels = [("pool", np.arange(len(result.X))), ("curated", result.curated), ("random", result.random)]
    for ax, (name, idx) in zip(axes, panels):
        ax.scatter(*result.X[idx].T, s=0.5 if name == "pool" else 3, c=result.ring[idx], cmap="tab10",
                   vmin=0, vmax=9, linewidths=0)
        ax.set_title(f"{name}: {len(idx)} points; per ring {result.counts(idx).tolist()}", fontsize=9)
        ax.set_aspect("equal")
    fig.tight_layout()
    fig.savefig(OUT / "rings.png", dpi=DPI)
    plt.close(fig)


def scaling():
    """Time and peak memory against n of the Dask backend and of a fit in process: the
    table of measurements on the scaling page (``bench/scale.py``), drawn."""
    text = (ROOT / "docs" / "scaling.md").read_text()
    rows = [line.split("|")[1:-1] for line in text.splitlines() if line.startswith(("| 1M |", "| 4M |", "| 16M |"))]

    def number(cell):
        return float(cell.split()[0].split("/")[0])

    n = [float(r[0].strip()[:-1]) * 1e6 for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 3.2), layout="constrained")
    left.loglog(n, [number(r[1]) for r in rows], "o-", label="in process")
    left.loglog(n, [number(r[2]) for r in rows], "s-", label="Dask, 2 workers")
    left.set(xlabel="rows n (d = 64)", ylabel="seconds", title="fit time")
    right.loglog(n, [number(r[4]) for r in rows], "o-", label="in process")
    right.loglog(n, [number(r[5]) for r in rows], "s-", label="Dask client")
    right.loglog(n, [number(r[6]) for r in rows], "^-", label="Dask worker")
    right.set(xlabel="rows n (d = 64)", ylabel="MB", title="peak resident memory")
    for ax in (left, right):
        ax.legend(fontsize="small")
    fig.savefig(OUT / "scaling.png", dpi=DPI)
    plt.close(fig)


FIGURES = {"density": density, "uniformity": uniformity, "rings": rings, "scaling": scaling}

if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    for name in sys.argv[1:] or FIGURES:
        FIGURES[name]()
        print(name, "written to", OUT)
