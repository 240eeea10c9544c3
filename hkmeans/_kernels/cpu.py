"""Numba CPU kernels: nearest-centroid assignment, cluster sums, k-means++ seeding,
per-cluster member selection and balanced count splitting.

Every kernel gives the same result whatever the number of threads: work is cut into
blocks whose boundaries depend only on the input, and every reduction is summed in a
fixed order.
"""

import numba
import numpy as np
from numba import prange

from hkmeans._kernels import simd


def njit(**options):
    """``numba.njit`` that releases the GIL: split levels call kernels from several
    threads at once."""
    return numba.njit(nogil=True, **options)


# bounds are kept in float32: scaled by this before they are stored, they stay below
# the float64 values they round (float32 rounds by at most 2**-24 relative)
_SHRINK = 1.0 - 2.0**-22


@njit(parallel=True, cache=True)
def loosen_bounds(lower, moves):
    """``lower[i, g] = max(lower[i, g] - moves[g], 0)``, rounded down to float32: after
    the centres of group ``g`` moved by at most ``moves[g]``."""
    for i in prange(lower.shape[0]):
        for g in range(lower.shape[1]):
            lower[i, g] = max((np.float64(lower[i, g]) - moves[g]) * _SHRINK, 0.0)


@njit(cache=True, inline="always")
def _task_range(task, n_tasks, n_blocks):
    per = (n_blocks + n_tasks - 1) // n_tasks
    return task * per, min((task + 1) * per, n_blocks)


@njit(cache=True, fastmath=True)
def _min(row):
    """Smallest entry of ``row``, over eight independent accumulators: a form the
    compiler turns into vector instructions."""
    k = row.shape[0]
    m0 = m1 = m2 = m3 = m4 = m5 = m6 = m7 = row[0]
    kk = k - k % 8
    for j in range(0, kk, 8):
        m0 = min(m0, row[j])
        m1 = min(m1, row[j + 1])
        m2 = min(m2, row[j + 2])
        m3 = min(m3, row[j + 3])
        m4 = min(m4, row[j + 4])
        m5 = min(m5, row[j + 5])
        m6 = min(m6, row[j + 6])
        m7 = min(m7, row[j + 7])
    best = min(min(min(m0, m1), min(m2, m3)), min(min(m4, m5), min(m6, m7)))
    for j in range(kk, k):
        best = min(best, row[j])
    return best


