"""Figures of what curation did: cluster sizes, balance against target size, label
shares, the top-level centroids, a 2-D projection of points and how close the rows a
dedup step removed were. Each function returns a :class:`matplotlib.figure.Figure`
(made without pyplot, so no display or global state is touched); matplotlib is the
optional extra ``hkmeans[plot]``."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._rng import as_generator
from .sampling import hierarchical_sampling
from .tree import ClusterTree


def figure(width=6.4, height=4.0):
    """A figure with constrained layout, made without pyplot."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError('hkmeans.plot needs matplotlib: pip install "hkmeans[plot]"') from None
    return Figure(figsize=(width, height), layout="constrained")


def per_cluster(tree: ClusterTree, rows, level: int) -> np.ndarray:
    """How many of ``rows`` (indices of data points, repeats counted) fall in each
    cluster of ``level``.

    Parameters
    ----------
    tree : ClusterTree
        A fitted tree (``model.tree_``, or :meth:`ClusterTree.load`).
    rows : array-like of int
    level : int

    Returns
    -------
    ndarray of shape (tree.n_clusters[level],)
    """
    return np.bincount(tree.point_labels(level)[np.asarray(rows, dtype=np.int64)], minlength=tree.n_clusters[level])


def normalized_entropy(counts) -> float:
    """Entropy of the distribution ``counts`` over its bins, divided by the log of the
    number of bins: 1 for a perfectly even spread, 0 for all in one bin.

    Parameters
    ----------
    counts : array-like of shape (n_bins,)

    Returns
    -------
    float
        0 for fewer than 2 bins or no counts.
    """
    counts = np.asarray(counts, dtype=np.float64)
    if counts.size < 2 or counts.sum() == 0:
        return 0.0
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum() / np.log(counts.size)) + 0.0  # + 0.0: one bin gives 0, not -0


def named_subsets(selected) -> dict:
    """``selected`` as curated subsets by name: ``{}`` for None, a mapping as it is,
    one array of indices as ``{"curated": indices}``.

    Parameters
    ----------
    selected : array-like of int, mapping of str to array-like of int, or None

    Returns
    -------
    dict of str to ndarray of int64
    """
    if selected is None:
        return {}
    if not hasattr(selected, "items"):
        selected = {"curated": selected}
    return {str(name): np.asarray(rows, dtype=np.int64) for name, rows in selected.items()}


def _plain(text) -> str:
    """``text`` (a user's label or name) as matplotlib draws it literally: each
    ``$`` escaped, so that nothing in it is parsed as math (or fails to parse)."""
    return str(text).replace("$", r"\$")


def _log_line(ax, x, values, label, **style):
    """``values`` on a log axis, zeros left out of the line and marked as ticks under
    it (their number in the legend); returns the line."""
    values = np.asarray(values, dtype=np.float64)
    empty = values == 0
    (line,) = ax.plot(x, np.where(empty, np.nan, values), label=_plain(label), **style)
    if empty.any():
        ax.plot(
            x[empty],
            np.zeros(int(empty.sum())),
            "|",
            color=line.get_color(),
            markersize=9,
            clip_on=False,
            transform=ax.get_xaxis_transform(),
            label=f"{_plain(label)}: {int(empty.sum())} with none",
        )
    return line


