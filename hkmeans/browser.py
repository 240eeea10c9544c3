"""The report's cluster browser: what each cluster holds, as data embedded in the page
(JSON in a ``<script type="application/json">``) and a small inline script that
draws sortable tables of the top-level clusters and, on a click, of a cluster's
children, with example members: ids, text snippets or image thumbnails. Every user
string reaches the page as JSON text and is written with ``textContent``, never
parsed as HTML. Pillow (``hkmeans[report]``) makes the thumbnails."""

from __future__ import annotations

import base64
import io
import json
import os

import numpy as np

from ._rng import as_generator
from .tables import positions
from .tree import ClusterTree

#: Clusters described per level at most: above it, the largest and smallest quarter
#: of that many and a random half.
MAX_CLUSTERS = 2000
EXAMPLES = 12  # example members per cluster, half of them curated where there are
MAX_IMAGES = 2400  # thumbnails in the page at most (about 2 kB each)
MAX_TEXTS = 20000  # text snippets in the page at most
SNIPPET = 120  # characters of a text snippet
THUMBNAIL = 64  # pixels, the longer side
#: Rows of a cluster let through per example wanted, on average, by the pass that
#: finds its example members (see :func:`_other_examples`).
OVERSAMPLE = 4
#: A key limit above every key of :func:`row_keys`.
EVERY_KEY = np.uint64(2**63)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff")


def shown_clusters(sizes, max_clusters: int = MAX_CLUSTERS, rng=None):
    """The clusters a level describes: all when there are at most ``max_clusters``,
    else the largest and the smallest ``max_clusters // 4`` and others at random.

    Parameters
    ----------
    sizes : ndarray of shape (n_clusters,)
    max_clusters : int, default=MAX_CLUSTERS
    rng : numpy.random.Generator or None

    Returns
    -------
    clusters : ndarray of int64, largest first
    note : str
        Empty when every cluster is shown, else what was chosen.
    """
    order = np.argsort(-np.asarray(sizes), kind="stable")
    if order.size <= max_clusters:
        return order, ""
    edge = max_clusters // 4
    middle = order[edge : order.size - edge]
    drawn = as_generator(rng).choice(middle.size, max_clusters - 2 * edge, replace=False)
    keep = np.concatenate([order[:edge], np.sort(middle[drawn]), order[order.size - edge :]])
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    keep = keep[np.argsort(rank[keep], kind="stable")]
    return keep, (
        f"{keep.size} of its {order.size} clusters: the {edge} largest, the {edge} smallest and "
        f"{keep.size - 2 * edge} others drawn at random"
    )


def _firsts(groups, rows, clusters, m):
    """Per cluster of ``clusters``, the first ``m`` of ``rows`` whose group
    (``groups[i]`` for ``rows[i]``) it is, in the order of ``rows``."""
    order = np.argsort(groups, kind="stable")
    sorted_groups, sorted_rows = groups[order], rows[order]
    start = np.searchsorted(sorted_groups, clusters, side="left")
    stop = np.minimum(np.searchsorted(sorted_groups, clusters, side="right"), start + m)
    return [sorted_rows[a:b] for a, b in zip(start, stop)]


def row_keys(rows, seed: int) -> np.ndarray:
    """A pseudo-random key per row in ``[0, 2**63)``, the top bits of SplitMix64 of
    ``rows + seed``: the same whatever chunk of rows computes it."""
    z = np.asarray(rows).astype(np.uint64) + np.uint64(seed)
    z *= np.uint64(0x9E3779B97F4A7C15)  # arrays wrap around, as the hash wants
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return (z ^ (z >> np.uint64(31))) >> np.uint64(1)


def _smallest(clusters, keys, rows, keep, m):
    """Per cluster of ``keep``, its ``m`` rows of smallest key, smallest first (the
    first of ``rows`` on a tie)."""
    by_key = np.argsort(keys, kind="stable")
    return _firsts(clusters[by_key], rows[by_key], keep, m)


