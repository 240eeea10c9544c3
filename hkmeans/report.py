"""A curation report: one self-contained HTML file (figures embedded as PNG, no
network needed to open it) with the run's parameters per level, tables of the
curated subsets and of the labels beside a random subset of the same size (each
downloadable as CSV), what a dedup step before the fit removed, the figures of
:mod:`hkmeans.plot` with captions saying how to read them, and the cluster browser
of :mod:`hkmeans.browser`."""

from __future__ import annotations

import base64
import csv
import html
import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from . import plot
from ._rng import as_generator
from ._version import __version__
from .browser import browser_html, cluster_data
from .dedup import DedupResult
from .hierarchy import default_sample_size
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


def subset_rows(tree: ClusterTree, selected, random_state=0, random_rows=None) -> list[dict]:
    """One row per curated subset: its points (repeats counted), distinct points, the
    top-level clusters it reaches and its balance over them (normalised entropy),
    beside that of a uniformly random subset of the same size.

    Parameters
    ----------
    tree : ClusterTree
    selected : array-like of int or mapping of str to array-like of int
        See :func:`hkmeans.plot.named_subsets`.
    random_state : int, Generator, RandomState or None, default=0
    random_rows : array-like of int or None, default=None
        A random subset drawn already (the one the report's figures show): the
        random subset of the subsets of its size; others are drawn.

    Returns
    -------
    list of dict
    """
    rng = as_generator(random_state)
    top = tree.n_levels - 1
    rows = []
    for name, subset in plot.named_subsets(selected).items():
        counts = plot.per_cluster(tree, subset, top)
        size = min(subset.size, tree.n_samples)
        if random_rows is not None and len(random_rows) == size:
            random = np.asarray(random_rows)
        else:
            random = rng.choice(tree.n_samples, size, replace=False)
        rows.append(
            {
                "subset": name,
                "points": subset.size,
                "distinct points": np.unique(subset).size,
                f"top-level clusters reached (of {counts.size})": int(np.count_nonzero(counts)),
                "balance, curated": f"{plot.normalized_entropy(counts):.3f}",
                "balance, random": f"{plot.normalized_entropy(plot.per_cluster(tree, random, top)):.3f}",
            }
        )
    return rows


def label_rows(labels, subsets: dict) -> tuple[list, list]:
    """Every label's count and share in each of ``subsets`` (the pool among them), by
    pool count; and per subset: labels covered, normalised entropy over the labels,
    smallest and largest label count.

    Parameters
    ----------
    labels : array-like of shape (n_samples,)
    subsets : dict of str to array-like of int or None
        None stands for the whole pool.

    Returns
    -------
    per_label, summary : list of dict
    """
    values, _ = plot.label_counts(labels)
    counts = {name: plot.label_counts(labels, rows)[1] for name, rows in subsets.items()}
    first = next(iter(counts.values()))
    per_label = []
    for i in np.argsort(-first, kind="stable"):
        row: dict = {"label": str(values[i])}
        for name, c in counts.items():
            row[f"{name} count"] = int(c[i])
            row[f"{name} share"] = f"{c[i] / max(1, c.sum()):.4f}"
        per_label.append(row)
    summary = [
        {
            "subset": name,
            "points": int(c.sum()),
            f"labels covered (of {values.size})": int(np.count_nonzero(c)),
            "coverage": f"{np.count_nonzero(c) / values.size:.3f}",
            "normalised entropy": f"{plot.normalized_entropy(c):.3f}",
            "smallest label": int(c.min()),
            "largest label": int(c.max()),
        }
        for name, c in counts.items()
    ]
    return per_label, summary


