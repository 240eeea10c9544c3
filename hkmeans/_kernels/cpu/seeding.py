"""Greedy (weighted) k-means++ seeding: spatial blocks in few dimensions, candidates as
vector lanes on wide rows."""

import numpy as np
from numba import prange

from . import simd
from ._common import _row_sq, _sqdist, _task_range, njit


@njit(parallel=True, cache=True)
def _add_center(X, c, closest):
    """``closest[i] = min(closest[i], ||X[i] - c||^2)``."""
    for i in prange(X.shape[0]):
        closest[i] = min(closest[i], _sqdist(X[i], c))


@njit(parallel=True, cache=True)
def _draw_values(order, closest, w):
    """``w * closest`` of the rows in ``order``: what the draws add up, kept in that
    order so that block sums read consecutive memory."""
    vals = np.empty(order.shape[0], dtype=np.float64)
    for j in prange(order.shape[0]):
        vals[j] = w[order[j]] * closest[order[j]]
    return vals


@njit(cache=True)
def _block_sum(vals, chunk, b):
    s = 0.0
    for j in range(b * chunk, min((b + 1) * chunk, vals.shape[0])):
        s += vals[j]
    return s


@njit(parallel=True, cache=True)
def _all_block_sums(vals, draw_sums, chunk):
    for b in prange(draw_sums.shape[0]):
        draw_sums[b] = _block_sum(vals, chunk, b)


@njit(cache=True)
def _draw_sums(vals, draw_sums, touched, chunk, everything):
    """``draw_sums[b]``: the sum of ``vals[b * chunk : (b + 1) * chunk]``, for the
    blocks ``touched`` (all with ``everything``); on all threads when many are, else
    on this one (a launch would cost more)."""
    if everything or touched.sum() * 8 > draw_sums.shape[0]:
        _all_block_sums(vals, draw_sums, chunk)
        touched[:] = False
        return
    for b in range(draw_sums.shape[0]):
        if touched[b]:
            touched[b] = False
            draw_sums[b] = _block_sum(vals, chunk, b)


@njit(cache=True)
def _draw(order, vals, w, draw_sums, chunk, u):
    """Row drawn with probability proportional to its value, for each ``u`` in [0, 1):
    the first row, in ``order``, whose cumulative value (``vals``, in that order)
    passes ``u`` times the total (the last row of positive value if rounding leaves it
    unpassed); first the block by the cumulative block sums, then the row inside it.
    With every value 0 (no row left away from a centre), the first row of positive
    weight ``w``. In an order given by the rows' contents, the draw does not depend on
    the order of the rows."""
    bcum = np.cumsum(draw_sums)
    out = np.empty(u.shape[0], dtype=np.int64)
    n = order.shape[0]
    nb = draw_sums.shape[0]
    for q in range(u.shape[0]):
        if not bcum[-1] > 0:
            j = 0
            while j < n - 1 and not w[order[j]] > 0:
                j += 1
            out[q] = order[j]
            continue
        target = u[q] * bcum[-1]
        b = np.searchsorted(bcum, target, side="right")
        if b >= nb:
            b = np.searchsorted(bcum, bcum[-1])  # the last block of positive sum
        acc = bcum[b - 1] if b > 0 else 0.0
        pick = order[b * chunk]
        for j in range(b * chunk, min((b + 1) * chunk, n)):
            if vals[j] > 0:
                pick = order[j]  # the last positive row, should rounding leave the target unpassed
                acc += vals[j]
                if acc > target:
                    break
        out[q] = pick
    return out


#: Candidates whose potentials are within this fraction of the lowest are tied: the
#: first drawn wins. Rounding alone, which the rows' order changes, then never decides.
TRIAL_RTOL = 1e-9


