"""Nearest-centroid assignment: a tiled distance kernel with the argmin fused, and the
argmin of a block of dot products that a GEMM (cuBLAS) computed."""

import functools

import numba
import numpy as np

from ._common import cuda, sqdist


@functools.cache
def nearest_kernel(dtype, threads, tile_k, tile_d):
    """The tiled kernel for rows of ``dtype``, blocks of ``threads`` rows, centres in
    tiles of ``tile_k`` and features in tiles of ``tile_d`` (shared arrays have
    compile-time shapes, hence one kernel per choice).

    ``nearest(X, C, c_sq, labels, sqdist_out, row0)``: for each row ``i`` of ``X``,
    ``labels[row0 + i]`` gets the index of the smallest ``c_sq[j] - 2 x.C[j]``
    (``|x|^2`` is left out; dot products summed in ``dtype``, first index on ties), and
    ``sqdist_out[row0 + i]`` the exact float64 squared distance to that centre. A block
    stages tiles of its rows and of the centres in shared memory; each thread keeps
    the dot products of its row with one tile of centres.
    """
    dt = numba.from_dtype(np.dtype(dtype))
    # a block has 65536 registers: more per thread and the launch fails on a card
    limits = {} if numba.config.ENABLE_CUDASIM else {"max_registers": min(255, 65536 // threads)}

    @cuda.jit(**limits)
    def nearest(X, C, c_sq, labels, sqdist_out, row0):
        n, d = X.shape
        k = C.shape[0]
        xs = cuda.shared.array((threads, tile_d), dt)
        cs = cuda.shared.array((tile_k, tile_d), dt)
        acc = cuda.local.array(tile_k, dt)
        t = cuda.threadIdx.x
        for tile in range(cuda.blockIdx.x, (n + threads - 1) // threads, cuda.gridDim.x):
            i = tile * threads + t
            best = np.inf
            arg = 0
            for j0 in range(0, k, tile_k):
                for jj in range(tile_k):
                    acc[jj] = 0
                for f0 in range(0, d, tile_d):
                    for ff in range(tile_d):  # each thread loads its own row's tile
                        xs[t, ff] = X[i, f0 + ff] if i < n and f0 + ff < d else 0
                    for q in range(t, tile_k * tile_d, threads):
                        jj, ff = q // tile_d, q % tile_d
                        cs[jj, ff] = C[j0 + jj, f0 + ff] if j0 + jj < k and f0 + ff < d else 0
                    cuda.syncthreads()
                    for jj in range(tile_k):
                        s = acc[jj]
                        for ff in range(tile_d):
                            s += xs[t, ff] * cs[jj, ff]
                        acc[jj] = s
                    cuda.syncthreads()
                for jj in range(min(tile_k, k - j0)):
                    v = c_sq[j0 + jj] - (acc[jj] + acc[jj])  # in dtype, as 2 * would widen
                    if v < best:
                        best = v
                        arg = j0 + jj
            if i < n:
                labels[row0 + i] = arg
                sqdist_out[row0 + i] = sqdist(X, i, C, arg)

    return nearest


@cuda.jit
def argmin_dots(G, X, C, c_sq, labels, sqdist_out, row0):
    """The fused argmin after a GEMM: for each row ``i`` of ``G = X @ C.T``,
    ``labels[row0 + i]`` gets the smallest ``c_sq[j] - 2 G[i, j]`` (first on ties) and
    ``sqdist_out[row0 + i]`` the exact float64 squared distance to it."""
    for i in range(cuda.grid(1), G.shape[0], cuda.gridsize(1)):
        best = np.inf
        arg = 0
        for j in range(G.shape[1]):
            v = c_sq[j] - (G[i, j] + G[i, j])
            if v < best:
                best = v
                arg = j
        labels[row0 + i] = arg
        sqdist_out[row0 + i] = sqdist(X, i, C, arg)


@cuda.jit
def nearest_in_ranges(X, C, lo, hi, labels, sqdist_out, row0):
    """Nearest of centres ``lo[row0 + i] : hi[row0 + i]`` for each row ``i`` of ``X``,
    by exact float64 distances: ``labels[row0 + i]`` (an index into ``C``) and
    ``sqdist_out[row0 + i]``. For routing, where each row has few candidates."""
    for i in range(cuda.grid(1), X.shape[0], cuda.gridsize(1)):
        r = row0 + i
        best = np.inf
        arg = lo[r]
        for j in range(lo[r], hi[r]):
            v = sqdist(X, i, C, j)
            if v < best:
                best = v
                arg = j
        labels[r] = arg
        sqdist_out[r] = best


@cuda.jit
def row_sq_norms(C, out):
    """``out[j] = ||C[j]||^2``, summed in ``C``'s dtype in the CPU's ``_sq_norms``
    order (a card may fuse each multiply and add)."""
    for j in range(cuda.grid(1), C.shape[0], cuda.gridsize(1)):
        s = C[j, 0] * C[j, 0]  # in C's dtype (a literal 0 in the product would widen it on a card)
        for f in range(1, C.shape[1]):
            s += C[j, f] * C[j, f]
        out[j] = s


@cuda.jit
def count_changed(old, new, out):
    """``out[0]`` += the number of positions where ``old`` and ``new`` differ (integer
    atomics: the count does not depend on the order)."""
    for i in range(cuda.grid(1), old.shape[0], cuda.gridsize(1)):
        if old[i] != new[i]:
            cuda.atomic.add(out, 0, 1)
