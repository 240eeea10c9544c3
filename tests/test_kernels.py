"""Kernels against the plain-NumPy references in ``naive.py``."""

import numba
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hkmeans import _config
from hkmeans._kernels import cpu
from hkmeans.kmeans import _group_centres, assign, search

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
    cpu.loosen_bounds(lower, np.array([moves[a:e].max() for a, e in zip(offsets[:-1], offsets[1:])]))
    search(X, moved, labels, sqdist, lower, offsets)
    np.testing.assert_array_equal(labels, assign(X, moved)[0])
    D = np.sqrt(naive.sqdist_matrix(X, moved))
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
    offsets, order = cpu.group_by_label(labels, k)
    np.testing.assert_array_equal(order, np.argsort(labels, kind="stable"))
    np.testing.assert_array_equal(np.diff(offsets), np.bincount(labels, minlength=k))


@pytest.mark.parametrize("dtype", DTYPES)
def test_cluster_sums_match_reference(dtype):
    rng = np.random.default_rng(2)
    X = rng.normal(size=(2000, 9)).astype(dtype)
    labels = rng.integers(0, 40, 2000)
    offsets, order = cpu.group_by_label(labels, 40)
    sums = cpu.cluster_sums(X, offsets, order)
    ref, counts = naive.cluster_sums(X, labels, 40)
    assert sums.dtype == np.float64
    np.testing.assert_allclose(sums, ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(np.diff(offsets), counts)


@given(
    n=st.integers(1, 300),
    k=st.integers(1, 20),
    seed=st.integers(0, 2**32 - 1),
    max_take=st.integers(0, 50),
)
def test_pick_members_matches_reference(n, k, seed, max_take):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, n)
    scores = rng.random(n)
    sizes = np.bincount(labels, minlength=k)
    n_take = np.where(sizes > 0, rng.integers(0, max_take + 1, k), 0).astype(np.int64)
    offsets, order = cpu.group_by_label(labels, k)
    got = cpu.pick_members(offsets, order, scores, n_take)
    np.testing.assert_array_equal(got, naive.pick_members(labels, k, scores, n_take))


@given(
    caps=st.lists(st.integers(0, 40), min_size=1, max_size=30),
    frac=st.floats(0, 1),
    seed=st.integers(0, 2**32 - 1),
)
def test_water_fill_is_max_min_fair(caps, frac, seed):
    caps = np.array(caps, dtype=np.int64)
    target = int(frac * caps.sum())
    counts = cpu.water_fill(target, caps, np.random.default_rng(seed).random(caps.size))
    assert counts.sum() == target
    assert np.all((counts >= 0) & (counts <= caps))
    uncapped = counts < caps
    if uncapped.any():
        # every bin below its capacity sits at the common level or one above it,
        # and no capped bin is above that level + 1
        low = counts[uncapped].min()
        assert counts[uncapped].max() <= low + 1
        assert np.all(counts <= low + 1)


@pytest.mark.parametrize("d", [2, 30])
@pytest.mark.parametrize("small_d", [0, _config.SMALL_D])
@pytest.mark.parametrize("dtype, n_trials", [(np.float64, 5), (np.float32, 5), (np.float32, 10)])
def test_kmeans_plusplus_matches_reference(d, small_d, dtype, n_trials):
    # both paths: exact distances in loops (d <= small_d), or by dot products with
    # the candidates (four, two and one at a time)
    rng = np.random.default_rng(3)
    X = rng.normal(size=(700, d)).astype(dtype)
    rand = rng.random((24, n_trials))
    got = cpu.kmeans_plusplus(X, np.ones(len(X)), 11, rand, _config.SEEDING_ROWS, small_d, 2)
    np.testing.assert_array_equal(got, naive.kmeans_plusplus(X, 11, rand))


@pytest.mark.parametrize("small_d", [0, _config.SMALL_D])
def test_weighted_kmeans_plusplus_is_seeding_with_repeated_rows(small_d):
    # integer weights act as repeated rows: the potentials are the same sums
    rng = np.random.default_rng(4)
    X = rng.normal(size=(300, 3))
    w = rng.integers(1, 4, 300).astype(float)
    rand = rng.random((15, 4))
    got = cpu.kmeans_plusplus(X, w, 7, rand, 256, small_d, 2)
    rows = np.repeat(np.arange(300), w.astype(int))
    ref = naive.kmeans_plusplus(X[rows], int(np.searchsorted(rows, 7)), rand)
    np.testing.assert_array_equal(got, rows[ref])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m, t", [(1, 1), (3, 2), (7, 3), (5, 6), (4, 7), (8, 8), (257, 9)])
def test_few_dots_is_the_matrix_product(dtype, m, t):
    rng = np.random.default_rng(m * t)
    X, Y = rng.normal(size=(m, 37)).astype(dtype), rng.normal(size=(t, 37)).astype(dtype)
    G = np.full((m, t), np.nan, dtype=dtype)
    cpu._few_dots(X, Y, G)
    np.testing.assert_allclose(G, X.astype(np.float64) @ Y.T.astype(np.float64), rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-4 if dtype == np.float32 else 1e-12)
