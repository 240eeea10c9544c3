"""The passes of greedy (weighted) k-means++ seeding: the closest-centre update, the
trial potentials of candidates, their per-block sums, and the draw of candidates.

A pass writes one value per row (and candidate); a second kernel sums each block of
``chunk`` rows in row order, one thread per block and candidate, as the CPU's kernels
sum their blocks: the block sums, and so the draws, are the same run after run, with
no float atomics. Draws go through the rows in a given order (the CPU's ``draw``),
summed by blocks of that order.

The cumulative block sums are a parallel scan by tiles (:func:`~._common.tile_scan`),
whose rounding is not that of the CPU's running sum. :func:`draw` trusts them where
they decide the draw with room to spare: where the target lies farther from every sum
it is compared with than the two roundings could move them apart. Otherwise (on
random data, about once in ``10^13 / blocks`` draws) the thread redoes the draw with
the running sum, one block after the other, as the CPU does: given the same block
sums, the row drawn is the one the CPU's running sum gives, in every case.
"""

import numpy as np

from ._common import cuda, sqdist

#: 2^-52, twice the unit roundoff of float64.
EPS = float(np.finfo(np.float64).eps)


@cuda.jit
def add_center(X, c, closest, row0):
    """For each row ``i`` of ``X`` (row ``row0 + i`` of the data):
    ``closest[row0 + i] = min(closest[row0 + i], ||X[i] - c[0]||^2)``."""
    for i in range(cuda.grid(1), X.shape[0], cuda.gridsize(1)):
        r = row0 + i
        closest[r] = min(closest[r], sqdist(X, i, c, 0))


@cuda.jit
def draw_sums(order, closest, w, chunk, out):
    """``out[b, 0]``: the sum of ``w * closest`` over the rows ``order[b * chunk :
    (b + 1) * chunk]``, in that order, one thread per block."""
    n = order.shape[0]
    for b in range(cuda.grid(1), out.shape[0], cuda.gridsize(1)):
        s = 0.0
        for j in range(b * chunk, min((b + 1) * chunk, n)):
            r = order[j]
            s += w[r] * closest[r]
        out[b, 0] = s


@cuda.jit
def trial_values(X, w, closest, cands, values, row0):
    """``values[i, q] = w * min(closest, ||X[i] - cands[q]||^2)`` for row ``row0 + i``:
    its share of the potential if candidate ``q`` were added."""
    t = cands.shape[0]
    for p in range(cuda.grid(1), X.shape[0] * t, cuda.gridsize(1)):
        i = p // t
        q = p - i * t
        r = row0 + i
        values[i, q] = w[r] * min(closest[r], sqdist(X, i, cands, q))


@cuda.jit
def chunk_sums(values, m, chunk, out, b0):
    """``out[b0 + b, q]``: the sum of ``values[b * chunk : (b + 1) * chunk, q]`` (the
    first ``m`` rows of ``values``), rows in order."""
    t = values.shape[1]
    n_chunks = (m + chunk - 1) // chunk
    for p in range(cuda.grid(1), n_chunks * t, cuda.gridsize(1)):
        b = p // t
        q = p - b * t
        s = 0.0
        for i in range(b * chunk, min((b + 1) * chunk, m)):
            s += values[i, q]
        out[b0 + b, q] = s


@cuda.jit(device=True)
def _walk(order, closest, w, chunk, b, acc, target, margin):
    """The row drawn inside block ``b`` of ``order`` (as the CPU's ``draw``): the first
    whose running value, from ``acc``, passes ``target``, else the last of positive
    value. Also whether one passed and every comparison was decided by more than
    ``margin``."""
    n = order.shape[0]
    pick = order[b * chunk]
    for j in range(b * chunk, min((b + 1) * chunk, n)):
        r = order[j]
        v = w[r] * closest[r]
        if v > 0:
            pick = r
            acc += v
            if abs(acc - target) <= margin:
                return pick, False
            if acc > target:
                return pick, True
    return pick, False


@cuda.jit(device=True)
def _running_draw(bsums, order, closest, w, chunk, u):
    """The CPU's draw exactly: the block by the running sum of ``bsums`` (what
    ``np.cumsum`` gives), one block after the other."""
    nb = bsums.shape[0]
    total = 0.0
    for b in range(nb):
        total += bsums[b, 0]
    target = u * total
    s = 0.0
    for b in range(nb):
        nxt = s + bsums[b, 0]
        if nxt > target:
            return _walk(order, closest, w, chunk, b, s, target, -1.0)[0]
        s = nxt
    s = 0.0
    for b in range(nb):  # rounding: the first block whose sum reaches the total
        nxt = s + bsums[b, 0]
        if nxt >= total:
            return _walk(order, closest, w, chunk, b, s, target, -1.0)[0]
        s = nxt
    return order[0]


@cuda.jit
def draw(bsums, bcum, order, closest, w, chunk, u, slack, out):
    """For each ``u[q]`` in [0, 1), the row drawn with probability proportional to
    ``w * closest``, as the CPU's ``draw`` draws it: the block by the cumulative block
    sums, then the row inside it; one thread per draw.

    ``bsums[b, 0]`` are the block sums (:func:`draw_sums`) and ``bcum`` their inclusive
    scan by tiles. Where the target lies within ``slack`` times the bound on the
    rounding, ``(blocks + chunk + 64) * 2^-52 * total``, of a sum it is compared with,
    the draw is redone with the running sum (:func:`_running_draw`). ``slack`` 0 never
    redoes it (for tests: the scan alone decides).
    """
    nb = bcum.shape[0]
    n = order.shape[0]
    total = bcum[nb - 1, 0]
    margin = slack * (nb + chunk + 64) * EPS * total if slack > 0 else -1.0
    for q in range(cuda.grid(1), u.shape[0], cuda.gridsize(1)):
        if not total > 0:
            j = 0
            while j < n - 1 and not w[order[j]] > 0:
                j += 1
            out[q] = order[j]
            continue
        target = u[q] * total
        lo, hi = 0, nb  # first block whose cumulative sum passes the target
        while lo < hi:
            mid = (lo + hi) // 2
            if bcum[mid, 0] <= target:
                lo = mid + 1
            else:
                hi = mid
        b = min(lo, nb - 1)
        clear = lo < nb and bcum[b, 0] - target > margin
        if clear and b > 0:
            clear = target - bcum[b - 1, 0] > margin
        acc = bcum[b - 1, 0] if b > 0 else 0.0
        pick, passed = _walk(order, closest, w, chunk, b, acc, target, margin)
        if slack > 0 and not (clear and passed):
            pick = _running_draw(bsums, order, closest, w, chunk, u[q])
        out[q] = pick
