"""Nearest-centroid assignment: blocked GEMM (or direct distances in few
dimensions), the fused argmin, and the per-group bounds of the Lloyd runs."""

import numpy as np
from numba import prange

from ._common import _argmin, _min, _row_sq, _sq_norms, _sqdist, _task_range, njit

# bounds are kept in float32: scaled by this before they are stored, they stay below
# the float64 values they round (float32 rounds by at most 2**-24 relative)
_SHRINK = 1.0 - 2.0**-22
# a bound beyond float32's range is stored as its largest value, still a lower bound,
# not as inf, which never loosens (inf is kept for a group with no other centre)
_F32_MAX = float(np.finfo(np.float32).max)


@njit(parallel=True, cache=True)
def loosen_bounds(lower, moves):
    """``lower[i, g] = max(lower[i, g] - moves[g], 0)``, rounded down to float32: after
    the centres of group ``g`` moved by at most ``moves[g]``."""
    for i in prange(lower.shape[0]):
        for g in range(lower.shape[1]):
            lower[i, g] = max((np.float64(lower[i, g]) - moves[g]) * _SHRINK, 0.0)


@njit(cache=True)
def _group_minima(row, best, group_offsets, out):
    """``out[g]``: smallest entry of ``row`` in group ``g`` (the columns
    ``group_offsets[g]:group_offsets[g + 1]``) other than column ``best``; ``inf`` for
    a group with no other column. Overwrites ``row[best]``."""
    row[best] = np.finfo(row.dtype).max  # not inf: _min is compiled assuming finite values
    for g in range(out.shape[0]):
        a, e = group_offsets[g], group_offsets[g + 1]
        out[g] = np.inf if e - a == 0 or (e - a == 1 and a == best) else np.float64(_min(row[a:e]))


@njit(cache=True, inline="always")
def _lower_bound(value, shift):
    """A stored bound from a searched squared-distance ``value``: ``shift`` adds what the
    search left out (``|x|^2`` for the GEMM) less its rounding bound; float32, rounded
    down (at most float32's largest value where ``value`` is finite)."""
    bound = np.sqrt(max(value + shift, 0.0)) * _SHRINK
    return min(bound, _F32_MAX) if value < np.inf else bound


@njit(cache=True)
def _search_full(
    X,
    C,
    CT,
    c_sq,
    c_max,
    gemm,
    rel_err,
    rows,
    x_sq,
    m,
    inplace,
    xb,
    hbuf,
    gmin,
    labels,
    sqdist,
    lower,
    group_offsets,
    bounded,
):
    """Search rows ``rows[:m]`` against every centroid: one GEMM against ``-2 C^T``
    (``gemm``) or loops vectorised over centroids, then an argmin and, if ``bounded``,
    new bounds from the nearest other centroid of each group."""
    k = C.shape[0]
    if inplace:  # the rows are the whole block, in order: no copy
        Xs = X[rows[0] : rows[0] + m]
    else:
        for r in range(m):
            for f in range(X.shape[1]):  # not xb[r] = X[...]: an array assignment compiles for seconds
                xb[r, f] = X[rows[r], f]
        Xs = xb[:m]
    G = hbuf[: m * k].reshape((m, k))
    if gemm:
        np.dot(Xs, CT, G)
    for r in range(m):
        i = rows[r]
        g = G[r]
        if gemm:
            for j in range(k):
                g[j] += c_sq[j]
        else:  # one row at a time, so that it is still in L1 for the argmin
            _assign_rows_dist(Xs[r : r + 1], CT, G[r : r + 1])
        j = _argmin(g)
        if bounded:
            _group_minima(g, j, group_offsets, gmin)
            shift = (x_sq[r] if gemm else 0.0) - rel_err * (x_sq[r] + c_max)
            for q in range(gmin.shape[0]):
                lower[i, q] = _lower_bound(gmin[q], shift)
        labels[i] = j
        sqdist[i] = _sqdist(X[i], C[j])


