import numba
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import sparse

import hkmeans
from hkmeans import HierarchicalKMeans
from hkmeans.dedup import KEEP

from . import naive


@st.composite
def pools(draw, metric):
    """Small pools made to trip the rule: rows on a grid (ties, identical rows),
    copies, chains a-b-c with a and c apart, and a threshold that is sometimes the
    exact score of a pair."""
    n = draw(st.integers(2, 40))
    d = draw(st.integers(1, 6))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    X = rng.integers(-2, 3, (n, d)).astype(dtype) if draw(st.booleans()) else rng.normal(size=(n, d)).astype(dtype)
    X[:, 0] += 3
    step = draw(st.sampled_from([0.05, 0.2, 0.5]))
    for _ in range(draw(st.integers(0, 4))):  # chains of small steps
        a = rng.integers(n)
        for j in rng.choice(n, size=min(n, 3), replace=False):
            X[j] = X[a] + step * (j - a) * np.eye(d, dtype=dtype)[0]
    for j in rng.integers(0, n, draw(st.integers(0, n // 2))):  # exact copies
        X[j] = X[rng.integers(n)]
    X[np.all(X == 0, axis=1), 0] = 1  # no zero rows for cosine
    if draw(st.booleans()):  # exactly at the threshold
        i, j = rng.choice(n, 2, replace=False)
        x = X[[i, j]].astype(np.float64)
        sq = np.cumsum(x * x, axis=1)[:, -1]
        t = (
            np.cumsum(x[0] * x[1])[-1] / np.sqrt(sq.prod())
            if metric == "cosine"
            else np.sqrt(np.cumsum((x[0] - x[1]) ** 2)[-1])
        )
        if metric == "cosine" and not 0 < t <= 1:
            t = 0.9
    else:
        t = (
            draw(st.sampled_from([0.8, 0.95, 0.99, 1.0]))
            if metric == "cosine"
            else draw(st.sampled_from([0.0, 0.1, 0.3, 1.0]))
        )
    return X, float(t)


def check_rule(X, t, metric, res):
    kept, duplicate_of, similarity = naive.dedup(X, t, res.order, metric)
    np.testing.assert_array_equal(res.kept, kept)
    np.testing.assert_array_equal(res.duplicate_of, duplicate_of)
    np.testing.assert_array_equal(res.similarity, similarity)


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@given(data=st.data())
def test_equals_the_rule_over_all_pairs(metric, data):
    X, t = data.draw(pools(metric))
    keep = data.draw(st.sampled_from(KEEP))
    # many clusters: pairs straddle their borders
    k = data.draw(st.integers(1, len(X)))
    res = hkmeans.dedup(X, t, metric=metric, keep=keep, n_clusters=k, random_state=0)
    check_rule(X, t, metric, res)


def test_rank_orders():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 8))
    model = HierarchicalKMeans((10, 2), n_resamples=1, random_state=0).fit(X)
    res = {keep: hkmeans.dedup(X, 0.9, keep=keep, random_state=3, model=model) for keep in KEEP}
    np.testing.assert_array_equal(res["first"].order, np.arange(300))
    np.testing.assert_array_equal(np.sort(res["random"].order), np.arange(300))
    np.testing.assert_array_equal(res["random"].order, np.random.default_rng(3).permutation(300))
    C = model.levels_[0].centroids
    C = C / np.linalg.norm(C, axis=1, keepdims=True)
    U = X / np.linalg.norm(X, axis=1, keepdims=True)
    labels = res["first"].labels
    sq = np.sum((U - C[labels]) ** 2, axis=1)
    np.testing.assert_array_equal(labels, np.argmin(((U[:, None] - C[None]) ** 2).sum(-1), axis=1))
    assert np.all(np.diff(sq[res["hard"].order]) <= 1e-12)  # farthest first
    assert np.all(np.diff(sq[res["easy"].order]) >= -1e-12)  # closest first


@pytest.mark.parametrize("keep", ["hard", "easy"])
def test_ranks_tied_by_distance_go_to_the_lower_row(keep):
    """Exact copies lie at one distance from their centroid: "hard" and "easy" rank
    the lower row first (as the docs say), so each earlier row is kept and its later
    copy names it."""
    X = np.random.default_rng(7).normal(size=(400, 16))
    X[200:] = X[:200]
    res = hkmeans.dedup(X, 0.999, keep=keep, random_state=0)
    np.testing.assert_array_equal(res.kept, np.arange(200))
    np.testing.assert_array_equal(res.duplicate_of[200:], np.arange(200))


def test_copies_match_at_threshold_one():
    rng = np.random.default_rng(6)
    X = rng.normal(size=(200, 37)) * rng.uniform(0.01, 100, size=(200, 1))
    X[100:] = X[:100]
    for dtype in (np.float32, np.float64):
        res = hkmeans.dedup(X.astype(dtype), 1.0, keep="first", random_state=0)
        np.testing.assert_array_equal(res.kept, np.arange(100))
        np.testing.assert_array_equal(res.duplicate_of[100:], np.arange(100))
        assert np.all(res.similarity[100:] == 1.0)


def test_chain_keeps_both_ends():
    # a-b-c on a line: b is a duplicate of a, c is not of a; c stays though it matches b
    X = np.array([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0], [10.0, 0.0]])
    res = hkmeans.dedup(X, 1.0, metric="euclidean", keep="first", n_clusters=2)
    np.testing.assert_array_equal(res.kept, [0, 2, 3])
    np.testing.assert_array_equal(res.duplicate_of, [-1, 0, -1, -1])
    np.testing.assert_array_equal(res.similarity[[1]], [1.0])


