"""Greedy k-means++ on wide rows: the candidates as vector lanes, dot products per
block of rows."""

import numpy as np
from numba import prange

from .. import simd
from .._common import _row_sq, _task_range, njit
from .draws import best_trial, column_sums, draw, first_centre, update_draw_sums


@njit(cache=True, fastmath=True)
def _dot_product(x, y):
    s = x.dtype.type(0)
    for f in range(x.shape[0]):
        s += x[f] * y[f]
    return s


@njit(cache=True, fastmath=True)
def _row_dots(X, a, e, Y, G):
    """``G[:e - a, :len(Y)] = X[a:e] @ Y.T``, summed in ``X``'s dtype: a row
    against four candidates at a time (then two, then one), so that it is read once
    per four; the reduction each sum ends in costs little for so few candidates."""
    X = X[a:e]
    m, d = X.shape
    t = Y.shape[0]
    t4 = t - t % 4
    t2 = t - t % 2
    for i in range(m):
        for q in range(0, t4, 4):
            s0 = s1 = s2 = s3 = X.dtype.type(0)
            for f in range(d):
                v = X[i, f]
                s0 += v * Y[q, f]
                s1 += v * Y[q + 1, f]
                s2 += v * Y[q + 2, f]
                s3 += v * Y[q + 3, f]
            G[i, q], G[i, q + 1], G[i, q + 2], G[i, q + 3] = s0, s1, s2, s3
        if t2 > t4:
            s0 = s1 = X.dtype.type(0)
            for f in range(d):
                v = X[i, f]
                s0 += v * Y[t4, f]
                s1 += v * Y[t4 + 1, f]
            G[i, t4], G[i, t4 + 1] = s0, s1
        if t > t2:
            G[i, t2] = _dot_product(X[i], Y[t2])


@njit(cache=True)
def candidate_dots(X, a, e, Yt, Y, G):
    """``G[:e - a, :len(Y)] = X[a:e] @ Y.T`` in float64. Whole vectors of candidates
    (``Yt``, feature-major, holds them when there are no others) go by tiles of rows
    (:func:`simd.dots_tile`), each pair summed the same way whatever its tile; other
    counts go by :func:`_row_dots`: a vector with empty lanes costs as much as a full
    one, and a second pass for the candidates left over costs more than it saves."""
    if Yt.shape[1] == 0:
        _row_dots(X, a, e, Y, G)
        return
    m = e - a
    full = m - m % simd.TILE_ROWS
    for col in range(0, Yt.shape[1], simd.LANES):
        for i in range(0, full, simd.TILE_ROWS):
            simd.dots_tile(X, a + i, Yt, col, G, i)
        for i in range(full, m):
            simd.dots_row(X, a + i, Yt, col, G, i)


@njit(cache=True)
def candidate_rows(X, x_sq, cand):
    """The candidates' rows ``Y``, the same feature-major (``Yt``: empty unless they
    fill whole vectors of lanes, see :func:`candidate_dots`) and their squared norms
    ``y_sq``, zero-padded to whole vectors."""
    t, d = cand.shape[0], X.shape[1]
    width = (t + simd.LANES - 1) // simd.LANES * simd.LANES
    Y = np.empty((t, d), dtype=X.dtype)
    Yt = np.empty((d, t if simd.LANES_PAY and t % simd.LANES == 0 else 0), dtype=X.dtype)
    y_sq = np.zeros(width, dtype=np.float64)
    for q in range(t):
        y_sq[q] = x_sq[cand[q]]
        for f in range(d):  # not Y[q] = X[...]: an array assignment compiles for seconds
            Y[q, f] = X[cand[q], f]
            if q < Yt.shape[1]:
                Yt[f, q] = Y[q, f]
    return Y, Yt, y_sq


@njit(cache=True)
def block_potentials(X, w, x_sq, closest, Yt, Y, y_sq, a, e, G, acc, moved, move_code, move_dist, m):
    """Rows ``a:e`` against every candidate: ``acc[q]`` gets their potential with
    candidate ``q`` added (summed row by row, in order), and the moves are listed from
    ``move_code[m]`` on (row in block times ``t`` plus ``q``; see
    :func:`_trial_potentials_wide`). Returns the end of the list."""
    t = Y.shape[0]
    candidate_dots(X, a, e, Yt, Y, G)
    acc[:] = 0.0
    moved[:] = False
    for col in range(0, y_sq.shape[0], simd.LANES):
        simd.potentials_block(G, col, e - a, x_sq, closest, w, a, y_sq, t, acc, moved)
    for i in range(e - a):
        if moved[i]:  # rare after the first steps
            ci = closest[a + i]
            xi = x_sq[a + i]
            for q in range(t):  # as potentials_block computes it
                d2 = max(xi + y_sq[q] - 2.0 * G[i, q], 0.0)
                if d2 < ci:
                    move_code[m] = i * t + q
                    move_dist[m] = d2
                    m += 1
    return m


