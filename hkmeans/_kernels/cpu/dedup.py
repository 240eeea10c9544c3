"""Near-duplicate search: rows to centroids with the half-space bound, and the
greedy sweep over the clusters in rank order (blocked GEMMs, exact checks near the
threshold).

Row states in a sweep: 0 undecided, 1 kept, 2 removed (its duplicate known),
3 removed (its duplicate not yet known: an undecided row ranks before the first kept
match).
"""

import numpy as np
from numba import prange

from ._common import _task_range, njit, stable_argsort

UNDECIDED, KEPT, REMOVED, PENDING = 0, 1, 2, 3


@njit(cache=True)
def exact_sq_norms(X, out):
    """Squared row sq as float64 sums in feature order (the order the reference
    uses)."""
    for i in range(X.shape[0]):
        s = 0.0
        for f in range(X.shape[1]):
            p = np.float64(X[i, f]) * np.float64(X[i, f])
            s += p
        out[i] = s


#: The smallest normal float64.
FLOAT64_TINY = float(np.finfo(np.float64).tiny)


@njit(cache=True, inline="always")
def exact_score(x, y, sqx, sqy, cosine):
    """Cosine similarity or Euclidean distance of ``x`` and ``y`` (squared norms
    ``sqx``, ``sqy``): float64 products summed in feature order, so that every caller
    gets the same bits. The cosine divides by ``sqrt(sqx * sqy)``, which is exactly
    ``sqx`` for equal rows: copies score exactly 1. Where ``sqx * sqy`` leaves float64's
    normal numbers (norms beyond about 1e77 or below 1e-77) it is ``s / sqx`` for equal
    norms (the same value), else ``s / (sqrt(sqx) sqrt(sqy))``."""
    s = 0.0
    if cosine:
        for f in range(x.shape[0]):
            p = np.float64(x[f]) * np.float64(y[f])
            s += p
        d = sqx * sqy
        if not FLOAT64_TINY <= d < np.inf:  # beyond float64's normal numbers
            return s / sqx if sqx == sqy else s / (np.sqrt(sqx) * np.sqrt(sqy))
        return s / np.sqrt(d)
    for f in range(x.shape[0]):
        t = np.float64(x[f]) - np.float64(y[f])
        p = t * t
        s += p
    return np.sqrt(s)


@njit(cache=True, inline="always")
def _is_match(g, X, i, p, sq, cosine, threshold, band):
    """Whether rows ``i`` and ``p`` are within the threshold, from ``g``: their
    cosine for "cosine" (unit rows' product), their product for "euclidean". Decided
    on ``g`` away from the threshold, by :func:`exact_score` within ``band`` of it."""
    if cosine:
        if g < threshold - band:
            return False
        if g > threshold + band:
            return True
        return exact_score(X[i], X[p], sq[i], sq[p], True) >= threshold
    d2 = sq[i] + sq[p] - 2.0 * g
    slack = band * (sq[i] + sq[p])
    t2 = threshold * threshold
    if d2 > t2 + slack:
        return False
    if d2 < t2 - slack:
        return True
    return exact_score(X[i], X[p], sq[i], sq[p], False) <= threshold