def level_rows(tree: ClusterTree, params: dict | None) -> list[dict]:
    """Per level, the parameters the fit used (sample sizes resolved, not None) and
    its clusters' sizes.

    Parameters
    ----------
    tree : ClusterTree
    params : dict or None
        The fit's parameters (``n_resamples``, ``sample_size``, ``n_splits``: one
        value or one per level); those missing are left out.

    Returns
    -------
    list of dict
    """
    params = params or {}

    def at(name, t):
        value = params.get(name)
        return value[t] if isinstance(value, (list, tuple)) else value

    rows = []
    for t in range(tree.n_levels):
        sizes = tree.sizes(t)
        row: dict = {
            "level": t,
            "clusters": int(sizes.size),
            "empty": int(np.count_nonzero(sizes == 0)),
            "smallest": int(sizes.min()),
            "median": float(np.median(sizes)),
            "largest": int(sizes.max()),
        }
        if "n_resamples" in params:
            weight = tree.n_samples if t == 0 else tree.n_clusters[t - 1]
            if t == 0 and tree.sample_weight is not None:
                weight = float(tree.sample_weight.sum())
            size = at("sample_size", t)
            size = default_sample_size(weight, sizes.size) if size is None else int(size)
            split = at("n_splits", t) or 1
            resampled = at("n_resamples", t) if size > 1 and split == 1 else 0
            row.update({"resamples": resampled, "sample size": size if resampled else "-", "splits": split})
        rows.append(row)
    return rows


#: Duplicate groups listed in the report, largest first.
DEDUP_GROUPS = 20


@dataclass
class DedupSummary:
    """What a dedup step removed before the fit, for the report's section.

    Attributes
    ----------
    n_rows : int
        Rows the dedup step read.
    removed : ndarray of int
        Rows removed.
    duplicate_of : ndarray of int
        Per removed row, the kept row it duplicates.
    similarity : ndarray of float
        Per removed row, its cosine similarity (or Euclidean distance) to that row.
    threshold : float or None
    metric : {"cosine", "euclidean"}
    keep : str or None
        The keep policy (``hard``, ``easy``, ``random``, ``first``).
    ids : ndarray or None
        An id per row, indexed by the row numbers above.
    """

    n_rows: int
    removed: np.ndarray
    duplicate_of: np.ndarray
    similarity: np.ndarray
    threshold: float | None = None
    metric: str = "cosine"
    keep: str | None = None
    ids: np.ndarray | None = None

    @classmethod
    def from_result(cls, result: DedupResult, threshold=None, metric="cosine", keep=None, ids=None):
        """The summary of :func:`hkmeans.dedup`'s ``result`` (``ids``: one per row of its input)."""
        removed = result.removed
        return cls(
            len(result.duplicate_of),
            removed,
            result.duplicate_of[removed],
            result.similarity[removed],
            threshold,
            metric,
            keep,
            ids,
        )

    def groups(self, limit: int = DEDUP_GROUPS) -> list[dict]:
        """The largest duplicate groups: the kept row (its id), how many rows it
        removed and the least close of them; most duplicates first, ties by row."""
        rows, counts = np.unique(np.asarray(self.duplicate_of, dtype=np.int64), return_counts=True)
        top = np.lexsort((rows, -counts))[:limit]
        score = np.asarray(self.similarity, dtype=np.float64)
        cosine = self.metric == "cosine"
        out = []
        for i in top:
            mine = score[self.duplicate_of == rows[i]]
            row: dict = {"kept row": int(rows[i])}
            if self.ids is not None:
                row["id"] = str(self.ids[rows[i]])
            row["duplicates"] = int(counts[i])
            # every digit (repr): a near copy at 0.99999999995 is not shown as an exact one
            row["lowest similarity" if cosine else "largest distance"] = repr(
                float(mine.min() if cosine else mine.max())
            )
            out.append(row)
        return out

    def rows(self) -> list[dict]:
        """The section's summary: rows read, removed (and their share), kept, the rule."""
        n, removed = int(self.n_rows), int(len(self.removed))
        sign = ">=" if self.metric == "cosine" else "<="
        what = "cosine similarity" if self.metric == "cosine" else "Euclidean distance"
        rule = what if self.threshold is None else f"{what} {sign} {float(self.threshold)!r}"
        facts = {
            "rows read": n,
            "rows removed": removed,
            "share removed": f"{removed / max(1, n):.2%}",
            "rows kept": n - removed,
            "groups (kept rows with duplicates)": int(np.unique(self.duplicate_of).size),
            "duplicates when": rule + ("" if self.keep is None else f"; kept: {self.keep}"),
        }
        return _pairs(facts)


