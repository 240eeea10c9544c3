"""Grouping rows by label (CSR) and per-cluster float64 sums, plain or weighted."""

import numpy as np
from numba import prange

from ._common import njit


@njit(cache=True)
def group_by_label(labels, k):
    """Counting sort of ``labels`` (values in ``[0, k)``) as CSR.

    Returns ``offsets`` (k + 1,) and ``order`` (n,): the members of cluster ``c`` are
    ``order[offsets[c]:offsets[c + 1]]``, in increasing index order.
    """
    offsets = np.zeros(k + 1, dtype=np.int64)
    for i in range(labels.shape[0]):
        offsets[labels[i] + 1] += 1
    for c in range(k):
        offsets[c + 1] += offsets[c]
    pos = offsets[:-1].copy()
    order = np.empty(labels.shape[0], dtype=np.int64)
    for i in range(labels.shape[0]):
        c = labels[i]
        order[pos[c]] = i
        pos[c] += 1
    return offsets, order


@njit(parallel=True, cache=True)
def cluster_sums(X, offsets, order):
    """Per-cluster sums of the rows of ``X`` in float64, members summed in index order."""
    k = offsets.shape[0] - 1
    d = X.shape[1]
    sums = np.zeros((k, d), dtype=np.float64)
    for c in prange(k):
        for p in range(offsets[c], offsets[c + 1]):
            i = order[p]
            for f in range(d):
                sums[c, f] += X[i, f]
    return sums


@njit(parallel=True, cache=True)
def weighted_cluster_sums(X, w, offsets, order):
    """Per-cluster sums of ``w[i] * X[i]`` in float64, members summed in index order."""
    k = offsets.shape[0] - 1
    d = X.shape[1]
    sums = np.zeros((k, d), dtype=np.float64)
    for c in prange(k):
        for p in range(offsets[c], offsets[c + 1]):
            i = order[p]
            wi = w[i]
            for f in range(d):
                sums[c, f] += wi * X[i, f]
    return sums
