"""The passes of greedy (weighted) k-means++ seeding: the closest-centre update, the
trial potentials of candidates, their per-block sums, and the draw of candidates.

A pass writes one value per row (and candidate); a second kernel sums each block of
``chunk`` rows in row order, one thread per block and candidate, as the CPU's
``_add_center`` sums its blocks: the block sums, and so the draws, are the same run
after run, with no float atomics and no barriers.
"""

from ._common import cuda, sqdist


@cuda.jit
def add_center(X, w, c, closest, values, row0):
    """For each row ``i`` of ``X`` (row ``row0 + i`` of the data):
    ``closest[row0 + i] = min(closest[row0 + i], ||X[i] - c[0]||^2)`` and
    ``values[i, 0] = w[row0 + i] * closest[row0 + i]``."""
    for i in range(cuda.grid(1), X.shape[0], cuda.gridsize(1)):
        r = row0 + i
        closest[r] = min(closest[r], sqdist(X, i, c, 0))
        values[i, 0] = w[r] * closest[r]


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
def draw(bcum, closest, w, chunk, u, out):
    """For each ``u[q]`` in [0, 1), the row drawn with probability proportional to
    ``w * closest`` (as the CPU's ``_draw``): the block by the cumulative block sums
    ``bcum``, then the row inside it, one thread per draw."""
    nb = bcum.shape[0]
    n = closest.shape[0]
    for q in range(cuda.grid(1), u.shape[0], cuda.gridsize(1)):
        target = u[q] * bcum[nb - 1]
        lo, hi = 0, nb  # first block whose cumulative sum reaches the target
        while lo < hi:
            mid = (lo + hi) // 2
            if bcum[mid] < target:
                lo = mid + 1
            else:
                hi = mid
        b = min(lo, nb - 1)
        acc = bcum[b - 1] if b > 0 else 0.0
        end = min((b + 1) * chunk, n)
        i = b * chunk
        while i < end - 1:
            acc += w[i] * closest[i]
            if acc >= target:
                break
            i += 1
        out[q] = i