@njit(parallel=True, cache=True)
def nearest_and_borders(
    X,
    sq,
    C,
    CT,
    c_sq,
    cdist,
    cosine,
    radius,
    err,
    chunk,
    n_tasks,
    labels,
    sqdist,
    counts,
    offsets,
    border_clusters,
    fill,
):
    """Nearest centroid of each row and the clusters whose half-space of points
    nearer to them than to that centroid lies within ``radius`` of the row.

    A row ``x`` of nearest centroid ``a`` is a border row of cluster ``c`` when
    ``|x-c|^2 - |x-a|^2 - 4 err <= 2 |a-c| radius``; ``err`` bounds the rounding of a
    computed squared distance, ``cdist`` holds ``|a-c|`` rounded up. Cosine rows are
    compared as unit rows (scaled by ``1 / sqrt(sq)``). Without ``fill``: ``labels``,
    ``sqdist`` and the border ``counts`` per row; with it, the border clusters of row
    ``i`` written at ``offsets[i]``.
    """
    n, d = X.shape
    k = C.shape[0]
    n_blocks = (n + chunk - 1) // chunk
    for task in prange(n_tasks):
        G = np.empty((chunk, k), dtype=X.dtype)
        b0, b1 = _task_range(task, n_tasks, n_blocks)
        for b in range(b0, b1):
            r0 = b * chunk
            r1 = min(r0 + chunk, n)
            np.dot(X[r0:r1], CT, G[: r1 - r0])
            for r in range(r1 - r0):
                i = r0 + r
                g = G[r]
                scale = 1.0 / np.sqrt(sq[i]) if cosine else 1.0
                x_sq = 1.0 if cosine else sq[i]
                best = 0
                best_d = np.inf
                for c in range(k):
                    dc = x_sq + c_sq[c] - 2.0 * scale * np.float64(g[c])
                    if dc < best_d:
                        best_d = dc
                        best = c
                m = 0
                pos = offsets[i] if fill else 0
                for c in range(k):
                    if c == best:
                        continue
                    dc = x_sq + c_sq[c] - 2.0 * scale * np.float64(g[c])
                    if dc - best_d - 4.0 * err <= 2.0 * cdist[best, c] * radius:
                        if fill:
                            border_clusters[pos + m] = c
                        m += 1
                if not fill:
                    labels[i] = best
                    sqdist[i] = max(best_d, 0.0)
                    counts[i] = m


@njit(cache=True, inline="always")
def _load(X, i, sq, cosine, out):
    """Row ``i`` into ``out``: scaled to unit norm for "cosine"."""
    if cosine:
        inv = 1.0 / np.sqrt(sq[i])
        for f in range(X.shape[1]):
            out[f] = X[i, f] * inv
    else:
        for f in range(X.shape[1]):
            out[f] = X[i, f]


@njit(cache=True)
def _scan(X, sq, Q, b, qrows, qpos, P, pn, prow, pstate, S, rank, cosine, threshold, band, kq, uq):
    """Matches of the ``b`` queries (rows ``qrows``, slots ``qpos`` in the block) among
    the ``pn`` candidates ranked before them: lowers ``kq`` (rank of the first kept
    match) and ``uq`` (of the first undecided one). Returns the pairs compared."""
    if pn == 0:
        return 0
    G = S[: b * pn].reshape((b, pn))
    np.dot(Q[:b], P[:pn].T, G)
    scan_scores(G, X, sq, b, qrows, qpos, pn, prow, pstate, rank, cosine, threshold, band, kq, uq)
    return b * pn


@njit(cache=True)
def scan_scores(G, X, sq, b, qrows, qpos, pn, prow, pstate, rank, cosine, threshold, band, kq, uq):
    """:func:`_scan` given the block's similarities ``G`` (``b`` x ``pn``: the unit
    rows' products for "cosine", the rows' for "euclidean", each within ``band`` of
    the exact value)."""
    # a pair can match only above this product (cheap test first: most pairs fail it)
    lo = threshold - band if cosine else -np.inf
    for r in range(b):
        i = qrows[r]
        q = qpos[r]
        ri = rank[i]
        g = G[r]
        for j in range(pn):
            if g[j] < lo:
                continue
            rp = rank[prow[j]]
            if rp >= ri or rp >= kq[q] or (pstate[j] == UNDECIDED and rp >= uq[q]):
                continue
            if _is_match(np.float64(g[j]), X, i, prow[j], sq, cosine, threshold, band):
                if pstate[j] == KEPT:
                    kq[q] = rp
                else:
                    uq[q] = rp


