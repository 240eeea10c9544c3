"""Near-duplicate search in process: the level-0 clusters' border rows found by the
half-space bound, then sweeps of blocked similarities until every row is decided (the
rule and its proof: :mod:`hkmeans.dedup`, ``docs/guide/dedup.md``). The Dask backend
(:mod:`hkmeans.backends.dask.dedup`) runs the same functions group by group; with
``device="cuda"`` the block similarities come from :mod:`hkmeans.backends.cuda_dedup`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numba
import numpy as np

from .._kernels.cpu import dedup as kernels
from .._kernels.cpu._common import kernel_input
from .._threads import kernel_threads
from . import cuda_dedup
from .in_memory import group_by_label, rounding_bound

#: Rows per query block and per candidate block of the sweep's GEMMs.
QUERY_ROWS = 256


CANDIDATE_ROWS = 1024


#: Float32 rows are searched in float64 where their float32 products would leave
#: float32's range: a squared norm above ``FLOAT32_LARGEST_SQ`` (products overflow), or
#: a Euclidean threshold below ``FLOAT32_SMALLEST`` (distances that small are products
#: that underflow; at threshold 0, exact copies, only where a row is that small).
FLOAT32_LARGEST_SQ = 1e36
FLOAT32_SMALLEST = 1e-15

#: Squared norms below this (float64's smallest normal number), but not 0, are
#: refused: they carry less than float64's relative precision, which the scores and
#: the rounding margins assume (products that underflow within a row of a larger norm
#: err by less than the margins allow).
SMALLEST_SQ = float(np.finfo(np.float64).tiny)


def sq_range(sq) -> tuple[float, float]:
    """The smallest non-zero (inf if none) and the largest of squared norms ``sq``."""
    return float(np.min(sq, where=sq > 0, initial=np.inf)), float(np.max(sq, initial=0.0))


def search_dtype(dtype, smallest, largest, threshold, cosine) -> np.dtype:
    """The dtype in which rows of ``dtype`` are searched, their non-zero squared norms
    from ``smallest`` to ``largest`` (see :func:`sq_range`)."""
    if dtype != np.float32:
        return np.dtype(dtype)
    if largest > FLOAT32_LARGEST_SQ:
        return np.dtype(np.float64)
    tiny = threshold > 0 or smallest < FLOAT32_SMALLEST**2
    return np.dtype(np.float64 if not cosine and threshold < FLOAT32_SMALLEST and tiny else np.float32)


def exact_norms(x, start=0, cosine=False) -> np.ndarray:
    """The exact squared norms of the rows ``x`` (the first is row ``start``), or a
    one-line ValueError: a row not finite, one whose squared norm leaves float64's
    range or is below :data:`SMALLEST_SQ`, or (``cosine``) a zero row."""
    sq = np.empty(x.shape[0])
    kernels.exact_sq_norms(kernel_input(x), sq)
    if not np.all(np.isfinite(sq)):
        bad = int(np.flatnonzero(~np.isfinite(sq))[0])
        if not np.all(np.isfinite(x[bad])):
            raise ValueError(f"X contains NaN or infinity (row {start + bad}).")
        big = float(np.abs(x[bad]).max())
        raise ValueError(
            f"The squared norm of row {start + bad} of X overflows float64 (values up to {big:.3g}): scale the data."
        )
    tiny = np.flatnonzero(sq < SMALLEST_SQ)
    if tiny.size and cosine and not np.any(x[tiny[0]]):
        raise ValueError(f'Row {start + tiny[0]} of X is zero: metric="cosine" needs rows of non-zero norm.')
    for block in np.split(tiny, range(4096, tiny.size, 4096)):  # zero rows pass for "euclidean"
        nonzero = block[np.any(x[block], axis=1)]
        if nonzero.size:
            bad = int(nonzero[0])
            raise ValueError(
                f"The squared norm of row {start + bad} of X underflows float64 (values up to "
                f"{float(np.abs(x[bad]).max()):.3g}): scale the data."
            )
    return sq


def centroid_distances(C):
    """``|a - c|`` for all pairs of centroids, float32 rounded up."""
    C64 = C.astype(np.float64)
    sq = np.einsum("ij,ij->i", C64, C64)
    D = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2.0 * C64 @ C64.T, 0.0))
    # cancellation in the product above errs by at most this much
    D += np.sqrt(8.0 * np.finfo(np.float64).eps * (sq[:, None] + sq[None, :]) * C.shape[1])
    return np.nextafter(D.astype(np.float32), np.float32(np.inf))


def centroid_geometry(C, dtype):
    """What :func:`borders` needs of the centroids: ``(C, C.T, |c|^2, |a - c|)``."""
    C = np.ascontiguousarray(C, dtype=dtype)
    CT = np.ascontiguousarray(C.T)
    c_sq = np.einsum("ij,ij->i", C.astype(np.float64), C.astype(np.float64))
    return C, CT, c_sq, centroid_distances(C)


def border_err(X, max_sq, c_sq, cosine):
    """Bound on the rounding of one computed squared distance to a centroid, for rows
    of ``X``'s dtype and width whose largest squared norm is ``max_sq``."""
    return rounding_bound(X) * ((1.0 if cosine else max_sq) + float(np.max(c_sq)))


