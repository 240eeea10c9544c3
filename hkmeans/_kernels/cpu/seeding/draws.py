"""What both seeding paths share: weighted draws through per-block sums of the
draw values, the choice among trial candidates, and the state after the first centre."""

import numpy as np
from numba import prange

from .._common import _sqdist, njit


@njit(parallel=True, cache=True)
def add_center(X, c, closest):
    """``closest[i] = min(closest[i], ||X[i] - c||^2)``."""
    for i in prange(X.shape[0]):
        closest[i] = min(closest[i], _sqdist(X[i], c))


@njit(parallel=True, cache=True)
def draw_values(order, closest, w):
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
        draw_sums[b] = _block_sum(vals, chunk, np.int64(b))  # one signature: b is unsigned here


@njit(cache=True)
def update_draw_sums(vals, draw_sums, touched, chunk):
    """``draw_sums[b]``: the sum of ``vals[b * chunk : (b + 1) * chunk]``, for the
    blocks ``touched``; on all threads when many are, else on this one (a launch would
    cost more)."""
    n_touched = 0
    for b in range(touched.shape[0]):
        n_touched += touched[b]
    if n_touched * 8 > draw_sums.shape[0]:
        _all_block_sums(vals, draw_sums, chunk)
        touched[:] = False
        return
    for b in range(draw_sums.shape[0]):
        if touched[b]:
            touched[b] = False
            draw_sums[b] = _block_sum(vals, chunk, b)


@njit(cache=True)
def _first_above(a, v):
    """The first index of sorted ``a`` whose value exceeds ``v`` (``a.shape[0]`` if
    none): ``np.searchsorted(a, v, side="right")``."""
    lo, hi = 0, a.shape[0]
    while lo < hi:
        mid = (lo + hi) // 2
        if a[mid] <= v or v != v:  # a NaN goes last, as in np.searchsorted
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(cache=True)
def draw(order, vals, w, draw_sums, chunk, u):
    """Row drawn with probability proportional to its value, for each ``u`` in [0, 1):
    the first row, in ``order``, whose cumulative value (``vals``, in that order)
    passes ``u`` times the total (the last row of positive value if rounding leaves it
    unpassed); first the block by the cumulative block sums, then the row inside it.
    With every value 0 (no row left away from a centre), the first row of positive
    weight ``w``. In an order given by the rows' contents, the draw does not depend on
    the order of the rows."""
    n = order.shape[0]
    nb = draw_sums.shape[0]
    bcum = np.empty(nb, dtype=np.float64)  # np.cumsum and np.searchsorted: loops, quicker to compile
    total = 0.0
    for b in range(nb):
        total += draw_sums[b]
        bcum[b] = total
    out = np.empty(u.shape[0], dtype=np.int64)
    for q in range(u.shape[0]):
        if not bcum[-1] > 0:
            j = 0
            while j < n - 1 and not w[order[j]] > 0:
                j += 1
            out[q] = order[j]
            continue
        target = u[q] * bcum[-1]
        b = _first_above(bcum, target)
        if b >= nb:  # the last block of positive sum
            b = nb - 1
            while b > 0 and bcum[b - 1] >= bcum[-1]:
                b -= 1
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
    low = pots[0]
    for q in range(pots.shape[0]):  # not pots.min(): a loop compiles in a fraction of the time
        if pots[q] != pots[q]:  # a NaN, which pots.min() would return: no candidate passes
            return 0
        low = min(low, pots[q])
    low *= 1.0 + TRIAL_RTOL
    for q in range(pots.shape[0]):
        if pots[q] <= low:
            return q
    return 0


@njit(cache=True)
def first_centre(X, w, order, first, k, chunk):
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
    add_center(X, X[first], closest)
    n_blocks = (n + chunk - 1) // chunk
    draw_sums = np.empty(n_blocks, dtype=np.float64)
    touched = np.zeros(n_blocks, dtype=np.bool_)
    vals = draw_values(order, closest, w)
    _all_block_sums(vals, draw_sums, chunk)
    return idx, pos, closest, vals, draw_sums, touched


@njit(cache=True)
def column_sums(partial):
    """Sums of the columns of ``partial``, its rows added in order (the same sums
    whatever the number of threads that filled it); elementwise, as
    ``out += partial[b]`` would allocate a temporary per row."""
    out = np.zeros(partial.shape[1], dtype=np.float64)
    for b in range(partial.shape[0]):
        for q in range(partial.shape[1]):
            out[q] += partial[b, q]
    return out
