"""One flat k-means: seeding, the Lloyd loop, empty clusters.

Host code over :mod:`hkmeans._kernels.cpu`. Inputs here are already validated:
2-D, C-contiguous, float32 or float64, finite.
"""

from __future__ import annotations

import numbers
import warnings
from dataclasses import dataclass, fields

import numba
import numpy as np
from sklearn.exceptions import ConvergenceWarning

from . import _config
from ._progress import bar
from ._rng import as_generator
from ._threads import single_threaded_blas
from .checkpoint import Checkpoints, rng_state, set_rng_state
from ._kernels import cpu

INITS = ("k-means++", "k-means||", "random")
METRICS = ("euclidean", "cosine")


@dataclass
class KMeansResult:
    """Outcome of one k-means run."""

    centers: np.ndarray
    labels: np.ndarray
    sqdist: np.ndarray
    inertia: float
    n_iter: int


_RESULT_FIELDS = tuple(f.name for f in fields(KMeansResult))

#: What a Lloyd run saves to continue exactly where it was (see :func:`lloyd`).
_STATE_FIELDS = ("order", "group_offsets", "centers", "labels", "n_iter", "lower")


def _row_blocks(X):
    """Slices of about 2**20 entries of ``X`` (8 MB as float64), whole rows each: host
    loops over them need no temporary the size of ``X``."""
    block = max(1, (1 << 20) // max(1, X.shape[1]))
    return [slice(a, a + block) for a in range(0, X.shape[0], block)]


def normalize_rows(X: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero), into ``out`` (by default a
    new array), in blocks of rows."""
    out = np.empty(X.shape, dtype=X.dtype) if out is None else out
    for rows in _row_blocks(X):
        x = X[rows]
        norms = np.sqrt(np.einsum("ij,ij->i", x, x, dtype=np.float64))
        norms[norms == 0] = 1.0
        out[rows] = x / norms[:, None]
    return out


def _rel_err(X):
    """Relative bound on the rounding of a full nearest-centroid search (see
    :func:`hkmeans._kernels.cpu.assign`), with a factor 2 to spare."""
    return 2.0 * (X.shape[1] + 4) * float(np.finfo(X.dtype).eps)


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
    n_tasks = max(1, min(numba.get_num_threads(), -(-X.shape[0] // chunk)))
    gemm = X.shape[1] > _config.SMALL_D
    bounded = lower is not None
    if not bounded:
        lower = np.zeros((0, 1), dtype=np.float32)
        group_offsets = np.array([0, centers.shape[0]])
    cpu.assign(
        X, centers, chunk, n_tasks, gemm, _rel_err(X), labels, sqdist, lower, group_offsets, bounded
    )


def assign(X: np.ndarray, centers: np.ndarray):
    """Nearest centre of each row: ``(labels int64, squared distances float64)``."""
    X = np.ascontiguousarray(X)
    centers = np.ascontiguousarray(centers, dtype=X.dtype)
    labels = np.zeros(X.shape[0], dtype=np.int64)
    sqdist = np.empty(X.shape[0], dtype=np.float64)
    search(X, centers, labels, sqdist)
    return labels, sqdist


def check_kmeans_params(X, n_clusters, init, n_init, max_iter, tol, metric, hierarchical=False):
    """Validate k-means parameters against validated data ``X`` before any work.

    Returns ``(init, n_init)`` with ``n_init="auto"`` resolved as in scikit-learn
    (10 runs for "random", 1 otherwise) and an array ``init`` as a C-contiguous array.
    """
    if isinstance(n_clusters, bool) or not isinstance(n_clusters, numbers.Integral) or n_clusters < 1:
        raise ValueError(f"n_clusters must be a positive integer, got {n_clusters!r}.")
    if X.shape[0] < n_clusters:
        raise ValueError(f"n_samples={X.shape[0]} should be >= n_clusters={n_clusters}.")
    if isinstance(init, str):
        if init not in INITS:
            raise ValueError(f"init must be one of {INITS} or an array, got {init!r}.")
    elif hierarchical:
        raise ValueError(f"init must be one of {INITS} for a hierarchical fit, got {type(init).__name__}.")
    else:
        init = np.array(init, dtype=X.dtype, order="C")
        if init.shape != (n_clusters, X.shape[1]):
            raise ValueError(
                f"init array has shape {init.shape}; expected (n_clusters, n_features) = "
                f"({n_clusters}, {X.shape[1]})."
            )
        if not np.all(np.isfinite(init)):
            raise ValueError("init array contains NaN or infinity.")
    if isinstance(n_init, str) and n_init == "auto":
        n_init = 10 if isinstance(init, str) and init == "random" else 1
    elif isinstance(n_init, bool) or not isinstance(n_init, numbers.Integral) or n_init < 1:
        raise ValueError(f"n_init must be 'auto' or a positive integer, got {n_init!r}.")
    if not isinstance(init, str) and n_init != 1:
        warnings.warn(
            f"Explicit initial center position passed: performing only one init instead of n_init={n_init}.",
            RuntimeWarning,
            stacklevel=3,
        )
        n_init = 1
    if isinstance(max_iter, bool) or not isinstance(max_iter, numbers.Integral) or max_iter < 1:
        raise ValueError(f"max_iter must be a positive integer, got {max_iter!r}.")
    if isinstance(tol, bool) or not isinstance(tol, numbers.Real) or not 0 <= tol < np.inf:
        raise ValueError(f"tol must be a finite non-negative number, got {tol!r}.")
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}.")
    return init, int(n_init)


def _seed_greedy(X, n_clusters, rng, n_local_trials=None, weights=None):
    """Rows chosen by greedy (weighted) k-means++."""
    n = X.shape[0]
    if n_local_trials is None:
        n_local_trials = 2 + int(np.log(n_clusters))
    if weights is None:
        weights = np.ones(n)
        first = int(rng.integers(n))
    else:
        first = int(rng.choice(n, p=weights / weights.sum()))
    rand = rng.random((n_clusters - 1, n_local_trials))
    chunk = _config.SEEDING_ROWS
    return cpu.kmeans_plusplus(X, weights, first, rand, chunk, _config.SMALL_D, numba.get_num_threads())


def _seed_parallel(X, n_clusters, rng, n_rounds=5, oversampling=2.0):
    """Rows chosen by k-means|| (Bahmani et al., 2012).

    ``n_rounds`` times, every row joins the candidates with probability
    ``oversampling * n_clusters * d(x)^2 / potential``; the candidates, weighted by the
    rows nearest to them, are then reduced to ``n_clusters`` by greedy k-means++.
    """
    n = X.shape[0]
    chosen = [np.array([rng.integers(n)])]
    closest = assign(X, X[chosen[0]])[1]
    for _ in range(n_rounds):
        pot = closest.sum()
        if pot == 0:
            break
        picked = np.flatnonzero(rng.random(n) < oversampling * n_clusters * closest / pot)
        if picked.size:
            chosen.append(picked)
            closest = np.minimum(closest, assign(X, X[picked])[1])
    cand = np.unique(np.concatenate(chosen))
    if cand.size < n_clusters:  # too few: top up with random other rows
        others = np.setdiff1d(np.arange(n), cand)
        cand = np.sort(np.concatenate([cand, rng.choice(others, n_clusters - cand.size, replace=False)]))
    C = np.ascontiguousarray(X[cand])
    weights = np.bincount(assign(X, C)[0], minlength=cand.size).astype(np.float64)
    return cand[_seed_greedy(C, n_clusters, rng, weights=weights)]


def init_centers(X, n_clusters, init, rng, n_local_trials=None):
    """Initial centres and their rows: "k-means++" (greedy, as scikit-learn's),
    "k-means||" (scalable k-means++), "random" (distinct rows) or an array."""
    if isinstance(init, str):
        if init == "random":
            idx = np.sort(rng.choice(X.shape[0], n_clusters, replace=False))
        elif init == "k-means||":
            idx = _seed_parallel(X, n_clusters, rng)
        else:
            idx = _seed_greedy(X, n_clusters, rng, n_local_trials)
        return X[idx].copy(), idx
    return np.array(init, dtype=X.dtype, order="C"), None


def _farthest(sqdist, m):
    """The ``m`` rows farthest from their centres (first rows first on ties)."""
    return np.argsort(-sqdist, kind="stable")[:m]


def _update(X, labels, sqdist, centers, spherical):
    """New centres as cluster means; an empty cluster takes the point farthest from
    its centre (as scikit-learn does), which leaves its old cluster."""
    k = centers.shape[0]
    offsets, order = cpu.group_by_label(labels, k)
    sums = cpu.cluster_sums(X, offsets, order)
    counts = np.diff(offsets)
    empty = np.flatnonzero(counts == 0)
    if empty.size:
        for c, i in zip(empty, _farthest(sqdist, empty.size)):
            old = labels[i]
            if counts[old] > 1:
                sums[old] -= X[i]
                counts[old] -= 1
            sums[c] = X[i]
            counts[c] = 1
    new = sums / np.maximum(counts, 1)[:, None]
    if spherical:
        new = normalize_rows(new)
    return new.astype(X.dtype)


def reseed_empty(X, centers, labels, sqdist):
    """Move each empty cluster's centre to one of the points farthest from their
    centres, then reassign; returns ``(centers, labels, sqdist)``."""
    empty = np.flatnonzero(np.bincount(labels, minlength=centers.shape[0]) == 0)
    if empty.size == 0:
        return centers, labels, sqdist
    centers = centers.copy()
    centers[empty] = X[_farthest(sqdist, empty.size)]
    return (centers, *assign(X, centers))


def _group_centres(centers):
    """Order and offsets that put the centres in groups of neighbours (a short k-means
    over the centres themselves), for the per-group bounds of :func:`lloyd`."""
    k = centers.shape[0]
    n_groups = min(_config.BOUND_GROUPS, k // 8)
    if n_groups < 2:
        return np.arange(k), np.array([0, k])
    seeds = centers[np.linspace(0, k - 1, n_groups).astype(np.int64)].copy()
    for _ in range(5):
        groups, sqdist = assign(centers, seeds)
        seeds = _update(centers, groups, sqdist, seeds, False)
    groups = assign(centers, seeds)[0]
    order = np.argsort(groups, kind="stable")
    return order, np.concatenate([[0], np.cumsum(np.bincount(groups, minlength=n_groups))])


def lloyd(X, centers, *, max_iter, tol, spherical=False, bounds=True, state=None, on_iter=None) -> KMeansResult:
    """Lloyd iterations from ``centers`` until labels stop changing, the squared centre
    shift falls to ``tol`` (absolute), or ``max_iter``; labels then match ``centers``.

    With ``bounds``, the centres are put in groups of neighbours and each row keeps,
    per group, a lower bound on its distance to the group's other centres, lowered after
    each update by the group's largest move (Hamerly's bound, per group as in Yinyang
    k-means); rows whose bounds prove their label skip the search. Each row gets its
    nearest centre up to the rounding of a search: where two centres are closer to a
    row than that rounding, the bounded and the plain search (``bounds=False``) may
    pick different ones.

    After each iteration that does not end the run, ``on_iter(state)`` gets a dict of
    arrays; passing it back as ``state`` continues the run where it was, with the same
    result: the state holds everything the next iteration reads, bounds included.
    """
    n = X.shape[0]
    if state is None:
        # grouped centres are contiguous (in both modes, so that ties resolve alike);
        # the order is undone at the end
        order, group_offsets = _group_centres(centers)
        centers = centers[order]
        labels_old, start = None, 0
    else:
        order, group_offsets, centers = state["order"], state["group_offsets"], state["centers"]
        labels_old, start = state["labels"], int(state["n_iter"])
    # the search reads the previous labels and bounds: both are part of the state
    labels = np.zeros(n, dtype=np.int64) if state is None else state["labels"].copy()
    sqdist = np.empty(n, dtype=np.float64)
    lower = None
    if bounds:
        lower = np.zeros((n, len(group_offsets) - 1), dtype=np.float32)  # 0: search every row
        if state is not None and "lower" in state:
            lower[:] = state["lower"]

    def searched(centers):
        search(X, centers, labels, sqdist, lower, group_offsets if bounds else None)
        return labels.copy(), sqdist

    n_iter = start
    strict = False
    for n_iter in range(start + 1, max_iter + 1):
        new_labels, sqdist = searched(centers)
        if labels_old is not None and np.array_equal(new_labels, labels_old):
            strict = True  # centres already are these labels' means
            n_iter -= 1
            break
        new = _update(X, new_labels, sqdist, centers, spherical)
        moves = np.sqrt(np.sum((new.astype(np.float64) - centers) ** 2, axis=1))
        if bounds:  # no centre of a group came closer than the group's largest move
            largest = np.array([moves[a:e].max(initial=0.0) for a, e in zip(group_offsets[:-1], group_offsets[1:])])
            cpu.loosen_bounds(lower, largest)
        centers = new
        labels_old = new_labels
        if float(np.sum(moves**2)) <= tol:
            break
        if on_iter is not None:
            st = dict(order=order, group_offsets=group_offsets, centers=centers, labels=labels_old, n_iter=n_iter)
            on_iter(st if lower is None else dict(st, lower=lower))
    if not strict:
        labels_old, sqdist = searched(centers)
    restore = np.empty_like(order)
    restore[order] = np.arange(len(order))
    return KMeansResult(centers[restore], order[labels_old], sqdist, float(np.sum(sqdist)), max(n_iter, 1))


def _mean_variance(X) -> float:
    """Mean of the features' variances, in float64 over blocks of rows: no copy of
    ``X``, which may be a memory-mapped file."""
    blocks = _row_blocks(X)
    mean = sum(X[rows].sum(axis=0, dtype=np.float64) for rows in blocks) / X.shape[0]
    return sum(float(np.sum((X[rows] - mean) ** 2)) for rows in blocks) / X.size


def kmeans(
    X,
    n_clusters,
    *,
    init="k-means++",
    n_init=1,
    max_iter=300,
    tol=1e-4,
    metric="euclidean",
    random_state=None,
    verbose=False,
    checkpoints: Checkpoints | None = None,
    key: str | None = None,
    normalized=False,
) -> KMeansResult:
    """Best of ``n_init`` k-means runs (lowest inertia) on validated data.

    With ``metric="cosine"`` rows and centres are kept on the unit sphere (spherical
    k-means); ``sqdist`` is then ``2 - 2 cos``. ``tol`` is relative to the mean
    feature variance, as in scikit-learn. ``verbose`` shows a bar of Lloyd iterations.
    With ``checkpoints`` and a ``key``, the runs save their state under ``key/partial``
    when ``checkpoints.partial_due()`` and continue from a saved state. ``normalized``
    says that the rows of ``X`` already have unit norm (no copy is made).
    """
    rng = as_generator(random_state)
    spherical = metric == "cosine"
    if spherical and not normalized:
        X = normalize_rows(X)
    tol_abs = _mean_variance(X) * tol if tol > 0 else 0.0
    checkpoints = checkpoints if key is not None and checkpoints is not None else Checkpoints()
    partial = f"{key}/partial"
    best, first_run, state = None, 0, None
    saved = checkpoints.load(partial)
    if saved is not None:
        first_run = int(saved["run"])
        set_rng_state(rng, saved["rng_state"])
        state = {name: saved[name] for name in _STATE_FIELDS if name in saved}
        if "best_centers" in saved:
            best = KMeansResult(*(saved["best_" + f] for f in _RESULT_FIELDS))
    with single_threaded_blas():
        for run in range(first_run, n_init):
            centers = None
            if state is None:
                centers, _ = init_centers(X, n_clusters, init, rng)
                if spherical:
                    centers = normalize_rows(centers)
            after_init = rng_state(rng)
            with bar(verbose, max_iter, f"k-means {n_clusters}" + (f" run {run + 1}/{n_init}" if n_init > 1 else "")) as pbar:

                def on_iter(st):
                    pbar.update(int(st["n_iter"]) - pbar.n)
                    if checkpoints.partial_due():
                        arrays = dict(st, run=run, rng_state=after_init)
                        if best is not None:
                            arrays.update({"best_" + f: getattr(best, f) for f in _RESULT_FIELDS})
                        checkpoints.save(partial, arrays)

                res = lloyd(X, centers, max_iter=max_iter, tol=tol_abs, spherical=spherical, state=state, on_iter=on_iter)
                pbar.update(res.n_iter - pbar.n)
            state = None
            if best is None or res.inertia < best.inertia:
                best = res
    checkpoints.discard(partial)
    best = KMeansResult(best.centers, best.labels, best.sqdist, float(best.inertia), int(best.n_iter))
    n_distinct = np.count_nonzero(np.bincount(best.labels, minlength=n_clusters))
    if n_distinct < n_clusters:
        warnings.warn(
            f"Number of distinct clusters ({n_distinct}) found smaller than "
            f"n_clusters ({n_clusters}). Possibly due to duplicate points in X.",
            ConvergenceWarning,
            stacklevel=3,
        )
    return best


def kmeans_plusplus(X, n_clusters, *, random_state=None, n_local_trials=None):
    """Greedy k-means++ seeding, like :func:`sklearn.cluster.kmeans_plusplus`.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    n_clusters : int
    random_state : int, Generator, RandomState or None
    n_local_trials : int or None
        Candidates tried per centre; None means ``2 + int(log(n_clusters))``.

    Returns
    -------
    centers : ndarray of shape (n_clusters, n_features)
    indices : ndarray of shape (n_clusters,)
        Row of ``X`` each centre was taken from.
    """
    from sklearn.utils import check_array

    X = check_array(X, dtype=[np.float64, np.float32], order="C")
    check_kmeans_params(X, n_clusters, "k-means++", 1, 1, 0.0, "euclidean")
    if n_local_trials is not None and (
        not isinstance(n_local_trials, (int, np.integer)) or n_local_trials < 1
    ):
        raise ValueError(f"n_local_trials must be a positive integer, got {n_local_trials!r}.")
    with single_threaded_blas():
        return init_centers(X, n_clusters, "k-means++", as_generator(random_state), n_local_trials)
