"""One flat k-means: the Lloyd loop, n_init, empty clusters, resume.

Host code over a backend (:mod:`hkmeans.backends`), which holds the rows and the
per-row state of a run. Inputs here are already validated: 2-D, C-contiguous, float32
or float64, finite.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, fields

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from . import _config
from ._progress import bar
from ._rng import as_generator
from ._threads import single_threaded_blas
from .backends import resolve
from .backends.cpu import CPUBackend, LloydStep
from .backends.in_memory import normalize_rows
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


def _update(step, farthest, spherical, dtype):
    """New centres as (weighted) cluster means from a pass's sums and counts (or
    weights); an empty cluster (of weight 0) takes the point farthest from its centre
    (as scikit-learn does), which leaves its old cluster; with weights, as on the rows
    repeated (one row may seed several). ``farthest(m)`` gives the ``m`` farthest
    rows, their labels and their weights. A cluster still empty (with weights, fewer
    units of weight than empty clusters) goes to the centre of the heaviest, as
    scikit-learn places it."""
    sums, counts = step.sums, step.counts
    empty = np.flatnonzero(counts == 0)
    if empty.size:
        counts = counts.astype(np.float64)
        rows, labels, weights = farthest(empty.size)
        for c, x, old, w in zip(empty, rows, labels, weights):
            if counts[old] > w:
                sums[old] -= w * x
                counts[old] -= w
            sums[c] = w * x
            counts[c] = w
    new = sums / np.where(counts > 0, counts, 1)[:, None]
    new[counts == 0] = new[np.argmax(counts)]  # not the origin, where its sums of 0 would put it
    if spherical:
        new = normalize_rows(new)
    return new.astype(dtype)


def reseed_empty(data, centers, labels, sqdist):
    """Move each empty cluster's centre (of weight 0, with weights) to one of the
    points farthest from their centres, then reassign; returns ``(centers, labels,
    sqdist)``."""
    empty = np.flatnonzero(data.cluster_weights(labels, centers.shape[0]) == 0)
    if empty.size == 0:
        return centers, labels, sqdist
    centers = centers.copy()
    centers[empty] = data.take(data.farthest_rows(sqdist, empty.size))
    return (centers, *data.assign(centers))


def bound_groups(k) -> int:
    """Groups of centres the Lloyd bounds keep (fewer than 2: no grouping)."""
    return min(_config.BOUND_GROUPS, k // 8)


def _group_centres(centers):
    """Order and offsets that put the centres in groups of neighbours (a short k-means
    over the centres themselves), for the per-group bounds of :func:`lloyd`."""
    k = centers.shape[0]
    n_groups = bound_groups(k)
    if n_groups < 2:
        return np.arange(k), np.array([0, k])
    data = CPUBackend(centers)
    seeds = centers[np.linspace(0, k - 1, n_groups).astype(np.int64)].copy()
    for _ in range(5):
        groups, sqdist = data.assign(seeds)
        sums, counts = data.cluster_sums(groups, n_groups)

        def farthest(m, groups=groups, sqdist=sqdist):
            idx = np.argsort(-sqdist, kind="stable")[:m]
            return centers[idx], groups[idx], np.ones(m)

        seeds = _update(LloydStep(sums, counts, 0.0, None), farthest, False, centers.dtype)
    groups = data.assign(seeds)[0]
    order = np.argsort(groups, kind="stable")
    return order, np.concatenate([[0], np.cumsum(np.bincount(groups, minlength=n_groups))])


def lloyd(
    X, centers, *, max_iter, tol, spherical=False, bounds=True, state=None, on_iter=None, log=None
) -> KMeansResult:
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
    ``log(line)``, if given, gets scikit-learn's verbose lines (inertia per iteration,
    how the run converged).
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
        if log is not None:
            log(f"Iteration {n_iter - 1}, inertia {step.inertia}.")
        if step.changed == 0:
            strict = True  # centres already are these labels' means (the pass counts, as in scikit-learn)
            if log is not None:
                log(f"Converged at iteration {n_iter - 1}: strict convergence.")
            break
        new = _update(step, run.farthest, spherical, data.dtype)
        moves = np.sqrt(np.sum((new.astype(np.float64) - centers) ** 2, axis=1))
        # no centre of a group came closer than the group's largest move
        run.loosen(np.array([moves[a:e].max(initial=0.0) for a, e in zip(group_offsets[:-1], group_offsets[1:])]))
        centers = new
        shift = float(np.sum(moves**2))
        if shift <= tol:
            if log is not None:
                log(f"Converged at iteration {n_iter - 1}: center shift {shift} within tolerance {tol}.")
            break
        if on_iter is not None:
            on_iter(dict(run.state(), order=order, group_offsets=group_offsets, centers=centers, n_iter=n_iter))
    if not strict:
        run.search(centers)
    restore = np.empty_like(order)
    restore[order] = np.arange(len(order))
    labels, sqdist, inertia = run.finish(order)
    return KMeansResult(centers[restore], labels, sqdist, inertia, max(n_iter, 1))


def training_sample(data, m, rng, device="cpu"):
    """``m`` distinct random rows of backend ``data`` (in row order, with their
    weights; rows of weight 0 left out, as absent rows), as an in-memory backend on
    ``device`` (on the CPU for Dask's rows: the client, where the sample lands, need
    not have the workers' GPUs); ``data`` itself when it has no more than ``m``
    such rows."""
    present = None if data.weights is None else np.flatnonzero(data.weights > 0)
    n = data.shape[0] if present is None else present.size
    if n <= m:
        return data
    rows = np.sort(rng.choice(n, m, replace=False))
    if present is not None:
        rows = present[rows]
    weights = None if data.weights is None else data.weights[rows]
    where = "cpu" if data.name == "dask" else device
    return resolve(np.ascontiguousarray(data.take(rows)), where).weighted(weights)


def seeding_rows(data, n_clusters, init, points_per_centroid, rng, device="cpu"):
    """The rows a seeding ``init`` draws from: ``data``, or for k-means++ and
    k-means|| a random sample of ``n_clusters * points_per_centroid`` of them (see
    :func:`training_sample`)."""
    if points_per_centroid is None or not (isinstance(init, str) and init in ("k-means++", "k-means||")):
        return data
    return training_sample(data, n_clusters * points_per_centroid, rng, device)


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
    sample_weight=None,
    log=None,
    device="cpu",
    max_points_per_centroid=None,
    init_points_per_centroid=None,
    centers_only=False,
) -> KMeansResult:
    """Best of ``n_init`` k-means runs (lowest inertia) on validated data.

    With ``metric="cosine"`` rows and centres are kept on the unit sphere (spherical
    k-means); ``sqdist`` is then ``2 - 2 cos``. ``tol`` is relative to the mean
    feature variance, as in scikit-learn. ``verbose`` shows a bar of Lloyd iterations.
    With ``checkpoints`` and a ``key``, the runs save their state under ``key/partial``
    when ``checkpoints.partial_due()`` and continue from a saved state (on a backend
    whose runs are resumable; on others a stopped run starts over). ``normalized``
    says that the rows of ``X`` already have unit norm (no copy is made).
    ``sample_weight`` (validated, see :func:`check_sample_weight`) weights the seeding,
    the means, the inertia and the variance ``tol`` is relative to (scikit-learn's is
    unweighted; weighted, it is as for the rows repeated). ``log`` gets scikit-learn's
    verbose lines. ``device`` says where an array ``X`` is searched ("cpu" or "cuda";
    a backend stays where it is). With ``max_points_per_centroid`` and more rows (of
    positive weight) than ``n_clusters`` times it, the runs fit a random sample of that many rows (drawn
    from ``random_state``, in memory), and one search of every row against the best
    run's centres gives the labels, distances and inertia (faiss's training sample).
    With ``init_points_per_centroid``, each run seeds (k-means++ or k-means||) from
    its own random sample of ``n_clusters`` times that many rows, when there are more.
    ``centers_only`` skips that search for a caller that keeps only the centres (the
    labels, distances and inertia are then the sample's).
    """
    rng = as_generator(random_state)
    data = resolve(X, device)
    if sample_weight is not None:
        data = data.weighted(sample_weight)
    spherical = metric == "cosine"
    if spherical and not normalized:
        data = data.normalized()
    tol_abs = data.mean_variance() * tol if tol > 0 else 0.0
    full = data
    if max_points_per_centroid is not None:
        data = training_sample(data, n_clusters * max_points_per_centroid, rng, device)
    resumable = key is not None and checkpoints is not None and data.resumable_runs
    checkpoints = checkpoints if resumable and checkpoints is not None else Checkpoints()
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
                centers, _ = init_centers(
                    seeding_rows(data, n_clusters, init, init_points_per_centroid, rng, device), n_clusters, init, rng
                )
                if spherical:
                    centers = normalize_rows(centers)
                if log is not None:
                    log("Initialization complete")
            after_init = rng_state(rng)
            with bar(
                verbose, max_iter, f"k-means {n_clusters}" + (f" run {run + 1}/{n_init}" if n_init > 1 else "")
            ) as pbar:

                def on_iter(st):
                    pbar.update(int(st["n_iter"]) - pbar.n)
                    if checkpoints.partial_due():
                        arrays = dict(st, run=run, rng_state=after_init)
                        if best is not None:
                            arrays.update({"best_" + f: getattr(best, f) for f in _RESULT_FIELDS})
                        checkpoints.save(partial, arrays)

                res = lloyd(
                    data,
                    centers,
                    max_iter=max_iter,
                    tol=tol_abs,
                    spherical=spherical,
                    state=state,
                    on_iter=on_iter,
                    log=log,
                )
                pbar.update(res.n_iter - pbar.n)
            state = None
            # lower by more than rounding: the same runs on the same rows in another order
            # (or weighted in place of repeated) keep the same best run
            if best is None or res.inertia < best.inertia * (1 - _config.N_INIT_RTOL):
                best = res
    checkpoints.discard(partial)
    assert best is not None  # n_init >= 1 runs
    if centers_only:
        full = data
    if full is not data:  # fitted on a sample: every row to its nearest centre
        labels, sqdist = full.assign(best.centers)
        inertia = full.total(sqdist if full.weights is None else full.weights * sqdist)
        best = KMeansResult(best.centers, labels, sqdist, inertia, best.n_iter)
    best = KMeansResult(best.centers, best.labels, best.sqdist, float(best.inertia), int(best.n_iter))
    n_distinct = np.count_nonzero(full.cluster_weights(best.labels, n_clusters))
    if n_distinct < n_clusters:
        positive = None if full.weights is None else int(np.count_nonzero(full.weights))
        why = (
            f"X has {positive} rows of positive weight."
            if positive is not None and positive < n_clusters
            else "Possibly due to duplicate points in X."
        )
        warnings.warn(
            f"Number of distinct clusters ({n_distinct}) found smaller than n_clusters ({n_clusters}). {why}",
            ConvergenceWarning,
            stacklevel=3,
        )
    return best