@pytest.mark.filterwarnings("ignore:overflow encountered in cast")  # the k-means's float32 ranks of 1e40 norms
@pytest.mark.parametrize("scale, threshold", [(1e20, 0.5e20), (1e-25, 0.5e-25)])
def test_float32_rows_too_large_or_too_small_for_float32_products(scale, threshold):
    # their dot products overflow or underflow in float32: the search runs in float64
    X = np.random.default_rng(0).normal(size=(300, 4))
    X[150:] = X[:150] + 0.01 * np.random.default_rng(1).normal(size=(150, 4))
    X = (X * scale).astype(np.float32)
    res = hkmeans.dedup(X, threshold, metric="euclidean", keep="first", random_state=0)
    ref = hkmeans.dedup(X.astype(np.float64), threshold, metric="euclidean", keep="first", random_state=0)
    np.testing.assert_array_equal(res.duplicate_of, ref.duplicate_of)
    assert len(res.removed) >= 150


def test_exact_copies_of_float32_rows_too_small_for_float32_products():
    # threshold 0 with rows of 1e-22: their float32 squares underflow; float64 finds them
    X = np.random.default_rng(0).normal(size=(60, 8))
    X[30:40] = X[:10]
    X = (X * 1e-22).astype(np.float32)
    res = hkmeans.dedup(X, 0.0, metric="euclidean", keep="first", random_state=0)
    np.testing.assert_array_equal(res.duplicate_of[30:40], np.arange(10))
    check_rule(X, 0.0, "euclidean", res)


def test_cosine_of_float32_rows_whose_norms_leave_float32s_range():
    # |x| above float32's largest value: the search runs in float64, rows 0 and 1 are copies
    X = np.array([[3e38, 3e38, 0], [2e38, 2e38, 0], [2, 1, 0], [2, 1, 0.01]], np.float32)
    res = hkmeans.dedup(X, 0.99, keep="first", n_clusters=2, random_state=0)
    np.testing.assert_array_equal(res.duplicate_of, [-1, 0, -1, 2])
    check_rule(X, 0.99, "cosine", res)


