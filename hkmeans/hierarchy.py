"""Hierarchical k-means with resampling-clustering (Vo et al., 2024).

Level 0 clusters the data; level ``t`` clusters the centroids of level ``t - 1``. Inside
each level, after a first k-means, ``n_resamples`` times: take ``sample_size`` points
from each cluster (those closest to its centroid, or at random), run a fresh k-means
with the same number of clusters on their union, and reassign the whole level input to
the new centroids.
"""

from __future__ import annotations

import numbers
import sys
import time
from dataclasses import dataclass

import numpy as np

from ._kernels import cpu
from ._rng import as_generator
from .kmeans import assign, check_kmeans_params, kmeans, normalize_rows, reseed_empty, single_threaded_blas
from .tree import ClusterTree

RESAMPLE_STRATEGIES = ("closest", "random")


@dataclass(frozen=True)
class Level:
    """One fitted level: its centroids; for each row of its input (the data at level 0,
    the previous level's centroids above), the cluster and squared distance; and the
    Lloyd iterations its k-means runs took in all."""

    centroids: np.ndarray
    labels: np.ndarray
    sqdist: np.ndarray
    n_iter: int


def _per_level(value, n_levels, name, allow_none=False):
    values = list(value) if isinstance(value, (list, tuple, np.ndarray)) else [value] * n_levels
    if len(values) != n_levels:
        raise ValueError(f"{name} has {len(values)} entries but n_clusters has {n_levels} levels.")
    for v in values:
        if v is None and allow_none:
            continue
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 0:
            raise ValueError(f"{name} entries must be non-negative integers{' or None' if allow_none else ''}, got {v!r}.")
    return [None if v is None else int(v) for v in values]


def check_hierarchy_params(n_samples, n_clusters, n_resamples, sample_size, resample_strategy):
    """Validate per-level parameters against the data size; returns per-level lists
    ``(n_clusters, n_resamples, sample_size)``."""
    ks = list(n_clusters) if isinstance(n_clusters, (list, tuple, np.ndarray)) else [n_clusters]
    if not ks:
        raise ValueError("n_clusters must hold at least one level.")
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
            raise ValueError(f"n_clusters entries must be positive integers, got {k!r}.")
    ks = [int(k) for k in ks]
    if n_samples < ks[0]:
        raise ValueError(f"n_samples={n_samples} should be >= n_clusters={ks[0]} (level 0).")
    for t in range(1, len(ks)):
        if ks[t] > ks[t - 1]:
            raise ValueError(
                f"level {t} asks for n_clusters={ks[t]} but level {t - 1} has only "
                f"{ks[t - 1]} centroids to cluster; n_clusters must not increase."
            )
    resamples = _per_level(n_resamples, len(ks), "n_resamples")
    sizes = _per_level(sample_size, len(ks), "sample_size", allow_none=True)
    if resample_strategy not in RESAMPLE_STRATEGIES:
        raise ValueError(f"resample_strategy must be one of {RESAMPLE_STRATEGIES}, got {resample_strategy!r}.")
    return ks, resamples, sizes


def hierarchical_kmeans(
    X,
    n_clusters,
    *,
    n_resamples=10,
    sample_size=None,
    resample_strategy="closest",
    init="k-means++",
    n_init=1,
    max_iter=50,
    tol=0.0,
    metric="euclidean",
    random_state=None,
    verbose=False,
) -> list[Level]:
    """Fit the levels of a hierarchical k-means on validated data ``X``.

    ``n_clusters`` is an int or one entry per level, finest first; ``n_resamples`` and
    ``sample_size`` an int or one entry per level. ``sample_size=None`` takes about half
    the level's average cluster size; ``sample_size <= 1`` or ``n_resamples == 0`` skips
    resampling at that level. Returns one :class:`Level` per level.
    """
    ks, resamples, sizes = check_hierarchy_params(
        X.shape[0], n_clusters, n_resamples, sample_size, resample_strategy
    )
    init, n_init = check_kmeans_params(X, ks[0], init, n_init, max_iter, tol, metric, hierarchical=True)
    rng = as_generator(random_state)
    params = dict(init=init, n_init=n_init, max_iter=max_iter, tol=tol, metric=metric)
    if metric == "cosine":
        X = normalize_rows(X)
    levels: list[Level] = []
    Y = X
    for t, k in enumerate(ks):
        start = time.perf_counter()
        res = kmeans(Y, k, random_state=rng, **params)
        centers, labels, sqdist, n_iter = res.centers, res.labels, res.sqdist, res.n_iter
        s = sizes[t] if sizes[t] is not None else int(round(Y.shape[0] / k / 2))
        n_res = resamples[t] if s > 1 else 0
        for _ in range(n_res):
            offsets, order = cpu.group_by_label(labels, k)
            scores = sqdist if resample_strategy == "closest" else rng.random(Y.shape[0])
            take = np.minimum(np.diff(offsets), s)
            subset = Y[cpu.pick_members(offsets, order, scores, take)]
            if subset.shape[0] < k:  # only with duplicate points: nothing left to resample
                break
            res = kmeans(subset, k, random_state=rng, **params)
            centers, n_iter = res.centers, n_iter + res.n_iter
            with single_threaded_blas():
                labels, sqdist = assign(Y, centers)
                centers, labels, sqdist = reseed_empty(Y, centers, labels, sqdist)
        levels.append(Level(centers, labels, sqdist, n_iter))
        if verbose:
            print(
                f"[hkmeans] level {t}: {Y.shape[0]} -> {k} clusters, {n_res} resamples "
                f"of {s} per cluster, {time.perf_counter() - start:.2f} s",
                file=sys.stderr,
            )
        Y = centers
    return levels


def tree_from_levels(levels: list[Level]) -> ClusterTree:
    """The :class:`ClusterTree` of fitted levels, with level-0 distances."""
    return ClusterTree(
        [lv.labels for lv in levels],
        centroids=[lv.centroids for lv in levels],
        distances=np.sqrt(levels[0].sqdist),
    )