@njit(cache=True)
def _argmin(row):
    """Index of the smallest entry of ``row``, the first one on ties."""
    best = _min(row)
    for j in range(row.shape[0]):
        if row[j] == best:
            return j
    return 0


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
    search left out (``|x|^2`` for the GEMM) less its rounding bound; float32, rounded down."""
    return np.sqrt(max(value + shift, 0.0)) * _SHRINK


@njit(cache=True, fastmath=True)
def _sqdist(x, c):
    s = 0.0
    for f in range(x.shape[0]):
        t = np.float64(x[f]) - np.float64(c[f])
        s += t * t
    return s


@njit(cache=True)
def _sq_norms(C):
    # serial on purpose: inside a parallel function numba would split this
    # reduction across threads, and the rounding would depend on their number
    out = np.empty(C.shape[0], dtype=C.dtype)
    for j in range(C.shape[0]):
        s = C.dtype.type(0)
        for f in range(C.shape[1]):
            s += C[j, f] * C[j, f]
        out[j] = s
    return out


@njit(cache=True)
def _row_sq(x):
    s = 0.0
    for f in range(x.shape[0]):
        s += np.float64(x[f]) * np.float64(x[f])
    return s


@njit(cache=True)
def _search_full(X, C, CT, c_sq, c_max, gemm, rel_err, rows, x_sq, m, inplace, xb, hbuf, gmin,
                 labels, sqdist, lower, group_offsets, bounded):
    """Search rows ``rows[:m]`` against every centroid: one GEMM against ``-2 C^T``
    (``gemm``) or loops vectorised over centroids, then an argmin and, if ``bounded``,
    new bounds from the nearest other centroid of each group."""
    k = C.shape[0]
    if inplace:  # the rows are the whole block, in order: no copy
        Xs = X[rows[0] : rows[0] + m]
    else:
        for r in range(m):
            xb[r] = X[rows[r]]
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
def _search_groups(X, C, CTg, c_sq, c_max, gemm, rel_err, prow, pxs, ps, need, mp, group_of,
                   xb, hbuf, lst, best, g_min, g_arg, labels, sqdist, lower, group_offsets, rows, x_sq, m):
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
                xb[t] = X[prow[lst[t]]]
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
            lower[i, g_old] = min(lower[i, g_old], np.sqrt(ps[r]) * _SHRINK)
    return m


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
    n, d = X.shape
    k = C.shape[0]
    n_groups = group_offsets.shape[0] - 1
    c_sq = _sq_norms(C)
    c_max = 0.0
    for j in range(k):
        c_max = max(c_max, np.float64(c_sq[j]))
    # the GEMM path multiplies by -2 C^T, the direct path reads C^T; with bounds also
    # each group's columns on their own, contiguous, for the group-by-group search
    scale = X.dtype.type(-2.0 if gemm else 1.0)
    CT = np.empty((d, k), dtype=X.dtype)
    for j in range(k):
        for f in range(d):
            CT[f, j] = scale * C[j, f]
    by_group = bounded and n_groups > 1
    CTg = np.empty(d * k if by_group else 0, dtype=X.dtype)
    group_of = np.empty(k, dtype=np.int64)
    for g in range(n_groups):
        a, e = group_offsets[g], group_offsets[g + 1]
        group_of[a:e] = g
        if by_group:
            CTg[d * a : d * e].reshape((d, e - a))[:] = CT[:, a:e]
    n_blocks = (n + chunk - 1) // chunk
    for task in prange(n_tasks):
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
        lo, hi = _task_range(task, n_tasks, n_blocks)
        for b in range(lo, hi):
            a = b * chunk
            e = min(a + chunk, n)
            m = 0
            mp = 0
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
                m = _search_groups(X, C, CTg, c_sq, c_max, gemm, rel_err, prow, pxs, ps, need, mp,
                                   group_of, xb, hbuf, lst, best, g_min, g_arg, labels, sqdist,
                                   lower, group_offsets, rows, x_sq, m)
            if m > 0:
                _search_full(X, C, CT, c_sq, c_max, gemm, rel_err, rows, x_sq, m, m == e - a and mp == 0,
                             xb, hbuf, gmin, labels, sqdist, lower, group_offsets, bounded)


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


@njit(cache=True)
def group_by_label(labels, k):
    """Counting sort of ``labels`` (values in ``[0, k)``) as CSR.

    Returns ``offsets`` (k + 1,) and ``order`` (n,): the members of cluster ``c`` are
    ``order[offsets[c]:offsets[c + 1]]``, in increasing index order.
    """
    offsets = np.zeros(k + 1, dtype=np.int64)
    for i in range(labels.shape[0]):
        offsets[labels[i] + 1] += 1
    for c in range(k):
        offsets[c + 1] += offsets[c]
    pos = offsets[:-1].copy()
    order = np.empty(labels.shape[0], dtype=np.int64)
    for i in range(labels.shape[0]):
        c = labels[i]
        order[pos[c]] = i
        pos[c] += 1
    return offsets, order


@njit(parallel=True, cache=True)
def cluster_sums(X, offsets, order):
    """Per-cluster sums of the rows of ``X`` in float64, members summed in index order."""
    k = offsets.shape[0] - 1
    d = X.shape[1]
    sums = np.zeros((k, d), dtype=np.float64)
    for c in prange(k):
        for p in range(offsets[c], offsets[c + 1]):
            i = order[p]
            for f in range(d):
                sums[c, f] += X[i, f]
    return sums


@njit(parallel=True, cache=True)
def pick_members(offsets, order, scores, n_take):
    """Take ``n_take[c]`` members from each cluster ``c``, concatenated in cluster order.

    A cluster of ``m`` members gives ``n_take[c] // m`` copies of all of them, then the
    ``n_take[c] % m`` members with the smallest ``scores`` (ties: lower position in
    ``order`` first). A cluster asked for members must have some.
    """
    k = n_take.shape[0]
    out_off = np.zeros(k + 1, dtype=np.int64)
    for c in range(k):
        out_off[c + 1] = out_off[c] + n_take[c]
    out = np.empty(out_off[k], dtype=np.int64)
    for c in prange(k):
        need = n_take[c]
        if need == 0:
            continue
        members = order[offsets[c] : offsets[c + 1]]
        m = members.shape[0]
        pos = out_off[c]
        for _ in range(need // m):
            out[pos : pos + m] = members
            pos += m
        r = need % m
        if r > 0:
            best = np.argsort(scores[members], kind="mergesort")[:r]
            out[pos : pos + r] = members[best]
    return out


@njit(cache=True)
def water_fill(target, caps, keys):
    """Split ``target`` among bins of capacities ``caps`` as evenly as possible.

    Bins that cannot take an even share are filled to capacity; the others get equal
    shares, and the integer remainder goes one each to the uncapped bins with the
    smallest ``keys``. Requires ``target <= caps.sum()``.
    """
    m = caps.shape[0]
    counts = np.zeros(m, dtype=np.int64)
    by_cap = np.argsort(caps, kind="mergesort")
    remaining = target
    j = 0
    while j < m:
        c = caps[by_cap[j]]
        if c * (m - j) > remaining:
            break
        counts[by_cap[j]] = c
        remaining -= c
        j += 1
    if j < m:
        rest = by_cap[j:]
        fair = remaining // (m - j)
        for b in rest:
            counts[b] = fair
        extra = remaining - fair * (m - j)
        lucky = np.argsort(keys[rest], kind="mergesort")[:extra]
        for b in rest[lucky]:
            counts[b] += 1
    return counts


@njit(parallel=True, cache=True)
def split_counts(parent_counts, offsets, order, caps, keys):
    """Water-fill each parent's count over its children (CSR ``offsets``/``order``)."""
    out = np.zeros(caps.shape[0], dtype=np.int64)
    for p in prange(parent_counts.shape[0]):
        children = order[offsets[p] : offsets[p + 1]]
        if children.shape[0] == 0:
            continue
        out[children] = water_fill(parent_counts[p], caps[children], keys[children])
    return out


