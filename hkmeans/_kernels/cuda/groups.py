"""Rows by label (a stable counting sort, as CSR) and per-cluster float64 sums.

The sort runs over fixed chunks of rows, one thread per chunk, chunks placed in order:
members of a cluster come out in increasing row order, as the CPU's ``group_by_label``
gives them, and the sums add them in that order, one thread per (cluster, feature).
No float atomics: the sums are the same run after run, and the same as the CPU's.
"""

import numba

from ._common import cuda


@cuda.jit
def chunk_counts(labels, chunk, counts):
    """``counts[ch, c]`` += members of cluster ``c`` among rows
    ``ch * chunk : (ch + 1) * chunk`` (``counts`` zeroed before)."""
    n = labels.shape[0]
    for ch in range(cuda.grid(1), counts.shape[0], cuda.gridsize(1)):
        for i in range(ch * chunk, min((ch + 1) * chunk, n)):
            counts[ch, labels[i]] += 1


@cuda.jit
def cluster_totals(counts, totals):
    """``totals[c]``: members of cluster ``c`` over all chunks."""
    for c in range(cuda.grid(1), counts.shape[1], cuda.gridsize(1)):
        s = 0
        for ch in range(counts.shape[0]):
            s += counts[ch, c]
        totals[c] = s


@cuda.jit
def chunk_starts(counts, offsets):
    """``counts[ch, c]`` becomes where chunk ``ch``'s first member of cluster ``c`` goes:
    ``offsets[c]`` plus the members of ``c`` in earlier chunks."""
    for c in range(cuda.grid(1), counts.shape[1], cuda.gridsize(1)):
        run = offsets[c]
        for ch in range(counts.shape[0]):
            m = counts[ch, c]
            counts[ch, c] = run
            run += m


@cuda.jit
def scatter(labels, chunk, starts, order):
    """``order[p]``: the row at position ``p`` of the CSR, each chunk writing its rows in
    order from ``starts`` (:func:`chunk_starts`), which it advances."""
    n = labels.shape[0]
    for ch in range(cuda.grid(1), starts.shape[0], cuda.gridsize(1)):
        for i in range(ch * chunk, min((ch + 1) * chunk, n)):
            c = labels[i]
            order[starts[ch, c]] = i
            starts[ch, c] += 1


@cuda.jit
def segment_sums(X, offsets, order, sums):
    """``sums[c, f]`` += the float64 sum of ``X[order[p], f]`` over the positions
    ``p`` of cluster ``c`` (``offsets[c] : offsets[c + 1]``), in position order; one
    thread per (cluster, feature), neighbouring threads on neighbouring features."""
    k, d = sums.shape
    for q in range(cuda.grid(1), k * d, cuda.gridsize(1)):
        c = q // d
        f = q - c * d
        s = 0.0
        for p in range(offsets[c], offsets[c + 1]):
            s += numba.float64(X[order[p], f])
        sums[c, f] += s


@cuda.jit
def segment_totals(values, offsets, order, out):
    """``out[c]`` += the sum of ``values[order[p]]`` over the positions of cluster ``c``,
    in position order."""
    for c in range(cuda.grid(1), out.shape[0], cuda.gridsize(1)):
        s = 0.0
        for p in range(offsets[c], offsets[c + 1]):
            s += values[order[p]]
        out[c] += s
