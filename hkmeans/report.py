"""A curation report: one self-contained HTML file (figures embedded as PNG, no
network needed to open it) with the run's parameters and the figures of
:mod:`hkmeans.plot`."""

from __future__ import annotations

import base64
import html
import io

import numpy as np

from . import plot
from .tree import ClusterTree


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=96)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def target_sizes(n_samples: int, selected_size: int) -> list[int]:
    """Sizes at which balance is shown: powers of 10 up to the pool, with the curated
    size among them.

    Parameters
    ----------
    n_samples, selected_size : int

    Returns
    -------
    list of int
    """
    sizes = {int(10**e) for e in range(1, int(np.log10(max(10, n_samples))) + 1)} | {int(selected_size)}
    return sorted(s for s in sizes if 0 < s <= n_samples)


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
    selected = np.asarray(selected, dtype=np.int64)
    out = {f"sizes-level-{t}": plot.cluster_sizes(tree, selected, t) for t in range(tree.n_levels)}
    out["balance"] = plot.balance(tree, target_sizes(tree.n_samples, selected.size), random_state=random_state)
    if labels is not None:
        out["labels"] = plot.label_shares(labels, selected, random_state=random_state)
    if X is not None:
        out["projection"] = plot.projection(X, tree, selected, random_state=random_state)
    return out


def render(figs: dict, params: dict | None = None, info: dict | None = None, title="hkmeans curation report") -> str:
    """The HTML page of ``figs``, with tables of ``params`` and ``info``.

    Parameters
    ----------
    figs : dict of str to matplotlib.figure.Figure
        Each becomes a ``<figure>`` with that id, its first axes' title as caption.
    params, info : dict or None
    title : str

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
    parts.append("<h2>Figures</h2>")
    for fid, fig in figs.items():
        caption = fig.axes[0].get_title() if fig.axes else fid
        parts.append(f"<figure id='{fid}'><img alt='{html.escape(caption)}' src='data:image/png;base64,{_png(fig)}'>"
                     f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    parts.append("</body></html>")
    return "\n".join(parts)


def curation_report(tree: ClusterTree, selected, X=None, labels=None, params=None, info=None, random_state=0) -> str:
    """The report of curating ``selected`` (indices of data points) from the pool of
    ``tree``: HTML text. ``X`` (the pool, read only at the drawn rows) adds the
    projection, ``labels`` (one per pool point) the label shares.

    Parameters
    ----------
    tree : ClusterTree
    selected : array-like of int
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
    return render(figures(tree, selected, X, labels, random_state), params, info)