def borders(X, sq, geometry, cosine, radius, err, chunk):
    """Labels, squared distances to the centroids and the border clusters of each row
    (CSR: row ``i``'s are ``clusters[offsets[i]:offsets[i + 1]]``) of
    :func:`hkmeans._kernels.cpu.dedup.nearest_and_borders`, in blocks of ``chunk``
    rows from the first (a row's arithmetic depends on its block: the Dask backend
    cuts its chunks at multiples of ``chunk``)."""
    n = X.shape[0]
    C, CT, c_sq, cdist = geometry
    labels = np.empty(n, dtype=np.int64)
    sqdist = np.empty(n)
    counts = np.empty(n, dtype=np.int64)
    offsets = np.zeros(n + 1, dtype=np.int64)
    with kernel_threads(n * C.shape[0] * X.shape[1]):
        n_tasks = max(1, min(numba.get_num_threads(), -(-n // chunk)))
        args = (kernel_input(X), sq, C, CT, c_sq, cdist, cosine, radius, err, chunk, n_tasks, labels, sqdist, counts)
        kernels.nearest_and_borders(*args, offsets, np.empty(0, np.int32), False)
        np.cumsum(counts, out=offsets[1:])
        clusters = np.empty(offsets[-1], dtype=np.int32)
        kernels.nearest_and_borders(*args, offsets, clusters, True)
    return labels, sqdist, offsets, clusters


def rank_order(keep, sqdist, rng):
    n = len(sqdist)
    if keep == "hard":
        return np.lexsort((np.arange(n), -sqdist))
    if keep == "easy":
        return np.lexsort((np.arange(n), sqdist))
    if keep == "random":
        return rng.permutation(n)
    return np.arange(n)


def search_radius(threshold, cosine, X):
    """Radius of the bound: the threshold as a distance between unit rows for
    "cosine", with room for the rounding of unit rows and of the bound."""
    if cosine:
        slack = 8.0 * (X.shape[1] + 4) * float(np.finfo(X.dtype).eps)
        return np.sqrt(2.0 * (1.0 - threshold) + slack) * (1 + 1e-6)
    return threshold * (1 + 1e-6) + 1e-300


def band_of(X) -> float:
    """Half-width of the band around the threshold in which a pair is decided on its
    exact score, not on its block similarity."""
    return 3.0 * (X.shape[1] + 4) * float(np.finfo(X.dtype).eps)


@dataclass
class Candidates:
    """What the sweeps read of a set of rows: the rows, their squared norms, their
    dense rank (0 to n - 1), labels, the members of each cluster in rank order, the
    runs of border rows each cluster imports, and each row's border clusters (CSR)."""

    X: np.ndarray
    sq: np.ndarray
    rank: np.ndarray
    labels: np.ndarray
    member_offsets: np.ndarray
    members: np.ndarray
    runs: Any  # the arrays of kernels.import_runs
    border_offsets: np.ndarray
    border_clusters: np.ndarray

    @classmethod
    def of(cls, X, sq, rank, labels, k, border_offsets, border_clusters) -> Candidates:
        member_offsets, _ = group_by_label(labels, k)
        members = np.lexsort((rank, labels))
        runs = kernels.import_runs(labels, rank, border_offsets, border_clusters, k)
        return cls(X, sq, rank, labels, member_offsets, members, runs, border_offsets, border_clusters)


def sweep_pass(c, open_rows, state, first_kept, cosine, threshold, compared, scorer=None):
    """One sweep of the :class:`Candidates` ``c`` over the clusters of ``open_rows`` (see
    :func:`hkmeans._kernels.cpu.dedup.sweep`), in place; the states before it.
    ``scorer`` (:class:`hkmeans.backends.cuda_dedup.Scorer`) puts the block
    similarities on the GPU."""
    k = c.member_offsets.shape[0] - 1
    sizes = np.bincount(c.labels[open_rows], minlength=k)
    clusters = np.flatnonzero(sizes)
    clusters = clusters[np.argsort(-sizes[clusters], kind="stable")]
    before = state.copy()
    args = (
        kernel_input(c.X),
        c.sq,
        c.rank,
        clusters,
        c.member_offsets,
        c.members,
        *c.runs,
        c.border_offsets,
        c.border_clusters,
    )
    args += (before, state, first_kept, cosine, threshold, band_of(c.X), QUERY_ROWS, CANDIDATE_ROWS)
    if scorer is not None:
        cuda_dedup.sweep(scorer, *args, compared)
        return before
    with kernel_threads(float(np.sum(sizes.astype(np.float64) ** 2)) * c.X.shape[1]):
        n_tasks = max(1, min(numba.get_num_threads(), len(clusters)))
        kernels.sweep(*args, n_tasks, compared)
    return before


def sweep(X, sq, labels, k, order, border_offsets, border_clusters, cosine, threshold, device="cpu"):
    """Sweeps until every row is decided: ``(kept rows, duplicate_of, similarity,
    pairs compared)``."""
    n = X.shape[0]
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    candidates = Candidates.of(X, sq, rank, labels, k, border_offsets, border_clusters)
    state = np.zeros(n, dtype=np.int8)
    first_kept = np.full(n, n, dtype=np.int64)
    compared = np.zeros(k, dtype=np.int64)
    scorer = None
    if device == "cuda":
        scorer = cuda_dedup.Scorer(X, sq, cosine)
    open_rows = np.arange(n)
    while open_rows.size:
        before = sweep_pass(candidates, open_rows, state, first_kept, cosine, threshold, compared, scorer)
        still = (state == kernels.UNDECIDED) | (state == kernels.PENDING)
        if np.count_nonzero(still[open_rows]) == open_rows.size and np.array_equal(state, before):
            raise RuntimeError("dedup made no progress in a sweep.")  # the rule guarantees progress
        open_rows = np.flatnonzero(still)
    removed = np.flatnonzero(state == kernels.REMOVED)
    duplicate_of = np.full(n, -1, dtype=np.int64)
    duplicate_of[removed] = order[first_kept[removed]]
    similarity = np.full(n, np.nan)
    scores = np.empty(len(removed))
    kernels.pair_scores(kernel_input(X), sq, removed, duplicate_of[removed], cosine, scores)
    similarity[removed] = scores
    return np.flatnonzero(state == kernels.KEPT), duplicate_of, similarity, int(compared.sum())
