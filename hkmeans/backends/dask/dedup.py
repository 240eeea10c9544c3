"""Near-duplicate removal (:func:`hkmeans.dedup`) on a Dask cluster.

The work is the in-process one, split so that every row's arithmetic is the same:

1. Per chunk, on the workers: exact squared norms (and the checks of the rows), then
   nearest centroid, squared distance and border clusters by the in-process kernel.
   The chunks are cut at multiples of the kernel's block (``_config.CHUNK_ROWS``
   rows from the first), so each row is in the block it has in process: labels and
   distances are the same bits whatever the input's chunking.
2. On the client: the rank order (from the distances, or the seeded permutation) and
   the clusters shared out to groups, by size and imports, about
   ``GROUPS_PER_WORKER`` per worker.
3. Per group, one task gathers the rows of its clusters and the border rows of other
   clusters that its clusters import (each chunk sends each group its share), and
   keeps them for the rounds.
4. Rounds, as the in-process sweeps: each open group sweeps its open clusters once
   with the in-process kernel, its own rows' states as the round leaves them, the
   imported rows' as the round found them. It returns the changes of its own rows
   (with the duplicate and its exact score once a row is removed) to the client and
   the changes of its exported rows to the groups that import them, which apply them
   before the next round. A row's decision in a round thus reads exactly the states
   it reads in process, so every round, hence the result, is the in-process one.

The client holds arrays of one entry per row (labels, distances, ranks and order,
states, ``duplicate_of``, ``similarity``), per cluster counts, and the centroids'
sample; never rows beyond that sample nor any list of pairs. A group's task holds
its rows and its imports.
"""

from __future__ import annotations

import heapq
import operator

import dask
import numpy as np

from ... import _config
from ..._kernels.cpu import dedup as kernels
from ..._kernels.cpu._common import kernel_input
from ..._threads import single_threaded_blas
from ..cuda_dedup import Scorer
from ..dedup import (
    Candidates,
    border_err,
    borders,
    centroid_geometry,
    exact_norms,
    rank_order,
    search_dtype,
    search_radius,
    sq_range,
    sweep_pass,
)
from .backend import as_rows
from .client import check_workers, compute, persist, pick_client
from .tasks import KERNELS_LOCK

#: Groups of clusters per worker (each a task per round): more spread the rounds'
#: work more evenly, fewer ship fewer border rows twice.
GROUPS_PER_WORKER = 2

#: A group holds about this many bytes of rows at most (its own and its imports):
#: more groups than ``GROUPS_PER_WORKER`` per worker where the data need them.
GROUP_BYTES = 512 << 20


