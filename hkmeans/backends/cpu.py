"""The in-process backend: rows of a NumPy array or memory map, on this machine's cores.

Everything CPU-specific lives here: BLAS held to one thread while the kernels
parallelise over rows, block sizes, the rounding bound of a search and the Lloyd
bounds. (The NumPy helpers it shares with the tree and the sampling are in
:mod:`hkmeans.backends.in_memory`.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numba
import numpy as np

from .. import _config
from .._kernels.cpu import assign as assign_kernels
from .._kernels.cpu import groups, seeding, select
from .._kernels.cpu._common import kernel_input
from .._threads import kernel_threads, single_threaded_blas
from .in_memory import (
    float32_rounded,
    group_by_label,
    normalize_rows,
    pick_members,
    rounding_bound,
    row_blocks,
    weighted_total,
)


def _chunk_rows(k, itemsize):
    """Rows per block of the assignment: as many as keep a block's distances to the
    ``k`` centres within ``CHUNK_BYTES``, between ``CHUNK_ROWS`` and ``CHUNK_ROWS_MAX``."""
    fit = _config.CHUNK_BYTES // max(1, k * itemsize)
    return int(min(_config.CHUNK_ROWS_MAX, max(_config.CHUNK_ROWS, fit)))


def search(X, centers, labels, sqdist, lower=None, group_offsets=None):
    """Nearest centres, in place. With ``lower`` (per-row, per-group bounds kept between
    calls; centres grouped as ``group_offsets`` says), rows whose bounds prove their
    ``labels`` keep them; without, every row is searched."""
    chunk = _chunk_rows(centers.shape[0], X.dtype.itemsize)
    gemm = X.shape[1] > _config.SMALL_D
    bounded = lower is not None
    if not bounded:
        lower = np.zeros((0, 1), dtype=np.float32)
        group_offsets = np.array([0, centers.shape[0]])
    with kernel_threads(X.shape[0] * centers.shape[0] * X.shape[1]):
        n_tasks = max(1, min(numba.get_num_threads(), -(-X.shape[0] // chunk)))
        X = kernel_input(X)
        assign_kernels.assign(
            X, centers, chunk, n_tasks, gemm, rounding_bound(X), labels, sqdist, lower, group_offsets, bounded
        )


@dataclass
class LloydStep:
    """What one Lloyd pass returns: per-cluster float64 sums of the rows and counts,
    the inertia of the search, and how many rows changed cluster (None on a run's
    first pass, which has no labels before it)."""

    sums: np.ndarray
    counts: np.ndarray
    inertia: float
    changed: int | None


def farthest_units(sqdist, weights, m, rank):
    """The ``m`` units of weight farthest from their centres: rows by decreasing
    ``sqdist``, ties by decreasing ``rank`` (a row's place in an
    order of contents, see :meth:`HostRows.draw_order`); a row as many times as its
    whole units of weight (a last part less than 1 a unit too; at least once), rows of
    weight 0 never. Returns ``(rows, unit weights)``; without weights, ``m`` rows and
    weights 1."""
    rows = np.arange(len(sqdist)) if weights is None else np.flatnonzero(weights > 0)
    rows = rows[np.lexsort((-rank[rows], -sqdist[rows]))[:m]]  # at least one unit each
    if weights is None:
        return rows, np.ones(len(rows))
    units = np.clip(np.ceil(weights[rows]), 1, m).astype(np.int64)  # no more than m are taken
    rows = np.repeat(rows, units)[:m]
    first = np.concatenate([[True], rows[1:] != rows[:-1]])
    # a row's whole units first, then what is left of its weight
    k = np.arange(len(rows)) - np.maximum.accumulate(np.where(first, np.arange(len(rows)), 0))
    return rows, np.minimum(1.0, weights[rows] - k)


def content_draw(order, values, u, weights) -> np.ndarray:
    """The rows drawn by each ``u`` in [0, 1) with probability proportional to
    ``values``, as the seeding kernel draws them
    (:func:`hkmeans._kernels.cpu.seeding.draws.draw`), over one block: the first row, in
    ``order``, whose cumulative value passes ``u`` times the total."""
    vals = np.ascontiguousarray(values[order], dtype=np.float64)
    return seeding.draw(order, vals, weights, np.array([vals.sum()]), max(1, len(order)), np.atleast_1d(u))


_DRAW_DIRECTION_SEED = 20240524  # any fixed seed: the direction of :meth:`HostRows.draw_order`


class HostRows:
    """The per-row operations on labels, distances and scores held in this process's
    memory (NumPy arrays), shared by the in-process backends whatever device holds
    the rows. Needs ``X`` (the rows, in host memory) and ``weights``."""

    X: Any
    weights: Any

    @property
    def shape(self):
        return self.X.shape

    @property
    def dtype(self):
        return self.X.dtype

    def cluster_weights(self, labels, k) -> np.ndarray:
        """Weight of each cluster (rows per cluster without weights), float64."""
        return np.bincount(labels, weights=self.weights, minlength=k).astype(np.float64)

    def counts(self, labels, k) -> np.ndarray:
        """Rows per cluster, ``labels`` in ``[0, k)``."""
        return np.bincount(labels, minlength=k)

    def total(self, values) -> float:
        """The sum of a per-row array."""
        return values.sum()

    def random_scores(self, rng) -> np.ndarray:
        """One uniform draw in [0, 1) per row, from ``rng``."""
        return rng.random(self.shape[0])

    def farthest_rows(self, sqdist, m) -> np.ndarray:
        """The ``m`` rows of largest ``sqdist`` (ties: by contents, see
        :func:`farthest_units`); with weights, a row counts as many times as it holds
        whole units of weight (at least once), and rows of weight 0 not at all: as its
        repeated copies would."""
        return self.farthest_units(sqdist, m)[0]

    def draw_order(self) -> np.ndarray:
        """The rows sorted by their projection on a fixed direction (ties: first rows
        first): an order given by the rows' contents alone, in which random draws and
        ties do not depend on where a row sits (see
        :func:`content_draw`). Computed once per backend, with each
        row's place in it and its squared norm (for :meth:`rounded`)."""
        if getattr(self, "_draw_order", None) is None:
            direction = np.random.default_rng(_DRAW_DIRECTION_SEED).standard_normal(self.shape[1])
            key = np.empty(self.shape[0], dtype=np.float64)
            self._norms = np.empty(self.shape[0], dtype=np.float64)
            for rows in row_blocks(self.X):
                x = self.X[rows]
                key[rows] = np.asarray(x @ direction).ravel()
                sq = (
                    x.multiply(x).sum(axis=1)
                    if hasattr(x, "multiply")
                    else np.einsum("ij,ij->i", x, x, dtype=np.float64)
                )
                self._norms[rows] = np.asarray(sq).ravel()
            self._draw_order = np.argsort(key, kind="stable")
            self._draw_rank = np.empty(self.shape[0], dtype=np.int64)
            self._draw_rank[self._draw_order] = np.arange(self.shape[0])
        return self._draw_order

    def rounded(self, sqdist) -> np.ndarray:
        """``sqdist`` rounded to float32's precision (not its range: see
        :func:`~hkmeans.backends.in_memory.float32_rounded`), and 0 where it is within
        the rounding of a search of the row's own squared norm (see
        :func:`~hkmeans.backends.in_memory.rounding_bound`): distances that differ by
        rounding alone (as those to the centroids of a weighted row and of its copies
        do) compare equal."""
        self.draw_order()
        s = float32_rounded(sqdist)
        s[s <= 2.0 * rounding_bound(self.X) * self._norms] = 0.0
        return s

    def closeness(self, sqdist) -> np.ndarray:
        """Scores that rank rows by :meth:`rounded` ``sqdist``, ties by their place in
        :meth:`draw_order`: the "closest" selection then takes the same rows whatever
        their order, and the same from a row of weight ``w`` as from its ``w`` copies."""
        s = self.rounded(sqdist)
        rank = self._draw_rank.astype(np.float64)
        # float32 neighbours differ by 2**-23 relative at least: the rank stays below
        # that; rows at 0 get negative scores, in the rank's order
        return np.where(s > 0, s * (1.0 + rank * (2.0**-26 / self.shape[0])), rank - self.shape[0])

    def farthest_units(self, sqdist, m):
        """:func:`farthest_units` of these rows."""
        self.draw_order()
        return farthest_units(self.rounded(sqdist), self.weights, m, self._draw_rank)

    def oversample(self, weights, factor, total, rng) -> np.ndarray:
        """Rows drawn independently, each with probability ``factor * weights / total``
        (k-means||'s draw), in increasing order."""
        return np.flatnonzero(rng.random(self.shape[0]) < factor * weights / total)

    def other_rows(self, exclude, m, rng) -> np.ndarray:
        """``m`` distinct random rows not in ``exclude`` (sorted, distinct)."""
        return rng.choice(np.setdiff1d(np.arange(self.shape[0]), exclude), m, replace=False)

    def resampling_subset(self, labels, k, take, scores, alloc=None):
        """The rows :meth:`select` picks, as data to cluster on their own: an array
        (written to ``alloc(shape, dtype)`` if given), and their weights (None without).
        With weights, ``take[c]`` is an amount of weight: the rows of smallest
        ``scores`` up to it, the last one with only the weight still missing (as many of
        a row's repeated copies as fit)."""
        if self.weights is None:
            rows, weights = self.select(labels, k, take, scores), None
        else:
            offsets, order = group_by_label(labels, k)
            with kernel_threads(len(order)):
                rows, weights = select.pick_weight(
                    offsets, order, scores, self.weights, np.asarray(take, dtype=np.float64)
                )
        out = None if alloc is None else alloc((len(rows), self.shape[1]), self.dtype)
        return self.take(rows, out=out), weights


