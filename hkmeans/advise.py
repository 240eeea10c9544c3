"""Parameters for a curation run from the pool size and the target size, after the
rules of thumb of Vo et al. (2024) (a few levels, each with 3-20 times fewer clusters
than the one below, and resampling steps that take about half of a level's mean
cluster size from each cluster), with the top level sized by the target.

Balanced sampling splits the target evenly among the top-level clusters, so their
number decides how finely the pool's concepts are balanced: too few, and each top
cluster holds many concepts of very different sizes, which the levels below cannot
even out. On long-tailed mixtures (``bench/advise.py``) a top level of about
``2 sqrt(target)`` clusters balanced as well as the best of a grid of plain settings,
where the paper's fixed ratios, made for pools of 10^8-10^9 rows, left 25 top clusters
for 200 concepts; for the paper's own pool (743M rows, 142M kept) the rule gives its
four levels and a top level of tens of thousands.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field

from ._validation import shown

#: Mean points per level-0 cluster aimed at: the paper's pool had 74 (743M points,
#: 10M clusters), its ring example 30.
POINTS_PER_CLUSTER = 64
#: Top-level clusters: about this many times the square root of the target.
TOP_PER_SQRT_TARGET = 2.0
#: Each level has between MIN_RATIO and MAX_RATIO times fewer clusters than the one
#: below (the paper: 3 to 20).
MIN_RATIO = 3
MAX_RATIO = 10
#: Most levels proposed, and the fewest clusters a top level is given.
MAX_LEVELS = 4
MIN_TOP_CLUSTERS = 10


@dataclass(frozen=True)
class Advice:
    """Proposed :class:`~hkmeans.HierarchicalKMeans` parameters and why.

    Attributes
    ----------
    params : dict
        ``n_clusters``, ``sample_size`` and ``n_resamples``, one entry per level,
        ready for ``HierarchicalKMeans(**advice.params)``.
    reasons : list of str
        One line per choice.
    """

    params: dict
    reasons: list = field(default_factory=list)

    def __str__(self) -> str:
        rows = [f"{name} = {', '.join(map(str, value))}" for name, value in self.params.items()]
        return "\n".join(rows + [""] + [f"- {r}" for r in self.reasons])


def _positive(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {shown(value)}.")
    return int(value)


def advise(n_samples: int, target_size: int, n_resamples: int = 10, n_kept: int | None = None) -> Advice:
    """Levels, clusters per level and sample sizes for curating ``target_size`` of
    ``n_samples`` points (or of the ``n_kept`` a dedup step keeps of them).

    Level 0 gets about :data:`POINTS_PER_CLUSTER` points per cluster, and no more
    clusters than the target (then every level-0 cluster can give a point), but at
    least 2; the top level about :data:`TOP_PER_SQRT_TARGET` x sqrt(target) clusters (at least
    :data:`MIN_TOP_CLUSTERS`, at most a :data:`MIN_RATIO`-th of level 0); the levels
    between divide evenly, at most :data:`MAX_RATIO` times fewer clusters a level, up
    to :data:`MAX_LEVELS` levels; each level's resampling takes half its mean cluster
    size (at least 2) from each cluster.

    Parameters
    ----------
    n_samples : int
        Points in the pool.
    target_size : int
        Points wanted.
    n_resamples : int, default=10
        Resampling steps per level (the paper's choice).
    n_kept : int or None, default=None
        Points left once near-duplicates are removed (``len(hkmeans.dedup(X,
        threshold).kept)``): the levels are sized for them, as the fit will see them,
        and the first reason says so.

    Returns
    -------
    Advice
    """
    n = _positive("n_samples", n_samples)
    target = _positive("target_size", target_size)
    reasons = []
    if n_kept is not None:
        kept = _positive("n_kept", n_kept)
        if kept > n:
            raise ValueError(f"n_kept must be at most n_samples={n}, got {kept}.")
        reasons.append(
            f"dedup keeps {kept} of {n} points ({n - kept} removed, {(n - kept) / n:.1%}): "
            f"the levels are sized for the {kept} kept, which the fit sees"
        )
        n = kept
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, numbers.Integral) or n_resamples < 0:
        raise ValueError("n_resamples must be a non-negative integer.")
    n_resamples = int(n_resamples)
    if n < 2:
        name = "n_samples" if n_kept is None else "n_kept"
        raise ValueError(f"{name}={n}: a pool of fewer than 2 points has nothing to curate.")
    k0 = max(2, min(n // POINTS_PER_CLUSTER, target, n))
    if n // POINTS_PER_CLUSTER < 2 or target < 2:
        why = (
            f"the pool ({n} points) is under twice the {POINTS_PER_CLUSTER} points per cluster aimed at"
            if n // POINTS_PER_CLUSTER < 2
            else f"about {n // k0} points each"
        )
        reasons.append(
            f"level 0: 2 clusters, the fewest a k-means has: {why}"
            + (f"; the target ({target}) takes its point from one of them" if target < 2 else "")
        )
    elif k0 == target and n // POINTS_PER_CLUSTER > target:
        reasons.append(
            f"level 0: {k0} clusters, as many as the target, so every level-0 cluster can give a "
            f"point (about {n // k0} points each)"
        )
    else:
        reasons.append(
            f"level 0: {k0} clusters of about {n // k0} points each "
            f"(aim: {POINTS_PER_CLUSTER}; the paper's pool had 74)"
        )
    ks = _levels(k0, target)
    if len(ks) > 1:
        reasons.append(
            f"top level: {ks[-1]} clusters, about {TOP_PER_SQRT_TARGET:g} x sqrt(target) (at most "
            f"level 0 / {MIN_RATIO}): the target is split evenly among them, so they decide how "
            "finely the pool's concepts are balanced"
        )
        reasons.append(
            f"levels: {len(ks)}, each {k0 / ks[-1]:.3g}^(1/{len(ks) - 1}) = "
            f"{(k0 / ks[-1]) ** (1 / (len(ks) - 1)):.1f}x fewer clusters than the one below "
            f"({MIN_RATIO}-{MAX_RATIO}x; the paper: 3-20x)"
        )
    else:
        reasons.append(
            f"one level: {k0} clusters leave too few for a level above "
            f"({MIN_TOP_CLUSTERS} at least, {MIN_RATIO}x fewer)"
        )
    inputs = [n] + ks[:-1]
    sizes = [max(2, round(m / k / 2)) for m, k in zip(inputs, ks)]
    reasons.append(
        "sample_size: half of each level's mean cluster size, at least 2 "
        f"({', '.join(f'{m // k} -> {s}' for m, k, s in zip(inputs, ks, sizes))})"
    )
    resamples = [n_resamples if s < m / k else 0 for m, k, s in zip(inputs, ks, sizes)]
    reasons.append(
        f"n_resamples: {n_resamples} per level, as in the paper"
        + ("; 0 where clusters are too small to take a sample from" if 0 in resamples and n_resamples else "")
    )
    if target > n:
        reasons.append(
            f"the target ({target}) is above the pool ({n}): sampling needs multiplier >= {math.ceil(target / n)}"
        )
    params = dict(n_clusters=ks, sample_size=sizes, n_resamples=resamples)
    return Advice(params, reasons)


def _levels(k0, target) -> list:
    """Clusters per level: from ``k0`` down to a top level of about
    ``TOP_PER_SQRT_TARGET * sqrt(target)`` clusters, in as few levels as keep each
    step at most ``MAX_RATIO`` (and at most ``MAX_LEVELS`` levels)."""
    top = min(round(TOP_PER_SQRT_TARGET * math.sqrt(target)), k0 // MIN_RATIO)
    if top < MIN_TOP_CLUSTERS:
        return [k0]
    steps = min(MAX_LEVELS - 1, max(1, math.ceil(math.log(k0 / top) / math.log(MAX_RATIO) - 1e-9)))
    ratio = (k0 / top) ** (1 / steps)
    return [k0] + [max(top, round(k0 / ratio**t)) for t in range(1, steps)] + [top]


class ParameterWarning(UserWarning):
    """A fit's parameters are far from the rules of thumb (see :func:`far_off`)."""


def far_off(n_samples: int, n_clusters, n_resamples, sample_size) -> list[str]:
    """What in a hierarchy's per-level parameters is far from the rules of thumb, one
    line each (empty when nothing is): level-0 clusters of fewer than 2 points on
    average, a level with less than 1.5 times fewer clusters than the one below (it
    barely merges), and a resampling step that takes at least a level's mean cluster
    size from each cluster (it takes whole clusters: resampling has no effect)."""
    out = []
    inputs = [n_samples] + list(n_clusters[:-1])
    if n_samples < 2 * n_clusters[0]:
        out.append(
            f"level 0 has {n_clusters[0]} clusters for {n_samples} points: fewer than 2 points per cluster on average"
        )
    for t, (m, k) in enumerate(zip(inputs, n_clusters)):
        if t > 0 and m < 1.5 * k:
            out.append(
                f"level {t} has {k} clusters for the {m} of level {t - 1}: it barely merges them "
                "(3-10x fewer per level works well)"
            )
        if n_resamples[t] > 0 and sample_size[t] is not None and sample_size[t] > 1 and sample_size[t] >= m / k:
            out.append(
                f"sample_size={sample_size[t]} at level {t} is at least its mean cluster size "
                f"({m / k:.1f}): resampling takes whole clusters (about half of it works well)"
            )
    return out
