"""Rows by label (a stable counting sort, as CSR) and per-cluster float64 sums by a
segmented reduction.

The counting sort cuts the rows into chunks. :func:`chunk_counts` counts the members of
each cluster in each chunk, one thread per row, with integer atomics (a count is the
same whatever the order of the adds); the counts are scanned along the chunks by tiles
(:func:`~._common.tile_scan`); then :func:`scatter_kernel` places the rows, one block
of threads per chunk and a tile of rows at a time, each row after the earlier rows of
its tile with the same label. Members of a cluster come out in increasing row order,
as the CPU's ``group_by_label`` gives them.

The sums cut the positions of the CSR into pieces: :func:`piece_sums` adds, one thread
per (piece, feature), the members of each cluster in the piece in position order, and
:func:`join_pieces` adds the parts of the clusters that span several pieces, pieces in
order. No float atomics: the sums are the same run after run; a cluster that lies in
one piece is summed exactly as the CPU sums it (members in row order).
"""

import functools

import numba

from ._common import cuda


@cuda.jit
def chunk_counts(labels, chunk, counts):
    """``counts[i // chunk, labels[i]]`` += 1 for every row ``i``, one thread per row
    (``counts`` zeroed before; integer atomics)."""
    for i in range(cuda.grid(1), labels.shape[0], cuda.gridsize(1)):
        cuda.atomic.add(counts, (i // chunk, labels[i]), 1)


@functools.cache
def scatter_kernel(threads):
    """The scatter for blocks of ``threads`` threads (a shared array of that size).

    ``scatter(labels, chunk, offsets, starts, order)``: ``order[p]`` is the row at
    position ``p`` of the CSR. One block per chunk of ``chunk`` rows (grid-stride over
    the chunks) walks the chunk a tile of ``threads`` rows at a time: a row of cluster
    ``c`` goes to ``offsets[c] + starts[ch, c]`` plus the number of earlier rows of its
    tile in ``c``, where ``starts[ch, c]`` (the members of ``c`` in earlier chunks, an
    exclusive scan of :func:`chunk_counts`) is moved past the tile's members by the
    last of them. The ranks cost ``threads`` reads of shared memory a row.
    """

    @cuda.jit
    def scatter(labels, chunk, offsets, starts, order):
        lab = cuda.shared.array(threads, numba.int64)
        n = labels.shape[0]
        t = cuda.threadIdx.x
        for ch in range(cuda.blockIdx.x, starts.shape[0], cuda.gridDim.x):
            end = min((ch + 1) * chunk, n)
            for a in range(ch * chunk, end, threads):
                i = a + t
                c = labels[i] if i < end else -1
                lab[t] = c
                cuda.syncthreads()
                rank = 0
                last = True
                if c >= 0:
                    for j in range(t):
                        if lab[j] == c:
                            rank += 1
                    for j in range(t + 1, threads):
                        if lab[j] == c:
                            last = False
                            break
                    order[offsets[c] + starts[ch, c] + rank] = i
                cuda.syncthreads()  # every row of the tile has read its start
                if c >= 0 and last:
                    starts[ch, c] += rank + 1

    return scatter


@cuda.jit
def piece_sums(X, labels, offsets, order, piece, sums, head, tail):
    """The first pass of the segmented sum, one thread per (piece, feature),
    neighbouring threads on neighbouring features.

    Piece ``b`` holds positions ``b * piece : (b + 1) * piece`` of the CSR
    (``offsets``, ``order``; ``labels`` the rows' clusters). The members of each
    cluster in the piece are added in position order, in float64, and go to
    ``head[b, f]`` for the piece's first cluster if it began in an earlier piece, to
    ``tail[b, f]`` for its last if it goes on into the next, else to ``sums[c, f]``
    (added: this thread is the only one with members of ``c``).
    """
    n = order.shape[0]
    d = X.shape[1]
    for q in range(cuda.grid(1), head.shape[0] * d, cuda.gridsize(1)):
        b = q // d
        f = q - b * d
        a = b * piece
        e = min(a + piece, n)
        p = a
        while p < e:
            c = labels[order[p]]
            stop = min(offsets[c + 1], e)
            s = 0.0
            for j in range(p, stop):
                s += numba.float64(X[order[j], f])
            if offsets[c] < a:
                head[b, f] = s
            elif offsets[c + 1] > e:
                tail[b, f] = s
            else:
                sums[c, f] += s
            p = stop


@cuda.jit
def join_pieces(offsets, piece, head, tail, sums):
    """The second pass, one thread per (cluster, feature): a cluster whose members span
    pieces ``b0 < b1`` adds ``tail[b0, f] + head[b0 + 1, f] + ... + head[b1, f]``, in
    that order, to ``sums[c, f]``; the others were summed by :func:`piece_sums`. The
    longest walk is a cluster's size over ``piece``."""
    k, d = sums.shape
    for q in range(cuda.grid(1), k * d, cuda.gridsize(1)):
        c = q // d
        f = q - c * d
        lo, hi = offsets[c], offsets[c + 1]
        if hi == lo:
            continue
        b0 = lo // piece
        b1 = (hi - 1) // piece
        if b0 == b1:
            continue
        s = tail[b0, f]
        for b in range(b0 + 1, b1 + 1):
            s += head[b, f]
        sums[c, f] += s