@njit(cache=True)
def _search_groups(
    X,
    C,
    CTg,
    c_sq,
    c_max,
    gemm,
    rel_err,
    prow,
    pxs,
    ps,
    need,
    mp,
    group_of,
    xb,
    hbuf,
    lst,
    best,
    g_min,
    g_arg,
    labels,
    sqdist,
    lower,
    group_offsets,
    rows,
    x_sq,
    m,
):
    """Search rows ``prow[:mp]`` only among the centroids of the groups their bounds
    do not rule out (``need``), group by group, as Yinyang k-means does. A row keeps
    the result only if its nearest centroid beats every other candidate by more than
    the rounding of two searches: then the full search picks it too. Rows too close to
    call are appended to ``rows`` for a full search; returns their new count ``m``."""
    d = X.shape[1]
    n_groups = group_offsets.shape[0] - 1
    # best[r]: (value, centroid, runner-up value) over the groups searched so far
    for r in range(mp):
        best[r, 0], best[r, 1], best[r, 2] = np.inf, -1.0, np.inf
    for g in range(n_groups):
        a, e = group_offsets[g], group_offsets[g + 1]
        size = e - a
        n_lst = 0
        for r in range(mp):
            if need[r, g]:
                lst[n_lst] = r
                n_lst += 1
        if n_lst == 0 or size == 0:
            continue
        CTb = CTg[d * a : d * e].reshape((d, size))
        H = hbuf[: n_lst * size].reshape((n_lst, size))
        if gemm:
            for t in range(n_lst):
                for f in range(d):
                    xb[t, f] = X[prow[lst[t]], f]
            np.dot(xb[:n_lst], CTb, H)
        for t in range(n_lst):
            r = lst[t]
            h = H[t]
            if gemm:
                for j in range(size):
                    h[j] += c_sq[a + j]
            else:
                i = prow[r]
                _assign_rows_dist(X[i : i + 1], CTb, H[t : t + 1])
            j1 = _argmin(h)
            v1 = np.float64(h[j1])
            h[j1] = np.finfo(h.dtype).max
            v2 = np.float64(_min(h)) if size > 1 else np.inf
            g_min[r, g, 0], g_min[r, g, 1], g_arg[r, g] = v1, v2, a + j1
            if v1 < best[r, 0]:
                best[r, 2] = min(best[r, 0], v2)
                best[r, 0], best[r, 1] = v1, a + j1
            else:
                best[r, 2] = min(best[r, 2], v1)
    for r in range(mp):
        i, xs = prow[r], pxs[r]
        old = labels[i]
        g_old = group_of[old]
        left_out = xs if gemm else 0.0
        err = rel_err * (xs + c_max)
        v, p, runner_up = best[r, 0], np.int64(best[r, 1]), best[r, 2]
        if not need[r, g_old]:  # the current centroid, in no searched group: exact
            vo = ps[r] - left_out
            if vo < v:
                v, p, runner_up = vo, old, v
            else:
                runner_up = min(runner_up, vo)
        if runner_up - v <= 4.0 * err:
            rows[m] = i
            x_sq[m] = xs
            m += 1
            continue
        labels[i] = p
        sqdist[i] = ps[r] if p == old else _sqdist(X[i], C[p])
        for g in range(n_groups):
            if need[r, g]:
                other = g_min[r, g, 1] if g_arg[r, g] == p else g_min[r, g, 0]
                lower[i, g] = _lower_bound(other, left_out - err)
        if p != old and not need[r, g_old]:  # the old centroid joins its group's others
            lower[i, g_old] = min(lower[i, g_old], np.sqrt(ps[r]) * _SHRINK, _F32_MAX)
    return m


@njit(cache=True)
def _centroid_tables(X, C, gemm, group_offsets, by_group):
    """What every thread of :func:`assign` reads: the centroids' squared norms and
    their largest, ``C^T`` (times -2 for the GEMM path) in ``X``'s dtype, with
    ``by_group`` each group's columns on their own, contiguous, for the group-by-group
    search, and each centroid's group."""
    k, d = C.shape
    n_groups = group_offsets.shape[0] - 1
    c_sq = _sq_norms(C)
    c_max = 0.0
    for j in range(k):
        c_max = max(c_max, np.float64(c_sq[j]))
    scale = X.dtype.type(-2.0 if gemm else 1.0)
    CT = np.empty((d, k), dtype=X.dtype)
    for j in range(k):
        for f in range(d):
            CT[f, j] = scale * C[j, f]
    CTg = np.empty(d * k if by_group else 0, dtype=X.dtype)
    group_of = np.empty(k, dtype=np.int64)
    for g in range(n_groups):
        a, e = group_offsets[g], group_offsets[g + 1]
        for j in range(a, e):
            group_of[j] = g
        if by_group:  # group g's block of CTg: CT[:, a:e], row-major
            for f in range(d):
                for j in range(a, e):
                    CTg[d * a + f * (e - a) + (j - a)] = CT[f, j]
    return c_sq, c_max, CT, CTg, group_of