@njit(parallel=True, cache=True)
def _trial_potentials_wide(X, w, x_sq, closest, cand, chunk, partial, move_code, move_dist, n_moves, n_tasks):
    """:func:`.boxed._trial_potentials` for wide rows: per block of rows, the dot products
    with the candidates (:func:`candidate_dots`), squared distances as
    ``|x|^2 + |y|^2 - 2 x.y`` (:func:`simd.potentials_block`). ``partial[b, q]`` gets
    block ``b``'s potential with candidate ``q`` added; the rows a candidate would move
    are listed per block (``move_code``: row in block times ``t`` plus ``q``;
    ``move_dist``: the new distance; ``n_moves`` per block) so that taking a candidate
    needs no second pass over ``X``. Only moves are written: after the first steps
    they are rare, and a pass reads little more than ``X`` itself."""
    n = X.shape[0]
    t = cand.shape[0]
    Y, Yt, y_sq = candidate_rows(X, x_sq, cand)
    width = y_sq.shape[0]
    n_blocks = partial.shape[0]
    n_tasks = max(1, min(n_tasks, n_blocks))
    for task in prange(n_tasks):
        G = np.zeros((chunk, width), dtype=np.float64)  # lanes past t stay 0
        acc = np.empty(width, dtype=np.float64)
        moved = np.empty(chunk, dtype=np.bool_)
        lo, hi = _task_range(task, n_tasks, n_blocks)
        for b in range(lo, hi):
            a = b * chunk
            e = min(a + chunk, n)
            m = block_potentials(X, w, x_sq, closest, Yt, Y, y_sq, a, e, G, acc, moved, move_code, move_dist, a * t)
            for q in range(t):  # not partial[b] = acc[:t]: an array assignment compiles for seconds
                partial[b, q] = acc[q]
            n_moves[b] = m - a * t
    return column_sums(partial)


@njit(parallel=True, cache=True)
def _take_trial(closest, w, move_code, move_dist, n_moves, q, t, chunk, vals, pos, touched):
    """Candidate ``q`` (of ``t``) becomes a centre: its listed moves are applied, to
    ``closest`` and to the draw values ``vals`` (at ``pos``: each row's place in the
    draw order), whose blocks are flagged in ``touched``."""
    for b in prange(n_moves.shape[0]):
        m = b * chunk * t
        for j in range(m, m + n_moves[b]):
            code = move_code[j]
            if code % t == q:
                r = b * chunk + code // t
                closest[r] = move_dist[j]
                vals[pos[r]] = w[r] * move_dist[j]
                touched[pos[r] // chunk] = True  # only ever set: the threads' writes agree


@njit(cache=True)
def kmeans_plusplus_wide(X, w, order, first, rand, chunk, n_tasks):
    """:func:`kmeans_plusplus` on wide rows."""
    n = X.shape[0]
    k = rand.shape[0] + 1
    idx, pos, closest, vals, draw_sums, touched = first_centre(X, w, order, first, k, chunk)
    n_blocks = draw_sums.shape[0]
    x_sq = np.empty(n, dtype=np.float64)
    for i in range(n):
        x_sq[i] = _row_sq(X[i])
    t = rand.shape[1]
    partial = np.empty((n_blocks, t), dtype=np.float64)
    move_code = np.empty(n_blocks * chunk * t, dtype=np.int32)
    move_dist = np.empty(n_blocks * chunk * t, dtype=np.float64)
    n_moves = np.empty(n_blocks, dtype=np.int64)
    for c in range(1, k):
        cand = draw(order, vals, w, draw_sums, chunk, rand[c - 1])
        pots = _trial_potentials_wide(X, w, x_sq, closest, cand, chunk, partial, move_code, move_dist, n_moves, n_tasks)
        best = best_trial(pots)
        idx[c] = cand[best]
        _take_trial(closest, w, move_code, move_dist, n_moves, best, t, chunk, vals, pos, touched)
        update_draw_sums(vals, draw_sums, touched, chunk)
    return idx