class CPUBackend(HostRows):
    """Rows of a 2-D, C-ordered, finite float32 or float64 array (a memory map too).

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    weights : ndarray of shape (n_samples,) or None
        Non-negative float64 sample weights: they weight the Lloyd sums, counts and
        inertia; None weighs every row 1.
    """

    name = "cpu"
    #: k-means++ runs greedily here, one pass per centre (see :mod:`hkmeans.seeding`)
    greedy_seeding = True
    #: a Lloyd run's state can be saved and resumed from
    resumable_runs = True

    def __init__(self, X: np.ndarray, weights: np.ndarray | None = None):
        self.X = X
        self.weights = weights

    def weighted(self, weights) -> CPUBackend:
        """The same rows with sample ``weights`` (None: unweighted)."""
        return type(self)(self.X, weights)

    def search(self, centers, labels, sqdist, lower=None, group_offsets=None) -> None:
        """:func:`search` over the rows, in place."""
        search(self.X, centers, labels, sqdist, lower, group_offsets)

    def take(self, rows, out=None) -> np.ndarray:
        """Rows ``rows`` of the data, into ``out`` if given."""
        if out is None:
            return self.X[rows]
        np.take(self.X, rows, axis=0, out=out, mode="clip")  # "raise" would buffer all of out
        return out

    def assign(self, centers):
        """Nearest centre of each row: ``(labels int64, squared distances float64)``."""
        centers = np.ascontiguousarray(centers, dtype=self.X.dtype)
        labels = np.zeros(self.X.shape[0], dtype=np.int64)
        sqdist = np.empty(self.X.shape[0], dtype=np.float64)
        with single_threaded_blas():
            self.search(centers, labels, sqdist)
        return labels, sqdist

    def routed_assign(self, parents, child_offsets, children):
        """Each row's nearest of ``children[child_offsets[p] : child_offsets[p + 1]]``,
        ``p`` its nearest parent: ``(labels into children, squared distances)``. Costs
        one search over the parents and one over each parent's children, instead of
        one over all children."""
        with single_threaded_blas():
            nearest = self.assign(parents)[0]
            offsets, order = group_by_label(nearest, len(parents))
            labels = np.empty(self.X.shape[0], dtype=np.int64)
            sqdist = np.empty(self.X.shape[0], dtype=np.float64)
            for p in np.flatnonzero(np.diff(offsets)):
                rows = order[offsets[p] : offsets[p + 1]]
                a, e = child_offsets[p], child_offsets[p + 1]
                labels[rows], sqdist[rows] = type(self)(self.X[rows]).assign(children[a:e])
                labels[rows] += a
        return labels, sqdist

    def cluster_sums(self, labels, k):
        """Per-cluster float64 sums of the rows (members summed in index order) and
        counts; with weights, weighted sums and the clusters' weights."""
        offsets, order = group_by_label(labels, k)
        X = kernel_input(self.X)
        with kernel_threads(X.size):
            if self.weights is None:
                return groups.cluster_sums(X, offsets, order), np.diff(offsets)
            return groups.weighted_cluster_sums(X, self.weights, offsets, order), self.cluster_weights(labels, k)

    def lloyd_run(self, group_offsets, bounds=True, state=None) -> CPULloydRun:
        """The per-row state of a Lloyd run over centres grouped as ``group_offsets``
        (see :func:`hkmeans.kmeans.lloyd`), new or as ``state`` left it."""
        return CPULloydRun(self, group_offsets, bounds, state)

    def kmeans_plusplus(self, order, first, rand, weights):
        """Rows chosen by greedy (weighted) k-means++ from row ``first``, with the
        uniform draws ``rand`` (one row per later centre) made through the rows in
        ``order``."""
        with single_threaded_blas(), kernel_threads():
            X = kernel_input(self.X)
            return seeding.kmeans_plusplus(
                X, weights, order, first, rand, _config.SEEDING_ROWS, _config.SMALL_D, numba.get_num_threads()
            )

    def select(self, labels, k, take, scores):
        """``take[c]`` rows of each cluster ``c`` (clusters as ``labels`` says), those
        with the smallest ``scores``, concatenated in cluster order."""
        offsets, order = group_by_label(labels, k)
        return pick_members(offsets, order, scores, take)

    def mean_variance(self) -> float:
        """Mean of the features' (weighted) variances, in float64 over blocks of rows:
        no copy of the data, which may be a memory-mapped file."""
        X, w = self.X, self.weights
        blocks = row_blocks(X)
        if w is None:
            mean = sum(X[rows].sum(axis=0, dtype=np.float64) for rows in blocks) / X.shape[0]
            return sum(float(np.sum((X[rows] - mean) ** 2)) for rows in blocks) / X.size
        total = float(w.sum())
        mean = sum(w[rows] @ X[rows].astype(np.float64) for rows in blocks) / total
        return sum(float(w[rows] @ np.sum((X[rows] - mean) ** 2, axis=1)) for rows in blocks) / (total * X.shape[1])

    def normalized(self, alloc=None) -> CPUBackend:
        """A backend over the rows scaled to unit norm, written to the array
        ``alloc(shape, dtype)`` gives if given."""
        return CPUBackend(
            normalize_rows(self.X, None if alloc is None else alloc(self.X.shape, self.X.dtype)), self.weights
        )


