"""Per-cluster selection: from each cluster, whole copies of its members and then those
with the smallest scores.

The rows are sorted by (cluster, score, row) with a bitonic sorting network (one launch
per step, one thread per compared pair: ``log2(n) (log2(n) + 1) / 2`` launches of
``n / 2`` threads), and each cluster's smallest scores are the first of its segment.
The network is data-independent, so it is balanced whatever the clusters' sizes.
"""

from ._common import cuda


@cuda.jit(device=True)
def _before(labels, scores, i, j):
    """Row ``i`` comes before row ``j``: by cluster, then score (NaN last, as NumPy
    sorts), then row number."""
    if labels[i] != labels[j]:
        return labels[i] < labels[j]
    si, sj = scores[i], scores[j]
    if si < sj:
        return True
    if sj < si:
        return False
    if (si != si) != (sj != sj):  # one of them NaN: the other first
        return sj != sj
    return i < j


@cuda.jit
def bitonic_step(rows, labels, scores, pairs, size, j, flip):
    """One step of a bitonic sort of ``rows`` by :func:`_before`, the smaller of each
    pair to the lower place, over the array padded with rows that come last (pairs
    past the end are left as they are: the pad never moves).

    ``size`` is the length of the runs being merged; with ``flip`` the step compares
    each place of a run with its mirror (``j = size // 2``), else places ``j`` apart;
    ``pairs`` is half the padded length (a power of two).
    """
    n = rows.shape[0]
    for i in range(cuda.grid(1), pairs, cuda.gridsize(1)):
        if flip:
            base = (i // j) * size
            off = i - (i // j) * j
            lo = base + off
            hi = base + size - 1 - off
        else:
            lo = (i // j) * 2 * j + (i - (i // j) * j)
            hi = lo + j
        if hi < n:
            a, b = rows[lo], rows[hi]
            if _before(labels, scores, b, a):
                rows[lo] = b
                rows[hi] = a


@cuda.jit
def pick_members(offsets, order, ranked, n_take, out_off, out):
    """What the CPU's ``pick_members`` gives, one thread per place of ``out``: cluster
    ``c`` (of ``m`` members, positions ``offsets[c] : offsets[c + 1]``) fills
    ``out[out_off[c] : out_off[c + 1]]`` with ``n_take[c] // m`` copies of its members
    in row order (``order``, the CSR), then the first ``n_take[c] % m`` of its segment
    of ``ranked`` (rows sorted by cluster, score, row): the smallest scores, ties by
    row number. The cluster of a place is found by bisection of ``out_off``."""
    k = n_take.shape[0]
    for q in range(cuda.grid(1), out.shape[0], cuda.gridsize(1)):
        lo, hi = 0, k - 1  # the cluster c with out_off[c] <= q < out_off[c + 1]
        while lo < hi:
            mid = (lo + hi) // 2
            if out_off[mid + 1] <= q:
                lo = mid + 1
            else:
                hi = mid
        c = lo
        a = offsets[c]
        m = offsets[c + 1] - a
        j = q - out_off[c]
        whole = (n_take[c] // m) * m
        if j < whole:
            out[q] = order[a + j % m]
        else:
            out[q] = ranked[a + j - whole]
