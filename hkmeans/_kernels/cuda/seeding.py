"""The passes of greedy (weighted) k-means++ seeding: the closest-centre update, the
trial potentials of candidates, their per-block sums, and the draw of candidates.

A pass writes one value per row (and candidate); a second kernel sums each block of
``chunk`` rows in row order, one thread per block and candidate, as the CPU's kernels
sum their blocks: the block sums, and so the draws, are the same run after run, with
no float atomics and no barriers. Draws go through the rows in a given order (the
CPU's ``_draw``), summed by blocks of that order.
"""

from ._common import cuda, sqdist


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


@cuda.jit
def column_sums(partial, out):
    """``out[q]``: the sum of ``partial[:, q]``, rows in order."""
    for q in range(cuda.grid(1), partial.shape[1], cuda.gridsize(1)):
        s = 0.0
        for b in range(partial.shape[0]):
            s += partial[b, q]
        out[q] = s


@cuda.jit
def cumulative(values, out):
    """``out = cumsum(values[:, 0])``, in order, on one thread (a short array: one
    entry per block of rows)."""
    if cuda.grid(1) == 0:
        s = 0.0
        for b in range(values.shape[0]):
            s += values[b, 0]
            out[b] = s


@cuda.jit
def draw(bcum, order, closest, w, chunk, u, out):
    """For each ``u[q]`` in [0, 1), the row drawn with probability proportional to
    ``w * closest``, as the CPU's ``_draw`` draws it (the block by the cumulative block
    sums ``bcum``, then the row inside it), one thread per draw."""
    nb = bcum.shape[0]
    n = order.shape[0]
    total = bcum[nb - 1]
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
            if bcum[mid] <= target:
                lo = mid + 1
            else:
                hi = mid
        if lo >= nb:  # rounding: the last block of positive sum
            lo, hi = 0, nb - 1
            while lo < hi:
                mid = (lo + hi) // 2
                if bcum[mid] < total:
                    lo = mid + 1
                else:
                    hi = mid
        b = lo
        acc = bcum[b - 1] if b > 0 else 0.0
        pick = order[b * chunk]
        for j in range(b * chunk, min((b + 1) * chunk, n)):
            v = w[order[j]] * closest[order[j]]
            if v > 0:
                pick = order[j]
                acc += v
                if acc > target:
                    break
        out[q] = pick