def _candidates(labels, start, ups, limits, seeds, curated):
    """Per level ``t``: ``(cluster, key, row)`` of each row of the chunk ``labels``
    (from row ``start``) that is not in ``curated`` (sorted) and whose key is below
    the limit of its cluster of that level (``ups[t][label]``) in ``limits[t]``."""
    rows = np.arange(start, start + labels.size, dtype=np.int64)
    fresh = np.ones(labels.size, dtype=bool)
    lo, hi = np.searchsorted(curated, [start, start + labels.size])
    fresh[curated[lo:hi] - start] = False
    labels, rows = np.asarray(labels)[fresh], rows[fresh]
    out = []
    for up, limit, seed in zip(ups, limits, seeds):
        c = up[labels]
        keys = row_keys(rows, seed)
        ok = keys < limit[c]
        out.append((c[ok], keys[ok], rows[ok]))
    return out


def _concat(parts):
    """The chunks' :func:`_candidates`, level by level."""
    return [tuple(np.concatenate(a) for a in zip(*level)) for level in zip(*parts)]


def _key_limits(wanted, rows):
    """Per cluster, the key below which about ``wanted`` of its ``rows`` keys fall
    (:data:`EVERY_KEY` where that is more than half of them)."""
    limit = np.full(rows.shape, EVERY_KEY, dtype=np.uint64)
    some = wanted < rows / 2
    limit[some] = (wanted[some] / rows[some] * 2.0**63).astype(np.uint64)
    return limit


def _other_examples(tree, ups, keeps, others, curated, seeds, m):
    """Per level ``t``, per cluster of ``keeps[t]``: its ``m`` rows of smallest key
    (seed ``seeds[t]``) not in ``curated``, of which it has ``others[t]``.

    One pass over the level-0 labels, chunk by chunk where they are (on a Dask
    cluster's workers), keeps only rows whose key is below a limit per cluster that
    lets about :data:`OVERSAMPLE` times ``m`` through: the ``m`` smallest are among
    them where at least ``m`` are. A cluster with fewer (about one in 10**9) passes
    again with a limit 16 times higher, until it has them or its limit is every key."""
    wanted = [np.full(keep.size, OVERSAMPLE * m) for keep in keeps]
    found: list[dict] = [{} for _ in keeps]
    while True:
        pending = [np.array([c for c in keep if c not in done], dtype=np.int64) for keep, done in zip(keeps, found)]
        if not any(p.size for p in pending):
            return [[found[t][c] for c in keep] for t, keep in enumerate(keeps)]
        limits = []
        for keep, other, w, p in zip(keeps, others, wanted, pending):
            limit = np.zeros(other.size, dtype=np.uint64)  # no key is below 0: not searched
            limit[keep] = _key_limits(w, other[keep].astype(np.float64))
            limit[np.setdiff1d(keep, p)] = 0
            limits.append(limit)
        parts = tree.arrays.reduce_rows(tree.labels[0], _candidates, _concat, (ups, limits, seeds, curated))
        for t, (c, keys, rows) in enumerate(parts):
            position = {int(cluster): i for i, cluster in enumerate(keeps[t])}
            for cluster, got in zip(pending[t], _smallest(c, keys, rows, pending[t], m)):
                if got.size >= m or limits[t][cluster] == EVERY_KEY:
                    found[t][int(cluster)] = got
                else:
                    wanted[t][position[int(cluster)]] *= 16


def _mean_distances(tree: ClusterTree, level: int):
    """Level 0: its points' mean distance to the centroid (summed where the labels
    are); above: its children's centroids' mean distance to its centroid. None where
    the tree lacks them."""
    k = tree.n_clusters[level]
    if level == 0:
        if tree.distances is None:
            return None
        total, count = tree.arrays.sums(tree.labels[0], tree.distances, k), tree.sizes(0)
    else:
        if tree.centroids is None:
            return None
        labels = tree.labels[level]
        child = np.asarray(tree.centroids[level - 1], dtype=np.float64)
        dist = np.linalg.norm(child - np.asarray(tree.centroids[level], dtype=np.float64)[labels], axis=1)
        total, count = np.bincount(labels, weights=dist, minlength=k), np.bincount(labels, minlength=k)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _value_kind(values) -> str:
    """``image`` when every value is a path of an image file name, else ``text``."""
    strings = [v for v in values if isinstance(v, str) and v]
    if strings and len(strings) == len(values) and all(v.lower().endswith(IMAGE_SUFFIXES) for v in strings):
        return "image"
    return "text"


