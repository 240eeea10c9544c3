"""Flat k-means: Lloyd loop, seeding, empty clusters, the KMeans estimator."""

import numba
import numpy as np
import pytest
import scipy.sparse
import sklearn.cluster
from sklearn.exceptions import ConvergenceWarning

from hkmeans import KMeans, kmeans_plusplus
from hkmeans.backends import resolve
from hkmeans.backends.cpu import CPUBackend
from hkmeans.kmeans import kmeans, lloyd
from hkmeans.seeding import init_centers

from . import naive


def blobs(n=600, d=5, k=6, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=10, size=(k, d))
    return (centres[rng.integers(0, k, n)] + rng.normal(size=(n, d))).astype(dtype)


def test_hand_computed_four_points():
    X = np.array([[0.0, 0.0], [0.0, 1.0], [10.0, 0.0], [10.0, 1.0]])
    km = KMeans(2, init=np.array([[1.0, 0.0], [9.0, 0.0]]), n_init=1).fit(X)
    np.testing.assert_allclose(km.cluster_centers_, [[0.0, 0.5], [10.0, 0.5]])
    np.testing.assert_array_equal(km.labels_, [0, 0, 1, 1])
    assert km.inertia_ == pytest.approx(1.0)
    assert km.score(X) == pytest.approx(-1.0)
    np.testing.assert_allclose(km.transform([[0.0, 0.5]]), [[0.0, 10.0]])


@pytest.mark.parametrize("weighted", [False, True])
def test_sampled_training_fits_the_sample_then_assigns_every_row(weighted):
    X = blobs(n=900, d=20, k=8)
    w = np.random.default_rng(1).integers(1, 4, len(X)).astype(float) if weighted else None
    res = kmeans(X, 6, max_points_per_centroid=25, random_state=np.random.default_rng(0), sample_weight=w)
    # the contract: 150 distinct rows drawn first from the generator, fitted alone
    rng = np.random.default_rng(0)
    rows = np.sort(rng.choice(len(X), 150, replace=False))
    ref = kmeans(X[rows], 6, random_state=rng, sample_weight=None if w is None else w[rows])
    np.testing.assert_allclose(res.centers, ref.centers, rtol=1e-12)
    labels, sqdist = naive.assign(X, res.centers)
    np.testing.assert_array_equal(res.labels, labels)
    np.testing.assert_allclose(res.sqdist, sqdist, rtol=1e-9, atol=1e-9)
    total = sqdist.sum() if w is None else w @ sqdist
    assert res.inertia == pytest.approx(total, rel=1e-9)


def test_centers_only_skips_the_search_of_the_rows_left_out_of_the_sample(monkeypatch):
    X = blobs(n=900, d=20, k=8)
    full = kmeans(X, 6, max_points_per_centroid=25, random_state=0)
    searched = []
    original = CPUBackend.assign
    monkeypatch.setattr(CPUBackend, "assign", lambda self, C: searched.append(len(self.X)) or original(self, C))
    res = kmeans(X, 6, max_points_per_centroid=25, random_state=0, centers_only=True)
    np.testing.assert_array_equal(res.centers, full.centers)
    assert len(res.labels) == 150 and len(X) not in searched  # the sample's labels only


@pytest.mark.parametrize("init", ["k-means++", "k-means||"])
def test_seeding_on_a_sample_draws_the_sample_first_then_seeds_from_it(init):
    X = blobs(n=900, d=20, k=8)
    res = kmeans(X, 6, init=init, init_points_per_centroid=20, random_state=0, max_iter=5)
    # the contract: 120 distinct rows drawn first from the generator, the seeding's from them
    rng = np.random.default_rng(0)
    rows = np.sort(rng.choice(len(X), 120, replace=False))
    C0, _ = init_centers(resolve(X[rows]), 6, init, rng)
    ref = kmeans(X, 6, init=C0, max_iter=5)
    np.testing.assert_array_equal(res.centers, ref.centers)
    np.testing.assert_array_equal(res.labels, ref.labels)
    # more rows per centre than there are: every row, the same draws as without
    same = kmeans(X, 6, init=init, init_points_per_centroid=150, random_state=0, max_iter=5)
    np.testing.assert_array_equal(same.centers, kmeans(X, 6, init=init, random_state=0, max_iter=5).centers)


