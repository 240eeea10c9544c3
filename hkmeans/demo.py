"""The paper's ring example end to end: near copies planted in the rings removed by
:func:`hkmeans.dedup`, then 1000 of the 29,700 points kept curated from five rings of
very different sizes, and compared with plain random sampling."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass

import numpy as np

from ._kernels.cpu import dedup as dedup_kernels
from ._rng import as_generator
from .datasets import RING_SIZES, make_rings
from .dedup import DedupResult, dedup
from .estimator import HierarchicalKMeans
from .io import atomic_path, save_text
from .plot import figure
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


#: Near copies planted in the rings: a few rows copied many times (a file spread over
#: the web), many copied once or twice.
COPIES = 2000
#: How far a planted copy lies from its row, and the Euclidean distance at or below
#: which the demo's dedup calls two rows duplicates: far below the gaps between the
#: rings' own points (about 0.005 in the densest ring).
JITTER = 1e-7
THRESHOLD = 1e-5


@dataclass
class RingsDedup:
    """The rings with copies planted after them (``X``, ``ring``), what
    :func:`hkmeans.dedup` made of them, and its time."""

    X: np.ndarray
    ring: np.ndarray
    n_planted: int
    result: DedupResult
    seconds: float

    def kept(self) -> tuple:
        """The rows kept and their rings."""
        return self.X[self.result.kept], self.ring[self.result.kept]

    def line(self) -> str:
        """One line: rows, planted copies, rows removed, the largest group."""
        n, removed = len(self.X), len(self.result.removed)
        largest = 1 + int(np.bincount(self.result.duplicate_of[self.result.removed], minlength=1).max())
        return (
            f"dedup: {n} rows ({self.n_planted} near copies planted), {removed} removed "
            f"({removed / n:.1%}), largest group {largest} rows, {self.seconds:.2f} s"
        )


def plant_copies(X, ring, n_copies: int = COPIES, random_state=None):
    """``X`` (and its ``ring`` labels) with ``n_copies`` near copies of its rows
    appended, each within :data:`JITTER` per coordinate of its row: one row copied
    ``n_copies // 10`` times, the rest drawn with repeats from a few hundred rows."""
    rng = as_generator(random_state)
    viral = n_copies // 10
    rows = np.concatenate([np.full(viral, rng.integers(len(X))), rng.choice(rng.choice(len(X), 300), n_copies - viral)])
    copies = X[rows] + rng.uniform(-JITTER, JITTER, size=(len(rows), X.shape[1]))
    return np.concatenate([X, copies]), np.concatenate([ring, ring[rows]])


def dedup_rings(seed: int = 0) -> RingsDedup:
    """The ring example with :data:`COPIES` near copies planted after its rows, and
    their removal: Euclidean distance at most :data:`THRESHOLD`, the first row of a
    group kept (the original)."""
    rings, labels = make_rings(random_state=seed)
    X, ring = plant_copies(rings, labels, random_state=seed)
    start = time.perf_counter()
    result = dedup(X, THRESHOLD, metric="euclidean", keep="first", random_state=seed)
    return RingsDedup(X, ring, COPIES, result, time.perf_counter() - start)


def run_rings(seed: int = 0, target_size: int = 1000, data=None) -> RingsResult:
    """Fit the ring example with the paper's settings and sample ``target_size`` points,
    beside a uniformly random sample of the same size. ``data``: the points and their
    rings (default: :func:`hkmeans.datasets.make_rings` of ``seed``)."""
    X, ring = make_rings(random_state=seed) if data is None else data
    start = time.perf_counter()
    model = HierarchicalKMeans(n_clusters=(1000, 300), n_resamples=10, sample_size=(15, 2), random_state=seed)
    idx = model.fit(X).sample(target_size, random_state=seed)
    seconds = time.perf_counter() - start
    rnd = np.sort(np.random.default_rng(seed).choice(len(X), target_size, replace=False))
    return RingsResult(X, ring, idx, rnd, seconds, model)


def _tiny_rings():
    return make_rings(sizes=(40, 10, 10, 10, 10), random_state=0)[0]


def load_dedup_kernels() -> None:
    """Compile (first run) or load the kernels of the demo's dedup step."""
    dedup(_tiny_rings(), THRESHOLD, metric="euclidean", keep="first", random_state=0)


def _dedup_kernels_cached() -> bool:
    """Whether the largest dedup kernel has a fresh entry in the disk cache (not one
    of kernel sources since changed; when in doubt, yes: nothing is started beside
    this process)."""
    try:
        return bool(dedup_kernels.sweep._cache._cache_file._load_index())
    except Exception:  # Numba's internals changed, or an unreadable index
        return True


def load_kernels() -> float:
    """Compile (first run) or load from the disk cache the kernels the demo uses. On a
    first run the dedup's kernels compile in a second process meanwhile (compiling
    is single-threaded: two processes use two cores) and are then loaded from the
    cache they share."""
    start = time.perf_counter()
    helper = None
    if not _dedup_kernels_cached():
        code = (  # the search's own kernels: those of its k-means are the fit's, compiled here
            "from hkmeans._kernels import silence_compile_notice; silence_compile_notice(); "
            "from hkmeans.dedup import load_search_kernels; load_search_kernels()"
        )
        helper = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        HierarchicalKMeans(n_clusters=(8, 4), n_resamples=1, random_state=0).fit(_tiny_rings()).sample(10)
    finally:
        if helper is not None:
            helper.wait()  # whatever it left undone compiles here
    load_dedup_kernels()
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
    from matplotlib import colormaps

    fig = figure(13.5, 3.4)
    axes = fig.subplots(1, 3, sharex=True, sharey=True)
    colours = colormaps["tab10"]
    panels = [("pool", np.arange(len(result.X))), ("curated", result.curated), ("random", result.random)]
    for ax, (name, idx) in zip(axes, panels):
        for r in range(len(RING_SIZES)):  # one marker line per ring: faster than a scatter
            points = result.X[idx[result.ring[idx] == r]]
            ax.plot(*points.T, ls="", marker="o", ms=1.5 if name == "pool" else 2.2, mew=0, color=colours(r))
        ax.set_title(f"{name}: {len(idx)} points")
        ax.set_aspect("equal")
    with atomic_path(os.fspath(path)) as tmp:
        fig.savefig(tmp, format="png", dpi=110)


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
