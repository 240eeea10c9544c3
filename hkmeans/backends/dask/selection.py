"""Distributed selection: the ``take[c]`` rows of each cluster with the smallest
scores, found without gathering the rows (a tree of merges, or per-cluster thresholds
found by rounds of histograms), and rows gathered by index."""

from __future__ import annotations

import dask
import numpy as np

from ... import _config
from .client import compute
from .reductions import add_all, counts, first_item, gather_blocks, map_chunks, tree_reduce
from .storage import read_rows, source_of
from .tasks import first_row, one_block


def smallest(labels, scores, rows, r):
    """The ``r[c]`` entries of each cluster ``c`` with the smallest ``(score, row)``,
    in cluster order, then by ``(score, row)``."""
    o = np.lexsort((rows, scores, labels))
    lab = labels[o]
    rank = np.arange(lab.shape[0]) - np.searchsorted(lab, lab, side="left")
    keep = o[rank < r[lab]]
    return labels[keep], scores[keep], rows[keep]


def smallest_block(labels, scores, r, block_info=None):
    rows = first_row(block_info) + np.arange(labels.shape[0], dtype=np.int64)
    return one_block(smallest(labels, scores, rows, r))


def _merge_smallest(parts, r):
    return smallest(*(np.concatenate(a) for a in zip(*parts)), r)


def _repeats(labels, scores, start, copies, r, last_score, last_row):
    """How many times each row of a chunk (first row ``start``) is picked:
    ``copies[label]``, once more if it is among its cluster's ``r`` smallest
    ``(score, row)``, those up to ``(last_score, last_row)``."""
    rows = start + np.arange(labels.shape[0], dtype=np.int64)
    s, t = last_score[labels], last_row[labels]
    chosen = (r[labels] > 0) & ((scores < s) | ((scores == s) & (rows <= t)))
    return rows, copies[labels] + chosen


def picked_block(labels, scores, *picks, block_info=None):
    rows, times = _repeats(labels, scores, first_row(block_info), *picks)
    return one_block(np.repeat(rows, times))


def picked_count_block(labels, scores, *picks, block_info=None):
    return one_block(int(_repeats(labels, scores, first_row(block_info), *picks)[1].sum()))


def subset_block(x, labels, scores, *picks, block_info=None):
    times = _repeats(labels.ravel(), scores.ravel(), first_row(block_info), *picks)[1]
    return one_block(np.repeat(x, times, axis=0))


def last_picks(picked, k):
    """Per cluster, the ``(score, row)`` of the last of its picks in ``picked``
    (``(labels, scores, rows)`` by cluster, then ``(score, row)``); ``(-inf, -1)``
    for a cluster without any."""
    lab, score, rows = picked
    last = np.flatnonzero(np.diff(np.append(lab, -1)))
    last_score = np.full(k, -np.inf)
    last_row = np.full(k, -1, dtype=np.int64)
    last_score[lab[last]], last_row[lab[last]] = score[last], rows[last]
    return last_score, last_row


def select(labels, k, take, scores, sizes=None, client=None, sort=False) -> np.ndarray:
    """``take[c]`` rows of each cluster ``c`` (dask ``labels`` and ``scores``):
    ``take[c] // m`` copies of its ``m`` rows, then the ``take[c] % m`` with the
    smallest ``(score, row)``. In cluster order, each by ``(score, row)`` (as the
    in-process :meth:`~hkmeans.backends.cpu.CPUBackend.select`), or sorted with
    ``sort``. Costs a pass for the ``sizes`` if not given, one for the smallest rows of
    each cluster (a tree of merges), and, when some cluster gives whole copies, one
    that picks the rows per chunk against per-cluster thresholds."""
    copies, r, sizes, smallest = _smallest_of(labels, k, take, scores, sizes, client)
    lab, score, rows = compute(smallest, client=client)[0]
    if not copies.any():
        return np.sort(rows) if sort else rows
    picks = (copies, r, *last_picks((lab, score, rows), k))
    picked = map_chunks([labels, scores], picked_block, *map(dask.delayed, picks))
    out = np.concatenate(gather_blocks(picked, client))  # chunk order: sorted
    if sort:
        return out
    out_labels = lookup_np(labels, out, client)
    whole = copies[out_labels] > 0
    rows_whole, first = np.unique(out[whole], return_index=True)
    return in_cluster_order(rows_whole, out_labels[whole][first], copies, sizes, (lab, rows))