def cluster_sizes(tree: ClusterTree, selected=None, level: int = 0, random_rows=None):
    """Sizes of the clusters of ``level`` (log scale) in the pool and, given
    ``selected`` (indices of the curated subset, or several subsets by name), in each
    curated subset and in ``random_rows`` (a random subset), every line over the same
    clusters, in the pool's order (largest first). Clusters a line does not reach are
    marked under the axis.

    Parameters
    ----------
    tree : ClusterTree
        A fitted tree (``model.tree_``, or :meth:`ClusterTree.load`).
    selected : array-like of int, mapping of str to array-like of int, or None, default=None
        One line per subset, labelled with its name (see :func:`named_subsets`).
    level : int, default=0
    random_rows : array-like of int or None, default=None
        A uniformly random subset, drawn dashed as ``random``.

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig = figure()
    ax = fig.add_subplot()
    sizes = tree.sizes(level)
    order = np.argsort(-sizes, kind="stable")
    x = np.arange(1, order.size + 1)
    ax.set_yscale("log")
    ax.set_xscale("log" if order.size > 50 else "linear")
    _log_line(ax, x, sizes[order], "pool", color="0.3")
    for name, rows in named_subsets(selected).items():
        _log_line(ax, x, per_cluster(tree, rows, level)[order], name)
    if random_rows is not None:
        _log_line(ax, x, per_cluster(tree, random_rows, level)[order], "random", linestyle="--", color="tab:red")
    ax.set(
        xlabel="cluster, by size in the pool",
        ylabel="points",
        title=f"cluster sizes, level {level} ({order.size} clusters)",
    )
    ax.legend(fontsize="small")
    return fig


def balance_curve(tree: ClusterTree, target_sizes, strategy="random", random_state=None):
    """Normalised entropy of the top-level clusters of a curated and of a uniformly
    random subset, for each target size.

    Parameters
    ----------
    tree : ClusterTree
        A fitted tree (``model.tree_``, or :meth:`ClusterTree.load`).
    target_sizes : iterable of int
        Sizes outside ``1..n_samples`` are left out.
    strategy : {"random", "closest", "furthest"}, default="random"
    random_state : int, Generator, RandomState or None

    Returns
    -------
    sizes : list of int
    curated, random : list of float
        Normalised entropy (see :func:`normalized_entropy`) at each size.
    """
    rng = as_generator(random_state)
    top = tree.n_levels - 1
    sizes = [int(s) for s in target_sizes if 0 < s <= tree.n_samples]
    curated = [
        normalized_entropy(per_cluster(tree, hierarchical_sampling(tree, s, strategy, random_state=rng), top))
        for s in sizes
    ]
    rand = [normalized_entropy(per_cluster(tree, rng.choice(tree.n_samples, s, replace=False), top)) for s in sizes]
    return sizes, curated, rand


def balance(tree: ClusterTree, target_sizes, strategy="random", random_state=None, selected=None):
    """Normalised entropy over the top-level clusters against target size, curated and
    uniformly random subsets; given ``selected``, that of each of these subsets too,
    marked at its size.

    Parameters
    ----------
    tree, target_sizes, strategy, random_state
        As in :func:`balance_curve`.
    selected : array-like of int, mapping of str to array-like of int, or None, default=None
        Curated subsets (see :func:`named_subsets`), e.g. those a run wrote.

    Returns
    -------
    matplotlib.figure.Figure
    """
    sizes, curated, rand = balance_curve(tree, target_sizes, strategy, random_state)
    fig = figure()
    ax = fig.add_subplot()
    ax.semilogx(sizes, curated, "o-", label="curated")
    ax.semilogx(sizes, rand, "s--", label="random")
    subsets = [rows for rows in named_subsets(selected).values() if rows.size]
    if subsets:
        top = tree.n_levels - 1
        ax.semilogx(
            [rows.size for rows in subsets],
            [normalized_entropy(per_cluster(tree, rows, top)) for rows in subsets],
            "*",
            color="black",
            markersize=11,
            label="selected subset" + ("s" if len(subsets) > 1 else ""),
        )
    ax.set(
        xlabel="target size",
        ylabel="normalised entropy",
        ylim=(0, 1.02),
        title=f"balance over the {tree.n_clusters[-1]} top-level clusters",
    )
    ax.legend()
    return fig


def label_counts(labels, rows=None):
    """The distinct labels, sorted, and how many of ``rows`` (indices of pool points,
    repeats counted; all of them for None) carry each.

    Parameters
    ----------
    labels : array-like of shape (n_samples,)
    rows : array-like of int or None, default=None

    Returns
    -------
    values : ndarray of shape (n_labels,)
    counts : ndarray of int64, one per value
    """
    labels = np.asarray(labels)
    values, codes = np.unique(labels, return_inverse=True)
    codes = codes.ravel() if rows is None else codes.ravel()[np.asarray(rows, dtype=np.int64)]
    return values, np.bincount(codes, minlength=values.size)


def label_shares(labels, selected, random_state=None, name: str = "curated", random_rows=None):
    """Share of every label (log scale, sorted by pool share) in the pool, the
    curated subset ``selected`` and a random subset of the same size. Labels a subset
    misses are marked under the axis; label names are drawn as text (no math).

    Parameters
    ----------
    labels : array-like of shape (n_samples,)
        One label per pool point.
    selected : array-like of int
    random_state : int, Generator, RandomState or None
        Draws the random subset when ``random_rows`` is None.
    name : str, default="curated"
        The legend's name of ``selected``.
    random_rows : array-like of int or None, default=None
        The random subset to compare with.

    Returns
    -------
    matplotlib.figure.Figure
    """
    labels = np.asarray(labels)
    selected = np.asarray(selected, dtype=np.int64)
    if random_rows is None:
        random_rows = as_generator(random_state).choice(labels.size, min(selected.size, labels.size), replace=False)
    values, pool = label_counts(labels)
    order = np.argsort(-pool, kind="stable")
    x = np.arange(values.size)
    fig = figure(min(16.0, max(6.4, 0.22 * values.size + 2)), 4.4)
    ax = fig.add_subplot()
    ax.set_yscale("log")
    lines: list[tuple[str, Any, dict]] = [
        ("pool", None, dict(color="0.3")),
        (name, selected, dict(marker="o", markersize=3)),
        ("random", random_rows, dict(linestyle="--", color="tab:red")),
    ]
    for series, rows, style in lines:
        counts = label_counts(labels, rows)[1][order]
        _log_line(ax, x, counts / max(1, counts.sum()), series, **style)
    if values.size <= 80:
        ax.set_xticks(x, [_plain(v) for v in values[order]], rotation=60, ha="right", fontsize="small")
    ax.set(
        xlabel=f"the {values.size} labels, by share of the pool",
        ylabel="share",
        title="labels in the pool, the curated and a random subset",
    )
    ax.legend(fontsize="small")
    return fig


def similarity_histogram(similarity, threshold=None, metric: str = "cosine"):
    """Histogram of how close each row a dedup step removed was to the row it kept
    (its cosine similarity, or Euclidean distance), the threshold marked.

    Parameters
    ----------
    similarity : array-like of float
        One value per removed row (``DedupResult.similarity`` of the removed rows).
    threshold : float or None, default=None
        Drawn as a dashed line.
    metric : {"cosine", "euclidean"}, default="cosine"

    Returns
    -------
    matplotlib.figure.Figure
    """
    values = np.asarray(similarity, dtype=np.float64)
    fig = figure()
    ax = fig.add_subplot()
    if values.size:
        lo, hi = float(values.min()), float(values.max())
        if threshold is not None:
            lo, hi = min(lo, float(threshold)), max(hi, float(threshold))
        ax.hist(values, bins=50, range=(lo, hi) if hi > lo else (lo - 0.5e-6, hi + 0.5e-6), color="tab:blue")
    if threshold is not None:
        ax.axvline(float(threshold), color="tab:red", linestyle="--", label=f"threshold {float(threshold)!r}")
        ax.legend(fontsize="small")
    what = "cosine similarity" if metric == "cosine" else "Euclidean distance"
    ax.set(
        xlabel=f"{what} to the row kept",
        ylabel="rows removed",
        title=f"the {values.size} rows removed as near-duplicates",
    )
    return fig


def centroid_map(tree: ClusterTree, selected=None, random_rows=None, method="pca", name: str = "curated"):
    """The top-level centroids in 2-D (PCA; UMAP with ``method="umap"``, or
    ``"auto"`` where umap-learn is installed), each drawn as a disc whose area is its
    cluster's size in the pool and, filled, in ``selected``; a cluster ``random_rows``
    reaches but ``selected`` does not shows its ring only. Needs the tree's centroids.

    Parameters
    ----------
    tree : ClusterTree
    selected : array-like of int or None, default=None
    random_rows : array-like of int or None, default=None
        Drawn as crosses sized by their counts, for comparison.
    method : {"pca", "umap", "auto"}, default="pca"
    name : str, default="curated"

    Returns
    -------
    matplotlib.figure.Figure
    """
    if tree.centroids is None:
        raise ValueError("the tree has no centroids to place; fit it with a model that keeps them.")
    top = tree.n_levels - 1
    Y = np.asarray(tree.centroids[top], dtype=np.float64)
    if Y.shape[1] < 2:
        Y = np.column_stack([Y, np.zeros(len(Y))])
    P, how = _project(Y, method, 0) if len(Y) > 2 else (Y[:, :2], "first two coordinates")
    pool = tree.sizes(top).astype(np.float64)
    scale = 900.0 / max(1.0, pool.max())
    fig = figure(6.4, 5.6)
    ax = fig.add_subplot()
    ax.scatter(P[:, 0], P[:, 1], s=pool * scale, facecolors="none", edgecolors="0.4", linewidths=0.7, label="pool")
    for series, rows, style in [
        (name, selected, dict(color="tab:blue", alpha=0.6, linewidths=0)),
        ("random", random_rows, dict(color="tab:red", marker="x", linewidths=0.8)),
    ]:
        if rows is not None:
            counts = per_cluster(tree, rows, top).astype(np.float64)
            ax.scatter(
                P[:, 0],
                P[:, 1],
                s=counts * scale * tree.n_samples / max(1, counts.sum()),
                label=_plain(series),
                **style,
            )
    ax.set(title=f"{how} of the {len(Y)} top-level centroids, sized by points", xticks=[], yticks=[])
    ax.legend(loc="best", fontsize="small", markerscale=0.3)
    return fig


def _project(Y, method, random_state):
    if method in ("auto", "umap"):
        try:
            import umap
        except ImportError:
            if method == "umap":
                raise ImportError("method='umap' needs umap-learn: pip install umap-learn") from None
        else:
            return umap.UMAP(random_state=random_state).fit_transform(Y), "UMAP"
    Yc = Y - Y.mean(axis=0)
    _, _, vt = np.linalg.svd(Yc, full_matrices=False)
    return Yc @ vt[:2].T, "PCA"


def projection(
    X, tree: ClusterTree, selected=None, n_points: int = 3000, method="pca", random_state=None, name: str = "curated"
):
    """2-D projection (PCA; UMAP with ``method="umap"``, or ``"auto"`` where
    umap-learn is installed) of up to ``n_points`` pool points, coloured by top-level
    cluster, the curated ones (in ``selected``) marked. ``X`` is the pool (an array or
    memory map: only the drawn rows are read).

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    tree : ClusterTree
        A fitted tree (``model.tree_``, or :meth:`ClusterTree.load`).
    selected : array-like of int or None, default=None
    n_points : int, default=3000
    method : {"pca", "umap", "auto"}, default="pca"
    random_state : int, Generator, RandomState or None
    name : str, default="curated"
        The legend's name of ``selected``.

    Returns
    -------
    matplotlib.figure.Figure
    """
    rng = as_generator(random_state)
    n = tree.n_samples
    rows = np.sort(rng.choice(n, min(n_points, n), replace=False))
    Y = np.asarray(X[rows], dtype=np.float64)
    if Y.shape[1] < 2:
        Y = np.column_stack([Y, np.zeros(len(Y))])
    P, how = _project(Y, method, 0)
    colour = tree.point_labels(tree.n_levels - 1)[rows]
    fig = figure(6.4, 5.6)
    ax = fig.add_subplot()
    ax.scatter(P[:, 0], P[:, 1], c=colour, s=6, cmap="tab20", alpha=0.85, linewidths=0)
    if selected is not None:
        mark = np.isin(rows, np.asarray(selected))
        ax.scatter(
            P[mark, 0],
            P[mark, 1],
            s=14,
            facecolors="none",
            edgecolors="black",
            linewidths=0.6,
            label=f"{_plain(name)} ({int(mark.sum())} of these)",
        )
        ax.legend(loc="best")
    ax.set(title=f"{how} of {len(rows)} pool points, by top-level cluster", xticks=[], yticks=[])
    return fig
