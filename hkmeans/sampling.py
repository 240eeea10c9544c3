"""Balanced sampling over a :class:`~hkmeans.tree.ClusterTree` (no estimator needed).

A target size is split as evenly as possible among the top clusters, each capped at
its capacity (data points x ``multiplier``), what a capped cluster cannot take going to
the others; the split recurses down the tree, and each level-0 cluster then gives whole
copies of its members while the target allows and the rest by ``strategy``.
"""

from __future__ import annotations

import numbers

import numpy as np

from ._rng import as_generator
from ._validation import check_choice, shown
from .backends.in_memory import split_counts, water_fill
from .tree import ClusterTree

STRATEGIES = ("random", "closest", "furthest")

#: Largest ``target_size`` and ``multiplier``: counts and capacities stay within int64.
MAX_COUNT = 2**62


def _check_tree(tree):
    if not isinstance(tree, ClusterTree):
        raise TypeError(f"tree must be a ClusterTree, got {type(tree).__name__}.")


def _check(tree, target_size, strategy, multiplier):
    _check_tree(tree)
    if (
        isinstance(target_size, bool)
        or not isinstance(target_size, numbers.Integral)
        or not 0 <= target_size <= MAX_COUNT
    ):
        raise ValueError(f"target_size must be an integer from 0 to 2**62, got {shown(target_size)}.")
    if isinstance(multiplier, bool) or not isinstance(multiplier, numbers.Integral) or not 1 <= multiplier <= MAX_COUNT:
        raise ValueError(f"multiplier must be an integer from 1 to 2**62, got {shown(multiplier)}.")
    check_choice("strategy", strategy, STRATEGIES)
    if strategy != "random" and tree.distances is None:
        raise ValueError(
            f"strategy={strategy!r} needs each point's distance to its level-0 centroid, "
            "and this tree has none: build it with distances=..., or use strategy='random'."
        )
    return min(int(target_size), tree.n_samples * int(multiplier)), int(multiplier)


def _capacities(sizes, multiplier, target):
    """``sizes * multiplier``, each capped at ``target`` (no cluster can take more),
    computed so that it cannot overflow: ``target <= 2**62``."""
    m = max(1, min(multiplier, target))
    room = target // m  # a cluster of more points than this could take all of target
    return np.where(sizes > room, target, np.minimum(sizes, room) * m)


def hierarchical_sampling(
    tree: ClusterTree,
    target_size: int,
    strategy: str = "random",
    multiplier: int = 1,
    random_state=None,
) -> np.ndarray:
    """Pick ``min(target_size, n_samples * multiplier)`` data points, balanced over the tree.

    Parameters
    ----------
    tree : ClusterTree
    target_size : int
        Number of points wanted.
    strategy : {"random", "closest", "furthest"}, default="random"
        How a level-0 cluster picks the points beyond its whole copies: at random, or
        those nearest to (furthest from) its centroid.
    multiplier : int, default=1
        Most times one point may be picked.
    random_state : int, Generator, RandomState or None

    Returns
    -------
    indices : ndarray of int64, sorted
        Indices into the data points; a point appears at most ``multiplier`` times.

    Notes
    -----
    On a tree over dask arrays (a fit on the dask backend) the counts per cluster are
    made on the workers, the targets here (O(clusters)), and each chunk then picks its
    rows by per-row keys against per-cluster thresholds; random keys come from
    per-chunk streams, so the subset differs from the in-process one for "random".
    """
    target, multiplier = _check(tree, target_size, strategy, multiplier)
    rng = as_generator(random_state)
    top = tree.n_levels - 1
    caps = _capacities(tree._kept_sizes(top), multiplier, target)
    counts = water_fill(target, caps, rng.random(caps.size))
    for t in range(top, 0, -1):
        offsets, order = tree._kept_members(t)
        caps = _capacities(tree._kept_sizes(t - 1), multiplier, target)
        counts = split_counts(counts, offsets, order, caps, rng.random(caps.size))
    if strategy == "random":
        scores = tree.arrays.random_scores(rng, tree.labels[0])
    else:
        scores = tree.distances if strategy == "closest" else -tree.distances
    return tree.arrays.pick(
        tree.labels[0], tree.n_clusters[0], counts, scores, tree._kept_sizes(0), lambda: tree._kept_members(0)
    )


def flat_sampling(
    tree: ClusterTree,
    target_size: int,
    level: int = 0,
    strategy: str = "random",
    multiplier: int = 1,
    random_state=None,
) -> np.ndarray:
    """Balanced sampling over the clusters of one level only.

    The target is split among the clusters of ``level`` as in
    :func:`hierarchical_sampling`, then each cluster picks among all its data points.

    Parameters
    ----------
    tree : ClusterTree
    target_size : int
        Number of points wanted.
    level : int, default=0
        The level whose clusters are balanced.
    strategy : {"random", "closest", "furthest"}, default="random"
        As in :func:`hierarchical_sampling`; ``closest`` and ``furthest`` need
        ``level=0`` (distances are to level-0 centroids).
    multiplier : int, default=1
        Most times one point may be picked.
    random_state : int, Generator, RandomState or None

    Returns
    -------
    indices : ndarray of int64, sorted
        Indices into the data points; a point appears at most ``multiplier`` times.
    """
    _check_tree(tree)
    level = tree._check_level(level)
    if level != 0 and strategy in ("closest", "furthest"):
        raise ValueError(
            f"strategy={strategy!r} ranks points by distance to their level-0 centroid, "
            f"so flat sampling supports it only at level=0, got level={level}."
        )
    return hierarchical_sampling(tree.flatten(level), target_size, strategy, multiplier, random_state)