def thumbnail(path, size: int = THUMBNAIL):
    """The image at ``path`` as a JPEG data URI whose longer side is ``size`` pixels,
    or None when it cannot be read as an image.

    Parameters
    ----------
    path : str
    size : int, default=THUMBNAIL

    Returns
    -------
    str or None
    """
    try:
        from PIL import Image
    except ImportError:
        raise ImportError('image thumbnails need Pillow: pip install "hkmeans[report]"') from None
    try:
        with Image.open(os.fspath(path)) as image:
            image.thumbnail((size, size))
            buf = io.BytesIO()
            image.convert("RGB").save(buf, format="JPEG", quality=75)
    except (OSError, ValueError, Image.DecompressionBombError):
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _values(show, rows, kind):
    """The shown value of each pool row of ``rows``: a snippet, or a thumbnail (None
    for an unreadable image)."""
    out = {}
    for row in rows:
        value = show[int(row)]
        if kind == "image":
            out[int(row)] = None if value is None else thumbnail(value)  # a null of the column
        else:
            text = "" if value is None else str(value)
            out[int(row)] = text if len(text) <= SNIPPET else text[: SNIPPET - 1] + "\u2026"
    return out


def cluster_data(
    tree: ClusterTree, selected, ids=None, show=None, random_state=0, max_clusters: int = MAX_CLUSTERS
) -> dict:
    """What the browser shows of ``tree``: per level, the clusters described (see
    :func:`shown_clusters`), their sizes in the pool and in ``selected``, mean
    distance, parent and example members; and the shown values of those members.

    Parameters
    ----------
    tree : ClusterTree
    selected : array-like of int
        The curated subset (indices of pool points).
    ids : array-like of shape (n_samples,) or None, default=None
        Each point's id (default: its row).
    show : array-like of shape (n_samples,) or None, default=None
        A value per point: text is shown as a snippet, paths of image files as
        thumbnails.
    random_state : int, Generator, RandomState or None, default=0
    max_clusters : int, default=MAX_CLUSTERS

    Returns
    -------
    dict
        JSON-ready.
    """
    rng = as_generator(random_state)
    # a row picked more than once (a multiplier above 1) counts each time, as in the
    # run's tables; the examples and the rows not curated take each row once
    selected, times = np.unique(positions(tree, selected, "selected"), return_counts=True)
    # the level-0 labels stay where they are (a Dask cluster): only those of the
    # curated rows are gathered, and the examples found chunk by chunk
    labels0 = tree.arrays.gathered(tree.labels[0][selected]) if selected.size else np.zeros(0, np.int64)
    ups = [np.arange(tree.n_clusters[0])]
    for t in range(1, tree.n_levels):
        ups.append(tree.labels[t][ups[-1]])
    shown = [shown_clusters(tree.sizes(t), max_clusters, rng) for t in range(tree.n_levels)]
    keeps = [keep for keep, _ in shown]
    seeds = [int(s) for s in rng.integers(2**63, size=tree.n_levels)]  # of each level's example draws
    picked = [np.bincount(up[labels0], minlength=k) for up, k in zip(ups, tree.n_clusters)]
    others = [tree.sizes(t) - s for t, s in enumerate(picked)]  # rows not curated, per cluster
    times_picked = [
        np.bincount(up[labels0], weights=times, minlength=k).astype(np.int64) for up, k in zip(ups, tree.n_clusters)
    ]
    curated = []
    for up, keep, seed in zip(ups, keeps, seeds):
        c = up[labels0]
        mine = np.isin(c, keep)
        curated.append(_smallest(c[mine], row_keys(selected[mine], seed), selected[mine], keep, EXAMPLES))
    other = _other_examples(tree, ups, keeps, others, selected, seeds, EXAMPLES)
    levels, examples = [], set()
    for t, (keep, note) in enumerate(shown):
        sizes = tree.sizes(t)
        children = np.bincount(tree.labels[t], minlength=sizes.size) if t else None
        dist = _mean_distances(tree, t)
        members = []
        for a, b in zip(curated[t], other[t]):
            half = a[: EXAMPLES // 2]
            rows = np.concatenate([half, b[: EXAMPLES - half.size]])
            rows = np.concatenate([rows, a[half.size : half.size + EXAMPLES - rows.size]])
            members.append(rows)
            examples.update(rows.tolist())
        parent = tree.labels[t + 1][keep] if t + 1 < tree.n_levels else np.full(keep.size, -1)
        levels.append(
            {
                "k": int(sizes.size),
                "note": note,
                "c": keep.tolist(),
                "n": sizes[keep].tolist(),
                "s": times_picked[t][keep].tolist(),
                "p": np.asarray(parent).tolist(),
                "h": None if children is None else children[keep].tolist(),
                "d": None if dist is None else [None if np.isnan(x) else round(float(x), 4) for x in dist[keep]],
                "e": [[[_id(ids, r), int(_in(selected, r)), int(r)] for r in rows] for rows in members],
            }
        )
    data: dict = {"levels": levels, "kind": None, "values": {}, "note": ""}
    if show is not None:
        rows = np.array(sorted(examples), dtype=np.int64)
        kind = _value_kind([show[int(r)] for r in rows[:200]])
        budget = MAX_IMAGES if kind == "image" else MAX_TEXTS
        order = [int(r) for lv in reversed(levels) for ex in lv["e"] for _, _, r in ex]
        wanted = list(dict.fromkeys(order))[:budget]
        data["kind"], data["values"] = kind, {str(r): v for r, v in _values(show, wanted, kind).items()}
        if len(wanted) < rows.size:
            data["note"] = (
                f"{'Thumbnails' if kind == 'image' else 'Snippets'} of the first {len(wanted)} of "
                f"{rows.size} example members (the top level's largest clusters first)."
            )
    return data


def _in(sorted_rows, row) -> bool:
    i = np.searchsorted(sorted_rows, row)
    return bool(i < sorted_rows.size and sorted_rows[i] == row)


def _id(ids, row):
    return int(row) if ids is None else str(ids[int(row)])


def to_json(data) -> str:
    """``data`` as JSON that can sit inside a ``<script>`` element: ``<``, ``>``, ``&``
    and the line separators escaped, so no text in it can close the element."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    for char in "<>&\u2028\u2029":
        text = text.replace(char, f"\\u{ord(char):04x}")
    return text


SCRIPT = r"""
(function () {
  var data = JSON.parse(document.getElementById("hk-clusters").textContent);
  var L = data.levels, top = L.length - 1, root = document.getElementById("browser");
  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }
  var index = L.map(function (lv) {
    var m = {};
    lv.c.forEach(function (c, i) { m[c] = i; });
    return m;
  });
  function row(t, i) {
    var lv = L[t];
    return {t: t, i: i, c: lv.c[i], n: lv.n[i], s: lv.s[i],
            d: lv.d ? lv.d[i] : null, h: lv.h ? lv.h[i] : null, e: lv.e[i]};
  }
  function children(t, c) {
    if (t === 0) return [];
    var out = [];
    L[t - 1].p.forEach(function (p, i) { if (p === c) out.push(row(t - 1, i)); });
    return out;
  }
  var columns = [["cluster", "c"], ["pool", "n"], ["curated", "s"],
                 ["mean distance", "d"], ["children", "h"]];
  function table(rows, t) {
    var tab = el("table", null, "clusters"), head = el("tr"), body = el("tbody");
    var key = "n", down = true;
    columns.forEach(function (col) {
      if (col[1] === "h" && t === 0) return;
      var th = el("th", col[0]);
      th.addEventListener("click", function () {
        down = key === col[1] ? !down : true;
        key = col[1];
        fill();
      });
      head.appendChild(th);
    });
    head.appendChild(el("th", "example members (\u2605 curated)"));
    tab.appendChild(el("thead")).appendChild(head);
    tab.appendChild(body);
    function fill() {
      rows.sort(function (a, b) {
        var x = a[key] === null ? -1 : a[key], y = b[key] === null ? -1 : b[key];
        return down ? y - x : x - y;
      });
      body.textContent = "";
      rows.forEach(function (r) {
        var tr = el("tr");
        tr.dataset.cluster = r.t + "." + r.c;
        columns.forEach(function (col) {
          if (col[1] === "h" && t === 0) return;
          tr.appendChild(el("td", r[col[1]] === null ? "" : r[col[1]]));
        });
        tr.appendChild(el("td", r.e.map(function (x) {
          return (x[1] ? "\u2605" : "") + x[0];
        }).join(", ")));
        tr.addEventListener("click", function () { open(r.t, r.c); });
        body.appendChild(tr);
      });
    }
    fill();
    return tab;
  }
  var detail = el("div", null, "detail");
  function examples(r) {
    var grid = el("div", null, "examples");
    r.e.forEach(function (x) {
      var cell = el("figure", null, x[1] ? "curated" : "");
      var v = data.values[String(x[2])];
      if (data.kind === "image" && typeof v === "string" &&
          v.indexOf("data:image/jpeg;base64,") === 0) {
        var img = el("img");
        img.src = v;
        img.alt = String(x[0]);
        cell.appendChild(img);
      } else if (data.kind === "text" && v !== undefined) {
        cell.appendChild(el("p", v));
      }
      cell.appendChild(el("figcaption", (x[1] ? "\u2605 " : "") + x[0]));
      grid.appendChild(cell);
    });
    return grid;
  }
  function open(t, c) {
    var i = index[t] === undefined ? undefined : index[t][c];
    if (i === undefined) return;  // a link to a level or cluster the page does not describe
    var r = row(t, i), path = [], u = t, p = c;
    while (u <= top && p !== undefined && p >= 0) {
      path.unshift("level " + u + " cluster " + p);
      var j = index[u][p];
      p = j === undefined ? -1 : L[u].p[j];
      u += 1;
    }
    detail.textContent = "";
    detail.appendChild(el("h3", path.join(" \u203a ")));
    detail.appendChild(el("p", r.n + " points in the pool, " + r.s + " curated" +
      (r.d === null ? "" : ", mean distance " + r.d) + "."));
    detail.appendChild(examples(r));
    if (t > 0) {
      var kids = children(t, c);
      detail.appendChild(el("p", kids.length + " of its " + r.h +
        " children described; click one to open it."));
      detail.appendChild(table(kids, t - 1));
    }
    if (location.hash !== "#c=" + t + "." + c) history.replaceState(null, "", "#c=" + t + "." + c);
  }
  root.appendChild(el("h3", "Top level: " + L[top].k + " clusters"));
  L.forEach(function (lv, t) {
    if (lv.note) root.appendChild(el("p", "Level " + t + " describes " + lv.note + ".", "note"));
  });
  if (data.note) root.appendChild(el("p", data.note, "note"));
  var all = L[top].c.map(function (c, i) { return row(top, i); });
  root.appendChild(table(all, top));
  root.appendChild(detail);
  var m = /^#c=(\d+)\.(\d+)$/.exec(location.hash);
  if (m) open(Number(m[1]), Number(m[2]));
})();
"""

STYLE = (
    "#browser table.clusters td,#browser table.clusters th{padding:2px 8px;cursor:pointer}"
    "#browser table.clusters tr:hover{background:#eef}"
    "#browser .examples{display:flex;flex-wrap:wrap;gap:6px}"
    "#browser figure{margin:0;width:140px;border:1px solid #ccc;padding:3px;font-size:80%;overflow:hidden}"
    "#browser figure.curated{border:2px solid #d60}"
    "#browser figure p{margin:0;max-height:6em;overflow:hidden}"
    "#browser .note{color:#555}"
)


def browser_html(data) -> str:
    """The browser's section of the page: ``data`` (:func:`cluster_data`) as JSON,
    the element it fills and its script.

    Parameters
    ----------
    data : dict

    Returns
    -------
    str
    """
    return (
        f"<style>{STYLE}</style><div id='browser'></div>"
        f"<script type='application/json' id='hk-clusters'>{to_json(data)}</script>"
        f"<script>{SCRIPT}</script>"
    )