CAPTIONS = {
    "sizes": (
        "Points per cluster of level {t}, every line over the same clusters in the pool's order (largest "
        "first, log scales). Random follows the pool; a curated subset that worked is flatter: fewer points "
        "from the big clusters, more from the small ones. Ticks under the axis count clusters a line does "
        "not reach."
    ),
    "balance": (
        "Normalised entropy over the top-level clusters (1: the same number of points in each) against "
        "subset size, for curated and random subsets; stars mark the subsets of this report. Curated "
        "above random means curation evened the clusters out. This measure uses hkmeans's own clusters: "
        "the labels, when given, are the independent evidence."
    ),
    "labels": (
        "Every label's share (log scale), labels sorted by share of the pool. Random follows the pool; a "
        "curated subset that worked is flatter: smaller shares for the commonest labels, larger for the "
        "rare ones, and fewer labels missed (ticks under the axis)."
    ),
    "dedup": (
        "How close each row the dedup step removed was to the row it kept (dashed: the threshold). Mass "
        "piled at exact copies (similarity 1, distance 0) is duplication in the source; mass near the "
        "threshold is rows that are only alike, which a stricter threshold would keep."
    ),
    "centroids": (
        "The top-level centroids in 2-D. Ring area: the cluster's points in the pool; filled disc: in "
        "the curated subset; cross: in the random subset (both scaled to the pool's total). Worked: "
        "discs of about one size everywhere while rings and crosses grow where the pool is dense."
    ),
}


def figures(tree: ClusterTree, selected, labels=None, random_rows=None, random_state=0, dedup=None) -> dict:
    """The report's figures by id: ``sizes-level-T`` for each level, ``balance``,
    ``labels`` (with ``labels``), ``centroids`` (where the tree has centroids) and
    ``dedup`` (with ``dedup``, when it removed rows).

    Parameters
    ----------
    tree, selected, labels, random_state, dedup
        As in :func:`curation_report`.
    random_rows : array-like of int or None, default=None
        The random subset the figures compare with.

    Returns
    -------
    dict of str to matplotlib.figure.Figure
    """
    subsets = plot.named_subsets(selected)
    sizes = [rows.size for rows in subsets.values()]
    out = {f"sizes-level-{t}": plot.cluster_sizes(tree, subsets, t, random_rows) for t in range(tree.n_levels)}
    out["balance"] = plot.balance(
        tree, target_sizes(tree.n_samples, sizes), random_state=random_state, selected=subsets
    )
    name = largest(subsets)
    if labels is not None:
        out["labels"] = plot.label_shares(labels, subsets[name], name=name, random_rows=random_rows)
    if tree.centroids is not None:
        out["centroids"] = plot.centroid_map(tree, subsets[name], random_rows, name=name)
    if dedup is not None and len(dedup.removed):
        out["dedup"] = plot.similarity_histogram(dedup.similarity, dedup.threshold, dedup.metric)
    return out


def largest(subsets: dict) -> str:
    """The name of the first of the largest of ``subsets``."""
    return max(subsets, key=lambda n: subsets[n].size)


def caption(fid: str) -> str:
    """How to read the figure ``fid`` and what a curation that worked looks like."""
    if fid.startswith("sizes-level-"):
        return CAPTIONS["sizes"].format(t=fid.rsplit("-", 1)[1])
    return CAPTIONS[fid]