@njit(parallel=True, cache=True)
def _add_center(X, w, c, closest, block_sums, chunk):
    """``closest[i] = min(closest[i], ||X[i] - c||^2)``; ``block_sums[b]`` gets the sum
    of ``w * closest`` over block ``b``."""
    n = X.shape[0]
    for b in prange(block_sums.shape[0]):
        s = 0.0
        for i in range(b * chunk, min((b + 1) * chunk, n)):
            closest[i] = min(closest[i], _sqdist(X[i], c))
            s += w[i] * closest[i]
        block_sums[b] = s


@njit(cache=True)
def _draw(closest, w, block_sums, chunk, u):
    """Row drawn with probability proportional to ``w * closest``, for each ``u`` in [0, 1):
    first the block, by the cumulative block sums, then the row inside it."""
    bcum = np.cumsum(block_sums)
    out = np.empty(u.shape[0], dtype=np.int64)
    for q in range(u.shape[0]):
        target = u[q] * bcum[-1]
        b = min(np.searchsorted(bcum, target), block_sums.shape[0] - 1)
        acc = bcum[b - 1] if b > 0 else 0.0
        end = min((b + 1) * chunk, closest.shape[0])
        i = b * chunk
        while i < end - 1:
            acc += w[i] * closest[i]
            if acc >= target:
                break
            i += 1
        out[q] = i
    return out


