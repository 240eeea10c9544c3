"""Near-duplicate removal over the clusters of the data.

The rule, exact and independent of how the work is split: walk the rows in rank order
(see ``keep``); a row is removed iff it is within the threshold of a row already kept,
and its duplicate is the first such kept row in rank order. Candidates come from the
level-0 clusters: every pair inside a cluster, and across clusters only the border
rows that the half-space bound cannot rule out (see ``docs/guide/dedup.md``).
"""

from __future__ import annotations

import numbers
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import sparse
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_array

from . import _config
from ._rng import as_generator
from ._threads import single_threaded_blas
from ._validation import check, check_choice, shown
from .backends import check_backend, cuda_dedup, dask_module, runs_on_dask
from .backends import dedup as search
from .backends.cuda import check_available
from .backends.in_memory import normalize_rows
from .kmeans import kmeans

KEEP = ("hard", "easy", "random", "first")
DEDUP_METRICS = ("cosine", "euclidean")


#: A k-means of its own fits its centroids on at most this many rows per centroid.
SAMPLE_PER_CLUSTER = 64


@dataclass
class DedupResult:
    """Outcome of :func:`dedup`.

    Attributes
    ----------
    kept : ndarray of shape (n_kept,), int64
        Rows kept, sorted.
    duplicate_of : ndarray of shape (n_samples,), int64
        For a removed row, the kept row it duplicates; -1 for kept rows.
    similarity : ndarray of shape (n_samples,), float64
        For a removed row, its cosine similarity (or Euclidean distance) to
        ``duplicate_of``; NaN for kept rows.
    order : ndarray of shape (n_samples,), int64
        The rows in the rank order the rule walks them.
    labels : ndarray of shape (n_samples,), int64
        Cluster of each row, whose pairs were searched.
    n_compared : int
        Pairs of rows compared (a measure of the work).
    """

    kept: np.ndarray
    duplicate_of: np.ndarray
    similarity: np.ndarray
    order: np.ndarray
    labels: np.ndarray
    n_compared: int

    @property
    def removed(self) -> np.ndarray:
        """Rows removed, sorted."""
        return np.flatnonzero(self.duplicate_of >= 0)


def check_threshold(threshold, metric) -> float:
    """``threshold`` as a float; a ValueError unless it suits ``metric``."""
    check_choice("metric", metric, DEDUP_METRICS)
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or not np.isfinite(float(threshold)):
        raise ValueError(f"threshold must be a finite number, got {shown(threshold)}.")
    threshold = float(threshold)
    if metric == "cosine" and not 0 < threshold <= 1:
        raise ValueError(f'threshold must be in (0, 1] for metric="cosine" (a similarity), got {shown(threshold)}.')
    if metric == "euclidean" and threshold < 0:
        raise ValueError(f'threshold must be >= 0 for metric="euclidean" (a distance), got {shown(threshold)}.')
    return float(threshold)


def _check_data(X, metric, threshold=1.0):
    dtype = getattr(X, "dtype", None)
    if dtype is not None and np.dtype(dtype).kind == "c":  # scikit-learn's message prints the array
        raise ValueError(f"X must hold real numbers, got dtype {dtype}.")
    if not isinstance(X, np.ndarray) or X.dtype not in (np.float32, np.float64) or not X.flags.c_contiguous:
        X = check_array(X, dtype=[np.float64, np.float32], order="C", ensure_2d=False, allow_nd=True)
    if X.ndim != 2 or X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"X must be a non-empty 2-D array, got shape {X.shape}.")
    sq = search.exact_norms(X, cosine=metric == "cosine")
    dtype = search.search_dtype(X.dtype, *search.sq_range(sq), threshold, metric == "cosine")
    return X.astype(dtype, copy=False), sq