@njit(parallel=True, cache=True)
def sweep(
    X,
    sq,
    rank,
    clusters,
    member_offsets,
    members,
    run_offsets,
    run_sources,
    run_starts,
    imports,
    border_offsets,
    border_clusters,
    before,
    state,
    first_kept,
    cosine,
    threshold,
    band,
    q_rows,
    p_rows,
    n_tasks,
    compared,
):
    """One sweep over ``clusters``: each row still undecided (or removed with its
    duplicate unknown) of a cluster, in rank order, against the rows ranked before
    it that are not removed: the cluster's own (their states as this sweep leaves
    them) and the border rows it imports (their states ``before`` the sweep).

    Imports come in runs, one per source cluster (``run_sources``; cluster ``a``'s
    runs are ``run_offsets[a]:run_offsets[a + 1]``, run ``u`` is
    ``imports[run_starts[u]:run_starts[u + 1]]``, sorted by rank); a query meets a
    run only if it is itself a border row of the run's source (``border_clusters``
    of row ``i``: ``border_offsets[i]:border_offsets[i + 1]``). The imports come
    first (:func:`_imports_pass`), for all the cluster's open rows at once: their
    states are fixed for the sweep, so each run meets every open row that borders
    its source in blocks as large as the query block, not a few rows per block.

    A row with a kept match is removed; its duplicate is known (``first_kept``, a
    rank) unless an undecided match ranks before the first kept one. A row whose
    matches are all removed is kept; otherwise it stays undecided. Clusters go
    round-robin to the ``n_tasks`` tasks; each writes only its own rows, so the
    result does not depend on the tasks. ``compared[c]`` counts the pairs cluster
    ``c`` compared.
    """
    d = X.shape[1]
    n = X.shape[0]
    k = member_offsets.shape[0] - 1
    for task in prange(n_tasks):
        Q = np.empty((q_rows, d), dtype=X.dtype)
        P = np.empty((p_rows, d), dtype=X.dtype)
        S = np.empty(q_rows * max(q_rows, p_rows), dtype=X.dtype)
        qrows = np.empty(q_rows, dtype=np.int64)
        qpos = np.empty(q_rows, dtype=np.int64)
        prow = np.empty(p_rows, dtype=np.int64)
        pstate = np.empty(p_rows, dtype=np.int8)
        # the cluster's open rows (rank order), their matches found so far, and the
        # open rows by source cluster they border (CSR over clusters)
        open_rows = np.empty(0, dtype=np.int64)
        kq = np.empty(0, dtype=np.int64)
        uq = np.empty(0, dtype=np.int64)
        src_count = np.zeros(k + 1, dtype=np.int64)
        for ci in range(task, clusters.shape[0], n_tasks):
            a = clusters[ci]
            mem = members[member_offsets[a] : member_offsets[a + 1]]
            if open_rows.shape[0] < mem.shape[0]:
                open_rows = np.empty(2 * mem.shape[0], dtype=np.int64)
                kq = np.empty(2 * mem.shape[0], dtype=np.int64)
                uq = np.empty(2 * mem.shape[0], dtype=np.int64)
            n_open = 0
            for t in range(mem.shape[0]):
                s = state[mem[t]]
                if s == UNDECIDED or s == PENDING:
                    open_rows[n_open] = mem[t]
                    kq[n_open] = n
                    uq[n_open] = n
                    n_open += 1
            n_pairs = _imports_pass(
                X, sq, rank, a, open_rows[:n_open], run_offsets, run_sources, run_starts, imports,
                border_offsets, border_clusters, before, cosine, threshold, band,
                Q, P, S, qrows, qpos, prow, pstate, src_count, kq, uq,
            )  # fmt: skip
            # the open rows block by block: against the cluster's own rows (their states
            # as this sweep leaves them), then against each other
            pos = 0
            taken = 0
            while taken < n_open:
                start = pos
                b = 0
                while pos < mem.shape[0] and b < q_rows:
                    i = mem[pos]
                    pos += 1
                    if taken + b < n_open and open_rows[taken + b] == i:
                        qrows[b] = i
                        qpos[b] = taken + b
                        _load(X, i, sq, cosine, Q[b])
                        b += 1
                # own rows: those before the block not removed, kept rows inside it
                pn = 0
                for src in range(pos):
                    p = mem[src]
                    s = state[p]
                    if s == KEPT or (s == UNDECIDED and src < start):
                        prow[pn] = p
                        _load(X, p, sq, cosine, P[pn])
                        pstate[pn] = s
                        pn += 1
                        if pn == P.shape[0]:
                            n_pairs += _scan(
                                X, sq, Q, b, qrows, qpos, P, pn, prow, pstate, S, rank, cosine, threshold, band, kq, uq
                            )
                            pn = 0
                n_pairs += _scan(
                    X, sq, Q, b, qrows, qpos, P, pn, prow, pstate, S, rank, cosine, threshold, band, kq, uq
                )
                # the block against itself, row by row in rank order
                G = S[: b * b].reshape((b, b))
                np.dot(Q[:b], Q[:b].T, G)
                n_pairs += b * (b - 1) // 2
                decide_block(
                    G, X, sq, b, qrows, rank, state, first_kept, cosine, threshold, band, kq[taken:], uq[taken:]
                )
                taken += b
            compared[a] += n_pairs


