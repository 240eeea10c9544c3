"""Hierarchical k-means with resampling-clustering (Vo et al., 2024).

Level 0 clusters the data; level ``t`` clusters the centroids of level ``t - 1``. Inside
each level, after a first k-means, ``n_resamples`` times: take ``sample_size`` points
from each cluster (those closest to its centroid, or at random), run a fresh k-means
with the same number of clusters on their union, and reassign the whole level input to
the new centroids.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass

import numba
import numpy as np

from . import _config
from ._progress import bar, report
from ._rng import as_generator
from ._threads import available_threads, map_side_by_side
from ._validation import HierarchyParams, check_hierarchy, check_sample_weight
from .advise import ParameterWarning, far_off
from .backends import Backend, DetachedWhenPickled, arrays_of, check_backend, resolve
from .backends.in_memory import group_by_label
from .checkpoint import Checkpoints, run_step
from .kmeans import kmeans, reseed_empty
from .tree import ClusterTree


@dataclass(frozen=True)
class Level(DetachedWhenPickled):
    """One fitted level: its centroids; for each row of its input (the data at level 0,
    the previous level's centroids above), the cluster and squared distance; and the
    Lloyd iterations its k-means runs took in all. A split level also keeps the
    centroids it split (``parents``) and where each one's share of ``centroids``
    starts and ends (``child_offsets``): its rows belong to the nearest of their
    nearest parent's centroids.

    Attributes
    ----------
    centroids : ndarray of shape (n_clusters, n_features)
    labels : ndarray or dask array of shape (n_rows,)
        Cluster of each row of the level's input.
    sqdist : ndarray or dask array of shape (n_rows,)
        Squared distance of each row to its centroid.
    n_iter : int
        Lloyd iterations of the level's k-means runs, all together.
    parents : ndarray of shape (n_parents, n_features) or None
        For a split level, the centroids it split.
    child_offsets : ndarray of shape (n_parents + 1,) or None
        For a split level, parent ``p``'s centroids are
        ``centroids[child_offsets[p]:child_offsets[p + 1]]``.
    """

    centroids: np.ndarray
    labels: np.ndarray
    sqdist: np.ndarray
    n_iter: int
    parents: np.ndarray | None = None
    child_offsets: np.ndarray | None = None

    def assign(self, X):
        """Cluster and squared distance of each row of ``X`` as the level assigns its
        own input: the nearest centroid, through the parents for a split level.

        Parameters
        ----------
        X : ndarray of shape (n_rows, n_features), or a backend over such rows

        Returns
        -------
        labels : ndarray of shape (n_rows,)
        sqdist : ndarray of shape (n_rows,)
        """
        data = resolve(X)
        if self.parents is None:
            return data.assign(self.centroids)
        return data.routed_assign(self.parents, self.child_offsets, self.centroids)


def hierarchical_kmeans(
    X,
    n_clusters,
    *,
    n_resamples=10,
    sample_size=None,
    resample_strategy="closest",
    n_splits=1,
    init="k-means++",
    n_init=1,
    max_iter=50,
    tol=0.0,
    metric="euclidean",
    max_points_per_centroid=None,
    init_points_per_centroid=None,
    random_state=None,
    verbose=False,
    device="cpu",
    backend="auto",
    client=None,
    checkpoints: Checkpoints | None = None,
    sample_weight=None,
) -> list[Level]:
    """Fit the levels of a hierarchical k-means on data ``X``.

    The engine behind :class:`~hkmeans.HierarchicalKMeans`, whose parameters these
    are, one to one, with the same defaults and constraints.

    Parameters
    ----------
    X : array-like, sparse CSR matrix, memory map, dask array or backend of shape (n_samples, n_features)
        Checked as :meth:`~hkmeans.HierarchicalKMeans.fit` checks it (2-D, numeric
        and finite; a dask array's rows as the first pass reads them) and cast as it
        is cast (see the scaling page for dask arrays); a
        :class:`~hkmeans.backends.Backend` made by the caller (a ``CUDABackend``
        streaming its rows, say) as it is.
    n_clusters : int or sequence of int
        Clusters per level, finest first.
    n_resamples, sample_size : int, sequence of int (or None for sample_size)
        Per level; ``sample_size=None`` takes about half the level's average cluster
        size; ``sample_size <= 1`` or ``n_resamples == 0`` skips resampling there.
    resample_strategy : {"closest", "random"}, default="closest"
    n_splits : int or sequence of int, default=1
        Reaches large ``n_clusters`` by a k-means with ``n_clusters / n_splits``
        clusters, each then split by its own k-means into ``n_splits`` (side by side
        on the threads when they are large enough; each with a random stream of its
        own, so the result does not depend on the thread count); each row goes to the
        nearest sub-centroid of its nearest top centroid, and sub-clusters left empty
        are dropped, so such a level may end with fewer clusters.
    init, n_init, max_iter, tol, metric, max_points_per_centroid, init_points_per_centroid, random_state
        As in :class:`~hkmeans.HierarchicalKMeans`.
    verbose : bool, default=False
        Progress bars (levels, resampling steps, Lloyd iterations) and a line per
        level on stderr.
    device : {"cpu", "cuda"}, default="cpu"
        Where the k-means runs and reassignments run (the many small k-means of a
        split level run on the CPU, side by side).
    backend : {"auto", "cpu", "dask"}, default="auto"
        In this process, or over the chunks of a dask array on ``client``; the
        level-0 labels and distances are then persisted dask arrays.
    client : distributed.Client or None, default=None
        See ``hkmeans.backends.dask.pick_client``.
    checkpoints : Checkpoints or None, default=None
        Each k-means run and the reassignment after it is a step kept there; a rerun
        with the same arguments continues after the last kept step, with the same
        result.
    sample_weight : ndarray of shape (n_samples,) or None, default=None
        One non-negative weight per row (not on the dask backend), for level 0: its
        seeding, Lloyd means and inertia, and each resampling step: ``sample_size`` is
        an amount of weight per cluster (its default, half a cluster's average weight),
        taken from the rows of smallest score, the last one with only the weight still
        missing, and the resampling k-means weights its rows by what was taken. With the
        default draws, integer weights give the fit of the rows repeated that many
        times. The levels above
        cluster centroids unweighted.

    Returns
    -------
    list of Level
        One per level, finest first.
    """
    if not hasattr(X, "lloyd_run"):  # a backend made by the caller (see resolve) holds checked rows
        check_backend(X, backend)
        arrays = arrays_of(X)
        X = arrays.validated(None, X, reset=True, accept_sparse="csr")
        arrays.check_range(X, X.dtype, metric)
    params = check_hierarchy(
        X,
        n_clusters=n_clusters,
        n_resamples=n_resamples,
        sample_size=sample_size,
        resample_strategy=resample_strategy,
        n_splits=n_splits,
        init=init,
        n_init=n_init,
        max_iter=max_iter,
        tol=tol,
        metric=metric,
        max_points_per_centroid=max_points_per_centroid,
        init_points_per_centroid=init_points_per_centroid,
        device=device,
        backend=backend,
    )
    sample_weight = check_sample_weight(sample_weight, X.shape[0])
    return fit_levels(resolve(X, device, client, backend), params, random_state, verbose, checkpoints, sample_weight)


#: Why a fit on the dask backend refuses ``n_splits > 1`` at level 0.
DASK_SPLIT_REFUSED = "n_splits > 1 at level 0 is not supported on the dask backend; split a level above."


def fit_levels(
    data: Backend,
    params: HierarchyParams,
    random_state=None,
    verbose=False,
    checkpoints: Checkpoints | None = None,
    sample_weight=None,
) -> list[Level]:
    """The engine of :func:`hierarchical_kmeans`: the levels over the rows of the
    backend ``data``, with parameters checked by
    :func:`~hkmeans._validation.check_hierarchy` and ``sample_weight`` by
    :func:`~hkmeans._validation.check_sample_weight` (neither is checked again)."""
    ks, resamples, sizes, splits = params.n_clusters, params.n_resamples, params.sample_size, params.n_splits
    resample_strategy, device, metric = params.resample_strategy, params.device, params.metric
    for line in far_off(data.shape[0], ks, resamples, sizes):
        warnings.warn(line + "; hkmeans.advise() proposes parameters.", ParameterWarning, stacklevel=3)
    rng = as_generator(random_state)
    checkpoints = checkpoints if checkpoints is not None else Checkpoints()
    kmeans_params = dict(
        init=params.init,
        n_init=params.n_init,
        max_iter=params.max_iter,
        tol=params.tol,
        metric=metric,
        verbose=verbose,
        device=device,
        max_points_per_centroid=params.max_points_per_centroid,
        init_points_per_centroid=params.init_points_per_centroid,
    )
    if data.name == "dask" and splits[0] > 1:
        raise ValueError(DASK_SPLIT_REFUSED)
    data = data.weighted(sample_weight)
    if metric == "cosine":  # once, for every level and step
        data = data.normalized(lambda shape, dtype: checkpoints.empty("normalized", shape, dtype))
        kmeans_params["normalized"] = True
    levels: list[Level] = []
    rows = data  # level 0 on the data's backend; the levels above on their input's centroids, on the same device
    above = "cpu" if data.name == "dask" else device  # (on a cluster, the client's: its cores; they are small)
    with bar(verbose, len(ks), "levels", leave=True, unit="level") as levels_bar:
        for t, k in enumerate(ks):
            start = time.perf_counter()
            if rows.shape[0] < k:  # only after a split level that dropped empty sub-clusters
                raise ValueError(
                    f"level {t} asks for n_clusters={k} but level {t - 1} kept only {rows.shape[0]} "
                    f"clusters after dropping empty sub-clusters; lower n_clusters[{t}]."
                )
            step = _Steps(checkpoints, f"level{t}", rng)
            if splits[t] > 1:
                level = _split_level(rows, k // splits[t], splits[t], step, kmeans_params)
                how = f"split in {splits[t]}"
            else:
                s = sizes[t] if sizes[t] is not None else default_sample_size(_total_weight(rows), k)
                if sizes[t] is None and resamples[t] > 0 and s <= 1 < round(rows.shape[0] / k / 2):
                    warnings.warn(
                        f"level {t}: the sample weights sum to {_total_weight(rows):.6g}, so the default sample_size "
                        f"(half a cluster's weight, as for repeated rows) is {s} and resampling is skipped; "
                        "scale the weights as counts of points (sample_size counts weight too).",
                        ParameterWarning,
                        stacklevel=3,
                    )
                n_res = resamples[t] if s > 1 else 0
                level = _resampled_level(rows, k, n_res, s, resample_strategy, step, kmeans_params)
                how = f"{n_res} resamples of {s} per cluster"
            levels.append(level)
            levels_bar.update()
            report(
                verbose,
                f"level {t}: {rows.shape[0]} -> {len(level.centroids)} clusters, {how}, "
                f"{time.perf_counter() - start:.2f} s",
            )
            rows = resolve(level.centroids, above)
    return levels


class _Steps:
    """The numbered steps of one level, each run or read back by :func:`run_step`."""

    def __init__(self, checkpoints, prefix, rng):
        self.checkpoints, self.prefix, self.rng, self.count = checkpoints, prefix, rng, 0

    def __call__(self, compute) -> dict | None:
        """Run the next step: ``compute(key)`` returns a dict of arrays, or None when
        there is nothing to do (then nothing is kept). A step read back may lack what
        only the step after it needed (its labels, once that step is kept)."""
        key = f"{self.prefix}/step{self.count:04d}"
        self.count += 1
        return run_step(self.checkpoints, key, self.rng, lambda: compute(key))

    def kmeans(self, rows, k, params, key=None, sample_weight=None, centers_only=False):
        """A k-means of ``rows`` whose runs may save partial states under ``key``."""
        return kmeans(
            rows,
            k,
            random_state=self.rng,
            checkpoints=self.checkpoints,
            key=key,
            sample_weight=sample_weight,
            centers_only=centers_only,
            **params,
        )


def _resampled_level(rows, k, n_resamples, sample_size, strategy, step, params) -> Level:
    """A k-means of ``rows``, then ``n_resamples`` times: ``sample_size`` rows per cluster
    (closest to the centroid or random), a fresh k-means on them, and ``rows`` reassigned."""

    def first(key):
        res = step.kmeans(rows, k, params, key)
        return dict(centers=res.centers, labels=res.labels, sqdist=res.sqdist, n_iter=res.n_iter)

    out = step(first)
    n_iter = int(out["n_iter"])
    verbose = params["verbose"]
    with bar(verbose and n_resamples > 0, n_resamples, f"resampling {k}", unit="step") as steps_bar:
        for _ in range(n_resamples):
            prev = out

            def resample(key):
                # with weights, an amount of weight per cluster (as its rows' repeated copies would be)
                sizes = (
                    rows.counts(prev["labels"], k) if rows.weights is None else rows.cluster_weights(prev["labels"], k)
                )
                take = np.minimum(sizes, sample_size)
                if take.sum() < k:  # only with duplicate points: nothing left to resample
                    return None
                scores = rows.closeness(prev["sqdist"]) if strategy == "closest" else rows.random_scores(step.rng)
                subset, weights = rows.resampling_subset(
                    prev["labels"], k, take, scores, lambda shape, dtype: step.checkpoints.empty("subset", shape, dtype)
                )
                if subset.shape[0] < k:  # weighted: fewer rows than clusters
                    return None
                res = step.kmeans(subset, k, params, key, weights, centers_only=True)
                labels, sqdist = rows.assign(res.centers)
                centers, labels, sqdist = reseed_empty(rows, res.centers, labels, sqdist)
                return dict(centers=centers, labels=labels, sqdist=sqdist, n_iter=res.n_iter)

            out = step(resample)
            if out is None:
                out = prev
                break
            n_iter += int(out["n_iter"])
            steps_bar.update()
    return Level(out["centers"], out["labels"], out["sqdist"], n_iter)


def _split_level(rows, k, n_splits, step, params) -> Level:
    """A k-means with ``k`` clusters, each split by its own k-means into ``n_splits``
    (fewer if it has fewer points). Each row then goes to the nearest sub-centroid of
    its nearest top centroid (as :meth:`Level.assign` does, so labels agree with
    prediction); sub-centroids left empty are dropped, and top centroids left without
    any."""

    def top(key):
        res = step.kmeans(rows, k, params, key)
        return dict(centers=res.centers, labels=res.labels, n_iter=res.n_iter)

    out = step(top)
    sub_params = dict(params, verbose=False, device="cpu")

    def split(key):
        if "centers" not in out:
            raise ValueError(
                f"{step.prefix}: the kept top k-means of this split level was written by an "
                "earlier version of hkmeans, without its centroids; start the fit afresh."
            )
        offsets, order = group_by_label(out["labels"], k)
        # one seed per cluster, drawn up front: each sub-k-means has its own stream,
        # so the result does not depend on which thread runs which cluster when
        seeds = step.rng.integers(np.iinfo(np.int64).max, size=k)
        sizes = np.diff(offsets)
        clusters = np.flatnonzero(sizes)

        def split_one(c):
            members = order[offsets[c] : offsets[c + 1]]
            sub_k = min(n_splits, members.size)
            w = None if rows.weights is None else rows.weights[members]
            return kmeans(
                np.ascontiguousarray(rows.take(members)),
                sub_k,
                random_state=int(seeds[c]),
                sample_weight=w,
                **sub_params,
            )

        workers = split_workers(rows.shape, len(clusters), n_splits)
        with bar(params["verbose"], len(clusters), f"splitting {k}") as split_bar:
            subs = map_side_by_side(split_one, clusters, workers, costs=sizes[clusters], done=split_bar.update)
        parents = out["centers"][clusters]
        children = np.concatenate([sub.centers for sub in subs])
        child_offsets = np.concatenate([[0], np.cumsum([len(sub.centers) for sub in subs])])
        # the top k-means' labels are not reused for the routing: its last search ran
        # over its centres in another order, which may round a near tie the other way
        # than predict's search does
        labels, sqdist = rows.routed_assign(parents, child_offsets, children)
        used = np.bincount(labels, minlength=len(children)) > 0
        if not used.all():
            per_parent = np.add.reduceat(used.astype(np.int64), child_offsets[:-1])
            children, labels = children[used], (np.cumsum(used) - 1)[labels]
            parents = parents[per_parent > 0]
            child_offsets = np.concatenate([[0], np.cumsum(per_parent[per_parent > 0])])
        n_iter = sum(sub.n_iter for sub in subs)
        return dict(
            centers=children, labels=labels, sqdist=sqdist, n_iter=n_iter, parents=parents, child_offsets=child_offsets
        )

    split_result = step(split)
    n_iter = int(out["n_iter"]) + int(split_result["n_iter"])
    # a kept split step without parents (written before they were kept): its labels
    # are the nearest of all centroids, which Level.assign then gives too
    parents, child_offsets = split_result.get("parents"), split_result.get("child_offsets")
    return Level(
        split_result["centers"], split_result["labels"], split_result["sqdist"], n_iter, parents, child_offsets
    )


def default_sample_size(total_weight, n_clusters) -> int:
    """The ``sample_size`` of a level whose input weighs ``total_weight`` (its rows,
    unweighted) when none is given: about half its average cluster's weight."""
    return int(round(total_weight / n_clusters / 2))


def _total_weight(rows) -> float:
    """The rows of ``rows``, or their total weight."""
    return rows.shape[0] if rows.weights is None else float(np.sum(rows.weights))


def split_workers(shape, n_clusters, n_splits) -> int:
    """Threads on which a split level of data of ``shape`` runs its ``n_clusters``
    clusters' k-means side by side: one per thread when a run's kernels outweigh its
    Python (which holds the GIL), else 1 (one run after another, each on all threads)."""
    work = shape[0] / max(1, n_clusters) * n_splits * shape[1]
    threads = min(numba.get_num_threads(), available_threads())
    return min(threads, n_clusters) if work >= _config.SPLIT_SIDE_BY_SIDE_WORK else 1


def tree_from_levels(levels: list[Level], sample_weight=None) -> ClusterTree:
    """The :class:`ClusterTree` of fitted levels, with level-0 distances and the data
    points' ``sample_weight`` (if any)."""
    return ClusterTree(
        [lv.labels for lv in levels],
        centroids=[lv.centroids for lv in levels],
        distances=np.sqrt(levels[0].sqdist),
        sample_weight=sample_weight,
    )