def _csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return base64.b64encode(buf.getvalue().encode("utf-8")).decode("ascii")


def table(tid: str, rows: list[dict], note: str = "") -> str:
    """``rows`` (dicts with the same keys) as an HTML table with id ``tid``, a note
    under it and a link to the same table as ``tid.csv`` (embedded).

    Parameters
    ----------
    tid : str
    rows : list of dict
    note : str, default=""

    Returns
    -------
    str
    """
    esc = html.escape
    head = "".join(f"<th>{esc(str(k))}</th>" for k in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{esc(str(v))}</td>" for v in row.values()) + "</tr>" for row in rows)
    link = f"<a class='csv' download='{tid}.csv' href='data:text/csv;charset=utf-8;base64,{_csv(rows)}'>{tid}.csv</a>"
    note = f"<p class='note'>{esc(note)}</p>" if note else ""
    return f"<table id='{tid}'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{note}<p>{link}</p>"


def _pairs(d: dict) -> list[dict]:
    return [{"name": str(k), "value": str(v)} for k, v in d.items()]


STYLE = (
    "body{font-family:sans-serif;max-width:1100px;margin:auto;padding:0 1em}"
    "th{text-align:left;padding-right:1em}td{padding-right:1em}img{max-width:100%}"
    "table{border-collapse:collapse}tr:nth-child(even){background:#f3f3f3}thead th{border-bottom:1px solid #999}"
    ".note{color:#555}"
    "figcaption{color:#333;max-width:800px}"
)


def _sections(tables) -> list[str]:
    return [f"<h2>{html.escape(heading)}</h2>" + table(tid, rows, note) for heading, tid, rows, note in tables if rows]


def render(
    figs: dict, tables: list, details: Sequence = (), title: str = "hkmeans curation report", browser: str = ""
) -> str:
    """The HTML page: ``tables``, ``figs`` (each with its caption), ``browser``, then
    ``details``.

    Parameters
    ----------
    figs : dict of str to matplotlib.figure.Figure
        Each becomes a ``<figure>`` with that id and :func:`caption`.
    tables, details : list of (heading, id, rows, note)
        Each a section (see :func:`table`); those without rows are left out.
    title : str
    browser : str, default=""
        The cluster browser's HTML (:func:`hkmeans.browser.browser_html`).

    Returns
    -------
    str
    """
    esc = html.escape
    parts = [
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{esc(title)}</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
        *_sections(tables),
    ]
    parts.append("<h2>Figures</h2>")
    for fid, fig in figs.items():
        parts.append(
            f"<figure id='{fid}'><img alt='{esc(fig.axes[0].get_title())}' "
            f"src='data:image/png;base64,{_png(fig)}'><figcaption>{esc(caption(fid))}</figcaption></figure>"
        )
    if browser:
        parts += [
            "<h2>Clusters</h2>",
            "<p class='note'>Click a column's name to sort, a cluster to see its "
            "example members and its children. Curated members are marked \u2605.</p>",
            browser,
        ]
    parts += [*_sections(details), "</body></html>"]
    return "\n".join(parts)


def curation_report(
    tree: ClusterTree,
    selected,
    labels=None,
    params=None,
    info=None,
    random_state=0,
    ids=None,
    show=None,
    dedup: DedupSummary | None = None,
) -> str:
    """The report of curating ``selected`` (indices of data points, or several subsets
    by name) from the pool of ``tree``: HTML text.

    Parameters
    ----------
    tree : ClusterTree
    selected : array-like of int or mapping of str to array-like of int
        One curated subset, or several by name (e.g. the files of a run directory, one
        per target size): each is a line of the cluster-size figures, a star of the
        balance figure and a row of the table of subsets; the label table, the label
        and centroid figures and the cluster browser show the largest.
    labels : array-like of shape (n_samples,) or None, default=None
        One label per pool point (a class, a source, a language...).
    params : dict or None, default=None
        The fit's parameters: a table, and the per-level table's resolved values.
    info : dict or None, default=None
        Facts about the run (times, paths); the hkmeans version is added.
    random_state : int, Generator, RandomState or None, default=0
        Draws the random subset every comparison uses (the size of the largest
        curated subset) and the clusters and members the browser shows.
    ids : array-like of shape (n_samples,) or None, default=None
        Each point's id, shown for example members (default: its row).
    show : array-like of shape (n_samples,) or None, default=None
        A value per point shown for example members: text as a snippet, paths of
        image files as thumbnails (needs Pillow).
    dedup : DedupSummary or None, default=None
        What a dedup step removed before the fit (:meth:`DedupSummary.from_result`
        of :func:`hkmeans.dedup`'s result): a section with the share of rows removed,
        the largest duplicate groups (with their ids) and a histogram of how close the
        removed rows were.

    Returns
    -------
    str
        A self-contained HTML page.
    """
    subsets = plot.named_subsets(selected)
    for name, values in (("labels", labels), ("ids", ids), ("show", show)):
        if values is not None and len(values) != tree.n_samples:
            raise ValueError(f"{name} has {len(values)} entries but the pool has {tree.n_samples} points.")
    if labels is not None:
        labels = np.asarray(labels)
        if labels.dtype == object and (labels == None).any():  # noqa: E711 (elementwise)
            raise ValueError("labels holds None: every point needs a label.")
    if not subsets:
        raise ValueError("selected holds no subset.")
    reserved = sorted(set(subsets) & {"pool", "random"})
    if reserved:
        raise ValueError(f"subset name {reserved[0]!r} is the report's own column; give the subset another name.")
    for name, rows in subsets.items():
        if rows.ndim != 1 or (rows.size and (rows.min() < 0 or rows.max() >= tree.n_samples)):
            raise ValueError(f"subset {name!r} must be 1-D indices in [0, {tree.n_samples}).")
    rng = as_generator(random_state)
    name = largest(subsets)
    random_rows = rng.choice(tree.n_samples, min(subsets[name].size, tree.n_samples), replace=False)
    seed = f"seed {random_state}" if isinstance(random_state, (int, np.integer)) else "the random_state given"
    info = {"hkmeans": __version__, **(info or {})}
    tables = [
        (
            "Curated subsets",
            "subsets",
            subset_rows(tree, subsets, rng, random_rows),
            "Balance: normalised entropy over the top-level clusters, 1 for an even spread.",
        )
    ]
    details = [
        (
            "Levels",
            "levels",
            level_rows(tree, params),
            "The parameters each level used, sample sizes as resolved from the defaults; sizes are points per cluster.",
        ),
        ("Run", "run", _pairs(info), ""),
        ("Parameters as given", "parameters", _pairs(params or {}), ""),
    ]
    if labels is not None:
        per_label, summary = label_rows(labels, {"pool": None, name: subsets[name], "random": random_rows})
        tables.append(
            (
                "Labels",
                "label-summary",
                summary,
                f"Random: {random_rows.size} points drawn uniformly without replacement ({seed}). "
                "Normalised entropy is 1 when every label has the same count; curation that worked raises "
                "it and the smallest label above random's.",
            )
        )
        details.insert(0, ("Every label", "labels", per_label, ""))
    if dedup is not None:
        tables += [
            (
                "Near-duplicates removed before the fit",
                "dedup",
                dedup.rows(),
                "The fit, the curated subsets and the tables above are over the rows kept.",
            ),
            (
                "Largest duplicate groups",
                "dedup-groups",
                dedup.groups(),
                f"Each kept row and how many rows were removed as its duplicates (the {DEDUP_GROUPS} largest groups).",
            ),
        ]
    figs = figures(tree, subsets, labels, random_rows, rng, dedup)
    browser = browser_html(cluster_data(tree, subsets[name], ids, show, rng))
    return render(figs, tables, details, browser=browser)
