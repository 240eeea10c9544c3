"""A fitted :class:`~hkmeans.tree.ClusterTree` as tables: one row per data point, per
selected point, or per cluster.

The tables are NumPy structured arrays. They need nothing beyond NumPy, hold each
column as one typed array (string ids as one ``str`` object each, so that a table's
memory grows with the ids' total length, not with the longest), and both ``pandas.DataFrame(table)`` and
``pyarrow.Table.from_pandas`` take them as they are; the command line writes them to
Parquet block by block (:func:`hkmeans.io.save_parquet`).
"""

from __future__ import annotations

import weakref

import numpy as np

from .ids import check_ids
from .tree import ClusterTree


def level_field(t: int) -> str:
    """The name of the column of level ``t``'s cluster: ``cluster_level{t}``."""
    return f"cluster_level{t}"


def _point_columns(tree, points, ids, rows):
    """Columns of the data points ``points`` (positions in the tree): their id (when
    ``ids``, one per row of the input, are given), their row of the input (``rows``
    maps tree positions to input rows; None: the same), their cluster at every level
    and their distance to their level-0 centroid (NaN if the tree has none)."""
    row = points if rows is None else np.asarray(rows)[points]
    columns = {} if ids is None else {"id": np.asarray(ids)[row]}
    columns["row"] = row.astype(np.int64)
    lab = tree.arrays.gathered(tree.labels[0][points]).astype(np.int64, copy=False)
    columns[level_field(0)] = lab
    for t in range(1, tree.n_levels):
        lab = tree.labels[t][lab]
        columns[level_field(t)] = lab
    if tree.distances is None:
        columns["distance"] = np.full(len(points), np.nan)
    else:
        columns["distance"] = tree.arrays.gathered(tree.distances[points]).astype(np.float64, copy=False)
    return columns


def _structured(columns) -> np.ndarray:
    first = next(iter(columns.values()))
    out = np.empty(len(first), dtype=[(name, a.dtype) for name, a in columns.items()])
    for name, a in columns.items():
        out[name] = a
    return out


_CHECKED_IDS: weakref.WeakValueDictionary = weakref.WeakValueDictionary()  # id(array) -> array


def _check(tree, ids, rows):
    """``ids`` checked (see :func:`~hkmeans.ids.check_ids`) against ``tree`` and ``rows``."""
    if not isinstance(tree, ClusterTree):
        raise TypeError(f"tree must be a ClusterTree, got {type(tree).__name__}.")
    n_rows = tree.n_samples if rows is None else int(np.max(rows)) + 1
    if ids is None:
        return None
    if np.ndim(ids) != 1 or len(ids) < n_rows:
        raise ValueError(
            f"ids must be a 1-D array of one id per row of the input ({n_rows}), got shape {np.shape(ids)}."
        )
    if _CHECKED_IDS.get(id(ids)) is ids:  # once per array, not per block
        return ids
    checked = check_ids(ids, len(ids), "ids")  # integers or strings, distinct
    if checked is ids:
        _CHECKED_IDS[id(ids)] = ids
    return checked


def positions(tree: ClusterTree, indices, name="indices") -> np.ndarray:
    """``indices`` as int64 positions in ``tree``, checked: a 1-D array of integers
    from 0 to ``tree.n_samples - 1``; ``ValueError`` of one line otherwise."""
    a = np.asarray(indices)
    if a.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of positions in the tree, got shape {a.shape}.")
    if a.size and a.dtype.kind not in "iu":
        raise ValueError(f"{name} must be integers (positions in the tree), got {a.dtype}.")
    a = a.astype(np.int64)
    if a.size and not (0 <= a.min() and a.max() < tree.n_samples):
        bad = a[(a < 0) | (a >= tree.n_samples)][0]
        raise ValueError(f"{name} must be positions in the tree, from 0 to {tree.n_samples - 1}; got {bad}.")
    return a