def _model_centroids(model, X, n_clusters, take=None):
    """Level-0 centroids of a fitted model, checked against ``X`` (its rows read by
    ``take(rows)`` if given, else ``X[rows]``)."""
    if n_clusters is not None:
        raise ValueError("Give either model or n_clusters, not both.")
    levels = getattr(model, "levels_", None)
    if levels is None:
        raise ValueError("model must be a fitted HierarchicalKMeans (it has no levels_).")
    level = levels[0]
    if level.centroids.shape[1] != X.shape[1] or len(level.labels) != X.shape[0]:
        raise ValueError(
            f"model was fitted on {len(level.labels)} rows of {level.centroids.shape[1]} features, "
            f"X has {X.shape[0]} of {X.shape[1]}: pass the rows it was fitted on."
        )
    # spot-check a few rows: their stored distances to their centroids must hold
    rows = np.unique(np.linspace(0, X.shape[0] - 1, 64).astype(np.int64))
    labels = np.asarray(level.labels[rows])
    x = (X[rows] if take is None else take(rows)).astype(np.float64)
    if getattr(model, "metric", "euclidean") == "cosine":
        x = normalize_rows(x)
    sq = np.sum((x - level.centroids[labels]) ** 2, axis=1)
    stored = np.asarray(level.sqdist[rows], dtype=np.float64)
    if not np.allclose(sq, stored, rtol=1e-3, atol=1e-4 * (1 + np.max(sq, initial=0))):
        raise ValueError("model was fitted on other data than X: pass the rows it was fitted on.")
    return level.centroids


def _check_n_clusters(n, n_clusters):
    """The number of clusters of a k-means of its own (about sqrt(n) by default)."""
    k = max(1, int(round(np.sqrt(n)))) if n_clusters is None else n_clusters
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or not 1 <= k <= n:
        raise ValueError(f"n_clusters must be an integer in [1, {n}], got {shown(n_clusters)}.")
    return int(k)


def _own_centroids(X, n_clusters, metric, rng, take=None):
    """Centroids of a short k-means on a sample of ``X``: ``SAMPLE_PER_CLUSTER`` rows
    per cluster drawn from ``rng`` (all rows if fewer), read by ``take(rows)`` if given
    (rows sorted), else ``X[rows]``."""
    n = X.shape[0]
    k = _check_n_clusters(n, n_clusters)
    m = min(n, SAMPLE_PER_CLUSTER * k)
    rows = np.sort(rng.choice(n, m, replace=False)) if m < n else None
    if take is not None:
        sample = take(np.arange(n) if rows is None else rows)
    else:
        sample = X if rows is None else X[rows]
    sample = np.ascontiguousarray(sample)
    with warnings.catch_warnings():
        # copies in the pool leave clusters empty: expected here, and harmless to the bound
        warnings.simplefilter("ignore", ConvergenceWarning)
        return kmeans(sample, k, max_iter=20, metric=metric, random_state=rng).centers