@njit(parallel=True, cache=True)
def assign(X, C, chunk, n_tasks, gemm, rel_err, labels, sqdist, lower, group_offsets, bounded):
    """Nearest centroid of every row, skipping the centroids bounds rule out.

    Rows are cut into blocks of ``chunk``, split into ``n_tasks`` contiguous runs, one
    per thread; the search of a block is one GEMM against ``-2 C^T`` (``gemm``) or, for
    few features, loops vectorised over centroids, then an argmin; no n x k matrix is
    formed. ``labels`` holds each row's previous centroid and ``lower[i, g]`` a lower
    bound on its distance to the other centroids of group ``g`` (centroids
    ``group_offsets[g]:group_offsets[g + 1]``; 0 forces a search; float32, rounded
    down). With ``u`` the exact distance of a row to its centroid and
    ``err = rel_err * (|x|^2 + max |c|^2)`` a bound on the rounding of one computed
    squared distance, group ``g`` cannot hold a centroid the full search would pick
    when ``lower^2 - u^2 > 2 err``. A row no group can change is skipped; a row with
    few groups left is searched in those groups only (:func:`_search_groups`); the
    others get a full search with new bounds for every group. ``sqdist`` gets exact
    squared distances for all rows. Without ``bounded``, every row is searched and
    ``lower`` is left alone.
    """
    n = X.shape[0]
    n_groups = group_offsets.shape[0] - 1
    c_sq, c_max, CT, CTg, group_of = _centroid_tables(X, C, gemm, group_offsets, bounded and n_groups > 1)
    n_blocks = (n + chunk - 1) // chunk
    for task in prange(n_tasks):
        lo, hi = _task_range(task, n_tasks, n_blocks)
        _assign_blocks(
            X,
            C,
            CT,
            CTg,
            c_sq,
            c_max,
            group_of,
            chunk,
            lo,
            hi,
            gemm,
            rel_err,
            labels,
            sqdist,
            lower,
            group_offsets,
            bounded,
        )


@njit(cache=True)
def _assign_blocks(
    X, C, CT, CTg, c_sq, c_max, group_of, chunk, lo, hi, gemm, rel_err, labels, sqdist, lower, group_offsets, bounded
):
    """The work of one thread of :func:`assign`: blocks ``lo:hi``, with buffers of its
    own. A plain function, so that the parallel loop around it stays small to compile."""
    n, d = X.shape
    k = C.shape[0]
    n_groups = group_offsets.shape[0] - 1
    rows = np.empty(chunk, dtype=np.int64)
    x_sq = np.empty(chunk, dtype=np.float64)
    xb = np.empty((chunk, d), dtype=X.dtype)
    hbuf = np.empty(chunk * k, dtype=X.dtype)
    gmin = np.empty(n_groups, dtype=np.float64)
    prow = np.empty(chunk, dtype=np.int64)
    pxs = np.empty(chunk, dtype=np.float64)
    ps = np.empty(chunk, dtype=np.float64)
    need = np.empty((chunk, n_groups), dtype=np.bool_)
    lst = np.empty(chunk, dtype=np.int64)
    best = np.empty((chunk, 3), dtype=np.float64)
    g_min = np.empty((chunk, n_groups, 2), dtype=np.float64)
    g_arg = np.empty((chunk, n_groups), dtype=np.int64)
    for b in range(lo, hi):
        a = b * chunk
        e = min(a + chunk, n)
        m = np.int64(0)  # not the literal 0: a literal argument would compile its own version
        mp = np.int64(0)
        for i in range(a, e):
            if not bounded:
                rows[m] = i
                m += 1
                continue
            xs = _row_sq(X[i])
            high = lower[i, 0]
            for q in range(1, n_groups):
                high = max(high, lower[i, q])
            if high > 0.0:  # some group may be ruled out
                s = _sqdist(X[i], C[labels[i]])
                tol = 2.0 * rel_err * (xs + c_max)
                width = 0
                for q in range(n_groups):
                    low = np.float64(lower[i, q])
                    need[mp, q] = low * low - s <= tol
                    if need[mp, q]:
                        width += group_offsets[q + 1] - group_offsets[q]
                if width == 0:
                    sqdist[i] = s
                    continue
                if 2 * width <= k:
                    prow[mp], pxs[mp], ps[mp] = i, xs, s
                    mp += 1
                    continue
            rows[m] = i
            x_sq[m] = xs
            m += 1
        if mp > 0:
            m = _search_groups(
                X,
                C,
                CTg,
                c_sq,
                c_max,
                gemm,
                rel_err,
                prow,
                pxs,
                ps,
                need,
                mp,
                group_of,
                xb,
                hbuf,
                lst,
                best,
                g_min,
                g_arg,
                labels,
                sqdist,
                lower,
                group_offsets,
                rows,
                x_sq,
                m,
            )
        if m > 0:
            _search_full(
                X,
                C,
                CT,
                c_sq,
                c_max,
                gemm,
                rel_err,
                rows,
                x_sq,
                m,
                m == e - a and mp == 0,
                xb,
                hbuf,
                gmin,
                labels,
                sqdist,
                lower,
                group_offsets,
                bounded,
            )


@njit(cache=True, fastmath=True)
def _assign_rows_dist(X, CT, out):
    """Squared distances of each row of ``X`` to each centroid (columns of ``CT``)."""
    d = X.shape[1]
    k = CT.shape[1]
    for i in range(X.shape[0]):
        dist = out[i]
        x = X[i]
        x0 = x[0]
        c0 = CT[0]
        for j in range(k):
            t = x0 - c0[j]
            dist[j] = t * t
        for f in range(1, d):
            xf = x[f]
            cf = CT[f]
            for j in range(k):
                t = xf - cf[j]
                dist[j] += t * t