def assignments(tree: ClusterTree, ids=None, rows=None, start: int = 0, stop: int | None = None) -> np.ndarray:
    """Every data point's clusters: one row per point of ``[start, stop)``.

    Parameters
    ----------
    tree : ClusterTree
    ids : 1-D array, optional
        One id per row of the input (integers or strings): adds an ``id`` column.
    rows : 1-D array of int, optional
        The input row of each tree position (a fit on a subset of the rows); None:
        position ``i`` is row ``i``.
    start, stop : int
        The points to tabulate (default: all), so that a large tree is written out
        block by block.

    Returns
    -------
    numpy.ndarray
        A structured array with fields ``id`` (if ``ids``), ``row``,
        ``cluster_level0`` ... ``cluster_level{T}`` and ``distance`` (to the
        level-0 centroid).
    """
    ids = _check(tree, ids, rows)
    stop = tree.n_samples if stop is None else min(stop, tree.n_samples)
    return _structured(_point_columns(tree, np.arange(start, stop, dtype=np.int64), ids, rows))


def selected_table(tree: ClusterTree, indices, ids=None, rows=None) -> np.ndarray:
    """The points of a sample, each once, with how many times it was picked.

    Parameters
    ----------
    tree : ClusterTree
    indices : 1-D array of int
        Positions in the tree, as :func:`~hkmeans.hierarchical_sampling` returns them
        (a point picked ``m`` times appears ``m`` times).
    ids, rows
        As in :func:`assignments`.

    Returns
    -------
    numpy.ndarray
        A structured array sorted by row, fields ``id`` (if ``ids``), ``row``,
        ``times``, ``cluster_level0`` ... and ``distance``; repeating each ``row``
        ``times`` times gives back the sorted ``indices`` (as input rows).
    """
    ids = _check(tree, ids, rows)
    points, times = np.unique(positions(tree, indices), return_counts=True)
    columns = _point_columns(tree, points, ids, rows)
    at = list(columns).index("row") + 1
    items = list(columns.items())
    return _structured(dict(items[:at] + [("times", times.astype(np.int64))] + items[at:]))


def cluster_table(tree: ClusterTree, selected=None) -> np.ndarray:
    """Every cluster of every level, finest level first.

    Parameters
    ----------
    tree : ClusterTree
    selected : 1-D array of int, optional
        A sample's positions in the tree (with repeats): counted per cluster.

    Returns
    -------
    numpy.ndarray
        A structured array with fields ``level``, ``cluster``, ``parent`` (its cluster
        one level up; -1 at the top), ``size`` (data points), ``selected`` (points of
        ``selected`` in it, repeats counted; 0 without a sample) and
        ``mean_distance`` (mean distance of its data points to their level-0
        centroid; NaN for an empty cluster or a tree without distances).
    """
    _check(tree, None, None)
    k0 = tree.n_clusters[0]
    picked = np.zeros(k0, np.int64)
    if selected is not None and len(selected):  # the labels of the selected points only
        chosen = tree.arrays.gathered(tree.labels[0][positions(tree, selected, "selected")])
        picked = np.bincount(chosen, minlength=k0).astype(np.int64)
    # per-cluster sums where the rows are: a tree on a Dask cluster gathers no per-row array
    sums = np.zeros(k0) if tree.distances is None else tree.arrays.sums(tree.labels[0], tree.distances, k0)
    parts = []
    for t in range(tree.n_levels):
        if t:  # what level t - 1 holds, summed into its parents
            up = np.asarray(tree.labels[t])
            picked = np.bincount(up, weights=picked, minlength=tree.n_clusters[t]).astype(np.int64)
            sums = np.bincount(up, weights=sums, minlength=tree.n_clusters[t])
        k, size = tree.n_clusters[t], tree.sizes(t)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(size > 0, sums / size, np.nan)
        if tree.distances is None:
            mean[:] = np.nan
        parent = np.asarray(tree.labels[t + 1], dtype=np.int64) if t + 1 < tree.n_levels else np.full(k, -1)
        parts.append(
            {
                "level": np.full(k, t, np.int64),
                "cluster": np.arange(k, dtype=np.int64),
                "parent": parent,
                "size": size.astype(np.int64),
                "selected": picked,
                "mean_distance": mean,
            }
        )
    return _structured({name: np.concatenate([p[name] for p in parts]) for name in parts[0]})