def in_cluster_order(whole, whole_labels, copies, sizes, smallest):
    """The rows of a selection in the in-process order: cluster by cluster, its
    ``copies[c]`` copies of its rows in row order (``whole``, sorted, and their labels:
    the rows of the clusters that give copies), then its rows among ``smallest``
    (``(labels, rows)`` by cluster, then ``(score, row)``)."""
    lab_s, rows_s = smallest
    take = copies * sizes + np.bincount(lab_s, minlength=copies.shape[0])
    base = np.cumsum(take) - take  # where each cluster's rows start
    out = np.empty(int(take.sum()), dtype=np.int64)
    o = np.lexsort((whole, whole_labels))
    w_rows, w_lab = whole[o], whole_labels[o]
    j = np.arange(w_rows.shape[0]) - np.searchsorted(w_lab, w_lab, side="left")  # place within the cluster
    rep = copies[w_lab]
    t = np.arange(int(rep.sum())) - np.repeat(np.cumsum(rep) - rep, rep)  # which copy
    e_lab = np.repeat(w_lab, rep)
    out[base[e_lab] + t * sizes[e_lab] + np.repeat(j, rep)] = np.repeat(w_rows, rep)
    rank = np.arange(lab_s.shape[0]) - np.searchsorted(lab_s, lab_s, side="left")
    out[base[lab_s] + copies[lab_s] * sizes[lab_s] + rank] = rows_s
    return out


def _smallest_of(labels, k, take, scores, sizes, client):
    """``(copies, r, sizes, smallest)`` of a selection of ``take[c]`` rows per cluster:
    whole copies of every row and ``r[c]`` more, from clusters of ``sizes`` rows
    (counted if None); ``smallest``: the ``r[c]`` smallest ``(score, row)`` of each
    cluster (a Delayed: ``(labels, scores, rows)`` merged in a tree)."""
    copies, r, sizes = _copies(labels, k, take, sizes, client)
    r_ = dask.delayed(r)
    smallest = tree_reduce(map_chunks([labels, scores], smallest_block, r_), first_item, _merge_smallest, r_)
    return copies, r, sizes, smallest