@njit(cache=True)
def _imports_pass(
    X, sq, rank, a, open_rows, run_offsets, run_sources, run_starts, imports,
    border_offsets, border_clusters, before, cosine, threshold, band,
    Q, P, S, qrows, qpos, prow, pstate, src_count, kq, uq,
):  # fmt: skip
    """The open rows of cluster ``a`` (rank order) against the border rows it imports,
    run by run, each run with the open rows that border its source, in blocks of
    ``len(Q)`` of them: each block against the run's rows ranked before its last that
    are not removed (their states ``before`` the sweep, so the matches found do not
    depend on the sweep's progress inside the cluster). Lowers ``kq`` and ``uq``;
    returns the pairs compared. The buffers are :func:`sweep`'s (``src_count`` zero
    on entry and on return)."""
    k = src_count.shape[0] - 1
    q_rows = Q.shape[0]
    n_pairs = 0
    total = 0
    for r in range(open_rows.shape[0]):
        i = open_rows[r]
        for e in range(border_offsets[i], border_offsets[i + 1]):
            src_count[border_clusters[e] + 1] += 1
            total += 1
    if total == 0:
        return 0
    for c in range(k):
        src_count[c + 1] += src_count[c]
    src_list = np.empty(total, dtype=np.int64)
    fill = src_count[:k].copy()
    for r in range(open_rows.shape[0]):  # by source, each in rank order
        i = open_rows[r]
        for e in range(border_offsets[i], border_offsets[i + 1]):
            c = border_clusters[e]
            src_list[fill[c]] = r
            fill[c] += 1
    for u in range(run_offsets[a], run_offsets[a + 1]):
        c = run_sources[u]
        for t0 in range(src_count[c], src_count[c + 1], q_rows):
            m = min(q_rows, src_count[c + 1] - t0)
            for t in range(m):
                r = src_list[t0 + t]
                qrows[t] = open_rows[r]
                qpos[t] = r
                _load(X, open_rows[r], sq, cosine, Q[t])
            last = rank[qrows[m - 1]]
            pn = 0
            for e in range(run_starts[u], run_starts[u + 1]):
                p = imports[e]
                if rank[p] >= last:
                    break
                s = before[p]
                if s == KEPT or s == UNDECIDED:
                    prow[pn] = p
                    _load(X, p, sq, cosine, P[pn])
                    pstate[pn] = s
                    pn += 1
                    if pn == P.shape[0]:
                        n_pairs += _scan(
                            X, sq, Q, m, qrows, qpos, P, pn, prow, pstate, S, rank, cosine, threshold, band, kq, uq
                        )
                        pn = 0
            n_pairs += _scan(X, sq, Q, m, qrows, qpos, P, pn, prow, pstate, S, rank, cosine, threshold, band, kq, uq)
    src_count[:] = 0
    return n_pairs