@pytest.mark.parametrize("scale", [1e100, 1e-100])
def test_cosine_of_rows_whose_squared_norms_multiply_out_of_float64s_range(scale):
    # |x|^2 |y|^2 overflows (underflows): copies must still score 1, others not inf
    X = np.random.default_rng(0).normal(size=(300, 4))
    X[150:] = X[:150]
    res = hkmeans.dedup(X * scale, 0.999, keep="first", random_state=0)
    ref = hkmeans.dedup(X, 0.999, keep="first", random_state=0)
    np.testing.assert_array_equal(res.duplicate_of, ref.duplicate_of)
    np.testing.assert_array_equal(res.similarity[150:], 1.0)
    check_rule(X * scale, 0.999, "cosine", res)


def test_cosine_of_a_tiny_row_and_a_normal_one():
    # |x|^2 |y|^2 is below float64's normal numbers: the cosine, either way round
    X = np.array([[1e-5, 1e-5], [1e-150, 0.0], [0.0, 3e-150]])
    res = hkmeans.dedup(X, 0.5, keep="first", n_clusters=1, random_state=0)
    np.testing.assert_array_equal(res.duplicate_of, [-1, 0, 0])
    np.testing.assert_allclose(res.similarity[1:], np.sqrt(0.5), rtol=1e-12)
    check_rule(X, 0.5, "cosine", res)


def test_pairs_across_cluster_borders_are_found():
    # pairs 0.01 apart around x=0, with one centroid either side: every pair straddles
    rng = np.random.default_rng(1)
    left = np.column_stack([-np.abs(rng.normal(size=200)) - 0.005, rng.normal(size=200)])
    right = left.copy()
    right[:, 0] = -left[:, 0]
    X = np.vstack([left, right, [[-5, 0], [5, 0]]])
    res = hkmeans.dedup(X, 0.011, metric="euclidean", keep="first", n_clusters=2, random_state=0)
    check_rule(X, 0.011, "euclidean", res)
    near_border = np.flatnonzero(np.abs(left[:, 0]) < 0.0055)
    assert np.all(res.duplicate_of[400 + near_border] == near_border)
    assert np.all(res.labels[near_border] != res.labels[400 + near_border])


@pytest.mark.parametrize("depth", np.linspace(0.95, 0.999, 12))
def test_a_pair_whose_kept_row_lies_deep_in_its_cluster_is_found(depth):
    """Centroids at x = -1 and 1, threshold t: a kept row at depth ``depth * t`` left
    of the border and its copy just under t away across it. The border filter must
    reach that deep; a filter a percent too tight misses such pairs."""
    import sys

    api = sys.modules["hkmeans.dedup"]
    t = 0.1
    h = depth * t
    X = np.array([[-h, 0.0], [t - h - 1e-5, 0.0], [-2.0, 0.0], [2.0, 0.0]])
    X, sq = api._check_data(X, "euclidean", t)
    res = api._search(X, sq, np.array([[-1.0, 0.0], [1.0, 0.0]]), t, "euclidean", "first", np.random.default_rng(0))
    assert res.labels[0] != res.labels[1]
    np.testing.assert_array_equal(res.duplicate_of, [-1, 0, -1, -1])


def test_a_row_copied_many_times_stays_within_blocks():
    rng = np.random.default_rng(2)
    X = np.vstack([np.repeat(rng.normal(size=(1, 16)), 30000, axis=0), rng.normal(size=(500, 16))])
    X = X.astype(np.float32)
    res = hkmeans.dedup(X, 0.99, keep="first", random_state=0)
    assert res.kept[0] == 0 and np.all(res.duplicate_of[1:30000] == 0)
    assert np.all(res.similarity[1:30000] >= 0.99)
    # each copy is compared with the rows kept before it, not with every copy
    assert res.n_compared < 200 * len(X), res.n_compared


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs two threads")
def test_same_result_on_one_and_two_threads():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(3000, 24)).astype(np.float32)
    X[1500:] = X[:1500] + 0.3 * rng.normal(size=(1500, 24)).astype(np.float32)
    before = numba.get_num_threads()
    try:
        out = []
        for threads in (1, 2):
            numba.set_num_threads(threads)
            out.append(hkmeans.dedup(X, 0.95, random_state=0, n_clusters=30))
    finally:
        numba.set_num_threads(before)
    for name in ("kept", "duplicate_of", "similarity", "order"):
        np.testing.assert_array_equal(getattr(out[0], name), getattr(out[1], name))
    assert 0 < len(out[0].kept) < len(X)


