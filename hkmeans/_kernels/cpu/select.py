"""Per-cluster selection of members and balanced splitting of counts (water-filling)."""

import numpy as np
from numba import prange

from ._common import gather, njit, stable_argsort


@njit(parallel=True, cache=True)
def pick_members(offsets, order, scores, n_take):
    """Take ``n_take[c]`` members from each cluster ``c``, concatenated in cluster order.

    A cluster of ``m`` members gives ``n_take[c] // m`` copies of all of them, then the
    ``n_take[c] % m`` members with the smallest ``scores`` (ties: lower position in
    ``order`` first). A cluster asked for members must have some.
    """
    k = n_take.shape[0]
    out_off = np.zeros(k + 1, dtype=np.int64)
    for c in range(k):
        out_off[c + 1] = out_off[c] + n_take[c]
    out = np.empty(out_off[k], dtype=np.int64)
    for c in prange(k):
        if n_take[c] > 0:
            _take_members(order[offsets[c] : offsets[c + 1]], scores, n_take[c], out[out_off[c] : out_off[c + 1]])
    return out


@njit(cache=True)
def _take_members(members, scores, need, out):
    """One cluster of :func:`pick_members` into ``out``; a plain function, so that the
    parallel loop around it stays small to compile."""
    m = members.shape[0]
    pos = 0
    for _ in range(need // m):
        for j in range(m):  # not a slice assignment: it compiles for seconds
            out[pos + j] = members[j]
        pos += m
    r = need % m
    if r > 0:
        best = stable_argsort(gather(scores, members))
        for j in range(r):
            out[pos + j] = members[best[j]]


@njit(parallel=True, cache=True)
def pick_weight(offsets, order, scores, weights, need):
    """Take members of weight ``need[c]`` from each cluster ``c``, concatenated in
    cluster order: those with the smallest ``scores`` (ties: lower position in
    ``order`` first), rows of weight 0 left out, the last one taken with only the
    weight still missing. Returns the rows and the weight taken of each. A cluster's
    ``need`` must not exceed its weight.
    """
    k = need.shape[0]
    n = order.shape[0]
    ranked = np.empty(n, dtype=np.int64)
    n_rows = np.zeros(k + 1, dtype=np.int64)
    for c in prange(k):
        a, e = offsets[c], offsets[c + 1]
        if need[c] <= 0 or e == a:
            continue
        members = order[a:e]
        by_score = stable_argsort(gather(scores, members))
        for j in range(e - a):
            ranked[a + j] = members[by_score[j]]
        acc = 0.0
        j = a
        while j < e and acc < need[c]:
            acc += weights[ranked[j]]
            j += 1
        n_rows[c + 1] = j - a
    out_off = n_rows.copy()
    for c in range(k):
        out_off[c + 1] += out_off[c]
    rows = np.empty(out_off[k], dtype=np.int64)
    taken = np.empty(out_off[k], dtype=np.float64)
    for c in prange(k):
        acc = 0.0
        p = out_off[c]
        for j in range(offsets[c], offsets[c] + n_rows[c + 1]):
            r = ranked[j]
            rows[p] = r
            t = min(weights[r], need[c] - acc)
            taken[p] = t if t > 1e-12 * need[c] else 0.0  # not a sliver left by rounding
            acc += weights[r]
            p += 1
    keep = taken > 0
    return rows[keep], taken[keep]


@njit(cache=True)
def water_fill(target, caps, keys):
    """Split ``target`` among bins of capacities ``caps`` as evenly as possible.

    Bins that cannot take an even share are filled to capacity; the others get equal
    shares, and the integer remainder goes one each to the uncapped bins with the
    smallest ``keys``. Requires ``target <= caps.sum()``.
    """
    m = caps.shape[0]
    counts = np.zeros(m, dtype=np.int64)
    by_cap = stable_argsort(caps)
    remaining = target
    j = 0
    while j < m:
        c = caps[by_cap[j]]
        if c > remaining // (m - j):  # c * (m - j) > remaining, without overflow near 2**63
            break
        counts[by_cap[j]] = c
        remaining -= c
        j += 1
    if j < m:
        rest = by_cap[j:]
        fair = remaining // (m - j)
        for b in rest:
            counts[b] = fair
        extra = remaining - fair * (m - j)
        lucky = stable_argsort(gather(keys, rest))
        for q in range(extra):
            counts[rest[lucky[q]]] += 1
    return counts


@njit(cache=True)
def split_counts(parent_counts, offsets, order, caps, keys):
    """Water-fill each parent's count over its children (CSR ``offsets``/``order``).
    On one thread: the work is small, and a parallel loop costs seconds to compile."""
    out = np.zeros(caps.shape[0], dtype=np.int64)
    for p in range(parent_counts.shape[0]):
        children = order[offsets[p] : offsets[p + 1]]
        m = children.shape[0]
        if m == 0:
            continue
        child_caps = np.empty(m, dtype=caps.dtype)
        child_keys = np.empty(m, dtype=keys.dtype)
        for j in range(m):
            child_caps[j] = caps[children[j]]
            child_keys[j] = keys[children[j]]
        counts = water_fill(parent_counts[p], child_caps, child_keys)
        for j in range(m):
            out[children[j]] = counts[j]
    return out