@njit(cache=True)
def best_trial(pots):
    """The first candidate whose potential is within ``TRIAL_RTOL`` of the lowest."""
    low = pots.min() * (1.0 + TRIAL_RTOL)
    for q in range(pots.shape[0]):
        if pots[q] <= low:
            return q
    return 0


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
def _add_center_boxed(Xp, wp, c, closest_p, psum, pmax, lo, hi, chunk, perm, vals, pos, touched):
    """:func:`_add_center` over spatially ordered rows ``Xp = X[perm]``, skipping far
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
def _take_trial(closest, w, move_code, move_dist, n_moves, q, t, chunk, vals, pos, touched):
    """Candidate ``q`` (of ``t``) becomes a centre: its listed moves are applied, to
    ``closest`` and to the draw values ``vals`` (at ``pos``: each row's place in the
    draw order), whose blocks are flagged in ``touched``."""
    for b in prange(n_moves.shape[0]):
        m = b * chunk * t
        for j in range(m, m + n_moves[b]):
            code = move_code[j]
            if code % t == q:
                r = b * chunk + code // t
                closest[r] = move_dist[j]
                vals[pos[r]] = w[r] * move_dist[j]
                touched[pos[r] // chunk] = True  # only ever set: the threads' writes agree


def kmeans_plusplus(X, w, order, first, rand, chunk, small_d, n_tasks):
    """Greedy k-means++ seeding (as scikit-learn's) of rows weighted by ``w``: returns
    the chosen row indices.

    ``first`` is the first centre's row; ``rand`` (k - 1, n_local_trials) holds the
    uniform draws of every later step, so the caller's generator alone decides; a
    candidate is drawn through per-block sums of ``w * d(x)^2`` over the rows taken in
    ``order`` (see :func:`_draw`).
    Rows of up to ``small_d`` features get exact distances in vectorised loops over
    spatially ordered blocks, far blocks skipped; wider rows get dot products with the
    candidates per block (:func:`_candidate_dots`), one pass over ``X`` per step on
    ``n_tasks`` threads. The two paths are kernels of their own: only the one the data
    need is compiled.
    """
    if X.shape[1] > small_d:
        return _kmeans_plusplus_wide(X, w, order, first, rand, chunk, n_tasks)
    return _kmeans_plusplus_boxed(X, w, order, first, rand, chunk)


@njit(cache=True)
def _first_centre(X, w, order, first, k, chunk):
    """The state of :func:`kmeans_plusplus` once ``first`` is a centre: the chosen
    rows, each row's place in ``order``, the distances to the nearest centre, the draw
    values, their block sums and the blocks touched since."""
    n = X.shape[0]
    idx = np.empty(k, dtype=np.int64)
    idx[0] = first
    pos = np.empty(n, dtype=np.int64)
    for j in range(n):
        pos[order[j]] = j
    closest = np.full(n, np.inf)
    _add_center(X, X[first], closest)
    n_blocks = (n + chunk - 1) // chunk
    draw_sums = np.empty(n_blocks, dtype=np.float64)
    touched = np.zeros(n_blocks, dtype=np.bool_)
    vals = _draw_values(order, closest, w)
    _draw_sums(vals, draw_sums, touched, chunk, True)
    return idx, pos, closest, vals, draw_sums, touched


@njit(cache=True)
def _kmeans_plusplus_wide(X, w, order, first, rand, chunk, n_tasks):
    """:func:`kmeans_plusplus` on wide rows."""
    n = X.shape[0]
    k = rand.shape[0] + 1
    idx, pos, closest, vals, draw_sums, touched = _first_centre(X, w, order, first, k, chunk)
    n_blocks = draw_sums.shape[0]
    x_sq = np.empty(n, dtype=np.float64)
    for i in range(n):
        x_sq[i] = _row_sq(X[i])
    t = rand.shape[1]
    partial = np.empty((n_blocks, t), dtype=np.float64)
    move_code = np.empty(n_blocks * chunk * t, dtype=np.int32)
    move_dist = np.empty(n_blocks * chunk * t, dtype=np.float64)
    n_moves = np.empty(n_blocks, dtype=np.int64)
    for c in range(1, k):
        cand = _draw(order, vals, w, draw_sums, chunk, rand[c - 1])
        pots = _trial_potentials_wide(X, w, x_sq, closest, cand, chunk, partial, move_code, move_dist, n_moves, n_tasks)
        best = best_trial(pots)
        idx[c] = cand[best]
        _take_trial(closest, w, move_code, move_dist, n_moves, best, t, chunk, vals, pos, touched)
        _draw_sums(vals, draw_sums, touched, chunk, False)
    return idx


@njit(cache=True)
def _kmeans_plusplus_boxed(X, w, order, first, rand, chunk):
    """:func:`kmeans_plusplus` on rows of few features."""
    n, d = X.shape
    k = rand.shape[0] + 1
    idx, pos, closest, vals, draw_sums, touched = _first_centre(X, w, order, first, k, chunk)
    n_blocks = draw_sums.shape[0]
    perm = _spatial_order(X, chunk)
    Xp = np.empty((n, d), dtype=X.dtype)
    for i in range(n):
        Xp[i] = X[perm[i]]
    wp = w[perm]
    closest_p = closest[perm]
    lo, hi = _block_boxes(Xp, chunk)
    psum = np.zeros(n_blocks, dtype=np.float64)
    pmax = np.zeros(n_blocks, dtype=np.float64)
    for b in range(n_blocks):
        for i in range(b * chunk, min((b + 1) * chunk, n)):
            psum[b] += wp[i] * closest_p[i]
            pmax[b] = max(pmax[b], closest_p[i])
    cands = np.empty((rand.shape[1], d), dtype=np.float64)
    for c in range(1, k):
        cand = _draw(order, vals, w, draw_sums, chunk, rand[c - 1])
        for q in range(cand.shape[0]):
            cands[q] = X[cand[q]]
        pots = _trial_potentials(Xp, wp, closest_p, cands, psum, pmax, lo, hi, chunk)
        idx[c] = cand[best_trial(pots)]
        _add_center_boxed(Xp, wp, X[idx[c]], closest_p, psum, pmax, lo, hi, chunk, perm, vals, pos, touched)
        _draw_sums(vals, draw_sums, touched, chunk, False)
    return idx