def test_seeding_on_a_sample_is_checked_and_kept_off_sparse_input():
    X = blobs(n=300, d=5, k=3)
    with pytest.raises(ValueError, match="init_points_per_centroid must be a positive integer or None"):
        KMeans(3, init_points_per_centroid=0).fit(X)
    with pytest.raises(ValueError, match="init_points_per_centroid needs dense input"):
        KMeans(3, init_points_per_centroid=5).fit(scipy.sparse.csr_matrix(X))
    km = KMeans(3, n_init=1, init_points_per_centroid=5, max_points_per_centroid=50, random_state=0).fit(X)
    assert km.cluster_centers_.shape == (3, 5) and len(km.labels_) == 300


@pytest.mark.parametrize("option", ["max_points_per_centroid", "init_points_per_centroid"])
def test_a_sample_is_drawn_among_rows_of_positive_weight_as_if_the_others_were_absent(option):
    X = blobs(n=900, d=20, k=8) + 10
    w = np.zeros(len(X))
    w[::7] = np.random.default_rng(1).integers(1, 4, len(w[::7]))  # 129 rows: more than the 60 sampled
    present = w > 0
    res = kmeans(X, 6, random_state=0, sample_weight=w, max_iter=5, **{option: 10})
    ref = kmeans(X[present], 6, random_state=0, sample_weight=w[present], max_iter=5, **{option: 10})
    np.testing.assert_array_equal(res.centers, ref.centers)


def test_sample_options_take_numpy_integers_and_leave_an_array_init_alone():
    X = blobs(n=900, d=4, k=8)
    full = KMeans(20, random_state=0).fit(X)
    # 20 x 200 does not wrap around in uint8's 8 bits: no sample, the full fit
    same = KMeans(np.uint8(20), random_state=0, max_points_per_centroid=np.uint8(200)).fit(X)
    np.testing.assert_array_equal(same.cluster_centers_, full.cluster_centers_)
    huge = KMeans(20, random_state=0, init_points_per_centroid=np.int64(2**62)).fit(X)
    np.testing.assert_array_equal(huge.cluster_centers_, full.cluster_centers_)
    init = X[:20].copy()  # seeded by the user: the option has nothing to seed
    given = KMeans(20, init=init, init_points_per_centroid=5).fit(X)
    np.testing.assert_array_equal(given.cluster_centers_, KMeans(20, init=init).fit(X).cluster_centers_)


def test_sampled_training_without_more_rows_than_the_sample_is_a_full_fit():
    X = blobs()
    full = kmeans(X, 6, random_state=0)
    same = kmeans(X, 6, random_state=0, max_points_per_centroid=100)  # 600 rows: no sample
    np.testing.assert_array_equal(full.labels, same.labels)
    np.testing.assert_array_equal(full.centers, same.centers)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("d", [3, 40])
def test_lloyd_matches_reference(dtype, d):
    X = blobs(d=d, dtype=dtype)
    C0 = X[[0, 100, 200, 300, 400, 500]].copy()
    res = lloyd(X, C0, max_iter=5, tol=-1.0)
    ref_C, ref_labels = naive.lloyd(X, C0, 5)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(res.centers, ref_C, rtol=rtol, atol=rtol)
    np.testing.assert_array_equal(res.labels, ref_labels)
    assert res.inertia == pytest.approx(naive.assign(X, res.centers)[1].sum(), rel=1e-6)


def test_inertia_never_rises_with_more_iterations():
    X = blobs(n=2000, d=4, k=20, seed=4)
    C0 = X[:20].copy()
    inertias = [lloyd(X, C0, max_iter=it, tol=-1.0).inertia for it in range(1, 12)]
    assert all(b <= a * (1 + 1e-12) for a, b in zip(inertias, inertias[1:]))


