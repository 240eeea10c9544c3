"""One flat k-means: the Lloyd loop, n_init, empty clusters, resume.

Host code over a backend (:mod:`hkmeans.backends`), which holds the rows and the
per-row state of a run. Inputs here are already validated: 2-D, C-contiguous, float32
or float64, finite.
"""

from __future__ import annotations

import numbers
import warnings
from dataclasses import dataclass, fields

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from . import _config
from ._params import INITS, METRICS, check
from ._progress import bar
from ._rng import as_generator
from ._threads import single_threaded_blas
from .backends import resolve
from .backends.cpu import CPUBackend, LloydStep, normalize_rows
from .checkpoint import Checkpoints, rng_state, set_rng_state
from .seeding import init_centers



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


def assign(X, centers: np.ndarray):
    """Nearest centre of each row of ``X`` (an array or a backend): ``(labels int64,
    squared distances float64)``."""
    return resolve(X if not isinstance(X, np.ndarray) else np.ascontiguousarray(X)).assign(centers)


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
    check("max_iter", max_iter)
    check("tol", tol)
    check("metric", metric)
    return init, int(n_init)


def _update(step, farthest, spherical, dtype):
    """New centres as cluster means from a pass's sums and counts; an empty cluster
    takes the point farthest from its centre (as scikit-learn does), which leaves its
    old cluster. ``farthest(m)`` gives the ``m`` farthest rows and their labels."""
    sums, counts = step.sums, step.counts
    empty = np.flatnonzero(counts == 0)
    if empty.size:
        rows, labels = farthest(empty.size)
        for c, x, old in zip(empty, rows, labels):
            if counts[old] > 1:
                sums[old] -= x
                counts[old] -= 1
            sums[c] = x
            counts[c] = 1
    new = sums / np.maximum(counts, 1)[:, None]
    if spherical:
        new = normalize_rows(new)
    return new.astype(dtype)


def reseed_empty(data, centers, labels, sqdist):
    """Move each empty cluster's centre to one of the points farthest from their
    centres, then reassign; returns ``(centers, labels, sqdist)``."""
    empty = np.flatnonzero(data.counts(labels, centers.shape[0]) == 0)
    if empty.size == 0:
        return centers, labels, sqdist
    centers = centers.copy()
    centers[empty] = data.take(data.farthest_rows(sqdist, empty.size))
    return (centers, *data.assign(centers))


def _group_centres(centers):
    """Order and offsets that put the centres in groups of neighbours (a short k-means
    over the centres themselves), for the per-group bounds of :func:`lloyd`."""
    k = centers.shape[0]
    n_groups = min(_config.BOUND_GROUPS, k // 8)
    if n_groups < 2:
        return np.arange(k), np.array([0, k])
    data = CPUBackend(centers)
    seeds = centers[np.linspace(0, k - 1, n_groups).astype(np.int64)].copy()
    for _ in range(5):
        groups, sqdist = data.assign(seeds)
        sums, counts = data.cluster_sums(groups, n_groups)

        def farthest(m, groups=groups, sqdist=sqdist):
            idx = np.argsort(-sqdist, kind="stable")[:m]
            return centers[idx], groups[idx]

        seeds = _update(LloydStep(sums, counts, 0.0, None), farthest, False, centers.dtype)
    groups = data.assign(seeds)[0]
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
    data = resolve(X)
    if state is None:
        # grouped centres are contiguous (in both modes, so that ties resolve alike);
        # the order is undone at the end
        order, group_offsets = _group_centres(centers)
        centers = centers[order]
        start = 0
    else:
        order, group_offsets, centers = state["order"], state["group_offsets"], state["centers"]
        start = int(state["n_iter"])
    run = data.lloyd_run(group_offsets, bounds, state)
    n_iter = start
    strict = False
    for n_iter in range(start + 1, max_iter + 1):
        step = run.step(centers)
        if step.changed == 0:
            strict = True  # centres already are these labels' means
            n_iter -= 1
            break
        new = _update(step, run.farthest, spherical, data.dtype)
        moves = np.sqrt(np.sum((new.astype(np.float64) - centers) ** 2, axis=1))
        # no centre of a group came closer than the group's largest move
        run.loosen(np.array([moves[a:e].max(initial=0.0) for a, e in zip(group_offsets[:-1], group_offsets[1:])]))
        centers = new
        if float(np.sum(moves**2)) <= tol:
            break
        if on_iter is not None:
            on_iter(dict(run.state(), order=order, group_offsets=group_offsets, centers=centers, n_iter=n_iter))
    if not strict:
        run.search(centers)
    restore = np.empty_like(order)
    restore[order] = np.arange(len(order))
    labels, sqdist, inertia = run.finish(order)
    return KMeansResult(centers[restore], labels, sqdist, inertia, max(n_iter, 1))


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
    when ``checkpoints.partial_due()`` and continue from a saved state (on a backend
    whose runs are resumable; on others a stopped run starts over). ``normalized``
    says that the rows of ``X`` already have unit norm (no copy is made).
    """
    rng = as_generator(random_state)
    data = resolve(X)
    spherical = metric == "cosine"
    if spherical and not normalized:
        data = data.normalized()
    tol_abs = data.mean_variance() * tol if tol > 0 else 0.0
    resumable = key is not None and checkpoints is not None and data.resumable_runs
    checkpoints = checkpoints if resumable else Checkpoints()
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
                centers, _ = init_centers(data, n_clusters, init, rng)
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

                res = lloyd(data, centers, max_iter=max_iter, tol=tol_abs, spherical=spherical, state=state, on_iter=on_iter)
                pbar.update(res.n_iter - pbar.n)
            state = None
            if best is None or res.inertia < best.inertia:
                best = res
    checkpoints.discard(partial)
    best = KMeansResult(best.centers, best.labels, best.sqdist, float(best.inertia), int(best.n_iter))
    n_distinct = np.count_nonzero(data.counts(best.labels, n_clusters))
    if n_distinct < n_clusters:
        warnings.warn(
            f"Number of distinct clusters ({n_distinct}) found smaller than "
            f"n_clusters ({n_clusters}). Possibly due to duplicate points in X.",
            ConvergenceWarning,
            stacklevel=3,
        )
    return best
