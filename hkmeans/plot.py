"""Figures of what curation did: cluster sizes, balance against target size, label
shares and a 2-D projection. Each function returns a :class:`matplotlib.figure.Figure`
(made without pyplot, so no display or global state is touched); matplotlib is the
optional extra ``hkmeans[plot]``."""

from __future__ import annotations

import numpy as np

from ._rng import as_generator
from .sampling import hierarchical_sampling
from .tree import ClusterTree


def _figure(width=6.4, height=4.0):
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
    return float(-(p * np.log(p)).sum() / np.log(counts.size))


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


def cluster_sizes(tree: ClusterTree, selected=None, level: int = 0):
    """Rank plot (log-log) of the cluster sizes of ``level`` in the pool and, given
    ``selected`` (indices of the curated subset, or several subsets by name), in each
    curated subset.

    Parameters
    ----------
    tree : ClusterTree
        A fitted tree (``model.tree_``, or :meth:`ClusterTree.load`).
    selected : array-like of int, mapping of str to array-like of int, or None, default=None
        One line per subset, labelled with its name (see :func:`named_subsets`).
    level : int, default=0

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig = _figure()
    ax = fig.add_subplot()
    pool = np.sort(tree.sizes(level))[::-1]
    ax.loglog(np.arange(1, pool.size + 1), np.maximum(pool, 0.5), label="pool")
    for name, rows in named_subsets(selected).items():
        cur = np.sort(per_cluster(tree, rows, level))[::-1]
        ax.loglog(np.arange(1, cur.size + 1), np.maximum(cur, 0.5), label=name)
    ax.set(xlabel="cluster rank", ylabel="points", title=f"cluster sizes, level {level}")
    ax.legend()
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
    curated = [normalized_entropy(per_cluster(tree, hierarchical_sampling(tree, s, strategy, random_state=rng), top))
               for s in sizes]
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
    fig = _figure()
    ax = fig.add_subplot()
    ax.semilogx(sizes, curated, "o-", label="curated")
    ax.semilogx(sizes, rand, "s--", label="random")
    subsets = [rows for rows in named_subsets(selected).values() if rows.size]
    if subsets:
        top = tree.n_levels - 1
        ax.semilogx([rows.size for rows in subsets],
                    [normalized_entropy(per_cluster(tree, rows, top)) for rows in subsets],
                    "*", color="black", markersize=11, label="selected subset" + ("s" if len(subsets) > 1 else ""))
    ax.set(xlabel="target size", ylabel="normalised entropy", ylim=(0, 1.02),
           title=f"balance over the {tree.n_clusters[-1]} top-level clusters")
    ax.legend()
    return fig


def label_shares(labels, selected, random_state=None, top: int = 15, name: str = "curated"):
    """Share of each label (the ``top`` commonest in the pool, the rest as "other") in
    the pool, the curated subset ``selected`` and a random subset of the same size.

    Parameters
    ----------
    labels : array-like of shape (n_samples,)
        One label per pool point.
    selected : array-like of int
    random_state : int, Generator, RandomState or None
    top : int, default=15
    name : str, default="curated"
        The legend's name of ``selected``.

    Returns
    -------
    matplotlib.figure.Figure
    """
    labels = np.asarray(labels)
    selected = np.asarray(selected, dtype=np.int64)
    rng = as_generator(random_state)
    values, counts = np.unique(labels, return_counts=True)
    order = np.argsort(-counts, kind="stable")
    kept = values[order[:top]]
    names = [str(v) for v in kept] + (["other"] if len(values) > top else [])

    def shares(rows):
        lab = labels[rows]
        out = [np.count_nonzero(lab == v) for v in kept]
        if len(values) > top:
            out.append(lab.size - sum(out))
        return np.asarray(out, dtype=np.float64) / max(1, lab.size)

    random_rows = rng.choice(labels.size, min(selected.size, labels.size), replace=False)
    fig = _figure(max(6.4, 0.45 * len(names) + 2))
    ax = fig.add_subplot()
    x = np.arange(len(names))
    for i, (bars, rows) in enumerate([("pool", np.arange(labels.size)), (name, selected), ("random", random_rows)]):
        ax.bar(x + (i - 1) * 0.27, shares(rows), width=0.27, label=bars)
    ax.set_xticks(x, names, rotation=45, ha="right")
    ax.set(ylabel="share", title="labels in the pool, the curated and a random subset")
    ax.legend()
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


def projection(X, tree: ClusterTree, selected=None, n_points: int = 3000, method="pca", random_state=None,
               name: str = "curated"):
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
    fig = _figure(6.4, 5.6)
    ax = fig.add_subplot()
    ax.scatter(P[:, 0], P[:, 1], c=colour, s=6, cmap="tab20", alpha=0.85, linewidths=0)
    if selected is not None:
        mark = np.isin(rows, np.asarray(selected))
        ax.scatter(P[mark, 0], P[mark, 1], s=14, facecolors="none", edgecolors="black", linewidths=0.6,
                   label=f"{name} ({int(mark.sum())} of these)")
        ax.legend(loc="best")
    ax.set(title=f"{how} of {len(rows)} pool points, by top-level cluster", xticks=[], yticks=[])
    return fig
