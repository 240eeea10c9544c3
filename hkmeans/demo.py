"""The paper's ring example end to end: curate 1000 of 29,700 points from five rings
of very different sizes, and compare with plain random sampling."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np

from .datasets import RING_SIZES, make_rings
from .estimator import HierarchicalKMeans
from .io import atomic_path, save_text
from .report import curation_report


@dataclass
class RingsResult:
    """The rings, the curated and the random indices, counts per ring, fit + sample
    time, and the fitted model."""

    X: np.ndarray
    ring: np.ndarray
    curated: np.ndarray
    random: np.ndarray
    seconds: float
    model: HierarchicalKMeans | None = None

    def counts(self, indices):
        return np.bincount(self.ring[indices], minlength=len(RING_SIZES))


def run_rings(seed: int = 0, target_size: int = 1000) -> RingsResult:
    """Fit the ring example with the paper's settings and sample ``target_size`` points,
    beside a uniformly random sample of the same size."""
    X, ring = make_rings(random_state=seed)
    start = time.perf_counter()
    model = HierarchicalKMeans(n_clusters=(1000, 300), n_resamples=10, sample_size=(15, 2), random_state=seed)
    idx = model.fit(X).sample(target_size, random_state=seed)
    seconds = time.perf_counter() - start
    rnd = np.sort(np.random.default_rng(seed).choice(len(X), target_size, replace=False))
    return RingsResult(X, ring, idx, rnd, seconds, model)


def load_kernels() -> float:
    """Compile (first run) or load from the disk cache the kernels the demo uses."""
    start = time.perf_counter()
    X, _ = make_rings(sizes=(40, 10, 10, 10, 10), random_state=0)
    HierarchicalKMeans(n_clusters=(8, 4), n_resamples=1, random_state=0).fit(X).sample(10)
    return time.perf_counter() - start


def table(result: RingsResult) -> str:
    """Points per ring: in the pool, curated, random."""
    lines = [f"{'ring size':>10} {'curated':>8} {'random':>8}"]
    for size, c, r in zip(RING_SIZES, result.counts(result.curated), result.counts(result.random)):
        lines.append(f"{size:>10} {c:>8} {r:>8}")
    return "\n".join(lines)


def plot(result: RingsResult, path) -> None:
    """Scatter of the pool beside the curated and random subsets, as a PNG at ``path``
    (written atomically). Needs matplotlib."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13.5, 4.5), sharex=True, sharey=True)
    panels = [("pool", np.arange(len(result.X))), ("curated", result.curated), ("random", result.random)]
    for ax, (name, idx) in zip(axes, panels):
        ax.scatter(*result.X[idx].T, s=1 if name == "pool" else 3, c=result.ring[idx], cmap="tab10", vmin=0, vmax=9)
        ax.set_title(f"{name}: {len(idx)} points")
        ax.set_aspect("equal")
    fig.tight_layout()
    with atomic_path(os.fspath(path)) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def report(result: RingsResult, path) -> None:
    """The curation report of the ring example (labels: the rings) as an HTML file at
    ``path``, written atomically. Needs matplotlib."""

    labels = np.array([f"ring of {n}" for n in RING_SIZES])[result.ring]
    info = {
        "pool": f"{len(result.X)} points on {len(RING_SIZES)} rings",
        "curated points": len(result.curated),
        "fit + sample (s)": f"{result.seconds:.2f}",
    }
    assert result.model is not None
    params = {k: v for k, v in result.model.get_params().items() if k in ("n_clusters", "n_resamples", "sample_size")}
    save_text(path, curation_report(result.model.tree_, result.curated, labels, params, info))
