"""Flat k-means: Lloyd loop, seeding, empty clusters, the KMeans estimator."""

import re
import warnings

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


# --- as scikit-learn: tol, n_iter, relocation, init, warnings -----------------------


def scaled_blobs(n=500, d=4, k=5, seed=0, scale=10.0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=scale, size=(k, d))
    return centres[rng.integers(0, k, n)] + rng.normal(size=(n, d))


@pytest.mark.parametrize("scale", [1e-3, 1.0, 1e3])
@pytest.mark.parametrize("tol", [1e-4, 1e-2])
def test_tol_is_relative_to_the_mean_variance_as_in_scikit_learn(scale, tol):
    """Same init, same tol: the run stops at scikit-learn's iteration, at any scale
    of the data (tol times the mean feature variance, the squared shift compared)."""
    X = scaled_blobs(seed=1) * scale
    init = X[:5].copy()
    ours = KMeans(5, init=init, n_init=1, tol=tol).fit(X)
    theirs = sklearn.cluster.KMeans(5, init=init, n_init=1, tol=tol).fit(X)
    assert ours.n_iter_ == theirs.n_iter_
    np.testing.assert_allclose(ours.cluster_centers_, theirs.cluster_centers_, rtol=1e-9, atol=1e-12 * scale)


def test_n_iter_counts_the_passes_as_scikit_learn():
    # init already the means: the first update moves nothing, tol=0 stops there
    X = np.array([[0.0], [2.0], [10.0], [12.0]])
    init = np.array([[1.0], [11.0]])
    for tol in (0.0, 1e-4):
        assert KMeans(2, init=init, tol=tol).fit(X).n_iter_ == 1
        assert sklearn.cluster.KMeans(2, init=init, n_init=1, tol=tol).fit(X).n_iter_ == 1
    # stopped by max_iter, and by strict convergence
    X = scaled_blobs(n=2000, d=2, k=12, seed=3, scale=3.0)
    init = X[:12].copy()
    for max_iter in (1, 2, 3, 300):
        ours = KMeans(12, init=init, max_iter=max_iter, tol=0.0).fit(X)
        theirs = sklearn.cluster.KMeans(12, init=init, n_init=1, max_iter=max_iter, tol=0.0).fit(X)
        assert ours.n_iter_ == theirs.n_iter_ == min(max_iter, theirs.n_iter_)
        np.testing.assert_array_equal(ours.labels_, theirs.labels_)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # the repeated rows, one iteration in
def test_empty_clusters_take_the_farthest_rows_at_once():
    """One iteration: each empty cluster takes one of the rows farthest from their
    centres, which leave their cluster (scikit-learn's relocation, hand-computed)."""
    X = np.array([[0.0], [1.0], [2.0], [50.0], [100.0]])
    init = np.array([[1.0], [1000.0], [2000.0]])  # the last two get no row
    km = KMeans(3, init=init, max_iter=1).fit(X)
    np.testing.assert_allclose(np.sort(km.cluster_centers_[:, 0]), [1.0, 50.0, 100.0])
    sk = sklearn.cluster.KMeans(3, init=init, n_init=1, max_iter=1).fit(X)
    np.testing.assert_allclose(np.sort(sk.cluster_centers_[:, 0]), [1.0, 50.0, 100.0])
    res = lloyd(X, init, max_iter=1, tol=0.0)
    np.testing.assert_allclose(np.sort(res.centers[:, 0]), [1.0, 50.0, 100.0])
    # weights as repeated rows (the documented rule): a row of weight 3 is 3 farthest rows
    w3 = KMeans(3, init=init, max_iter=1).fit(X, sample_weight=np.full(5, 3.0))
    rep = sklearn.cluster.KMeans(3, init=init, n_init=1, max_iter=1).fit(np.repeat(X, 3, axis=0))
    np.testing.assert_allclose(np.sort(w3.cluster_centers_[:, 0]), np.sort(rep.cluster_centers_[:, 0]))


@pytest.mark.parametrize("tol", [1e-4, 1e-3])
def test_tol_with_weights_is_relative_to_the_variance_of_the_repeated_rows(tol):
    """Documented: the variance ``tol`` is relative to is weighted, as for the rows
    repeated; the weighted fit stops where the repeated one does. A few far rows of
    weight 1 make the unweighted variance some 40 times the weighted one."""
    rng = np.random.default_rng(4)
    centres = rng.normal(scale=3, size=(6, 2))
    X = np.r_[centres[rng.integers(0, 6, 200)] + rng.normal(size=(200, 2)), rng.normal(size=(10, 2)) + 1000]
    w = np.r_[np.full(200, 30), np.ones(10, dtype=int)]
    init = np.r_[X[:6], X[-1:]]
    weighted = KMeans(7, init=init, tol=tol).fit(X, sample_weight=w)
    repeated = KMeans(7, init=init, tol=tol).fit(np.repeat(X, w, axis=0))
    assert weighted.n_iter_ == repeated.n_iter_ > 1
    np.testing.assert_allclose(weighted.cluster_centers_, repeated.cluster_centers_, rtol=1e-10, atol=1e-10)