def test_more_clusters_lower_inertia():
    X = blobs(n=1500, d=3, k=10, seed=5)
    inertias = [KMeans(k, random_state=0).fit(X).inertia_ for k in (2, 5, 10, 20)]
    assert inertias == sorted(inertias, reverse=True)


def test_inertia_comparable_to_scikit_learn():
    X = blobs(n=3000, d=8, k=12, seed=6)
    ours = KMeans(12, n_init=3, random_state=0).fit(X).inertia_
    theirs = sklearn.cluster.KMeans(12, n_init=3, random_state=0).fit(X).inertia_
    assert ours <= 1.05 * theirs


def test_labels_match_predict_and_centres_are_means():
    X = blobs(n=1000, d=6, k=5, seed=7)
    km = KMeans(5, random_state=1).fit(X)
    np.testing.assert_array_equal(km.labels_, km.predict(X))
    for c in range(5):
        np.testing.assert_allclose(km.cluster_centers_[c], X[km.labels_ == c].mean(0), atol=1e-3)


def test_empty_cluster_is_reseeded_with_farthest_point():
    X = np.array([[0.0], [1.0], [2.0], [100.0]])
    # the centre at 1000 gets no point: it moves to the point farthest from its centre
    res = lloyd(X, np.array([[1.0], [1000.0]]), max_iter=10, tol=0.0)
    assert np.bincount(res.labels, minlength=2).min() > 0
    np.testing.assert_allclose(sorted(res.centers[:, 0]), [1.0, 100.0])


def test_fewer_distinct_points_than_clusters_warns():
    X = np.repeat(np.arange(3.0)[:, None], 5, axis=0)
    with pytest.warns(ConvergenceWarning, match="distinct clusters.*duplicate points"):
        KMeans(4, random_state=0).fit(X)
    # distinct rows, but only 3 of them weigh anything: the warning says so
    w = np.zeros(15)
    w[[0, 5, 10]] = 1.0
    with pytest.warns(
        ConvergenceWarning, match=r"\(3\) found smaller than n_clusters \(4\)\. X has 3 rows of positive"
    ):
        KMeans(4, random_state=0).fit(np.arange(15.0)[:, None], sample_weight=w)


def test_cosine_metric_gives_unit_centres():
    X = blobs(n=500, d=6, k=4, seed=8) + 30
    km = KMeans(4, metric="cosine", random_state=0).fit(X)
    np.testing.assert_allclose(np.linalg.norm(km.cluster_centers_, axis=1), 1.0, rtol=1e-6)
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    np.testing.assert_array_equal(km.labels_, np.argmax(Xn @ km.cluster_centers_.T, axis=1))


def test_same_random_state_same_result_whatever_the_thread_count():
    X = blobs(n=5000, d=20, k=30, seed=9, dtype=np.float32)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = KMeans(30, random_state=3).fit(X)
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        two = KMeans(30, random_state=3).fit(X)
    finally:
        numba.set_num_threads(before)
    np.testing.assert_array_equal(one.labels_, two.labels_)
    np.testing.assert_array_equal(one.cluster_centers_, two.cluster_centers_)


def test_c_and_fortran_order_give_identical_fits():
    X = blobs(n=800, d=10, k=5, seed=10, dtype=np.float32)
    a = KMeans(5, random_state=0).fit(X)
    b = KMeans(5, random_state=0).fit(np.asfortranarray(X))
    np.testing.assert_array_equal(a.labels_, b.labels_)
    np.testing.assert_array_equal(a.cluster_centers_, b.cluster_centers_)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_is_kept(dtype):
    X = blobs(dtype=dtype)
    km = KMeans(3, random_state=0).fit(X)
    assert km.cluster_centers_.dtype == dtype
    assert km.transform(X).dtype == dtype


