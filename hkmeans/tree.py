"""ClusterTree: the levels of a hierarchical clustering as arrays.

Level 0 groups the data points; level ``t`` groups the clusters of level ``t - 1``.
Sizes are counted in data points. Knows nothing of how the clustering was made.
"""

from __future__ import annotations

import os
import zipfile
from functools import cached_property

import numpy as np

from ._validation import check_sample_weight, shown
from .backends import DetachedWhenPickled, PerRowArrays, arrays_of
from .backends.in_memory import IN_MEMORY
from .io import save_npz

_FORMAT = 1


class ClusterTree(DetachedWhenPickled):
    """A hierarchy of clusters over ``n_samples`` data points.

    ``labels[0]`` and ``distances`` may be dask arrays (a fit on the dask backend):
    they then stay where they are, unchecked beyond shape and dtype, and the tree's
    per-point operations run chunk by chunk (:meth:`members` of level 0 is not
    available; :meth:`save` gathers them).

    Parameters
    ----------
    labels : sequence of 1-D integer arrays, finest level first
        ``labels[0][i]`` is the level-0 cluster of data point ``i``; for ``t >= 1``,
        ``labels[t][c]`` is the level-``t`` cluster (the parent) of level-``t - 1``
        cluster ``c``, so ``len(labels[t])`` is the number of clusters of level ``t - 1``.
    centroids : sequence of 2-D arrays or None
        Per level, one row per cluster.
    distances : 1-D array or None
        Each data point's distance to its level-0 centroid; needed by the
        ``closest`` and ``furthest`` sampling strategies.
    sample_weight : 1-D array or None
        Each data point's weight in the fit, for :meth:`weights`; sizes and sampling
        count points whatever the weights.
    n_clusters : sequence of int or None
        Clusters per level, checked against the labels and centroids. Needed only for
        empty clusters after the last label of the last level when there are no
        centroids (by default that level has ``max(labels[-1]) + 1`` clusters).

    Attributes
    ----------
    n_levels, n_samples : int
    n_clusters : tuple of int
        Clusters per level (some may be empty).
    """

    def __init__(self, labels, centroids=None, distances=None, sample_weight=None, n_clusters=None):
        if isinstance(labels, np.ndarray) and labels.ndim == 1:
            labels = [labels]
        labels = list(labels)
        if not labels:
            raise ValueError("labels must hold at least one level.")
        #: the per-row operations on the level-0 labels: in memory, or lazy on a cluster
        self.arrays: PerRowArrays = arrays_of(labels[0])
        labels = [(self.arrays if t == 0 else IN_MEMORY).as_labels(a, f"labels[{t}]") for t, a in enumerate(labels)]
        if labels[0].size == 0:
            raise ValueError("labels[0] is empty: a tree needs at least one data point.")
        n_levels = len(labels)
        if centroids is not None:
            centroids = [np.asarray(c) for c in centroids]
            if len(centroids) != n_levels:
                raise ValueError(f"centroids has {len(centroids)} levels but labels has {n_levels}.")
            width = centroids[0].shape[1] if centroids[0].ndim == 2 else None
            for t, c in enumerate(centroids):
                if c.ndim != 2 or c.shape[1] != width:
                    columns = "" if width is None else f" with {width} columns"
                    raise ValueError(f"centroids[{t}] must be 2-D{columns}, got shape {c.shape}.")
        given = _given_counts(n_clusters, n_levels)
        n_clusters = []
        for t in range(n_levels):
            if t + 1 < n_levels:
                k = labels[t + 1].size
            elif centroids is not None:
                k = centroids[t].shape[0]
            else:
                k = int(labels[t].max()) + 1 if given is None else given[t]
            if given is not None and given[t] != k:
                raise ValueError(f"n_clusters[{t}] is {given[t]} but level {t} has {k} clusters.")
            top = self.arrays.max_label(labels[t]) if t == 0 else int(labels[t].max())
            if top is not None and top >= k:
                source = (
                    f"n_clusters[{t}]"
                    if t + 1 == n_levels and centroids is None
                    else f"the length of labels[{t + 1}] or of centroids[{t}]"
                )
                raise ValueError(f"labels[{t}] refers to cluster {top} but level {t} has {k} clusters ({source}).")
            if centroids is not None and centroids[t].shape[0] != k:
                raise ValueError(f"centroids[{t}] has {centroids[t].shape[0]} rows; level {t} has {k} clusters.")
            n_clusters.append(k)
        if distances is not None:
            distances = self.arrays.as_distances(distances, labels[0].shape)
        if sample_weight is not None:
            if np.shape(sample_weight) != labels[0].shape:  # no scalar: a tree keeps one weight per point
                raise ValueError(
                    f"sample_weight must have one entry per data point ({labels[0].size}), "
                    f"got shape {np.shape(sample_weight)}."
                )
            sample_weight = check_sample_weight(sample_weight, labels[0].size)
        self.sample_weight = sample_weight
        self.labels = tuple(labels)
        self.centroids = None if centroids is None else tuple(centroids)
        self.distances = distances
        self.n_clusters = tuple(n_clusters)
        self.n_levels = n_levels
        self.n_samples = labels[0].size

    @classmethod
    def from_labels(cls, level_labels, centroids=None, distances=None, n_clusters=None) -> ClusterTree:
        """Build a tree from per-level labels, as the constructor does.

        Parameters
        ----------
        level_labels, centroids, distances, n_clusters
            As in :class:`ClusterTree`.

        Returns
        -------
        ClusterTree
        """
        return cls(level_labels, centroids=centroids, distances=distances, n_clusters=n_clusters)

    def members(self, level: int):
        """The members of each cluster of ``level``, in CSR form.

        Parameters
        ----------
        level : int

        Returns
        -------
        offsets : ndarray of shape (n_clusters[level] + 1,)
        order : ndarray
            The members of cluster ``c`` are ``order[offsets[c]:offsets[c + 1]]``:
            data points at level 0, clusters of the level below otherwise.

        Both are read-only views of what the tree keeps for its samples.
        """
        return tuple(_read_only(a) for a in self._kept_members(level))

    def _kept_members(self, level: int):
        """:meth:`members` as the tree keeps them, writable: for the sampling's
        kernels, which Numba would compile a second time for read-only arrays."""
        level = self._check_level(level)
        if level not in self._members:
            arrays = self.arrays if level == 0 else IN_MEMORY
            self._members[level] = arrays.members(self.labels[level], self.n_clusters[level])
        return self._members[level]

    def sizes(self, level: int) -> np.ndarray:
        """Number of data points in each cluster of ``level``.

        Parameters
        ----------
        level : int

        Returns
        -------
        ndarray of shape (n_clusters[level],)
            A read-only view of what the tree keeps for its samples.
        """
        return _read_only(self._kept_sizes(level))

    def _kept_sizes(self, level: int) -> np.ndarray:
        """:meth:`sizes` as the tree keeps them, writable (see :meth:`_kept_members`)."""
        return self._sizes[self._check_level(level)]

    def weights(self, level: int) -> np.ndarray:
        """Total sample weight of each cluster of ``level`` (float64; without weights,
        its number of data points)."""
        level = self._check_level(level)
        if self.sample_weight is None:
            return self.sizes(level).astype(np.float64)
        w = np.bincount(self.labels[0], weights=self.sample_weight, minlength=self.n_clusters[0])
        for t in range(1, level + 1):
            w = np.bincount(self.labels[t], weights=w, minlength=self.n_clusters[t])
        return w

    def point_labels(self, level: int) -> np.ndarray:
        """The cluster of ``level`` that each data point belongs to.

        Parameters
        ----------
        level : int

        Returns
        -------
        ndarray of shape (n_samples,)
        """
        lab = self.labels[0]
        for t in range(1, self._check_level(level) + 1):
            lab = self.arrays.lookup(self.labels[t], lab)
        return lab

    def flatten(self, level: int) -> ClusterTree:
        """A one-level tree whose clusters are those of ``level``, holding data points.

        Parameters
        ----------
        level : int

        Returns
        -------
        ClusterTree
        """
        level = self._check_level(level)
        return ClusterTree(
            [self.point_labels(level)],
            centroids=None if self.centroids is None else [self.centroids[level]],
            distances=self.distances if level == 0 else None,
            sample_weight=self.sample_weight,
            n_clusters=self.n_clusters[level : level + 1],
        )

    def save(self, path) -> None:
        """Write the tree to ``path`` as one ``.npz`` file, atomically (no partial file
        is ever left at ``path``).

        Parameters
        ----------
        path : str or os.PathLike
            Used exactly as given (no ``.npz`` is appended).
        """
        arrays = {
            "format": np.array(_FORMAT),
            "n_levels": np.array(self.n_levels),
            "n_clusters": np.array(self.n_clusters, dtype=np.int64),
        }
        for t in range(self.n_levels):
            arrays[f"labels_{t}"] = self.arrays.gathered(self.labels[t]) if t == 0 else self.labels[t]
            if self.centroids is not None:
                arrays[f"centroids_{t}"] = self.centroids[t]
        if self.distances is not None:
            arrays["distances"] = self.arrays.gathered(self.distances)
        if self.sample_weight is not None:
            arrays["sample_weight"] = self.sample_weight
        save_npz(path, **arrays)

    @classmethod
    def load(cls, path) -> ClusterTree:
        """Read a tree written by :meth:`save`.

        Parameters
        ----------
        path : str or os.PathLike

        Returns
        -------
        ClusterTree

        Raises
        ------
        ValueError
            One line, if ``path`` is missing, not such a file, or damaged.
        """
        name = os.fspath(path)
        try:
            with np.load(path, allow_pickle=False) as f:
                if not hasattr(f, "files") or "n_levels" not in f or int(f.get("format", -1)) != _FORMAT:
                    raise ValueError("not a ClusterTree file")
                n_levels = int(f["n_levels"])
                labels = [f[f"labels_{t}"] for t in range(n_levels)]
                centroids = [f[f"centroids_{t}"] for t in range(n_levels)] if "centroids_0" in f else None
                distances = f["distances"] if "distances" in f else None
                sample_weight = f["sample_weight"] if "sample_weight" in f else None
                n_clusters = f["n_clusters"].tolist() if "n_clusters" in f else None  # files before it: None
                if any(key.startswith("labels_") and int(key[7:]) >= n_levels for key in f.files):
                    raise ValueError(f"holds more levels than its n_levels ({n_levels})")
            return cls(labels, centroids, distances, sample_weight, n_clusters)
        except FileNotFoundError:
            raise ValueError(f"{name}: no such file.") from None
        except (OSError, ValueError, KeyError, EOFError, TypeError, IndexError, zipfile.BadZipFile) as e:
            reason = f"missing {e}" if isinstance(e, KeyError) else str(e).rstrip(".")
            raise ValueError(f"{name}: not a readable ClusterTree file ({reason}).") from None

    def __repr__(self) -> str:
        return f"ClusterTree(n_samples={self.n_samples}, n_clusters={self.n_clusters})"

    def _check_level(self, level) -> int:
        if isinstance(level, bool) or not isinstance(level, (int, np.integer)) or not 0 <= level < self.n_levels:
            raise ValueError(f"level must be an integer in [0, {self.n_levels - 1}], got {shown(level)}.")
        return int(level)

    @cached_property
    def _members(self):
        return {}

    @cached_property
    def _sizes(self):
        sizes = [self.arrays.counts(self.labels[0], self.n_clusters[0])]
        for t in range(1, self.n_levels):
            sizes.append(np.bincount(self.labels[t], weights=sizes[-1], minlength=self.n_clusters[t]).astype(np.int64))
        return sizes


def _given_counts(n_clusters, n_levels):
    """``n_clusters`` as a list of ints, one per level, or None."""
    if n_clusters is None:
        return None
    counts = list(n_clusters) if isinstance(n_clusters, (list, tuple, np.ndarray)) else None
    if (
        counts is None
        or len(counts) != n_levels
        or not all(isinstance(c, (int, np.integer)) and not isinstance(c, bool) and c >= 1 for c in counts)
    ):
        raise ValueError(f"n_clusters must hold one positive integer per level ({n_levels}), got {shown(n_clusters)}.")
    return [int(c) for c in counts]


def _read_only(a):
    """A read-only view of the NumPy array ``a`` (other arrays as they are)."""
    if not isinstance(a, np.ndarray):
        return a
    view = a.view()
    view.flags.writeable = False
    return view