def test_n_init_runs_seeded_by_an_int_each_draw_their_own_init():
    X = scaled_blobs(n=800, d=2, k=8, seed=12)
    # the runs draw in turn from the one generator the int seeds
    g = np.random.default_rng(7)
    singles = [kmeans(X, 8, init="random", random_state=g).inertia for _ in range(6)]
    assert len(set(singles)) > 1
    assert kmeans(X, 8, init="random", n_init=6, random_state=7).inertia == min(singles)
    # through the estimator: several runs beat one run for some seed, never lose
    one = [KMeans(8, init="random", n_init=1, random_state=s).fit(X).inertia_ for s in range(4)]
    many = [KMeans(8, init="random", n_init=6, random_state=s).fit(X).inertia_ for s in range(4)]
    assert all(m <= o for m, o in zip(many, one)) and any(m < o for m, o in zip(many, one))


@pytest.mark.parametrize("weighted", [False, True])
def test_convergence_warning_only_when_clusters_are_missing(weighted):
    X = scaled_blobs(n=300, d=3, k=4, seed=2)
    w = np.random.default_rng(0).uniform(0.5, 2.0, len(X)) if weighted else None
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        KMeans(4, random_state=0).fit(X, sample_weight=w)
        kmeans(X, 4, random_state=0, sample_weight=w)
    # rows of weight 0 do not make a cluster: 3 rows of weight, 4 clusters
    w0 = np.zeros(len(X))
    w0[[0, 1, 2]] = 1.0
    with pytest.warns(ConvergenceWarning, match=r"\(3\) found smaller than n_clusters \(4\)"):
        kmeans(X, 4, random_state=0, sample_weight=w0)
    # after the last update, the middle cluster keeps only a row of weight 0: no cluster
    X1 = np.array([[-3.0], [-2.0], [5.0], [12.0], [13.0]])
    w1 = np.array([1.0, 1.0, 0.0, 1.0, 1.0])
    with pytest.warns(ConvergenceWarning, match=r"\(2\) found smaller than n_clusters \(3\)"):
        km = KMeans(3, init=np.array([[-10.0], [5.0], [20.0]]), max_iter=1).fit(X1, sample_weight=w1)
    np.testing.assert_array_equal(km.labels_, [0, 0, 1, 2, 2])
    np.testing.assert_allclose(km.cluster_centers_[:, 0], [-3.0, 5.0, 13.0])


@pytest.mark.parametrize("k", [5, 40])  # 40: centres grouped for the Lloyd bounds
@pytest.mark.parametrize("max_iter", [2, 300])  # stopped by max_iter, or converged
def test_labels_and_inertia_are_those_of_the_returned_centres(k, max_iter):
    X = scaled_blobs(n=3000, d=3, k=25, seed=6, scale=5.0)
    w = np.random.default_rng(1).uniform(0.5, 2.0, len(X))
    km = KMeans(k, random_state=0, max_iter=max_iter).fit(X, sample_weight=w)
    labels, sqdist = naive.assign(X, km.cluster_centers_)
    np.testing.assert_array_equal(km.labels_, labels)
    assert km.inertia_ == pytest.approx(float(w @ sqdist), rel=1e-9)
    res = kmeans(X, k, random_state=0, max_iter=max_iter)
    labels, sqdist = naive.assign(X, res.centers)
    np.testing.assert_array_equal(res.labels, labels)
    np.testing.assert_allclose(res.sqdist, sqdist, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("weighted", [False, True])
def test_random_init_picks_distinct_rows(weighted):
    X = scaled_blobs(n=40, d=3, seed=8)
    data = resolve(X)
    if weighted:
        data = data.weighted(np.random.default_rng(0).uniform(0.1, 5.0, len(X)))
    for seed in range(5):
        centres, rows = init_centers(data, 30, "random", np.random.default_rng(seed))
        assert len(np.unique(rows)) == 30
        np.testing.assert_array_equal(centres, X[rows])


def test_callable_init_gets_a_random_state_of_its_own_per_run():
    X = scaled_blobs(n=200, d=3, seed=9)
    seen = []

    def init(X, n_clusters, random_state):
        assert isinstance(random_state, np.random.RandomState)
        rows = random_state.choice(len(X), n_clusters, replace=False)
        seen.append(tuple(rows))
        return X[rows]

    KMeans(4, init=init, n_init=5, random_state=0).fit(X)
    first = list(seen)
    assert len(first) == 5 and len(set(first)) == 5  # each run its own draw
    seen.clear()
    KMeans(4, init=init, n_init=5, random_state=0).fit(X)
    assert seen == first  # the same seed, the same draws
    seen.clear()
    KMeans(4, init=init, n_init=5, random_state=1).fit(X)
    assert seen != first


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda X, k: X[: k - 1], r"shape of the initial centers \(3, 3\) does not match the number of clusters 4"),
        (lambda X, k: X[:k, :2], r"does not match the number of features of the data 3"),
        (lambda X, k: np.full((k, 3), np.nan), "init array contains NaN or infinity"),
    ],
)
def test_callable_init_output_is_checked(make, match):
    X = scaled_blobs(n=100, d=3, seed=10)
    with pytest.raises(ValueError, match=match):
        KMeans(4, init=lambda X, n_clusters, random_state: make(X, n_clusters), n_init=1).fit(X)
    ok = KMeans(4, init=lambda X, n_clusters, random_state: X[:n_clusters].tolist(), n_init=1).fit(X)
    assert ok.cluster_centers_.dtype == X.dtype and ok.cluster_centers_.flags.c_contiguous