class CPULloydRun:
    """Labels, squared distances and per-group bounds of one Lloyd run, kept between
    its passes."""

    def __init__(self, backend: CPUBackend, group_offsets, bounds, state=None):
        n = backend.shape[0]
        self.backend = backend
        self.group_offsets = group_offsets
        # the search reads the previous labels and bounds: both are part of the state
        self.labels = np.zeros(n, dtype=np.int64) if state is None else state["labels"].copy()
        self.sqdist = np.empty(n, dtype=np.float64)
        self.lower = None
        if bounds:
            self.lower = np.zeros((n, len(group_offsets) - 1), dtype=np.float32)  # 0: search every row
            if state is not None and "lower" in state:
                self.lower[:] = state["lower"]
        self._first = state is None

    def search(self, centers) -> None:
        """Nearest centres of every row, skipping what the bounds rule out."""
        with single_threaded_blas():
            self.backend.search(
                centers, self.labels, self.sqdist, self.lower, None if self.lower is None else self.group_offsets
            )

    def step(self, centers) -> LloydStep:
        """One pass: the search, then the clusters' sums and counts."""
        before = None if self._first else self.labels.copy()
        self.search(centers)
        self._first = False
        changed = None if before is None else int(np.count_nonzero(before != self.labels))
        sums, counts = self.backend.cluster_sums(self.labels, centers.shape[0])
        return LloydStep(sums, counts, weighted_total(self.sqdist, self.backend.weights), changed)

    def loosen(self, moves) -> None:
        """Lower the bounds after the centres of each group moved by at most ``moves``."""
        if self.lower is not None:
            with kernel_threads(self.lower.size):
                assign_kernels.loosen_bounds(self.lower, moves)

    def farthest(self, m):
        """The ``m`` units of weight farthest from their centres (see
        :func:`farthest_units`): their rows' data, labels and weights."""
        idx, w = self.backend.farthest_units(self.sqdist, m)
        return self.backend.take(idx), self.labels[idx], w

    def finish(self, order):
        """Labels through ``order`` (centre ``j`` of the run is ``order[j]``), squared
        distances and inertia of the last search."""
        return order[self.labels], self.sqdist, weighted_total(self.sqdist, self.backend.weights)

    def state(self) -> dict:
        """What the next pass reads: the labels and the bounds."""
        return {"labels": self.labels} if self.lower is None else {"labels": self.labels, "lower": self.lower}