def dedup(X, threshold, metric, keep, rng, centroids, device, client):
    """:func:`hkmeans.dedup` of a dask array (or an array given with
    ``backend="dask"``), its parameters checked: ``(kept, duplicate_of, similarity,
    order, labels, pairs compared)``. ``centroids(X, take)`` gives the level-0
    centroids, reading the rows it needs by ``take(rows)``."""
    client = pick_client(client, device)
    check_workers(client, device)
    X = _as_rows(X)
    n, d = X.shape
    cosine = metric == "cosine"
    chunk = _config.CHUNK_ROWS
    X = X.rechunk({0: max(1, round(max(X.chunks[0]) / chunk)) * chunk, 1: -1})
    # 1. the chunks read once and kept with their norms (the rows are checked), then
    # the centroids and the border clusters
    starts = np.concatenate([[0], np.cumsum(X.chunks[0])]).astype(np.int64)
    chunks = persist(
        *[dask.delayed(_norms)(p, int(s), cosine) for p, s in zip(X.to_delayed().ravel(), starts)], client=client
    )
    ranges = np.array(compute(*[dask.delayed(_sq_range)(c) for c in chunks], client=client))
    max_sq = float(ranges[:, 1].max())
    dtype = search_dtype(X.dtype, float(ranges[:, 0].min()), max_sq, threshold, cosine)
    if dtype != X.dtype:  # as in process: float32 rows whose products would leave its range
        chunks = persist(*[dask.delayed(_widened)(c, dtype) for c in chunks], client=client)
        X = X.astype(dtype)  # its dtype and shape only: the rows are read from the chunks

    def take(rows):
        """Rows ``rows`` (sorted), gathered from the chunks that hold them."""
        cut = np.searchsorted(rows, starts)
        got = [
            dask.delayed(_rows_of)(chunks[j], rows[cut[j] : cut[j + 1]] - starts[j])
            for j in range(len(chunks))
            if cut[j + 1] > cut[j]
        ]
        return np.concatenate(compute(*got, client=client))

    C = centroids(X, take)
    k = C.shape[0]
    geometry = centroid_geometry(C, X.dtype)
    err = border_err(X, float(max_sq), geometry[2], cosine)
    radius = search_radius(threshold, cosine, X)
    geometry_d = dask.delayed(geometry, traverse=False)
    borders = persist(
        *[dask.delayed(_chunk_borders)(c, geometry_d, cosine, radius, err, chunk, k) for c in chunks],
        client=client,
    )
    small = compute(*[dask.delayed(_summary)(b) for b in borders], client=client)
    labels = np.concatenate([s[0] for s in small])
    sqdist = np.concatenate([s[1] for s in small])
    counts = np.array([s[2] for s in small]).reshape(len(small), 2, k)  # chunk, (own, imports), cluster

    # 2. rank order and groups
    order = rank_order(keep, sqdist, rng)
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    group_of = _groups(counts.sum(axis=0), d * X.dtype.itemsize, _n_workers(client))
    n_groups = int(group_of.max()) + 1

    # 3. each group's rows and imports, gathered by one task
    pieces = [[] for _ in range(n_groups)]
    group_d = dask.delayed(group_of)
    for j, (c, b) in enumerate(zip(chunks, borders)):
        touched = np.unique(group_of[counts[j].sum(axis=0) > 0])
        touched = touched[touched >= 0]
        if touched.size == 0:
            continue
        split = dask.delayed(_split)(c, b, rank[starts[j] : starts[j + 1]], int(starts[j]), group_d, touched)
        for g in touched:
            pieces[g].append(dask.delayed(operator.getitem)(split, int(g)))
    groups = [dask.delayed(_gather)(g, group_d, k, *pieces[g]) for g in range(n_groups)]
    groups = list(persist(*groups, client=client))
    chunks, borders, pieces = [], [], []  # the groups hold the rows now

    # 4. rounds until every row is decided
    state = np.zeros(n, dtype=np.int8)
    duplicate_of = np.full(n, -1, dtype=np.int64)
    similarity = np.full(n, np.nan)
    compared = np.zeros(k, dtype=np.int64)
    group_rows = np.bincount(group_of[labels], minlength=n_groups)
    open_groups = np.flatnonzero(group_rows)
    states = {int(g): None for g in open_groups}
    outboxes = {}
    sent = {}
    while open_groups.size:
        tasks = []
        for g in open_groups:
            g = int(g)
            inbox = [dask.delayed(operator.getitem)(outboxes[h], g) for h in sorted(sent) if g in sent[h]]
            tasks.append(dask.delayed(_round)(groups[g], states[g], cosine, threshold, device, *inbox))
        results = dict(zip(map(int, open_groups), persist(*tasks, client=client)))
        states = {g: dask.delayed(operator.getitem)(r, 0) for g, r in results.items()}
        outboxes = {g: dask.delayed(operator.getitem)(r, 1) for g, r in results.items()}
        reports = compute(*[dask.delayed(operator.getitem)(r, 2) for r in results.values()], client=client)
        changed = 0
        sent = {}
        for g, (ids, new, dup, sim, clusters, pairs, dests) in zip(results, reports):
            state[ids] = new
            removed = new == kernels.REMOVED
            duplicate_of[ids[removed]] = dup
            similarity[ids[removed]] = sim
            compared[clusters] += pairs
            changed += ids.size
            sent[g] = set(dests)
        if changed == 0:
            raise RuntimeError("dedup made no progress in a sweep.")  # the rule guarantees progress
        still = (state == kernels.UNDECIDED) | (state == kernels.PENDING)
        open_groups = np.flatnonzero(np.bincount(group_of[labels[still]], minlength=n_groups))
    return np.flatnonzero(state == kernels.KEPT), duplicate_of, similarity, order, labels, int(compared.sum())