def test_cosine_init_array_of_any_norm_fits_as_the_unit_one():
    """Cosine ignores scale: an init array's rows are put on the sphere first."""
    X = scaled_blobs(n=400, d=5, k=4, seed=11) + 3
    C0 = X[[0, 1, 2, 3]]
    unit = C0 / np.linalg.norm(C0, axis=1, keepdims=True)
    scaled = C0 * np.array([[0.01], [100.0], [1.0], [7.0]])
    for max_iter in (1, 300):
        a = KMeans(4, metric="cosine", init=scaled, max_iter=max_iter).fit(X)
        b = KMeans(4, metric="cosine", init=unit, max_iter=max_iter).fit(X)
        np.testing.assert_array_equal(a.labels_, b.labels_)
        np.testing.assert_allclose(a.cluster_centers_, b.cluster_centers_, rtol=1e-12, atol=1e-12)
    # the first assignment: largest cosine to the initial centres
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    first = np.argmax(Xn @ unit.T, axis=1)
    C1 = np.array([Xn[first == c].mean(0) for c in range(4)])
    C1 /= np.linalg.norm(C1, axis=1, keepdims=True)
    np.testing.assert_allclose(
        KMeans(4, metric="cosine", init=scaled, max_iter=1).fit(X).cluster_centers_, C1, rtol=1e-10
    )


@pytest.mark.parametrize("n_local_trials", [1, 2, 7, None])
def test_kmeans_plusplus_uses_the_trials_asked_for(n_local_trials):
    """kmeans_plusplus against the NumPy greedy k-means++ fed the same draws: the
    first row, then ``(n_clusters - 1, n_local_trials)`` uniforms (2 + int(ln k) by
    default), all through the rows' order of contents."""
    X = scaled_blobs(n=300, d=3, k=10, seed=13)
    k = 12
    trials = 2 + int(np.log(k)) if n_local_trials is None else n_local_trials
    order = CPUBackend(X).draw_order()
    rng = np.random.default_rng(3)
    u = rng.random()
    first = order[min(np.searchsorted(np.arange(1, len(X) + 1), u * len(X), side="right"), len(X) - 1)]
    rand = rng.random((k - 1, trials))
    expected = naive.kmeans_plusplus(X, first, rand, order)
    centres, rows = kmeans_plusplus(X, k, random_state=3, n_local_trials=n_local_trials)
    np.testing.assert_array_equal(rows, expected)
    np.testing.assert_array_equal(centres, X[expected])


@pytest.mark.parametrize("m", [6, 8, 12])
def test_best_of_n_init_does_not_depend_on_the_row_order_at_exact_ties(m):
    """A regular polygon: its halves are all equally good, their inertias equal up to
    the rounding of the rows' order. The runs seed alike in any row order, and a
    later run must beat an earlier by more than rounding: the same best run wins."""
    t = 2 * np.pi * np.arange(m) / m
    X = np.c_[np.cos(t), np.sin(t)] * 3.7 + 1.3
    rng = np.random.default_rng(100)
    for seed in range(6):
        ref = KMeans(2, n_init=10, random_state=seed).fit(X)
        for _ in range(4):
            perm = rng.permutation(m)
            got = KMeans(2, n_init=10, random_state=seed).fit(X[perm])
            np.testing.assert_allclose(got.cluster_centers_, ref.cluster_centers_, atol=1e-12)
            np.testing.assert_array_equal(got.labels_, ref.labels_[perm])


@pytest.mark.parametrize("tol", [0.0, 1e-2])
def test_verbose_lines_are_scikit_learns(tol, capsys):
    X = scaled_blobs(seed=0)
    init = X[:5].copy()
    number = re.compile(r"\d+\.\d+(?:e[-+]\d+)?")
    lines = []
    for est in (
        KMeans(5, init=init, tol=tol, verbose=1),
        sklearn.cluster.KMeans(5, init=init, n_init=1, tol=tol, verbose=1),
    ):
        est.fit(X)
        out = capsys.readouterr().out
        lines.append(([number.sub("#", s) for s in out.splitlines()], [float(v) for v in number.findall(out)]))
    (ours, our_values), (theirs, their_values) = lines
    assert ours == theirs and len(ours) > 3
    np.testing.assert_allclose(our_values, their_values, rtol=1e-9)
