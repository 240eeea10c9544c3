"""Greedy k-means++ on rows of few features: rows in a spatial order, blocks whose
bounding box rules them out skipped."""

import numpy as np
from numba import prange

from .._common import _sqdist, gather, njit, stable_argsort
from .draws import best_trial, column_sums, draw, first_centre, update_draw_sums

# Few features: k-means++ runs over the rows in a spatial order (a k-d split into
# blocks of ``chunk`` rows), and a block is left out of a step when its bounding box is
# at least as far from the candidate as its farthest row is from that row's centre: no
# row of it can get closer. The margin keeps rounding from ever skipping a row that
# would move. Candidates are still drawn in the draw order. These steps run on
# one thread: once far blocks are skipped, a step is too small to pay for a parallel launch.
_BOX_MARGIN = 1.0 + 1e-9


@njit(cache=True)
def _spatial_order(X, leaf):
    """Row order in which each run of ``leaf`` rows is a cell of a k-d split (median
    cuts along the widest feature). Plain loops: with a slice assignment
    (``order[a:e] = seg[...]``) and Numba's merge sort it took three times as long to
    compile."""
    n, d = X.shape
    order = np.arange(n)
    seg = np.empty(n, dtype=np.int64)
    vals = np.empty(n, dtype=np.float64)
    stack = np.empty((n // max(1, leaf) + 2, 2), dtype=np.int64)  # depth first: a cut leaves >= leaf rows
    stack[0, 0], stack[0, 1] = 0, n
    top = 1
    while top > 0:
        top -= 1
        a, e = stack[top, 0], stack[top, 1]
        if e - a <= leaf:
            continue
        widest, spread = 0, -1.0
        for f in range(d):
            lo, hi = np.inf, -np.inf
            for r in range(a, e):
                lo = min(lo, np.float64(X[order[r], f]))
                hi = max(hi, np.float64(X[order[r], f]))
            if hi - lo > spread:
                widest, spread = f, hi - lo
        for r in range(a, e):
            seg[r - a] = order[r]
            vals[r - a] = X[order[r], widest]
        by_value = stable_argsort(vals[: e - a])
        for r in range(e - a):
            order[a + r] = seg[by_value[r]]
        mid = a + max(1, (e - a) // leaf // 2) * leaf  # cuts stay on block boundaries
        stack[top, 0], stack[top, 1] = a, mid
        stack[top + 1, 0], stack[top + 1, 1] = mid, e
        top += 2
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
def _add_center_boxed(Xp, wp, c, closest_p, psum, pmax, lo, hi, chunk, perm, vals, pos, touched):
    """:func:`add_center` over spatially ordered rows ``Xp = X[perm]``, skipping far
    blocks; rows that get closer update their draw values ``vals`` (at ``pos``: each
    row's place in the draw order), whose blocks are flagged in ``touched``."""
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
                j = pos[perm[i]]
                vals[j] = wp[i] * d2
                touched[j // chunk] = True
            s += wp[i] * closest_p[i]
            top = max(top, closest_p[i])
        psum[b] = s
        pmax[b] = top


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
    return column_sums(partial)


@njit(cache=True)
def kmeans_plusplus_boxed(X, w, order, first, rand, chunk):
    """:func:`kmeans_plusplus` on rows of few features."""
    n, d = X.shape
    k = rand.shape[0] + 1
    idx, pos, closest, vals, draw_sums, touched = first_centre(X, w, order, first, k, chunk)
    n_blocks = draw_sums.shape[0]
    perm = _spatial_order(X, chunk)
    Xp = np.empty((n, d), dtype=X.dtype)
    for i in range(n):
        for f in range(d):  # not Xp[i] = X[...]: an array assignment compiles for seconds
            Xp[i, f] = X[perm[i], f]
    wp = gather(w, perm)
    closest_p = gather(closest, perm)
    lo, hi = _block_boxes(Xp, chunk)
    psum = np.zeros(n_blocks, dtype=np.float64)
    pmax = np.zeros(n_blocks, dtype=np.float64)
    for b in range(n_blocks):
        for i in range(b * chunk, min((b + 1) * chunk, n)):
            psum[b] += wp[i] * closest_p[i]
            pmax[b] = max(pmax[b], closest_p[i])
    cands = np.empty((rand.shape[1], d), dtype=np.float64)
    for c in range(1, k):
        cand = draw(order, vals, w, draw_sums, chunk, rand[c - 1])
        for q in range(cand.shape[0]):
            for f in range(d):
                cands[q, f] = X[cand[q], f]
        pots = _trial_potentials(Xp, wp, closest_p, cands, psum, pmax, lo, hi, chunk)
        idx[c] = cand[best_trial(pots)]
        _add_center_boxed(Xp, wp, X[idx[c]], closest_p, psum, pmax, lo, hi, chunk, perm, vals, pos, touched)
        update_draw_sums(vals, draw_sums, touched, chunk)
    return idx