def test_model_gives_the_clusters():
    rng = np.random.default_rng(5)
    X = rng.normal(size=(400, 6))
    X[200:] = X[:200] + 0.01
    model = HierarchicalKMeans((12, 3), n_resamples=1, random_state=0).fit(X)
    res = hkmeans.dedup(X, 0.999, model=model)
    check_rule(X, 0.999, "cosine", res)
    assert len(res.kept) <= 200
    with pytest.raises(ValueError, match="other data"):
        hkmeans.dedup(X[::-1].copy(), 0.999, model=model)
    with pytest.raises(ValueError, match="fitted on 400 rows"):
        hkmeans.dedup(X[:300], 0.999, model=model)
    with pytest.raises(ValueError, match="not both"):
        hkmeans.dedup(X, 0.999, model=model, n_clusters=3)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(threshold=0.0), r"\(0, 1\]"),
        (dict(threshold=1.5), r"\(0, 1\]"),
        (dict(threshold=-1.0, metric="euclidean"), ">= 0"),
        (dict(threshold=float("nan")), "finite"),
        (dict(threshold=0.9, metric="manhattan"), "metric"),
        (dict(threshold=0.9, keep="last"), "keep"),
        (dict(threshold=0.9, n_clusters=0), "n_clusters"),
        (dict(threshold=0.9, backend="spark"), "backend must be one of"),
        (dict(threshold=0.9, device="tpu"), "device must be one of"),
        (dict(threshold=0.9, client=object()), "client is for the dask backend"),
    ],
)
def test_bad_parameters_one_line(kwargs, match):
    X = np.random.default_rng(0).normal(size=(20, 3))
    with pytest.raises(ValueError, match=match) as e:
        hkmeans.dedup(X, **kwargs)
    assert "\n" not in str(e.value)


def test_bad_rows_one_line():
    X = np.random.default_rng(0).normal(size=(20, 3))
    X[7, 1] = np.nan
    with pytest.raises(ValueError, match="row 7|NaN"):
        hkmeans.dedup(X, 0.9)
    X[7] = 0
    with pytest.raises(ValueError, match="Row 7 of X is zero"):
        hkmeans.dedup(X, 0.9)
    assert len(hkmeans.dedup(X, 0.5, metric="euclidean").kept) >= 1
    X[7] = 1e-200  # finite, not zero: a squared norm float64 cannot hold, said as such
    with pytest.raises(ValueError, match=r"^The squared norm of row 7 of X underflows float64 \(values up to 1e-200\)"):
        hkmeans.dedup(X, 0.9)
    X[7] = 1e-160  # a subnormal squared norm: less than float64's relative precision
    for metric in ("cosine", "euclidean"):
        with pytest.raises(ValueError, match=r"^The squared norm of row 7 of X underflows float64"):
            hkmeans.dedup(X, 0.9, metric=metric)
    X[7] = 1e200
    with pytest.raises(ValueError, match=r"^The squared norm of row 7 of X overflows float64 \(values up to 1e\+200\)"):
        hkmeans.dedup(X, 0.9, metric="euclidean")
    X[7] = 1
    with pytest.raises(ValueError, match=r"^X must hold real numbers, got dtype complex128\.$"):
        hkmeans.dedup(X + 1j, 0.9)
    same = [hkmeans.dedup(a, 0.9, random_state=0).kept for a in (X.astype(object), X)]
    np.testing.assert_array_equal(*same)
    for backend in ("auto", "dask"):
        with pytest.raises(ValueError, match=r"^dedup takes dense rows, got a sparse matrix"):
            hkmeans.dedup(sparse.csr_matrix(X), 0.9, backend=backend)
