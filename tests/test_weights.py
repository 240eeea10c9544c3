"""Sample weights: weighted k-means against the NumPy reference, integer weights as
repeated rows, and weights through the hierarchy and its tree."""

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given
from hypothesis import strategies as st
from sklearn.cluster import KMeans as SKKMeans
from sklearn.exceptions import ConvergenceWarning

from hkmeans import HierarchicalKMeans, KMeans, kmeans_plusplus
from hkmeans.advise import ParameterWarning

from . import naive


def blobs(n=400, d=6, seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=5, size=(5, d))
    return (centres[rng.integers(0, 5, n)] + rng.normal(size=(n, d))).astype(dtype)


@pytest.mark.parametrize("d", [3, 40])  # direct distances and the GEMM path
def test_weighted_lloyd_matches_the_reference(d):
    X = blobs(d=d, dtype=np.float64)
    w = np.random.default_rng(1).uniform(0.1, 3.0, len(X))
    init = X[:5].copy()
    km = KMeans(5, init=init, n_init=1, max_iter=6, tol=0).fit(X, sample_weight=w)
    C, labels, inertia = naive.weighted_lloyd(X, w, init, km.n_iter_)
    np.testing.assert_allclose(km.cluster_centers_, C, rtol=1e-10, atol=1e-10)
    np.testing.assert_array_equal(km.labels_, labels)
    assert km.inertia_ == pytest.approx(inertia, rel=1e-10)


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "csr"])
def test_integer_weights_equal_repeated_rows_exactly(sparse):
    # float32 rows summed in float64: w * x and x + ... + x round alike
    X = blobs(seed=2)
    w = np.random.default_rng(3).integers(0, 4, len(X))
    init = X[w > 0][:5].copy()
    wrap = sp.csr_matrix if sparse else np.asarray
    weighted = KMeans(5, init=init, n_init=1, tol=0).fit(wrap(X), sample_weight=w)
    repeated = KMeans(5, init=init, n_init=1, tol=0).fit(wrap(np.repeat(X, w, axis=0)))
    np.testing.assert_array_equal(weighted.cluster_centers_, repeated.cluster_centers_)
    np.testing.assert_array_equal(np.repeat(weighted.labels_, w), repeated.labels_)
    assert weighted.inertia_ == repeated.inertia_
    assert weighted.n_iter_ == repeated.n_iter_


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_sparse_fit_equals_dense_fit(dtype):
    X = blobs(seed=4, dtype=dtype)
    X[np.abs(X) < 1.0] = 0.0
    w = np.random.default_rng(5).uniform(0.5, 2.0, len(X))
    dense = KMeans(5, random_state=0, n_init=2).fit(X, sample_weight=w)
    csr = KMeans(5, random_state=0, n_init=2).fit(sp.csr_matrix(X), sample_weight=w)
    np.testing.assert_array_equal(dense.labels_, csr.labels_)
    np.testing.assert_allclose(dense.cluster_centers_, csr.cluster_centers_, rtol=1e-12)
    assert dense.inertia_ == pytest.approx(csr.inertia_, rel=1e-12)
    np.testing.assert_array_equal(csr.predict(sp.csr_matrix(X)), csr.labels_)


def test_uniform_weights_give_the_unweighted_fit():
    X = blobs(seed=6, dtype=np.float64)
    plain = KMeans(5, random_state=0).fit(X)
    scaled = KMeans(5, random_state=0).fit(X, sample_weight=np.full(len(X), 4.0))
    np.testing.assert_array_equal(plain.labels_, scaled.labels_)
    assert scaled.inertia_ == pytest.approx(4 * plain.inertia_, rel=1e-12)


@pytest.mark.parametrize("init", ["k-means++", "k-means||", "random"])
def test_zero_weight_rows_are_never_seeds(init):
    X = blobs(seed=7, dtype=np.float64)
    w = np.ones(len(X))
    w[::2] = 0
    from hkmeans.backends import resolve
    from hkmeans.seeding import init_centers

    _, rows = init_centers(resolve(X).weighted(w), 10, init, np.random.default_rng(0))
    assert np.all(rows % 2 == 1)
    centres, rows = kmeans_plusplus(X, 10, sample_weight=w, random_state=0)
    assert np.all(rows % 2 == 1)
    np.testing.assert_array_equal(centres, X[rows])


@pytest.mark.parametrize("init", ["k-means++", "k-means||", "random"])
@pytest.mark.parametrize("k, weight", [(3, 1.0), (5, 1.0), (5, 0.5)])
def test_fewer_rows_of_positive_weight_than_clusters_fit_with_a_warning(init, k, weight):
    """Every seeding takes each row of positive weight, then repeats of them: the
    fit warns of the clusters it could not make, whatever the init, and every centre
    is one of those rows (with fewer units of weight than empty clusters too, where a
    cluster left without any had gone to the origin)."""
    X = blobs(seed=8, dtype=np.float64)
    w = np.zeros(len(X))
    w[[3, 77]] = weight
    with pytest.warns(ConvergenceWarning, match=r"distinct clusters \(2\) .* X has 2 rows of positive weight"):
        m = KMeans(k, init=init, random_state=0).fit(X, sample_weight=w)
    np.testing.assert_array_equal(np.unique(m.cluster_centers_, axis=0), np.unique(X[[3, 77]], axis=0))