# Few features: k-means++ runs over the rows in a spatial order (a k-d split into
# blocks of ``chunk`` rows), and a block is left out of a step when its bounding box is
# at least as far from the candidate as its farthest row is from that row's centre: no
# row of it can get closer. The margin keeps rounding from ever skipping a row that
# would move. Candidates are still drawn in the rows' own order. These steps run on
# one thread: once far blocks are skipped, a step is too small to pay for a parallel launch.
_BOX_MARGIN = 1.0 + 1e-9


@njit(cache=True)
def _spatial_order(X, leaf):
    """Row order in which each run of ``leaf`` rows is a cell of a k-d split (median
    cuts along the widest feature)."""
    n, d = X.shape
    order = np.arange(n)
    stack = [(0, n)]
    while len(stack) > 0:
        a, e = stack.pop()
        if e - a <= leaf:
            continue
        seg = order[a:e].copy()
        widest, spread = 0, -1.0
        for f in range(d):
            lo, hi = np.inf, -np.inf
            for i in seg:
                lo = min(lo, np.float64(X[i, f]))
                hi = max(hi, np.float64(X[i, f]))
            if hi - lo > spread:
                widest, spread = f, hi - lo
        vals = np.empty(e - a, dtype=np.float64)
        for r in range(e - a):
            vals[r] = X[seg[r], widest]
        order[a:e] = seg[np.argsort(vals, kind="mergesort")]
        mid = a + max(1, (e - a) // leaf // 2) * leaf  # cuts stay on block boundaries
        stack.append((a, mid))
        stack.append((mid, e))
    return order


@njit(cache=True)
def _box_sqdist(y, lo, hi):
    """Squared distance from ``y`` to the box ``[lo, hi]`` (0 inside)."""
    s = 0.0
    for f in range(y.shape[0]):
        v = np.float64(y[f])
        t = lo[f] - v if v < lo[f] else (v - hi[f] if v > hi[f] else 0.0)
        s += t * t
    return s


@njit(parallel=True, cache=True)
def _block_boxes(X, chunk):
    """Per block of ``chunk`` rows, the per-feature minimum and maximum."""
    n, d = X.shape
    n_blocks = (n + chunk - 1) // chunk
    lo = np.empty((n_blocks, d), dtype=np.float64)
    hi = np.empty((n_blocks, d), dtype=np.float64)
    for b in prange(n_blocks):
        for f in range(d):
            lo[b, f] = X[b * chunk, f]
            hi[b, f] = X[b * chunk, f]
        for i in range(b * chunk + 1, min((b + 1) * chunk, n)):
            for f in range(d):
                lo[b, f] = min(lo[b, f], X[i, f])
                hi[b, f] = max(hi[b, f], X[i, f])
    return lo, hi


@njit(cache=True)
def _add_center_boxed(Xp, wp, c, closest_p, psum, pmax, lo, hi, chunk, perm, closest, touched):
    """:func:`_add_center` over spatially ordered rows ``Xp = X[perm]``, skipping far
    blocks; rows that get closer are copied to ``closest`` (the rows' own order) and
    their own-order blocks flagged in ``touched``."""
    n = Xp.shape[0]
    for b in range(psum.shape[0]):
        if _box_sqdist(c, lo[b], hi[b]) > _BOX_MARGIN * pmax[b]:
            continue
        s = 0.0
        top = 0.0
        for i in range(b * chunk, min((b + 1) * chunk, n)):
            d2 = _sqdist(Xp[i], c)
            if d2 < closest_p[i]:
                closest_p[i] = d2
                closest[perm[i]] = d2
                touched[perm[i] // chunk] = True
            s += wp[i] * closest_p[i]
            top = max(top, closest_p[i])
        psum[b] = s
        pmax[b] = top


@njit(cache=True)
def _column_sums(partial):
    """Sums of the columns of ``partial``, its rows added in order (the same sums
    whatever the number of threads that filled it); elementwise, as
    ``out += partial[b]`` would allocate a temporary per row."""
    out = np.zeros(partial.shape[1], dtype=np.float64)
    for b in range(partial.shape[0]):
        for q in range(partial.shape[1]):
            out[q] += partial[b, q]
    return out


@njit(cache=True, fastmath=True)
def _trial_potentials(Xp, wp, closest_p, cands, psum, pmax, lo, hi, chunk):
    """Potential (sum of weighted min squared distances) if each row of ``cands`` were
    added, over spatially ordered rows. A block too far from a candidate keeps its sum;
    the others are transposed into a local buffer so the distance loops run vectorised
    over rows. Block partial sums are added in block order."""
    n, d = Xp.shape
    t = cands.shape[0]
    n_blocks = psum.shape[0]
    partial = np.zeros((n_blocks, t), dtype=np.float64)
    for b in range(n_blocks):
        near = np.zeros(t, dtype=np.bool_)
        for q in range(t):
            if _box_sqdist(cands[q], lo[b], hi[b]) > _BOX_MARGIN * pmax[b]:
                partial[b, q] = psum[b]
            else:
                near[q] = True
        if not near.any():
            continue
        a = b * chunk
        m = min(a + chunk, n) - a
        xt = np.empty((d, m), dtype=np.float64)
        for i in range(m):
            for f in range(d):
                xt[f, i] = Xp[a + i, f]
        dist = np.empty(m, dtype=np.float64)
        cl = closest_p[a : a + m]
        wl = wp[a : a + m]
        for q in range(t):
            if not near[q]:
                continue
            dist[:] = 0.0
            for f in range(d - 1):
                cf = cands[q, f]
                xf = xt[f]
                for i in range(m):
                    v = xf[i] - cf
                    dist[i] += v * v
            # the last feature is fused with the reduction: one pass less over dist
            cf = cands[q, d - 1]
            xf = xt[d - 1]
            s = 0.0
            for i in range(m):
                v = xf[i] - cf
                s += wl[i] * min(cl[i], dist[i] + v * v)
            partial[b, q] = s
    return _column_sums(partial)


@njit(cache=True)
def _refresh_block_sums(closest, w, block_sums, touched, chunk):
    n = closest.shape[0]
    for b in range(block_sums.shape[0]):
        if not touched[b]:
            continue
        touched[b] = False
        s = 0.0
        for i in range(b * chunk, min((b + 1) * chunk, n)):
            s += w[i] * closest[i]
        block_sums[b] = s


@njit(cache=True, fastmath=True)
def _dot_product(x, y):
    s = x.dtype.type(0)
    for f in range(x.shape[0]):
        s += x[f] * y[f]
    return s


@njit(cache=True, fastmath=True)
def _row_dots(X, a, e, Y, G):
    """``G[:e - a, :len(Y)] = X[a:e] @ Y.T``, summed in ``X``'s dtype: a row
    against four candidates at a time (then two, then one), so that it is read once
    per four; the reduction each sum ends in costs little for so few candidates."""
    X = X[a:e]
    m, d = X.shape
    t = Y.shape[0]
    t4 = t - t % 4
    t2 = t - t % 2
    for i in range(m):
        for q in range(0, t4, 4):
            s0 = s1 = s2 = s3 = X.dtype.type(0)
            for f in range(d):
                v = X[i, f]
                s0 += v * Y[q, f]
                s1 += v * Y[q + 1, f]
                s2 += v * Y[q + 2, f]
                s3 += v * Y[q + 3, f]
            G[i, q], G[i, q + 1], G[i, q + 2], G[i, q + 3] = s0, s1, s2, s3
        if t2 > t4:
            s0 = s1 = X.dtype.type(0)
            for f in range(d):
                v = X[i, f]
                s0 += v * Y[t4, f]
                s1 += v * Y[t4 + 1, f]
            G[i, t4], G[i, t4 + 1] = s0, s1
        if t > t2:
            G[i, t2] = _dot_product(X[i], Y[t2])


@njit(cache=True)
def _candidate_dots(X, a, e, Yt, Y, G):
    """``G[:e - a, :len(Y)] = X[a:e] @ Y.T`` in float64. Whole vectors of candidates
    (``Yt``, feature-major, holds them when there are no others) go by tiles of rows
    (:func:`simd.dots_tile`), each pair summed the same way whatever its tile; other
    counts go by :func:`_row_dots`: a vector with empty lanes costs as much as a full
    one, and a second pass for the candidates left over costs more than it saves."""
    if Yt.shape[1] == 0:
        _row_dots(X, a, e, Y, G)
        return
    m = e - a
    full = m - m % simd.TILE_ROWS
    for col in range(0, Yt.shape[1], simd.LANES):
        for i in range(0, full, simd.TILE_ROWS):
            simd.dots_tile(X, a + i, Yt, col, G, i)
        for i in range(full, m):
            simd.dots_row(X, a + i, Yt, col, G, i)


@njit(parallel=True, cache=True)
def _trial_potentials_wide(X, w, x_sq, closest, cand, chunk, partial, move_code, move_dist, n_moves, n_tasks):
    """:func:`_trial_potentials` for wide rows: per block of rows, the dot products
    with the candidates (:func:`_candidate_dots`), squared distances as
    ``|x|^2 + |y|^2 - 2 x.y`` (:func:`simd.potentials_block`). ``partial[b, q]`` gets
    block ``b``'s potential with candidate ``q`` added; the rows a candidate would move
    are listed per block (``move_code``: row in block times ``t`` plus ``q``;
    ``move_dist``: the new distance; ``n_moves`` per block) so that taking a candidate
    needs no second pass over ``X``. Only moves are written: after the first steps
    they are rare, and a pass reads little more than ``X`` itself."""
    n, d = X.shape
    t = cand.shape[0]
    width = (t + simd.LANES - 1) // simd.LANES * simd.LANES
    Y = np.empty((t, d), dtype=X.dtype)
    Yt = np.empty((d, t if simd.LANES_PAY and t % simd.LANES == 0 else 0), dtype=X.dtype)
    y_sq = np.zeros(width, dtype=np.float64)
    for q in range(t):
        y_sq[q] = x_sq[cand[q]]
        Y[q] = X[cand[q]]
        if q < Yt.shape[1]:
            Yt[:, q] = Y[q]
    n_blocks = partial.shape[0]
    n_tasks = max(1, min(n_tasks, n_blocks))
    for task in prange(n_tasks):
        G = np.zeros((chunk, width), dtype=np.float64)  # lanes past t stay 0
        acc = np.empty(width, dtype=np.float64)
        moved = np.empty(chunk, dtype=np.bool_)
        lo, hi = _task_range(task, n_tasks, n_blocks)
        for b in range(lo, hi):
            a = b * chunk
            e = min(a + chunk, n)
            _candidate_dots(X, a, e, Yt, Y, G)
            acc[:] = 0.0
            moved[:] = False
            for col in range(0, width, simd.LANES):
                simd.potentials_block(G, col, e - a, x_sq, closest, w, a, y_sq, t, acc, moved)
            m = a * t  # block b's share of the move lists: chunk * t entries
            for i in range(e - a):
                if moved[i]:  # rare after the first steps
                    ci = closest[a + i]
                    xi = x_sq[a + i]
                    for q in range(t):  # as potentials_block computes it
                        d2 = max(xi + y_sq[q] - 2.0 * G[i, q], 0.0)
                        if d2 < ci:
                            move_code[m] = i * t + q
                            move_dist[m] = d2
                            m += 1
            partial[b] = acc[:t]
            n_moves[b] = m - a * t
    return _column_sums(partial)


@njit(parallel=True, cache=True)
def _take_trial(closest, partial, move_code, move_dist, n_moves, q, block_sums, chunk):
    """Candidate ``q`` becomes a centre: its listed moves are applied and the block
    sums are its partial potentials (the same sums, in the same order)."""
    t = partial.shape[1]
    for b in prange(block_sums.shape[0]):
        block_sums[b] = partial[b, q]
        m = b * chunk * t
        for j in range(m, m + n_moves[b]):
            code = move_code[j]
            if code % t == q:
                closest[b * chunk + code // t] = move_dist[j]


@njit(cache=True)
def kmeans_plusplus(X, w, first, rand, chunk, small_d, n_tasks):
    """Greedy k-means++ seeding (as scikit-learn's) of rows weighted by ``w``: returns
    the chosen row indices.

    ``first`` is the first centre's row; ``rand`` (k - 1, n_local_trials) holds the
    uniform draws of every later step, so the caller's generator alone decides; a
    candidate is drawn through per-block sums of ``w * d(x)^2`` in the rows' order.
    Rows of up to ``small_d`` features get exact distances in vectorised loops over
    spatially ordered blocks, far blocks skipped; wider rows get dot products with the
    candidates per block (:func:`_candidate_dots`), one pass over ``X`` per step on
    ``n_tasks`` threads.
    """
    n, d = X.shape
    k = rand.shape[0] + 1
    idx = np.empty(k, dtype=np.int64)
    idx[0] = first
    closest = np.full(n, np.inf)
    block_sums = np.empty((n + chunk - 1) // chunk, dtype=np.float64)
    _add_center(X, w, X[first], closest, block_sums, chunk)
    if d > small_d:
        x_sq = np.empty(n, dtype=np.float64)
        for i in range(n):
            x_sq[i] = _row_sq(X[i])
        t = rand.shape[1]
        n_blocks = block_sums.shape[0]
        partial = np.empty((n_blocks, t), dtype=np.float64)
        move_code = np.empty(n_blocks * chunk * t, dtype=np.int32)
        move_dist = np.empty(n_blocks * chunk * t, dtype=np.float64)
        n_moves = np.empty(n_blocks, dtype=np.int64)
        for c in range(1, k):
            cand = _draw(closest, w, block_sums, chunk, rand[c - 1])
            pots = _trial_potentials_wide(X, w, x_sq, closest, cand, chunk, partial, move_code, move_dist, n_moves, n_tasks)
            best = np.argmin(pots)
            idx[c] = cand[best]
            _take_trial(closest, partial, move_code, move_dist, n_moves, best, block_sums, chunk)
        return idx
    perm = _spatial_order(X, chunk)
    Xp = np.empty((n, d), dtype=X.dtype)
    for i in range(n):
        Xp[i] = X[perm[i]]
    wp = w[perm]
    closest_p = closest[perm]
    lo, hi = _block_boxes(Xp, chunk)
    n_blocks = lo.shape[0]
    psum = np.zeros(n_blocks, dtype=np.float64)
    pmax = np.zeros(n_blocks, dtype=np.float64)
    for b in range(n_blocks):
        for i in range(b * chunk, min((b + 1) * chunk, n)):
            psum[b] += wp[i] * closest_p[i]
            pmax[b] = max(pmax[b], closest_p[i])
    touched = np.zeros(n_blocks, dtype=np.bool_)
    cands = np.empty((rand.shape[1], d), dtype=np.float64)
    for c in range(1, k):
        cand = _draw(closest, w, block_sums, chunk, rand[c - 1])
        for q in range(cand.shape[0]):
            cands[q] = X[cand[q]]
        pots = _trial_potentials(Xp, wp, closest_p, cands, psum, pmax, lo, hi, chunk)
        idx[c] = cand[np.argmin(pots)]
        _add_center_boxed(Xp, wp, X[idx[c]], closest_p, psum, pmax, lo, hi, chunk, perm, closest, touched)
        _refresh_block_sums(closest, w, block_sums, touched, chunk)
    return idx
