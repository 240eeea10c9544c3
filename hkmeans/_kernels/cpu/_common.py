"""Helpers the CPU kernels share: the GIL-free ``njit``, the arrays they are given,
task ranges, minima and squared distances."""

import ctypes

import numba
import numpy as np

from .. import compile_once


def njit(**options):
    """``numba.njit`` that releases the GIL (split levels call kernels from several
    threads at once) and, when cached, compiles each signature in one process at a
    time (:func:`hkmeans._kernels.compile_once`)."""

    def decorate(func):
        dispatcher = numba.njit(nogil=True, **options)(func)
        return compile_once(dispatcher) if options.get("cache") else dispatcher

    return decorate


def kernel_input(X):
    """``X``, or for a read-only C-ordered array an alias of the same memory that
    Numba types as writable. Numba compiles a kernel again for a read-only argument
    (a memory-mapped file, a chunk from Dask), as much work as the first time; no
    kernel writes the rows it reads, so the alias spares that. Pass it straight to
    the kernel: it does not keep ``X`` alive."""
    if not isinstance(X, np.ndarray) or X.flags.writeable or not X.flags.c_contiguous or X.size == 0:
        return X
    memory = (ctypes.c_char * X.nbytes).from_address(X.ctypes.data)
    return np.ndarray(X.shape, X.dtype, buffer=memory)


@njit(cache=True, inline="always")
def _task_range(task, n_tasks, n_blocks):
    per = (n_blocks + n_tasks - 1) // n_tasks
    return task * per, min((task + 1) * per, n_blocks)


@njit(cache=True, fastmath=True)
def _min(row):
    """Smallest entry of ``row``, over eight independent accumulators: a form the
    compiler turns into vector instructions."""
    k = row.shape[0]
    m0 = m1 = m2 = m3 = m4 = m5 = m6 = m7 = row[0]
    kk = k - k % 8
    for j in range(0, kk, 8):
        m0 = min(m0, row[j])
        m1 = min(m1, row[j + 1])
        m2 = min(m2, row[j + 2])
        m3 = min(m3, row[j + 3])
        m4 = min(m4, row[j + 4])
        m5 = min(m5, row[j + 5])
        m6 = min(m6, row[j + 6])
        m7 = min(m7, row[j + 7])
    best = min(min(min(m0, m1), min(m2, m3)), min(min(m4, m5), min(m6, m7)))
    for j in range(kk, k):
        best = min(best, row[j])
    return best


@njit(cache=True)
def _argmin(row):
    """Index of the smallest entry of ``row``, the first one on ties."""
    best = _min(row)
    for j in range(row.shape[0]):
        if row[j] == best:
            return j
    return 0


@njit(cache=True, fastmath=True)
def _sqdist(x, c):
    s = 0.0
    for f in range(x.shape[0]):
        t = np.float64(x[f]) - np.float64(c[f])
        s += t * t
    return s


@njit(cache=True)
def _sq_norms(C):
    # serial on purpose: inside a parallel function numba would split this
    # reduction across threads, and the rounding would depend on their number
    out = np.empty(C.shape[0], dtype=C.dtype)
    for j in range(C.shape[0]):
        s = C.dtype.type(0)
        for f in range(C.shape[1]):
            s += C[j, f] * C[j, f]
        out[j] = s
    return out


@njit(cache=True)
def _row_sq(x):
    s = 0.0
    for f in range(x.shape[0]):
        s += np.float64(x[f]) * np.float64(x[f])
    return s


@njit(cache=True)
def stable_argsort(keys):
    """``np.argsort(keys, kind="stable")`` for keys without NaN: insertion sort of runs
    of 16, then merges in place, keys moved beside their indices. Each merge joins a
    run with the one after it, never longer, through a buffer of half the keys (24
    bytes a key for 8-byte keys). Plain loops: Numba's own sorts cost about twice as
    much to compile, in every process that compiles a kernel."""
    n = keys.shape[0]
    idx = np.arange(n)
    if n < 2:
        return idx
    key = keys.copy()
    run = 16
    for a in range(0, n, run):
        for i in range(a + 1, min(a + run, n)):
            v, kv = idx[i], key[i]
            j = i - 1
            while j >= a and key[j] > kv:
                idx[j + 1] = idx[j]
                key[j + 1] = key[j]
                j -= 1
            idx[j + 1] = v
            key[j + 1] = kv
    buf_idx = np.empty(n // 2, dtype=idx.dtype)
    buf_key = np.empty(n // 2, dtype=key.dtype)
    width = run
    while width < n:
        for a in range(0, n - width, 2 * width):
            m = a + width
            if not key[m] < key[m - 1]:  # already in order (sorted input, ties)
                continue
            # merge [a, m) with [m, e) from their ends, the right run (never the
            # longer) in the buffers; ties keep the left run's first
            n_right = min(m + width, n) - m
            for t in range(n_right):
                buf_idx[t] = idx[m + t]
                buf_key[t] = key[m + t]
            i, j, o = m - 1, n_right - 1, m + n_right - 1
            while i >= a and j >= 0:
                if key[i] > buf_key[j]:
                    idx[o] = idx[i]
                    key[o] = key[i]
                    i -= 1
                else:
                    idx[o] = buf_idx[j]
                    key[o] = buf_key[j]
                    j -= 1
                o -= 1
            while j >= 0:  # what is left of the left run is in place
                idx[o] = buf_idx[j]
                key[o] = buf_key[j]
                j -= 1
                o -= 1
        width *= 2
    return idx


@njit(cache=True)
def gather(values, at):
    """``values[at]`` for 1-D ``values`` and ``at``, in a loop (a fancy index compiles
    in about 0.4 s, the loop in 0.1 s)."""
    out = np.empty(at.shape[0], dtype=values.dtype)
    for j in range(at.shape[0]):
        out[j] = values[at[j]]
    return out