def dedup(
    X,
    threshold,
    metric="cosine",
    keep="hard",
    random_state=None,
    model=None,
    n_clusters=None,
    backend="auto",
    device="cpu",
    client=None,
) -> DedupResult:
    """Remove near-duplicate rows, exactly and whatever the order of the work.

    Walking the rows in rank order (``keep``), a row is removed iff it is within
    ``threshold`` of a row already kept; it is then the duplicate of the first such
    kept row. Pairs are searched inside the level-0 clusters and across them where
    the half-space bound allows, so no pair within the threshold is missed.

    The result is the same bits in process, on Dask (any workers, any chunking) and
    with the block similarities on a GPU: see :mod:`hkmeans.backends.dask.dedup` and
    "On a cluster and on a GPU" in ``docs/guide/dedup.md``.

    Parameters
    ----------
    X : array-like or dask array of shape (n_samples, n_features)
        Rows (float32 or float64 kept, others cast; a memory map is read in place).
    threshold : float
        For "cosine", the similarity at or above which two rows are duplicates, in
        (0, 1]; for "euclidean", the distance at or below which they are, >= 0.
    metric : {"cosine", "euclidean"}, default="cosine"
    keep : {"hard", "easy", "random", "first"}, default="hard"
        Rank of the rows, the first kept: "hard" farthest from its centroid first
        (as SemDeDup), "easy" closest first, "random" a seeded permutation, "first"
        input order. Ties go to the lower row number.
    random_state : int, Generator or None
        Seeds the clustering's sample and k-means, and "random".
    model : HierarchicalKMeans, optional
        Fitted on ``X``: its level-0 centroids give the clusters.
    n_clusters : int, optional
        Without ``model``, clusters of a short k-means (default about sqrt(n)).
    backend : {"auto", "cpu", "dask"}, default="auto"
        "dask" (or "auto" with a dask array) runs on a Dask cluster: the rows stay on
        the workers, which search the clusters group by group; the client holds a few
        arrays of one entry per row (labels, ranks, states, the result).
    device : {"cpu", "cuda"}, default="cpu"
        "cuda": the similarities of the blocks of rows are computed on an NVIDIA GPU
        (on Dask, each worker's), the decisions near the threshold on the exact
        float64 score as on the CPU.
    client : distributed.Client, optional
        With the Dask backend, the cluster to run on (see
        :func:`hkmeans.backends.dask.pick_client`).

    Returns
    -------
    DedupResult
    """
    threshold = check_threshold(threshold, metric)
    check_choice("keep", keep, KEEP)
    dask = _check_backend(X, backend, device, client)
    rng = as_generator(random_state)

    def centroids(X, take=None):
        """The level-0 centroids (unit rows for "cosine"), the rows read by ``take``."""
        with single_threaded_blas():
            if model is not None:
                C = _model_centroids(model, X, n_clusters, take)
            else:
                C = _own_centroids(X, n_clusters, metric, rng, take)
        return normalize_rows(np.asarray(C, dtype=np.float64)) if metric == "cosine" else C

    if dask:
        if model is None and X.ndim == 2 and X.shape[0] > 0:  # else (no rows, sizes unknown) the rows' check says
            _check_n_clusters(X.shape[0], n_clusters)
        found = dask_module().dedup.dedup(X, threshold, metric, keep, rng, centroids, device, client)
        return DedupResult(*found)
    X, sq = _check_data(X, metric, threshold)
    if device == "cuda":
        cuda_dedup.check_fits(X)
    return _search(X, sq, centroids(X), threshold, metric, keep, rng, device)


def _search(X, sq, C, threshold, metric, keep, rng, device="cpu") -> DedupResult:
    """The in-process search of checked rows ``X`` (squared norms ``sq``) over the
    clusters of centroids ``C``."""
    cosine = metric == "cosine"
    with single_threaded_blas():
        geometry = search.centroid_geometry(C, X.dtype)
        err = search.border_err(X, float(np.max(sq)), geometry[2], cosine)
        radius = search.search_radius(threshold, cosine, X)
        labels, sqdist, offsets, clusters = search.borders(X, sq, geometry, cosine, radius, err, _config.CHUNK_ROWS)
        order = search.rank_order(keep, sqdist, rng)
        kept, duplicate_of, similarity, compared = search.sweep(
            X, sq, labels, C.shape[0], order, offsets, clusters, cosine, threshold, device
        )
    return DedupResult(kept, duplicate_of, similarity, order, labels, compared)


def load_search_kernels(dtype=np.float64, metric="euclidean") -> None:
    """Compile (first run) or load the kernels of the in-process search for rows of
    ``dtype``, on a few rows: those of its own k-means are left out (the fit's)."""
    X = np.random.default_rng(0).normal(size=(64, 2)).astype(dtype)
    X, sq = _check_data(X, metric)
    _search(X, sq, X[:4].astype(np.float64), 0.5, metric, "first", as_generator(0))


def _check_backend(X, backend, device, client) -> bool:
    """Whether the work runs on Dask; a one-line ValueError (RuntimeError for a
    missing GPU) for values that do not suit."""
    check("backend", backend)
    check("device", device)
    if sparse.issparse(X):
        raise ValueError("dedup takes dense rows, got a sparse matrix: pass X.toarray().")
    check_backend(X, backend)
    on_dask = runs_on_dask(X, backend)
    if client is not None and not on_dask:
        raise ValueError('client is for the dask backend: pass a dask array or backend="dask".')
    if client is not None and not hasattr(client, "submit"):
        raise ValueError(f"client must be a distributed.Client, got {type(client).__name__}.")
    if device == "cuda" and not on_dask:
        check_available()
    return on_dask