def _as_rows(X):
    """``X`` as a 2-D dask array of float32 or float64 (others cast to float64, as in
    process) in one chunk of columns; a ValueError of one line if it cannot be."""
    shape = np.shape(X)
    if len(shape) != 2 or 0 in shape:
        raise ValueError(f"X must be a non-empty 2-D array, got shape {shape}.")
    try:
        return as_rows(X, cast=np.float64)
    except TypeError as e:  # not numbers: a ValueError, as in process
        raise ValueError(str(e)) from None


def _n_workers(client) -> int:
    return 1 if client is None else max(1, len(client.scheduler_info().get("workers", {})))


def _groups(counts, row_bytes, n_workers):
    """Group of each cluster (-1 for an empty one): clusters by decreasing rows (own
    and imported), each to the group with the fewest so far."""
    own, imports = counts
    weight = own + imports
    busy = np.flatnonzero(own > 0)
    by_bytes = int(np.ceil(float(weight.sum()) * row_bytes / GROUP_BYTES))
    n_groups = max(1, min(busy.size, max(GROUPS_PER_WORKER * n_workers, by_bytes)))
    group_of = np.full(own.shape[0], -1, dtype=np.int64)
    heap = [(0, g) for g in range(n_groups)]
    for c in busy[np.argsort(-weight[busy], kind="stable")]:
        load, g = heapq.heappop(heap)
        group_of[c] = g
        heapq.heappush(heap, (load + int(weight[c]), g))
    return group_of


# ---------------------------------------------------------------------------
# tasks


def _norms(x, start, cosine):
    """A chunk's rows (first row ``start``) and their exact squared norms, with the
    checks of :func:`hkmeans.dedup._check_data`."""
    x = np.ascontiguousarray(x)
    return x, exact_norms(x, start, cosine)


def _sq_range(chunk):
    return sq_range(chunk[1])


def _widened(chunk, dtype):
    return chunk[0].astype(dtype), chunk[1]


def _rows_of(chunk, rows):
    return chunk[0][rows]


def _chunk_borders(chunk, geometry, cosine, radius, err, chunk_rows, k):
    """A chunk's labels, distances and border clusters (CSR), and per cluster its
    rows and the rows that border it."""
    x, sq = chunk
    with KERNELS_LOCK, single_threaded_blas():
        labels, sqdist, offsets, clusters = borders(x, sq, geometry, cosine, radius, err, chunk_rows)
    counts = np.stack([np.bincount(labels, minlength=k), np.bincount(clusters, minlength=k)])
    return labels, sqdist, offsets, clusters, counts


def _summary(b):
    return b[0], b[1], b[4]


def _split(chunk, b, rank, start, group_of, touched):
    """A chunk's share for each group in ``touched``: the rows of its clusters (with
    all their border clusters) and the rows bordering them (with just the border
    clusters of the group), as ``(ids, rows, sq, rank, labels, counts, clusters)``."""
    x, sq = chunk
    labels, _, offsets, clusters, _ = b
    n = labels.shape[0]
    row_of = np.repeat(np.arange(n), np.diff(offsets))
    own_group = group_of[labels]
    border_group = group_of[clusters]
    out = {}
    for g in touched:
        g = int(g)
        own = own_group == g
        entry = own[row_of] | (border_group == g)  # border entries the group keeps
        rows = np.flatnonzero(own | (np.bincount(row_of[border_group == g], minlength=n) > 0))
        keep = entry  # a row with an entry of the group's is among ``rows``
        per_row = np.bincount(row_of[keep], minlength=n)[rows]
        out[g] = (start + rows, x[rows], sq[rows], rank[rows], labels[rows], per_row, clusters[keep])
    return out