@pytest.mark.parametrize("far", [False, True])
def test_clusters_left_without_weight_go_to_the_heaviest_as_in_scikit_learn(far):
    """Two rows of weight 1, five clusters: one empty cluster takes a unit of weight
    (here, unlike scikit-learn, from row 77, which keeps its own); the two left
    without go to the centre of the heaviest cluster, as in scikit-learn, whether
    their start was on the data or far from it."""
    X = blobs(seed=8, dtype=np.float64)
    w = np.zeros(len(X))
    w[[3, 77]] = 1.0
    init = X[[3, 77, 77, 77, 77]].copy()
    if far:
        init[2:] = np.array([[1.0], [2.0], [3.0]]) * 300
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours = KMeans(5, init=init).fit(X, sample_weight=w)
        theirs = SKKMeans(5, init=init, n_init=1).fit(X, sample_weight=w)
    np.testing.assert_array_equal(ours.cluster_centers_, X[[3, 77, 77, 3, 3]])
    np.testing.assert_allclose(theirs.cluster_centers_, X[[3, 77, 3, 3, 3]], rtol=1e-12)
    assert ours.inertia_ == pytest.approx(theirs.inertia_, rel=1e-12, abs=1e-12)
    far_point = np.full((1, X.shape[1]), 290.0)
    np.testing.assert_array_equal(ours.predict(far_point), theirs.predict(far_point))


@pytest.mark.parametrize(
    "weights, match",
    [
        (np.ones(3), r"sample_weight.shape == \(3,\), expected \(400,\)"),
        (-np.ones(400), "Negative"),
        (np.zeros(400), "zero"),
        (np.full(400, np.nan), "NaN"),
    ],
)
def test_bad_weights_are_refused(weights, match):
    for est in (KMeans(5), HierarchicalKMeans((6, 2), n_resamples=1)):
        with pytest.raises(ValueError, match=match):
            est.fit(blobs(), sample_weight=weights)


def test_hierarchy_records_cluster_weights_and_samples_points(tmp_path):
    X = blobs(seed=8)
    w = np.random.default_rng(9).integers(1, 5, len(X)).astype(float)
    m = HierarchicalKMeans((12, 3), n_resamples=2, random_state=0).fit(X, sample_weight=w)
    for t in range(2):
        per_cluster = np.bincount(m.tree_.point_labels(t), weights=w, minlength=m.tree_.n_clusters[t])
        np.testing.assert_allclose(m.tree_.weights(t), per_cluster)
    assert m.tree_.weights(1).sum() == pytest.approx(w.sum())
    assert len(m.sample(100)) == 100  # a count of points, not of weight
    diff = X - m.cluster_centers_[m.labels_]
    assert m.inertia_ == pytest.approx(float(np.dot(w, np.einsum("ij,ij->i", diff, diff))), rel=1e-6)
    m.tree_.save(tmp_path / "t.npz")
    from hkmeans import ClusterTree

    np.testing.assert_array_equal(ClusterTree.load(tmp_path / "t.npz").weights(0), m.tree_.weights(0))


def test_dask_backend_refuses_weights():
    da = pytest.importorskip("dask.array")
    X = da.from_array(blobs(), chunks=100)
    with pytest.raises(ValueError, match="sample_weight is not supported on the dask backend"):
        KMeans(5, n_init=1).fit(X, sample_weight=np.ones(400))


@given(seed=st.integers(0, 2**32 - 1), n=st.integers(10, 60), d=st.sampled_from([2, 3, 40]), hierarchical=st.booleans())
def test_weights_equal_repeated_rows_in_any_order(seed, n, d, hierarchical):
    """scikit-learn's ``check_sample_weight_equivalence`` over many data sets: the rows
    weighted and shuffled fit as the rows repeated in their order, seeding and
    resampling included (duplicate rows and zero weights too)."""
    rng = np.random.default_rng(seed)
    X = rng.random((n, d))
    if seed % 3 == 0:  # duplicate rows, and still 8 distinct ones of positive weight:
        X[n - n // 4 :] = X[: n // 4]  # with fewer distinct points than clusters, draws go by rounding
    w = rng.integers(0, 5, n)
    w[:8] = np.maximum(w[:8], 1)
    shuffled = rng.permutation(n)

    def make():
        if hierarchical:
            return HierarchicalKMeans((6, 2), n_resamples=3, random_state=int(seed % 1000))
        return KMeans(6, n_init=2, random_state=int(seed % 1000))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # few points per cluster, duplicates
        repeated = make().fit(np.repeat(X, w, axis=0))
        weighted = make().fit(X[shuffled], sample_weight=w[shuffled])
    # squared: a distance of 0 against one of rounding, ~1e-8 once square-rooted
    np.testing.assert_allclose(weighted.transform(X) ** 2, repeated.transform(X) ** 2, rtol=1e-7, atol=1e-12)


def test_weights_summing_to_one_warn_that_resampling_is_skipped():
    # sample_size counts weight, as repeated rows would: weights that sum to 1 leave
    # half a cluster's weight far below one point, so resampling cannot run
    X = blobs(seed=10)
    w = np.random.default_rng(11).uniform(0.5, 2.0, len(X))
    with pytest.warns(ParameterWarning, match="resampling is skipped"):
        m = HierarchicalKMeans((10, 2), n_resamples=2, random_state=0).fit(X, sample_weight=w / w.sum())
    counts = HierarchicalKMeans((10, 2), n_resamples=2, random_state=0).fit(X, sample_weight=w)
    assert m.levels_[0].n_iter < counts.levels_[0].n_iter  # no resampling k-means ran
