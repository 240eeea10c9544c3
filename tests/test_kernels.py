"""Kernels against the plain-NumPy references in ``naive.py``."""

import importlib
import itertools
import os
import subprocess
import sys
import time

import numba
import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from numba import njit

from hkmeans import _config, _kernels
from hkmeans._kernels.cpu import _common, groups, seeding, select, simd
from hkmeans._kernels.cpu import assign as assign_kernels
from hkmeans._kernels.cpu.seeding import screen as seeding_screen
from hkmeans._kernels.cpu.seeding import wide as seeding_wide
from hkmeans.backends.cpu import search
from hkmeans.kmeans import _group_centres, assign

from . import naive

DTYPES = [np.float32, np.float64]


def _data(seed, n, d, k, dtype):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(dtype)
    C = rng.normal(size=(k, d)).astype(dtype)
    return X, C


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("d", [1, 2, 7, _config.SMALL_D, _config.SMALL_D + 1, 64])
@pytest.mark.parametrize("order", ["C", "F"])
def test_assign_matches_reference(dtype, d, order):
    X, C = _data(0, 1000, d, 37, dtype)
    X = np.asarray(X, order=order)
    labels, sqdist = assign(X, C)
    ref_labels, ref_sqdist = naive.assign(X, C)
    assert labels.dtype == np.int64 and sqdist.dtype == np.float64
    np.testing.assert_array_equal(labels, ref_labels)
    np.testing.assert_allclose(sqdist, ref_sqdist, rtol=1e-10, atol=1e-12)


def test_assign_breaks_ties_by_the_first_centre():
    """Equidistant centres, and a centre given twice: the first index, as documented
    (integer rows make exact ties common)."""
    X = np.array([[0.0], [3.0], [-5.0]])
    np.testing.assert_array_equal(assign(X, np.array([[-1.0], [1.0]]))[0], [0, 1, 0])
    C = np.array([[2.0, 1.0], [2.0, 1.0], [0.0, 0.0]])
    np.testing.assert_array_equal(assign(np.array([[2.0, 1.0], [1.0, 0.5], [5.0, 5.0]]), C)[0], [0, 0, 0])
    rng = np.random.default_rng(0)
    for d in (2, _config.SMALL_D + 1):
        X, C = rng.integers(-2, 3, size=(500, d)).astype(float), rng.integers(-2, 3, size=(40, d)).astype(float)
        np.testing.assert_array_equal(assign(X, C)[0], naive.assign(X, C)[0])


@given(
    n=st.integers(1, 700),
    d=st.integers(1, 40),
    k=st.integers(1, 50),
    seed=st.integers(0, 2**32 - 1),
    dtype=st.sampled_from(DTYPES),
)
def test_assign_picks_a_nearest_centre(n, d, k, seed, dtype):
    X, C = _data(seed, n, d, k, dtype)
    labels, sqdist = assign(X, C)
    D = naive.sqdist_matrix(X, C)
    # the chosen centre is nearest up to the rounding of the dtype's GEMM
    eps = 1e-4 if dtype == np.float32 else 1e-10
    scale = 1 + (X.astype(np.float64) ** 2).sum(1) + (C.astype(np.float64) ** 2).sum(1).max()
    assert np.all(D[np.arange(n), labels] <= D.min(1) + eps * scale)
    np.testing.assert_allclose(sqdist, D[np.arange(n), labels], rtol=1e-10, atol=1e-12)


@given(
    n=st.integers(1, 400),
    d=st.sampled_from([2, 5, _config.SMALL_D + 8]),
    k=st.integers(16, 120),
    grid=st.booleans(),
    step=st.sampled_from([0.0, 0.01, 0.3]),
    seed=st.integers(0, 2**32 - 1),
    dtype=st.sampled_from(DTYPES),
)
def test_bounded_search_matches_full_search_and_keeps_valid_bounds(n, d, k, grid, step, seed, dtype):
    """Two searches with bounds, the centres moved in between: the labels are those of a
    full search, and every bound stays below the distance it bounds. Grid data make
    ties (equidistant centres, duplicate rows) common."""
    rng = np.random.default_rng(seed)
    draw = (lambda size: rng.integers(-3, 4, size)) if grid else (lambda size: rng.normal(size=size))
    X = draw((n, d)).astype(dtype)
    C = draw((k, d)).astype(dtype)
    order, offsets = _group_centres(C)
    C = C[order]
    labels = np.zeros(n, dtype=np.int64)
    sqdist = np.empty(n)
    lower = np.zeros((n, len(offsets) - 1), dtype=np.float32)
    search(X, C, labels, sqdist, lower, offsets)
    moved = (C + step * rng.normal(size=C.shape)).astype(dtype)
    moves = np.sqrt(((moved.astype(np.float64) - C) ** 2).sum(1))
    assign_kernels.loosen_bounds(lower, np.array([moves[a:e].max() for a, e in zip(offsets[:-1], offsets[1:])]))
    search(X, moved, labels, sqdist, lower, offsets)
    np.testing.assert_array_equal(labels, assign(X, moved)[0])
    D = np.sqrt(naive.sqdist_matrix(X, moved))
    D[np.arange(n), labels] = np.inf
    for g, (a, e) in enumerate(zip(offsets[:-1], offsets[1:])):
        assert np.all(lower[:, g] <= D[:, a:e].min(1))


@pytest.mark.parametrize("seed", range(3))
def test_bounds_stay_lower_bounds_far_from_the_origin(seed):
    """float32 rows around 30 in every feature: the rounding of the distances is then
    far above their spread, and only the bounds' rounding term keeps them below the
    distances they bound."""
    rng = np.random.default_rng(seed)
    n, d, k = 2000, 24, 64
    X = (rng.normal(size=(n, d)) + 30).astype(np.float32)
    C = (X[rng.choice(n, k, replace=False)] + 0.01 * rng.normal(size=(k, d))).astype(np.float32)
    order, offsets = _group_centres(C)
    C = C[order]
    labels, sqdist = np.zeros(n, dtype=np.int64), np.empty(n)
    lower = np.zeros((n, len(offsets) - 1), dtype=np.float32)
    search(X, C, labels, sqdist, lower, offsets)
    D = np.sqrt(naive.sqdist_matrix(X, C))
    D[np.arange(n), labels] = np.inf
    for g, (a, e) in enumerate(zip(offsets[:-1], offsets[1:])):
        assert np.all(lower[:, g] <= D[:, a:e].min(1))