def _gather(g, group_of, k, *pieces):
    """A group's rows (by row number) and what its sweeps need of them."""
    ids = np.concatenate([p[0] for p in pieces])
    X = np.ascontiguousarray(np.concatenate([p[1] for p in pieces]))
    sq = np.concatenate([p[2] for p in pieces])
    global_rank = np.concatenate([p[3] for p in pieces])
    labels = np.concatenate([p[4] for p in pieces]).astype(np.int64)
    border_offsets = np.zeros(ids.shape[0] + 1, dtype=np.int64)
    np.cumsum(np.concatenate([p[5] for p in pieces]), out=border_offsets[1:])
    border_clusters = np.concatenate([p[6] for p in pieces]).astype(np.int32)
    by_rank = np.argsort(global_rank, kind="stable")
    rank = np.empty(ids.shape[0], dtype=np.int64)
    rank[by_rank] = np.arange(ids.shape[0])  # dense: the kernels' "no row" is the row count
    own = group_of[labels] == g
    # own rows that other groups import, by importing group
    row_of = np.repeat(np.arange(ids.shape[0]), np.diff(border_offsets))
    dest = group_of[border_clusters]
    pick = own[row_of] & (dest >= 0) & (dest != g)
    pairs = np.unique(np.stack([dest[pick], row_of[pick]]), axis=1)
    exports = {int(h): pairs[1, pairs[0] == h] for h in np.unique(pairs[0])}
    candidates = Candidates.of(X, sq, rank, labels, k, border_offsets, border_clusters)
    return dict(ids=ids, by_rank=by_rank, own=np.flatnonzero(own), exports=exports, candidates=candidates)


def _round(group, prev, cosine, threshold, device, *inbox):
    """One sweep of the group's open clusters. Returns the states of its rows after it,
    the changes of its exported rows by importing group, and its report to the
    client: its own rows changed, their new states, for those removed the duplicate
    (row number) and its exact score, the pairs compared per cluster, and the groups
    sent changes."""
    n = group["ids"].shape[0]
    if prev is None:
        state = np.zeros(n, dtype=np.int8)
        first_kept = np.full(n, n, dtype=np.int64)
    else:
        state, first_kept = prev[0].copy(), prev[1].copy()
    for ids, new in inbox:
        state[np.searchsorted(group["ids"], ids)] = new
    own = group["own"]
    open_rows = own[(state[own] == kernels.UNDECIDED) | (state[own] == kernels.PENDING)]
    c = group["candidates"]
    compared = np.zeros(c.member_offsets.shape[0] - 1, dtype=np.int64)
    X, sq = c.X, c.sq
    scorer = None
    if device == "cuda":
        scorer = Scorer(X, sq, cosine)
    with KERNELS_LOCK, single_threaded_blas():
        before = sweep_pass(c, open_rows, state, first_kept, cosine, threshold, compared, scorer)
    changed = np.flatnonzero(state != before)
    removed = changed[state[changed] == kernels.REMOVED]
    dup = group["by_rank"][first_kept[removed]]
    scores = np.empty(removed.shape[0])
    kernels.pair_scores(kernel_input(X), sq, removed, dup, cosine, scores)
    outbox = {}
    for h, rows in group["exports"].items():
        moved = rows[state[rows] != before[rows]]
        if moved.size:
            outbox[h] = (group["ids"][moved], state[moved])
    clusters = np.flatnonzero(compared)
    ids = group["ids"]
    report = (ids[changed], state[changed], ids[dup], scores, clusters, compared[clusters], sorted(outbox))
    return (state, first_kept), outbox, report