def _copies(labels, k, take, sizes, client):
    take = np.asarray(take, dtype=np.int64)
    sizes = counts(labels, k, client) if sizes is None else np.asarray(sizes, dtype=np.int64)
    if np.any((take > 0) & (sizes == 0)):
        raise ValueError("select asks for rows of an empty cluster.")
    copies = np.where(sizes > 0, take // np.maximum(sizes, 1), 0)
    return copies, take - copies * sizes, sizes


#: Bins per cluster of each round of :func:`thresholds`.
BINS = 16


def thresholds(labels, scores, k, r, sizes, client=None):
    """Per cluster ``c``, the ``(score, row)`` of the ``r[c]``-th smallest
    ``(score, row)`` of its rows (``(-inf, -1)`` where ``r[c]`` is 0), as
    :func:`last_picks` of the ``r[c]`` smallest, without holding them all: each round
    counts every cluster's rows in ``BINS`` bins of its range of scores still open
    and keeps the bin of its ``r[c]``-th; once the open ranges hold at most a chunk's
    bytes of ``(label, score, row)`` (or after 16 rounds: ties), their rows are
    merged in a tree. Every task holds O(k x BINS) counts or one chunk."""
    r = np.asarray(r, dtype=np.int64)
    active = r > 0
    lo, hi = np.where(active, -np.inf, np.inf), np.full(k, np.inf)  # ranges are [lo, hi)
    below = np.zeros(k, dtype=np.int64)  # rows under lo
    band = np.where(active, sizes, 0)
    cap = max(1, _config.DASK_CHUNK_BYTES // 24)
    frac = np.arange(1, BINS) / BINS
    for round_ in range(16):
        if band.sum() <= cap:
            break
        if round_ == 0:  # the clusters' ranges of scores, only if a round runs
            lo, hi = compute(
                tree_reduce(map_chunks([labels, scores], range_block, k), first_item, _range_merge), client=client
            )[0]
            lo, hi = np.where(active, lo, np.inf), np.where(active, np.nextafter(hi, np.inf), np.inf)
        width = np.where(active, hi, 0) - np.where(active, lo, 0)
        edges = np.where(active[:, None], lo[:, None] + width[:, None] * frac, np.inf)
        hist = compute(
            tree_reduce(
                map_chunks([labels, scores], histogram_block, *map(dask.delayed, (lo, hi, edges))), first_item, add_all
            ),
            client=client,
        )[0].reshape(k, BINS)
        cum = np.cumsum(hist, axis=1)
        b = np.argmax(cum >= (r - below)[:, None], axis=1)  # the bin of the r-th
        at = np.arange(k)
        below = np.where(active, below + cum[at, b] - hist[at, b], below)
        lo = np.where(active & (b > 0), edges[at, np.maximum(b - 1, 0)], lo)
        hi = np.where(active & (b < BINS - 1), edges[at, np.minimum(b, BINS - 2)], hi)
        band = np.where(active, hist[at, b], 0)
    need = np.where(active, r - below, 0)
    need_ = dask.delayed(need)
    leaves = map_chunks([labels, scores], band_block, *map(dask.delayed, (lo, hi)), need_)
    return compute(dask.delayed(last_picks)(tree_reduce(leaves, first_item, _merge_smallest, need_), k), client=client)[
        0
    ]


def range_block(labels, scores, k):
    lab, s = labels.ravel(), scores.ravel()
    lo, hi = np.full(k, np.inf), np.full(k, -np.inf)
    np.minimum.at(lo, lab, s)
    np.maximum.at(hi, lab, s)
    return one_block((lo, hi))


def _range_merge(parts):
    return np.minimum.reduce([p[0] for p in parts]), np.maximum.reduce([p[1] for p in parts])


def _in_range(labels, scores, lo, hi):
    lab, s = labels.ravel(), scores.ravel()
    return (s >= lo[lab]) & (s < hi[lab])


def histogram_block(labels, scores, lo, hi, edges):
    inside = _in_range(labels, scores, lo, hi)
    lab, s = labels.ravel()[inside], scores.ravel()[inside]
    b = np.empty(lab.shape[0], dtype=np.int64)
    for a in range(0, lab.shape[0], 1 << 14):  # bins by comparison with the edges themselves, a slice at a time
        b[a : a + (1 << 14)] = np.sum(s[a : a + (1 << 14), None] >= edges[lab[a : a + (1 << 14)]], axis=1)
    return one_block(np.bincount(lab * BINS + b, minlength=lo.shape[0] * BINS))


def band_block(labels, scores, lo, hi, need, block_info=None):
    inside = _in_range(labels, scores, lo, hi)
    rows = first_row(block_info) + np.flatnonzero(inside)
    return one_block(smallest(labels.ravel()[inside], scores.ravel()[inside], rows, need))


def subset(X, labels, k, take, scores, client=None):
    """The rows :func:`select` picks, as a dask array in row order to be computed on
    the workers: the per-cluster thresholds are found by :func:`thresholds` (the
    client gets O(k) numbers a round), then each chunk keeps its picked rows."""
    copies, r, sizes = _copies(labels, k, take, None, client)
    picks = (copies, r, *thresholds(labels, scores, k, r, sizes, client))
    picks_ = [dask.delayed(p) for p in picks]
    sizes = gather_blocks(map_chunks([labels, scores], picked_count_block, *picks_), client)
    parts = map_chunks([X, labels, scores], subset_block, *picks_)
    rows = parts.map_blocks(
        first_item,
        chunks=(tuple(sizes), (X.shape[1],)),
        new_axis=1,
        dtype=X.dtype,
        meta=np.empty((0, X.shape[1]), dtype=X.dtype),
    )
    return rows.blocks[[i for i, m in enumerate(sizes) if m > 0]]  # no empty chunks


def gather_rows(a, rows, client=None) -> np.ndarray:
    """``a[rows]`` of a dask array for a small set of ``rows`` (sorted, unique),
    gathered; an array read from files (see
    :func:`~hkmeans.backends.dask.storage.source_of`) is read by one task per chunk that
    has some of them, which keeps just those."""
    source = source_of(a)
    if source is None:
        return compute(a[rows], client=client)[0]
    starts = np.concatenate([[0], np.cumsum(a.chunks[0])]).astype(np.int64)
    cut = np.searchsorted(rows, starts)  # rows[cut[c]:cut[c + 1]] are in chunk c
    source = dask.delayed(source)
    parts = [
        dask.delayed(_rows_of)(source, int(starts[c]), int(starts[c + 1]), rows[cut[c] : cut[c + 1]] - starts[c])
        for c in range(len(starts) - 1)
        if cut[c + 1] > cut[c]
    ]
    got = compute(*parts, client=client)
    return np.concatenate(got) if got else np.empty((0, *a.shape[1:]), dtype=a.dtype)


def _rows_of(source, start, stop, rows):
    return read_rows(source, start, stop)[rows]


def lookup_np(labels, rows, client=None):
    """``labels[rows]`` of a dask array, gathered."""
    unique = np.unique(rows)
    return gather_rows(labels, unique, client)[np.searchsorted(unique, rows)]