@pytest.mark.parametrize("d", [3, 64])
def test_assign_same_result_with_one_or_two_threads(d):
    X, C = _data(1, 5000, d, 300, np.float32)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = assign(X, C)
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        two = assign(X, C)
    finally:
        numba.set_num_threads(before)
    np.testing.assert_array_equal(one[0], two[0])
    np.testing.assert_array_equal(one[1], two[1])


@given(n=st.integers(1, 500), k=st.integers(1, 30), seed=st.integers(0, 2**32 - 1))
def test_group_by_label_is_a_stable_counting_sort(n, k, seed):
    labels = np.random.default_rng(seed).integers(0, k, n)
    offsets, order = groups.group_by_label(labels, k)
    np.testing.assert_array_equal(order, np.argsort(labels, kind="stable"))
    np.testing.assert_array_equal(np.diff(offsets), np.bincount(labels, minlength=k))


@given(
    keys=st.one_of(
        st.lists(st.integers(-3, 3), max_size=300).map(lambda v: np.array(v, dtype=np.int64)),
        st.lists(st.floats(-1e300, 1e300, allow_nan=False), max_size=300).map(np.array),
        st.lists(st.sampled_from([0.0, -0.0, 1.5, np.inf, -np.inf]), max_size=80).map(np.array),
        st.lists(st.floats(-(2.0**100), 2.0**100, allow_nan=False, width=32), max_size=100).map(
            lambda v: np.array(v, dtype=np.float32)
        ),
        # runs already in order, or reversed, with ties: merges skipped, merges from both ends
        st.tuples(st.lists(st.integers(-5, 5), max_size=300), st.booleans(), st.integers(0, 300)).map(
            lambda t: np.roll(np.sort(t[0])[:: -1 if t[1] else 1], t[2]).astype(np.int64)
        ),
    )
)
def test_stable_argsort_is_numpys_stable_argsort(keys):
    # ties keep their order: runs of 16 sorted by insertion, then merged
    got = _common.stable_argsort(keys)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, np.argsort(keys, kind="stable"))