@njit(cache=True)
def decide_block(G, X, sq, b, qrows, rank, state, first_kept, cosine, threshold, band, kq, uq):
    """The ``b`` queries ``qrows`` (in rank order) against each other, given their
    similarities ``G`` (as :func:`scan_scores`'s), and their states: a row with a kept
    match removed (pending while an undecided match ranks before the first kept
    one), a row with undecided matches undecided, else kept."""
    n = X.shape[0]
    for r in range(b):
        for r2 in range(r):
            p = qrows[r2]
            s = state[p]
            rp = rank[p]
            if rp >= kq[r] or not (s == KEPT or (s == UNDECIDED and rp < uq[r])):
                continue
            if _is_match(np.float64(G[r, r2]), X, qrows[r], p, sq, cosine, threshold, band):
                if s == KEPT:
                    kq[r] = rp
                else:
                    uq[r] = rp
        i = qrows[r]
        if kq[r] < n:
            state[i] = PENDING if uq[r] < kq[r] else REMOVED
            first_kept[i] = kq[r] if uq[r] > kq[r] else n
        elif uq[r] < n:
            state[i] = UNDECIDED
        else:
            state[i] = KEPT


@njit(parallel=True, cache=True)
def import_runs(labels, rank, border_offsets, border_clusters, k):
    """Each cluster's imported border rows (the rows that border it), in runs by
    source cluster, each run by rank. Returns ``(run_offsets, run_sources,
    run_starts, imports)``: cluster ``a``'s runs are ``run_offsets[a]:run_offsets[a +
    1]``; run ``u`` comes from cluster ``run_sources[u]`` and is
    ``imports[run_starts[u]:run_starts[u + 1]]``."""
    n = labels.shape[0]
    offsets = np.zeros(k + 1, dtype=np.int64)
    for e in range(border_clusters.shape[0]):
        offsets[border_clusters[e] + 1] += 1
    for a in range(k):
        offsets[a + 1] += offsets[a]
    imports = np.empty(border_clusters.shape[0], dtype=np.int32)
    pos = offsets[:-1].copy()
    for i in range(n):
        for e in range(border_offsets[i], border_offsets[i + 1]):
            c = border_clusters[e]
            imports[pos[c]] = i
            pos[c] += 1
    n_runs = np.zeros(k + 1, dtype=np.int64)
    for a in prange(k):
        seg = imports[offsets[a] : offsets[a + 1]]
        keys = np.empty(seg.shape[0], dtype=np.int64)
        for t in range(seg.shape[0]):
            keys[t] = labels[seg[t]] * n + rank[seg[t]]
        by_key = stable_argsort(keys)  # keys are distinct: any sort gives this order
        unsorted = seg.copy()
        for t in range(seg.shape[0]):
            seg[t] = unsorted[by_key[t]]
        for t in range(seg.shape[0]):
            if t == 0 or labels[seg[t]] != labels[seg[t - 1]]:
                n_runs[a + 1] += 1
    for a in range(k):
        n_runs[a + 1] += n_runs[a]
    run_sources = np.empty(n_runs[k], dtype=np.int64)
    run_starts = np.empty(n_runs[k] + 1, dtype=np.int64)
    run_starts[n_runs[k]] = imports.shape[0]
    for a in prange(k):
        u = n_runs[a]
        for t in range(offsets[a], offsets[a + 1]):
            if t == offsets[a] or labels[imports[t]] != labels[imports[t - 1]]:
                run_sources[u] = labels[imports[t]]
                run_starts[u] = t
                u += 1
    return n_runs, run_sources, run_starts, imports


@njit(parallel=True, cache=True)
def pair_scores(X, sq, rows, others, cosine, out):
    """:func:`exact_score` of each row ``rows[j]`` and ``others[j]``."""
    for j in prange(rows.shape[0]):
        i, o = rows[j], others[j]
        out[j] = exact_score(X[i], X[o], sq[i], sq[o], cosine)
