"""A curation report: one self-contained HTML file (figures embedded as PNG, no
network needed to open it) with the run's parameters and the figures of
:mod:`hkmeans.plot`."""

from __future__ import annotations

import base64
import html
import io

import numpy as np

from . import plot
from ._rng import as_generator
from .tree import ClusterTree


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=96)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def target_sizes(n_samples: int, selected_sizes) -> list[int]:
    """Sizes at which balance is shown: powers of 10 up to the pool, with the curated
    sizes among them.

    Parameters
    ----------
    n_samples : int
    selected_sizes : int or iterable of int

    Returns
    -------
    list of int
    """
    sizes = {int(10**e) for e in range(1, int(np.log10(max(10, n_samples))) + 1)}
    sizes |= {int(s) for s in np.atleast_1d(selected_sizes)}
    return sorted(s for s in sizes if 0 < s <= n_samples)


def subset_rows(tree: ClusterTree, selected, random_state=0) -> list[dict]:
    """One row per curated subset: its points (repeats counted), distinct points, the
    top-level clusters it reaches and its balance over them (normalised entropy),
    beside that of a uniformly random subset of the same size.

    Parameters
    ----------
    tree : ClusterTree
    selected : array-like of int or mapping of str to array-like of int
        See :func:`hkmeans.plot.named_subsets`.
    random_state : int, Generator, RandomState or None, default=0

    Returns
    -------
    list of dict
    """
    rng = as_generator(random_state)
    top = tree.n_levels - 1
    rows = []
    for name, subset in plot.named_subsets(selected).items():
        counts = plot.per_cluster(tree, subset, top)
        random = rng.choice(tree.n_samples, min(subset.size, tree.n_samples), replace=False)
        rows.append({"subset": name, "points": subset.size, "distinct points": np.unique(subset).size,
                     f"top-level clusters reached (of {counts.size})": int(np.count_nonzero(counts)),
                     "balance, curated": f"{plot.normalized_entropy(counts):.3f}",
                     "balance, random": f"{plot.normalized_entropy(plot.per_cluster(tree, random, top)):.3f}"})
    return rows


def figures(tree: ClusterTree, selected, X=None, labels=None, random_state=0) -> dict:
    """The report's figures by id: ``sizes-level-T`` for each level, ``balance``,
    ``labels`` (with ``labels``) and ``projection`` (with the pool ``X``).

    Parameters
    ----------
    tree, selected, X, labels, random_state
        As in :func:`curation_report`.

    Returns
    -------
    dict of str to matplotlib.figure.Figure
    """
    subsets = plot.named_subsets(selected)
    sizes = [rows.size for rows in subsets.values()]
    out = {f"sizes-level-{t}": plot.cluster_sizes(tree, subsets, t) for t in range(tree.n_levels)}
    out["balance"] = plot.balance(tree, target_sizes(tree.n_samples, sizes), random_state=random_state,
                                  selected=subsets)
    name = max(subsets, key=lambda n: subsets[n].size)  # the first of the largest
    if labels is not None:
        out["labels"] = plot.label_shares(labels, subsets[name], random_state=random_state, name=name)
    if X is not None:
        out["projection"] = plot.projection(X, tree, subsets[name], random_state=random_state, name=name)
    return out


def render(figs: dict, params: dict | None = None, info: dict | None = None, title="hkmeans curation report",
           subsets: list | None = None) -> str:
    """The HTML page of ``figs``, with tables of ``params``, ``info`` and ``subsets``.

    Parameters
    ----------
    figs : dict of str to matplotlib.figure.Figure
        Each becomes a ``<figure>`` with that id, its first axes' title as caption.
    params, info : dict or None
    title : str
    subsets : list of dict or None, default=None
        Rows of a table with a column per key (:func:`subset_rows`), ``id='subsets'``.

    Returns
    -------
    str
    """

    def table(d):
        rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in d.items())
        return f"<table>{rows}</table>"

    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             "<style>body{font-family:sans-serif;max-width:1000px;margin:auto}th{text-align:left;padding-right:1em}"
             "img{max-width:100%}</style></head><body>", f"<h1>{html.escape(title)}</h1>"]
    if info:
        parts += ["<h2>Run</h2>", table(info)]
    if params:
        parts += ["<h2>Parameters</h2>", table(params)]
    if subsets:
        head = "".join(f"<th>{html.escape(str(k))}</th>" for k in subsets[0])
        body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row.values()) + "</tr>"
                       for row in subsets)
        parts += ["<h2>Curated subsets</h2>", f"<table id='subsets'><tr>{head}</tr>{body}</table>",
                  "<p>Balance: normalised entropy over the top-level clusters, 1 for an even spread.</p>"]
    parts.append("<h2>Figures</h2>")
    for fid, fig in figs.items():
        caption = fig.axes[0].get_title() if fig.axes else fid
        parts.append(f"<figure id='{fid}'><img alt='{html.escape(caption)}' src='data:image/png;base64,{_png(fig)}'>"
                     f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    parts.append("</body></html>")
    return "\n".join(parts)


def curation_report(tree: ClusterTree, selected, X=None, labels=None, params=None, info=None, random_state=0) -> str:
    """The report of curating ``selected`` (indices of data points, or several subsets
    by name) from the pool of ``tree``: HTML text. ``X`` (the pool, read only at the
    drawn rows) adds the projection, ``labels`` (one per pool point) the label shares.

    Parameters
    ----------
    tree : ClusterTree
    selected : array-like of int or mapping of str to array-like of int
        One curated subset, or several by name (e.g. the files of a run directory, one
        per target size): each is a line of the cluster-size figures, a star of the
        balance figure and a row of the table of subsets; the label shares and the
        projection show the largest.
    X : array-like of shape (n_samples, n_features) or None, default=None
    labels : array-like of shape (n_samples,) or None, default=None
    params, info : dict or None, default=None
        Tables of the run's parameters and facts.
    random_state : int, Generator, RandomState or None, default=0

    Returns
    -------
    str
        A self-contained HTML page.
    """
    if labels is not None and len(labels) != tree.n_samples:
        raise ValueError(f"labels has {len(labels)} entries but the pool has {tree.n_samples} points.")
    if X is not None and len(X) != tree.n_samples:
        raise ValueError(f"X has {len(X)} rows but the pool has {tree.n_samples} points.")
    if not plot.named_subsets(selected):
        raise ValueError("selected holds no subset.")
    figs = figures(tree, selected, X, labels, random_state)
    return render(figs, params, info, subsets=subset_rows(tree, selected, random_state))