def test_kmeans_plusplus_potential_close_to_scikit_learn():
    X = blobs(n=4000, d=16, k=50, seed=11)

    def potential(C):
        return naive.assign(X, C)[1].sum()

    ours = np.median([potential(kmeans_plusplus(X, 50, random_state=s)[0]) for s in range(5)])
    theirs = np.median([potential(sklearn.cluster.kmeans_plusplus(X, 50, random_state=s)[0]) for s in range(5)])
    assert ours <= 1.1 * theirs
    centres, idx = kmeans_plusplus(X, 50, random_state=0)
    np.testing.assert_array_equal(centres, X[idx])
    assert len(set(idx.tolist())) == 50


@pytest.mark.parametrize(
    "params, match",
    [
        (dict(n_clusters=0), "n_clusters"),
        (dict(n_clusters=2.5), "n_clusters"),
        (dict(init="kmeans"), "init"),
        (dict(init=np.zeros((2, 2))), "shape of the initial centers"),
        (dict(n_init=0), "n_init"),
        (dict(max_iter=0), "max_iter"),
        (dict(tol=-1.0), "tol"),
        (dict(metric="manhattan"), "metric"),
        (dict(n_clusters=100), "n_samples=50 should be >= n_clusters=100"),
    ],
)
def test_bad_parameters_raise_before_work(params, match):
    X = blobs(n=50, d=3)
    with pytest.raises(ValueError, match=match):
        KMeans(**params).fit(X)


def test_explicit_init_with_several_runs_warns_and_runs_once():
    X = blobs(n=60, d=2, k=3)
    with pytest.warns(RuntimeWarning, match="only one init"):
        KMeans(3, init=X[:3], n_init=4).fit(X)


def test_engine_keeps_best_of_n_init():
    X = blobs(n=800, d=2, k=8, seed=12)
    g = np.random.default_rng(0)  # n_init runs draw from one generator in turn
    singles = [kmeans(X, 8, n_init=1, random_state=g).inertia for _ in range(5)]
    assert len(set(singles)) > 1
    assert kmeans(X, 8, n_init=5, random_state=np.random.default_rng(0)).inertia == min(singles)


@pytest.mark.parametrize("d", [3, 40])
def test_kmeans_parallel_init_is_as_good_as_kmeans_plusplus(d):
    X = blobs(n=3000, d=d, k=30, seed=13)

    def inertia(init):
        return np.median([KMeans(30, init=init, random_state=s).fit(X).inertia_ for s in range(3)])

    assert inertia("k-means||") <= 1.1 * inertia("k-means++")
    from hkmeans.kmeans import init_centers

    C, idx = init_centers(X, 30, "k-means||", np.random.default_rng(0))
    assert len(np.unique(idx)) == 30
    np.testing.assert_array_equal(C, X[idx])
    C2, idx2 = init_centers(X, 30, "k-means||", np.random.default_rng(0))
    np.testing.assert_array_equal(idx, idx2)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("d", [2, 40])
def test_bounds_give_the_labels_of_plain_lloyd(dtype, d):
    rng = np.random.default_rng(14)
    means = rng.normal(size=(15, d))
    X = (means[rng.integers(0, 15, 4000)] + rng.normal(size=(4000, d))).astype(dtype)
    C0 = X[rng.choice(4000, 60, replace=False)].copy()
    plain = lloyd(X, C0, max_iter=25, tol=0.0, bounds=False)
    fast = lloyd(X, C0, max_iter=25, tol=0.0, bounds=True)
    assert plain.n_iter == fast.n_iter
    np.testing.assert_array_equal(fast.labels, plain.labels)
    np.testing.assert_array_equal(fast.centers, plain.centers)
    np.testing.assert_array_equal(fast.sqdist, plain.sqdist)


@pytest.mark.parametrize("shape", [(1, 3), (5000, 7), (300, 5000)])
def test_mean_variance_in_blocks(shape):
    from hkmeans.backends.cpu import CPUBackend

    X = (np.random.default_rng(1).normal(size=shape) * 3 + 10).astype(np.float32)
    np.testing.assert_allclose(CPUBackend(X).mean_variance(), np.mean(np.var(X.astype(np.float64), axis=0)), rtol=1e-10)