@pytest.mark.parametrize("n", [17, 33, 300, 1000, 4097])
def test_stable_argsort_merges_runs_of_every_length_and_order(n):
    # lengths just past a power of two (a long left run and a short right one, merged
    # from the ends), keys with many ties, in order, reversed and rotated
    rng = np.random.default_rng(n)
    ties = rng.integers(-3, 4, n)
    for keys in (ties, np.sort(ties), np.sort(ties)[::-1], np.roll(np.sort(ties), n // 3), rng.normal(size=n)):
        np.testing.assert_array_equal(_common.stable_argsort(keys), np.argsort(keys, kind="stable"))


def spatial_order_reference(X, leaf):
    """The k-d split order of ``_spatial_order`` in plain NumPy: cells of ``leaf`` rows,
    each cut at a block boundary near the median of the widest feature (the first of
    equal spreads), rows of equal value in their order."""
    order = np.arange(len(X))
    stack = [(0, len(X))]
    while stack:
        a, e = stack.pop()
        if e - a <= leaf:
            continue
        seg = order[a:e].copy()
        rows = X[seg].astype(np.float64)
        widest = int(np.argmax(rows.max(axis=0) - rows.min(axis=0)))
        order[a:e] = seg[np.argsort(rows[:, widest], kind="stable")]
        mid = a + max(1, (e - a) // leaf // 2) * leaf
        stack += [(a, mid), (mid, e)]
    return order


@given(
    n=st.integers(0, 300),
    d=st.integers(1, 4),
    leaf=st.integers(1, 20),
    grid=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
    dtype=st.sampled_from(DTYPES),
)
def test_spatial_order_is_the_reference_k_d_split(n, d, leaf, grid, seed, dtype):
    rng = np.random.default_rng(seed)
    X = (rng.integers(0, 3, (n, d)) if grid else rng.normal(size=(n, d))).astype(dtype)  # grid: ties
    np.testing.assert_array_equal(seeding.boxed._spatial_order(X, leaf), spatial_order_reference(X, leaf))


def test_draw_falls_back_to_the_last_block_of_positive_sum():
    # a subnormal total: u * total rounds up to the total, so no block passes it, and
    # the draw takes the last positive row of the last block of positive sum
    vals = np.array([0.0, 3e-324, 0.0, 5e-324, 0.0, 0.0])
    order = np.arange(6)
    sums = np.array([vals[b * 2 : b * 2 + 2].sum() for b in range(3)])
    u = np.array([0.99, 0.5])
    assert u[0] * sums.sum() == sums.sum()
    np.testing.assert_array_equal(seeding.draws.draw(order, vals, np.ones(6), sums, 2, u), [3, 3])


def test_best_trial_of_a_nan_potential_is_the_first_candidate():
    # as with pots.min(), which is NaN then: no candidate is within the tolerance
    assert seeding.draws.best_trial(np.array([3.0, np.nan, 1.0])) == 0
    assert seeding.draws.best_trial(np.array([3.0, 1.0, 1.0 + 1e-12])) == 1
    nan_last = np.searchsorted([1.0, 2.0], np.nan, side="right")
    assert seeding.draws._first_above(np.array([1.0, 2.0]), np.nan) == nan_last


@given(
    bcum=st.lists(st.integers(0, 5), max_size=40).map(lambda v: np.cumsum(v, dtype=np.float64)), v=st.floats(-1, 250)
)
def test_first_above_is_searchsorted_right(bcum, v):
    assert seeding.draws._first_above(bcum, v) == np.searchsorted(bcum, v, side="right")


@pytest.mark.parametrize("dtype", DTYPES)
def test_cluster_sums_match_reference(dtype):
    rng = np.random.default_rng(2)
    X = rng.normal(size=(2000, 9)).astype(dtype)
    labels = rng.integers(0, 40, 2000)
    offsets, order = groups.group_by_label(labels, 40)
    sums = groups.cluster_sums(X, offsets, order)
    ref, counts = naive.cluster_sums(X, labels, 40)
    assert sums.dtype == np.float64
    np.testing.assert_allclose(sums, ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(np.diff(offsets), counts)


@given(
    n=st.integers(1, 300),
    k=st.integers(1, 20),
    seed=st.integers(0, 2**32 - 1),
    max_take=st.integers(0, 50),
    tied=st.booleans(),
)
def test_pick_members_matches_reference(n, k, seed, max_take, tied):
    # tied scores (duplicate rows): the lower position first, in clusters of any size
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, n)
    scores = rng.integers(0, 3, n).astype(float) if tied else rng.random(n)
    sizes = np.bincount(labels, minlength=k)
    n_take = np.where(sizes > 0, rng.integers(0, max_take + 1, k), 0).astype(np.int64)
    offsets, order = groups.group_by_label(labels, k)
    got = select.pick_members(offsets, order, scores, n_take)
    np.testing.assert_array_equal(got, naive.pick_members(labels, k, scores, n_take))


def test_pick_members_takes_the_lower_positions_among_ties():
    offsets, order = groups.group_by_label(np.zeros(40, np.int64), 1)
    scores = np.repeat([0.0, 1.0], 20)[::-1].copy()  # rows 20..39 score 0
    np.testing.assert_array_equal(select.pick_members(offsets, order, scores, np.array([5])), np.arange(20, 25))


@given(
    n=st.integers(1, 300),
    k=st.integers(1, 20),
    seed=st.integers(0, 2**32 - 1),
    max_take=st.integers(0, 50),
    tied=st.booleans(),
)
def test_pick_weight_takes_what_repeated_rows_would_give(n, k, seed, max_take, tied):
    # integer weights: the rows (with the weight taken of each) are the repeated rows'
    # picks; weight 0 is never taken; fractional weights: each cluster gives its need;
    # tied scores: the lower position first
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, n)
    scores = rng.integers(0, 3, n).astype(float) if tied else rng.random(n)
    w = rng.integers(0, 4, n).astype(float)
    weight = np.bincount(labels, weights=w, minlength=k)
    need = np.minimum(weight, rng.integers(0, max_take + 1, k))
    offsets, order = groups.group_by_label(labels, k)
    rows, taken = select.pick_weight(offsets, order, scores, w, need)
    assert np.all(taken > 0) and np.all(taken <= w[rows])
    copies = np.repeat(np.arange(n), w.astype(int))
    ref = copies[naive.pick_members(labels[copies], k, scores[copies], need.astype(np.int64))]
    np.testing.assert_array_equal(np.sort(np.repeat(rows, taken.astype(int))), np.sort(ref))
    frac = rng.uniform(0.1, 2.0, n)
    need = np.minimum(np.bincount(labels, weights=frac, minlength=k), rng.uniform(0, max_take, k))
    rows, taken = select.pick_weight(offsets, order, scores, frac, need)
    np.testing.assert_allclose(np.bincount(labels[rows], weights=taken, minlength=k), need, atol=1e-9)


@given(
    caps=st.lists(st.integers(0, 40), min_size=1, max_size=30),
    frac=st.floats(0, 1),
    seed=st.integers(0, 2**32 - 1),
)
def test_water_fill_is_max_min_fair(caps, frac, seed):
    caps = np.array(caps, dtype=np.int64)
    target = int(frac * caps.sum())
    counts = select.water_fill(target, caps, np.random.default_rng(seed).random(caps.size))
    assert counts.sum() == target
    assert np.all((counts >= 0) & (counts <= caps))
    uncapped = counts < caps
    if uncapped.any():
        # every bin below its capacity sits at the common level or one above it,
        # and no capped bin is above that level + 1
        low = counts[uncapped].min()
        assert counts[uncapped].max() <= low + 1
        assert np.all(counts <= low + 1)


def test_water_fill_of_counts_near_the_int64_limit():
    uneven = np.array([2**61, 2**61 + 5, 2**62, 2**62], dtype=np.int64)
    for target, caps in ((2**61, np.full(8, 2**61, dtype=np.int64)), (2**62, uneven)):
        counts = select.water_fill(target, caps, np.arange(caps.size, dtype=np.float64))
        assert int(counts.sum()) == target and np.all((counts >= 0) & (counts <= caps))
        assert counts.max() - counts.min() <= 1  # no bin capped below the even share


@pytest.mark.parametrize("d", [2, 30])
@pytest.mark.parametrize("small_d", [0, _config.SMALL_D])
@pytest.mark.parametrize(
    "dtype, n_trials", [(np.float64, 5), (np.float32, 5), (np.float32, 10), (np.float32, 8), (np.float64, 16)]
)
def test_kmeans_plusplus_matches_reference(d, small_d, dtype, n_trials):
    # both paths: exact distances in loops (d <= small_d), or by dot products with
    # the candidates (as vector lanes for whole vectors of them, else row by row)
    rng = np.random.default_rng(3)
    X = rng.normal(size=(700, d)).astype(dtype)
    rand = rng.random((24, n_trials))
    order = rng.permutation(len(X))  # the draws go through the rows in this order
    got = seeding.kmeans_plusplus(X, np.ones(len(X)), order, 11, rand, _config.SEEDING_ROWS, small_d, 2)
    np.testing.assert_array_equal(got, naive.kmeans_plusplus(X, 11, rand, order))


@pytest.mark.parametrize("small_d, n_trials", [(0, 4), (0, 8), (_config.SMALL_D, 4)])
def test_weighted_kmeans_plusplus_is_seeding_with_repeated_rows(small_d, n_trials):
    # integer weights act as repeated rows: the potentials are the same sums
    rng = np.random.default_rng(4)
    X = rng.normal(size=(300, 3))
    w = rng.integers(1, 4, 300).astype(float)
    rand = rng.random((15, n_trials))
    order = rng.permutation(300)
    got = seeding.kmeans_plusplus(X, w, order, 7, rand, 256, small_d, 2)
    rows = np.repeat(np.arange(300), w.astype(int))
    # the repeated rows in the same order: each row's copies where the row was
    rep_order = np.argsort(np.argsort(order)[rows], kind="stable")
    ref = naive.kmeans_plusplus(X[rows], int(np.searchsorted(rows, 7)), rand, rep_order)
    np.testing.assert_array_equal(got, rows[ref])


@pytest.mark.parametrize("d, path", [(2, "kmeans_plusplus_boxed"), (9, "kmeans_plusplus_wide")])
def test_kmeans_plusplus_runs_only_the_path_the_data_need(monkeypatch, d, path):
    # the other path is never called, so never compiled
    other = {"kmeans_plusplus_boxed", "kmeans_plusplus_wide"} - {path}
    monkeypatch.setattr(seeding, other.pop(), lambda *args: pytest.fail("the other path ran"))
    rng = np.random.default_rng(5)
    X = rng.normal(size=(200, d))
    rand = rng.random((5, 3))
    got = seeding.kmeans_plusplus(X, np.ones(len(X)), np.arange(len(X)), 0, rand, 64, 8, 2)
    np.testing.assert_array_equal(got, naive.kmeans_plusplus(X, 0, rand, np.arange(len(X))))


def _clustered(seed, n, d, n_blobs, spread, dtype, duplicates=0):
    """Rows around ``n_blobs`` centres ``spread`` apart per feature (offset from the
    origin), the first ``duplicates`` rows repeated at the end: blobs where the screen
    leaves most rows out, and exact ties."""
    rng = np.random.default_rng(seed)
    means = rng.normal(scale=spread, size=(n_blobs, d)) + rng.normal(scale=3.0, size=d)
    X = means[rng.integers(0, n_blobs, n)] + rng.normal(size=(n, d))
    return np.concatenate([X, X[:duplicates]]).astype(dtype)


def _wide_state(X, n_centres, seed):
    """``closest`` after ``n_centres`` random rows, and one step's candidates."""
    rng = np.random.default_rng(seed)
    X64 = X.astype(np.float64)
    centres = rng.choice(len(X), n_centres, replace=False)
    closest = np.min([((X64 - X64[c]) ** 2).sum(1) for c in centres], axis=0)
    return closest, rng


def _potentials(kernel, X, w, closest, cand, *extra):
    chunk, t = 64, len(cand)
    n_blocks = -(-len(X) // chunk)
    x_sq = np.array([float(np.dot(x, x)) for x in X.astype(np.float64)])
    out = {}
    for name in ("partial", "move_code", "move_dist", "n_moves"):
        out[name] = np.zeros((n_blocks, t)) if name == "partial" else None
    move_code = np.zeros(n_blocks * chunk * t, dtype=np.int32)
    move_dist = np.zeros(n_blocks * chunk * t)
    n_moves = np.zeros(n_blocks, dtype=np.int64)
    args = (X, w, x_sq, closest.copy(), cand, chunk, out["partial"], move_code, move_dist, n_moves, 2)
    if kernel is seeding_wide._trial_potentials_wide:
        pots = kernel(*args)
    else:
        kappa = seeding_screen.screen_margin(X)
        mu = X.astype(np.float64).mean(axis=0)
        Xq, gam, csq, bounds = seeding_screen._row_codes(X, mu, x_sq, kappa)
        run = np.empty(len(X))
        seeding_screen._all_running_sums(w, closest, chunk, run)
        if extra:  # a broken screen: no bound for the 8-bit rounding, a margin too bold
            bounds[:, 0] += 0.25 * csq
            bounds[:, 1:] = 0.0
        pots = kernel(*args, Xq, gam, mu, csq, bounds, run, kappa, chunk // 4)[0]
    moves = {(b, code, dist) for b in range(n_blocks) for code, dist in zip(
        move_code[b * chunk * t : b * chunk * t + n_moves[b]], move_dist[b * chunk * t : b * chunk * t + n_moves[b]]
    )}  # fmt: skip
    return pots, out["partial"], moves


@pytest.mark.skipif(not simd.LANES_PAY, reason="the screen needs AVX2")
@given(
    seed=st.integers(0, 2**32 - 1),
    d=st.sampled_from([17, 40, 130]),
    t=st.sampled_from([1, 3, 8, 10, 16]),
    n_centres=st.sampled_from([1, 5, 40]),
    spread=st.sampled_from([0.5, 3.0, 10.0]),
    dtype=st.sampled_from(DTYPES),
    weighted=st.booleans(),
)
def test_screened_potentials_are_the_exact_pass_bit_for_bit(seed, d, t, n_centres, spread, dtype, weighted):
    # every block partial, potential and listed move as the unscreened pass, on blobs
    # where most rows are screened out, overlapping ones where few are, and ties
    X = _clustered(seed, 500, d, 12, spread, dtype, duplicates=40)
    closest, rng = _wide_state(X, n_centres, seed)
    w = rng.integers(0, 4, len(X)).astype(float) if weighted else np.ones(len(X))
    cand = rng.choice(len(X), t)
    want = _potentials(seeding_wide._trial_potentials_wide, X, w, closest, cand)
    got = _potentials(seeding_screen._screened_potentials, X, w, closest, cand)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
    assert got[2] == want[2]


def _screen_masks(vnni):
    """``f(Xq, Pq, gam, thr, coef)``: the screen's bits, products by ``vpdpbusd`` or AVX2's."""
    screen = seeding_screen._screen(seeding_screen.TILE_ROWS, vnni)

    @njit
    def masks(Xq, Pq, gam, thr, coef):
        mask = np.zeros((Xq.shape[0], coef.shape[1] // simd.LANES), dtype=np.uint8)
        for col in range(0, coef.shape[1], simd.LANES):
            for i in range(0, Xq.shape[0], seeding_screen.TILE_ROWS):
                screen(Xq, i, Pq, col, gam, thr, i, coef, mask, i)
        return mask

    return masks


_masks_avx2, _masks_vnni = _screen_masks(False), _screen_masks(True)


@pytest.mark.skipif(not simd.VNNI, reason="needs AVX-512 VNNI or AVX-VNNI")
@given(seed=st.integers(0, 2**32 - 1), groups=st.integers(1, 40))
def test_the_screens_vnni_products_are_avx2s(seed, groups):
    # the same rows screened out by both instructions' products, on codes the AVX2
    # sequence takes without saturating (rows q + 63 <= 126, candidates in [-63, 63]),
    # with thresholds at the exact integer sums, so a sum off by one flips a bit
    rng = np.random.default_rng(seed)
    n, width, dq = 16, 16, groups * seeding_screen.GROUP
    Xq = rng.integers(0, 127, (n, dq)).astype(np.uint8)
    P = rng.integers(-63, 64, (dq, width))
    Pq = np.ascontiguousarray(P.reshape(dq // 4, 4, width).transpose(0, 2, 1).reshape(dq // 4, -1), dtype=np.int8)
    coef = np.zeros((3, width))
    coef[0], coef[2] = 1.0, 63.0 * P.sum(axis=0)
    J = (Xq.astype(np.int64) - 63) @ P
    gam = np.ones(n)
    thr = J[np.arange(n), rng.integers(0, width, n)].astype(float) - 0.5  # J > thr where J >= the picked sum
    want = _masks_avx2(Xq, Pq, gam, thr, coef)
    np.testing.assert_array_equal(_masks_vnni(Xq, Pq, gam, thr, coef), want)
    bits = np.unpackbits(want, axis=1, bitorder="little")
    np.testing.assert_array_equal(bits, J > thr[:, None])


@pytest.mark.skipif(not simd.LANES_PAY, reason="the screen needs AVX2")
def test_only_large_seedings_are_screened(monkeypatch):
    # rows x steps x features below screen.MIN_WORK: the unscreened kernel (the screen
    # would save little and compile on a first run); at it, the screened one
    calls = []
    screened = seeding.kmeans_plusplus_screened
    monkeypatch.setattr(seeding, "kmeans_plusplus_screened", lambda *a: calls.append(1) or screened(*a))
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, max(simd.SCREEN_FEATURES, _config.SMALL_D + 1)))
    rand = rng.random((9, 3))
    want = naive.kmeans_plusplus(X, 0, rand, np.arange(len(X)))
    for min_work, n_calls in ((X.size * 9 + 1, 0), (X.size * 9, 1)):
        monkeypatch.setattr(seeding_screen, "MIN_WORK", min_work)
        got = seeding.kmeans_plusplus(X, np.ones(len(X)), np.arange(len(X)), 0, rand, 64, _config.SMALL_D, 2)
        np.testing.assert_array_equal(got, want)
        assert len(calls) == n_calls


@pytest.mark.skipif(not simd.LANES_PAY, reason="the screen needs AVX2")
def test_rows_too_wide_for_the_screens_int32_sums_are_not_screened(monkeypatch):
    # codes at the extremes (rows q + LEVELS = 2 LEVELS, a candidate p = LEVELS): up to
    # screen.MAX_FEATURES features the screen's int32 sums hold, one more would wrap
    levels = seeding_screen.LEVELS
    dq = seeding_screen.MAX_FEATURES // seeding_screen.GROUP * seeding_screen.GROUP
    assert (seeding_screen.MAX_FEATURES + 1) * 2 * levels * levels > 2**31 - 1
    Xq = np.full((8, dq), 2 * levels, np.uint8)
    Pq = np.zeros((dq // 4, 4 * simd.LANES), np.int8)
    Pq[:, :4] = levels  # candidate 0: every feature at LEVELS
    coef = np.zeros((3, simd.LANES))
    coef[0], coef[2, 0] = 1.0, levels * levels * dq
    J = levels * levels * dq  # (2 LEVELS - LEVELS) * LEVELS per feature
    masks = (_masks_vnni if simd.VNNI else _masks_avx2)(Xq, Pq, np.ones(8), np.full(8, J - 0.5), coef)
    assert np.all(masks[:, 0] == 1)
    # wider rows take the unscreened kernel, however large the seeding
    monkeypatch.setattr(seeding_screen, "MIN_WORK", 0)
    monkeypatch.setattr(seeding, "kmeans_plusplus_screened", lambda *args: pytest.fail("screened"))
    rng = np.random.default_rng(0)
    X = rng.normal(size=(12, seeding_screen.MAX_FEATURES + 1))
    rand = rng.random((3, 3))
    got = seeding.kmeans_plusplus(X, np.ones(len(X)), np.arange(len(X)), 0, rand, 64, _config.SMALL_D, 2)
    np.testing.assert_array_equal(got, naive.kmeans_plusplus(X, 0, rand, np.arange(len(X))))


@pytest.mark.skipif(not simd.LANES_PAY, reason="the screen needs AVX2")
@pytest.mark.parametrize("dtype, scale", [(np.float32, 1e-25), (np.float32, 1e-36), (np.float64, 1e-160)])
def test_the_screen_holds_where_products_underflow(dtype, scale):
    # rows whose products fall below their dtype's normal numbers, where the exact
    # pass's rounding is no longer relative, and (float64) the squares of the 8-bit
    # copies' residuals underflow (without the margin and the scaled residuals, 4 of
    # these 60 float32 seedings chose other rows, and some float64 ones)
    for seed, (n, d, steps, weighted) in itertools.product(range(60), [(600, 33, 30, True), (1000, 17, 80, False)]):
        rng = np.random.default_rng(seed)
        X = (rng.normal(size=(n, d)) * scale).astype(dtype)
        w = rng.integers(0, 3, n).astype(float) if weighted else np.ones(n)
        rand = rng.random((steps, 4))
        order = rng.permutation(len(X))
        got = seeding_screen.kmeans_plusplus_screened(X, w, order, 0, rand, 64, 2, 16)
        np.testing.assert_array_equal(got, seeding_wide.kmeans_plusplus_wide(X, w, order, 0, rand, 64, 2))


@pytest.mark.skipif(not simd.LANES_PAY, reason="the screen needs AVX2")
@pytest.mark.parametrize("seed", range(6))
def test_the_screen_margin_alone_covers_rows_far_from_the_origin(seed):
    """Rows at 65536 plus small integers whose 8-bit codes are exact (one entry per
    row at +-LEVELS, mirrored so that the mean is 65536 exactly): the codes leave no
    rounding slack, so only the margin ``kappa`` covers the float32 rounding of the
    exact pass, and the screened pass must still be it bit for bit."""
    rng = np.random.default_rng(seed)
    levels = seeding_screen.LEVELS
    V = rng.integers(-levels, levels + 1, size=(250, 40))
    V[np.arange(250), rng.integers(0, 40, 250)] = levels
    X = (65536 + np.concatenate([V, -V])).astype(np.float32)
    closest, rng = _wide_state(X, 5, seed)
    cand = rng.choice(len(X), 8)
    w = np.ones(len(X))
    want = _potentials(seeding_wide._trial_potentials_wide, X, w, closest, cand)
    got = _potentials(seeding_screen._screened_potentials, X, w, closest, cand)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
    assert got[2] == want[2]
    rand = rng.random((100, 8))
    order = rng.permutation(len(X))
    got = seeding_screen.kmeans_plusplus_screened(X, w, order, 3, rand, 64, 2, 16)
    np.testing.assert_array_equal(got, seeding_wide.kmeans_plusplus_wide(X, w, order, 3, rand, 64, 2))


@pytest.mark.skipif(not simd.LANES_PAY, reason="the screen needs AVX2")
def test_a_screen_that_leaves_out_a_mover_is_caught():
    # with no bound for the 8-bit copies' rounding and a margin of -25 % of |x - mu|^2, the screen
    # leaves out rows a candidate moves: the check above sees it
    caught = 0
    for seed in range(20):
        X = _clustered(seed, 500, 40, 12, 0.5, np.float32)
        closest, rng = _wide_state(X, 5, seed)
        cand = rng.choice(len(X), 8)
        want = _potentials(seeding_wide._trial_potentials_wide, X, np.ones(len(X)), closest, cand)
        got = _potentials(seeding_screen._screened_potentials, X, np.ones(len(X)), closest, cand, "broken")
        caught += got[2] != want[2] or not np.array_equal(got[1], want[1])
    assert caught > 0


@pytest.mark.skipif(not simd.LANES_PAY, reason="the screen needs AVX2")
@given(
    seed=st.integers(0, 2**32 - 1),
    d=st.sampled_from([17, 33, 64]),
    n_trials=st.sampled_from([1, 4, 8, 10]),
    spread=st.sampled_from([1.0, 4.0, 20.0]),
    dtype=st.sampled_from(DTYPES),
)
@example(seed=289100, d=17, n_trials=4, spread=20.0, dtype=np.float32)  # a draw 3e-4 from a row boundary
def test_screened_kmeans_plusplus_matches_reference(seed, d, n_trials, spread, dtype):
    # clustered rows, as many centres as a tenth of them (the screen leaves most rows
    # out), exact duplicates (ties): the unscreened kernel's picks bit for bit, and the
    # reference's. Duplicates only in float64: two copies drawn in one step tie in the
    # reference, while float32 dot products of a candidate round by its place among the
    # others (the unscreened kernel does the same). In float32 a draw that lands within
    # the rounding of a row boundary may fall on either side (one example in about 600
    # at spread 20), so there each step is checked against the picks that rounding admits
    X = _clustered(seed, 400, d, 8, spread, dtype, duplicates=30 if dtype == np.float64 else 0)
    rng = np.random.default_rng(seed)
    rand = rng.random((40, n_trials))
    order = rng.permutation(len(X))
    w = np.ones(len(X))
    got = seeding_screen.kmeans_plusplus_screened(X, w, order, 3, rand, 64, 2, 16)
    np.testing.assert_array_equal(got, seeding_wide.kmeans_plusplus_wide(X, w, order, 3, rand, 64, 2))
    if dtype == np.float64:
        np.testing.assert_array_equal(got, naive.kmeans_plusplus(X, 3, rand, order))
    else:
        margin = 2 * np.finfo(np.float32).eps * float((X.astype(np.float64) ** 2).sum(1).max())
        assert naive.kmeans_plusplus_first_inadmissible(X, got, rand, order, margin) is None


def test_compile_notice_once_and_only_when_a_kernel_compiles(tmp_path):
    from hkmeans._kernels import COMPILE_NOTICE

    code = (
        "import numpy as np; from hkmeans._kernels.cpu.groups import group_by_label as g; "
        "g(np.array([0, 1, 1]), 2); g(np.array([0, 1, 1], dtype=np.int32), 2)"
    )
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))  # empty: the first process compiles
    runs = [
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
        for _ in range(2)
    ]
    assert runs[0].stderr == COMPILE_NOTICE + "\n"
    assert runs[1].stderr == ""  # loaded from the cache


def test_users_own_numba_functions_compile_beside_the_notice():
    """The notice listens to every compile of the process: a function of the user's
    whose module is None (made by exec) compiles all the same."""
    import numba

    import hkmeans._kernels  # noqa: F401 (registers the listener)

    namespace = {}
    exec("def twice(x):\n    return 2 * x\n", namespace)
    assert namespace["twice"].__module__ is None
    assert numba.njit(namespace["twice"])(21) == 42


def test_no_compile_notice_once_silenced(tmp_path):
    code = (
        "import numpy as np; from hkmeans._kernels import silence_compile_notice; "
        "from hkmeans._kernels.cpu.groups import group_by_label as g; "
        "silence_compile_notice(); g(np.array([0, 1, 1]), 2)"
    )
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))  # empty: the kernel compiles
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert run.stderr == ""
    assert any(tmp_path.rglob("*.nbi"))  # it did compile


def test_a_change_to_any_kernel_module_makes_every_cached_kernel_stale(tmp_path):
    # a kernel's cache holds the code of the kernels and intrinsics it calls from other
    # files, so its index is stamped with every kernel module, not only its own file
    digest = _kernels.sources_digest.__wrapped__
    (tmp_path / "seeding").mkdir()
    (tmp_path / "simd.py").write_text("LANES = 8\n")
    (tmp_path / "seeding" / "screen.py").write_text("x = 1\n")
    first = digest(str(tmp_path))
    (tmp_path / "notes.txt").write_text("not a module")
    assert digest(str(tmp_path)) == first
    (tmp_path / "simd.py").write_text("LANES = 16\n")
    assert digest(str(tmp_path)) != first
    (tmp_path / "simd.py").write_text("LANES = 8\n")
    (tmp_path / ".#simd.py").symlink_to(tmp_path / "nowhere")  # an editor's lock: no module
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "cached.nbi").write_text("")
    assert digest(str(tmp_path)) == first
    (tmp_path / "seeding" / "screen.py").rename(tmp_path / "seeding" / "other.py")
    assert digest(str(tmp_path)) != first
    assert digest(str(tmp_path / "simd.py")) is None  # no folder
    # and every cached kernel carries this package's digest in its index's stamp
    stamp = seeding_screen.kmeans_plusplus_screened._cache._cache_file._source_stamp
    assert stamp[1] == _kernels.sources_digest() == digest(os.path.dirname(simd.__file__)) is not None


@pytest.mark.skipif(sys.platform == "win32", reason="no file locks on Windows: processes compile side by side")
def test_processes_started_together_compile_a_kernel_once(tmp_path):
    """Three processes call the same uncompiled kernel at the same moment: one compiles
    it (and says so), the others wait and load it from the cache it saved."""
    go = tmp_path / "go"
    code = "\n".join(
        [
            "import os, time, numpy as np",
            "from hkmeans._kernels.cpu.groups import cluster_sums",
            f"while not os.path.exists({str(go)!r}):",
            "    time.sleep(0.001)",
            "cluster_sums(np.ones((4, 2)), np.array([0, 2, 4]), np.arange(4))",
        ]
    )
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"))  # empty: the kernel compiles
    procs = [
        subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True, env=env) for _ in range(3)
    ]
    time.sleep(3)  # all three imported and waiting
    go.touch()
    errs = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], errs
    assert sorted(err.count("compiling kernels") for err in errs) == [0, 0, 1], errs


def test_kernels_run_as_python_with_the_jit_off():
    """NUMBA_DISABLE_JIT=1 (to debug a kernel in Python): the kernels are plain
    functions, with no cache to lock."""
    code = (
        "import numpy as np, hkmeans; X = np.random.default_rng(0).normal(size=(40, 2)); "
        "print(len(hkmeans.HierarchicalKMeans((4, 2), n_resamples=1, random_state=0).fit(X).sample(10)))"
    )
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0 and run.stdout == "10\n", run.stderr[-2000:]


@pytest.mark.parametrize("quiet", [True, False])
def test_quiet_commands_silence_the_compile_notice(tmp_path, monkeypatch, quiet):
    main = importlib.import_module("hkmeans.cli.main")  # the package's name is the function
    calls = []
    monkeypatch.setattr(main, "silence_compile_notice", lambda: calls.append(1))
    main.main(["sample", str(tmp_path / "no-such-run"), "--target-size", "5", *(["-q"] if quiet else [])])
    assert calls == ([1] if quiet else [])


def _dots(X, a, e, Y):
    """``_candidate_dots`` of rows ``a:e`` with the candidates ``Y``, as the seeding
    calls it."""
    Yt = np.ascontiguousarray(Y.T if len(Y) % simd.LANES == 0 else Y[:0].T)
    G = np.full((e - a, -(-len(Y) // simd.LANES) * simd.LANES), np.nan)
    seeding_wide.candidate_dots(X, a, e, Yt, Y, G)
    return G[:, : len(Y)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m, t", [(1, 1), (3, 2), (7, 3), (5, 8), (8, 8), (9, 9), (30, 16), (257, 17)])
def test_candidate_dots_is_the_matrix_product(dtype, m, t):
    rng = np.random.default_rng(m * t)
    X, Y = rng.normal(size=(m + 2, 37)).astype(dtype), rng.normal(size=(t, 37)).astype(dtype)
    G = _dots(X, 1, m + 1, Y)  # rows 1..m only
    exact = X[1 : m + 1].astype(np.float64) @ Y.T.astype(np.float64)
    # runs of FEATURE_BLOCK products summed in the data's precision, then in float64
    tol = (
        simd.FEATURE_BLOCK
        * np.finfo(dtype).eps
        * (np.abs(X[1 : m + 1]).astype(np.float64) @ np.abs(Y.T).astype(np.float64))
    )
    assert np.all(np.abs(G - exact) <= tol)


def test_candidate_dots_stay_accurate_far_from_the_origin():
    # float32 rows far from the origin: the distances come from large dot products, so
    # a long float32 sum would lose them; runs of 8 added in float64 keep the error
    # within a few roundings of the result
    rng = np.random.default_rng(8)
    X = (rng.normal(size=(64, 512)) + 30).astype(np.float32)
    G = _dots(X, 0, 64, X[:8])
    exact = X.astype(np.float64) @ X[:8].T.astype(np.float64)
    assert np.abs(G / exact - 1).max() < 4 * np.finfo(np.float32).eps


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_candidate_dots_do_not_depend_on_the_tile(dtype):
    # a row gives the same bits inside a tile of rows or alone, so block and thread
    # boundaries cannot change a distance
    rng = np.random.default_rng(5)
    X, Y = rng.normal(size=(21, 45)).astype(dtype), rng.normal(size=(16, 45)).astype(dtype)
    whole = _dots(X, 0, 21, Y)  # rows 0-15 in tiles, 16-20 alone
    for start in (3, 16, 20):
        np.testing.assert_array_equal(_dots(X, start, 21, Y), whole[start:])


@pytest.mark.parametrize(
    "machine, name, features, pays",
    [
        ("x86_64", "generic", "", False),
        ("x86_64", "x86-64", "", False),
        ("x86_64", "haswell", "+avx2,+fma", True),
        ("x86_64", "skylake-avx512", "", True),
        ("x86_64", "nehalem", "+sse4.2", False),
        ("arm64", None, None, False),
    ],
)
def test_lanes_are_used_only_where_they_pay(monkeypatch, machine, name, features, pays):
    monkeypatch.setattr(simd.platform, "machine", lambda: machine)
    monkeypatch.setattr(simd.numba.config, "CPU_NAME", name)
    monkeypatch.setattr(simd.numba.config, "CPU_FEATURES", features)
    assert simd._lanes_pay() is pays


class _Host(dict):
    """llvmlite's map of the host's features, from ``"+a,-b"``."""

    def __init__(self, features):
        super().__init__((f[1:], f[0] == "+") for f in features.split(",") if f)

    def flatten(self):
        return ",".join(("+" if on else "-") + name for name, on in self.items())


@pytest.mark.parametrize(
    "name, features, host, lanes, vnni, screen_from",
    [
        ("icelake-server", "+avx2,+fma,+avx512f", "", True, False, 128),
        ("znver3", "+avx2,+fma", "+avx2,+fma,+avx512f", True, False, 0),  # Numba's features: those given
        ("skylake-avx512", None, "+avx2,+fma,+avx512f", True, False, 128),  # a name alone: the host's
        ("skylake-avx512", None, "+avx2,+fma", True, False, 0),
        # turned off: no lanes (LLVM could not select them)
        (None, "-avx2,-fma", "+avx2,+fma,+avx512f", False, False, 0),
        ("generic", None, "+avx2,+fma,+avx512f", False, False, 0),
        (None, None, "+avx2,+fma,+avx512f,+avx512vl,+avx512vnni", True, True, 0),  # vpdpbusd: the screen from any width
        (None, None, "+avx2,+fma,+avx512f,-avx512vl,+avx512vnni", True, False, 128),  # no 256-bit form without VL
        (None, None, "+avx2,+fma,+avxvnni", True, True, 0),
        (None, None, "+avx2,-fma,+avxvnni", False, False, 0),
        ("icelake-server", "", "+avx2,+fma,+avx512f,+avx512vl,+avx512vnni", True, False, 0),  # the name's own: unknown
    ],
)
def test_the_choices_read_the_features_numba_compiles_for(monkeypatch, name, features, host, lanes, vnni, screen_from):
    monkeypatch.setattr(simd.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(simd.numba.config, "CPU_NAME", name)
    monkeypatch.setattr(simd.numba.config, "CPU_FEATURES", features)
    monkeypatch.setattr(simd.ll, "get_host_cpu_features", lambda: _Host(host))
    assert (simd._lanes_pay(), simd._has_vnni(), simd._screen_features()) == (lanes, vnni, screen_from)


def test_numba_enable_avx_off_turns_the_simd_choices_off(monkeypatch):
    # NUMBA_ENABLE_AVX=0 turns every avx* feature of the host's off for LLVM, which then
    # cannot select vpdpbusd (nor the lanes): the choices must see the same
    monkeypatch.setattr(simd.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(simd.numba.config, "CPU_NAME", None)
    monkeypatch.setattr(simd.numba.config, "CPU_FEATURES", None)
    monkeypatch.setattr(simd.numba.config, "ENABLE_AVX", False)
    monkeypatch.setattr(simd.ll, "get_host_cpu_features", lambda: _Host("+avx2,+fma,+avx512f,+avx512vl,+avx512vnni"))
    assert (simd._lanes_pay(), simd._has_vnni(), simd._screen_features()) == (False, False, 0)


@njit
def _potentials_by_blocks(G, t, x_sq, closest, w, y_sq):
    acc = np.zeros(G.shape[1])
    moved = np.zeros(G.shape[0], dtype=np.bool_)
    for col in range(0, G.shape[1], simd.LANES):
        simd.potentials_block(G, col, G.shape[0], x_sq, closest, w, 0, y_sq, t, acc, moved)
    return acc[:t], moved


@pytest.mark.parametrize("t", [3, 8, 13])
def test_potentials_block_is_the_scalar_loop(t):
    # bit for bit: the same operations in the same order as plain float64 arithmetic
    rng = np.random.default_rng(t)
    m = 50
    width = -(-t // simd.LANES) * simd.LANES
    G = rng.normal(size=(m, width)) * 3
    x_sq, w = rng.random(m) * 10, rng.integers(1, 4, m).astype(np.float64)
    y_sq = np.zeros(width)
    y_sq[:t] = rng.random(t) * 10
    closest = rng.random(m) * 20
    closest[::7] = np.inf
    acc, moved = _potentials_by_blocks(G, t, x_sq, closest, w, y_sq)
    ref = np.zeros(t)
    ref_moved = np.zeros(m, dtype=bool)
    for i in range(m):
        d2 = np.maximum(x_sq[i] + y_sq[:t] - 2.0 * G[i, :t], 0.0)
        ref += w[i] * np.minimum(d2, closest[i])
        ref_moved[i] = (d2 < closest[i]).any()
    np.testing.assert_array_equal(acc, ref)
    np.testing.assert_array_equal(moved, ref_moved)
    assert 0 < ref_moved.sum() < m


def test_the_demo_sees_whether_the_dedup_kernels_are_cached(tmp_path):
    """On a first run the demo compiles the dedup kernels in a second process: it must
    tell an empty cache from a filled one."""
    from hkmeans import demo

    demo.load_dedup_kernels()  # compiled or loaded here: in the cache now
    assert demo._dedup_kernels_cached()
    code = "from hkmeans import demo; print(demo._dedup_kernels_cached())"
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))  # empty
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert run.stdout.strip() == "False"
    # an entry from kernel sources since changed (an upgrade) is no cache either
    cache_file = demo.dedup_kernels.sweep._cache._cache_file
    stamp = cache_file._source_stamp
    try:
        cache_file._source_stamp = (stamp[0], "the digest of other sources")
        assert not demo._dedup_kernels_cached()
    finally:
        cache_file._source_stamp = stamp
