"""Edges of the host logic of the engine (Lloyd updates, seeding, resampling, the
in-memory helpers) that a user sees: found by mutation testing."""

import re
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hkmeans import HierarchicalKMeans, KMeans, hierarchical_kmeans
from hkmeans.backends import resolve
from hkmeans.backends.cpu import farthest_units
from hkmeans.backends.in_memory import float32_rounded
from hkmeans.seeding import init_centers

from . import naive


def blobs(n=300, d=3, k=5, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=10, size=(k, d))
    return centres[rng.integers(0, k, n)] + rng.normal(size=(n, d))


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("max_iter", [1, 300])
def test_uniform_fractional_weights_relocate_empty_clusters_as_the_unweighted_fit(max_iter):
    """Weights all 0.5 scale every cluster's weight alike: an empty cluster takes the
    farthest row, which leaves its cluster, exactly as without weights."""
    X = np.array([[0.0], [1.0], [2.0], [50.0], [100.0]])
    init = np.array([[1.0], [1000.0], [2000.0]])  # the last two get no row
    plain = KMeans(3, init=init, max_iter=max_iter).fit(X)
    half = KMeans(3, init=init, max_iter=max_iter).fit(X, sample_weight=np.full(len(X), 0.5))
    np.testing.assert_allclose(np.sort(plain.cluster_centers_[:, 0]), [1.0, 50.0, 100.0])
    np.testing.assert_allclose(half.cluster_centers_, plain.cluster_centers_, rtol=1e-12)
    np.testing.assert_array_equal(half.labels_, plain.labels_)
    assert half.inertia_ == pytest.approx(0.5 * plain.inertia_, rel=1e-12)


def test_a_resampling_step_that_leaves_a_cluster_empty_reseeds_it(monkeypatch):
    """The resampling k-means may return a centroid that no row of the level is
    nearest to: the level still has n_clusters non-empty clusters, none of them far
    from the data, and labels that are the nearest centroids."""
    import hkmeans.hierarchy as hierarchy
    from hkmeans.kmeans import KMeansResult

    kmeans, strayed = hierarchy.kmeans, []

    def stray(rows, k, **kw):
        res = kmeans(rows, k, **kw)
        if kw.get("centers_only"):  # the resampling step's k-means: one centroid strays
            strayed.append(k)
            centers = res.centers.copy()
            centers[0] = 1e6
            return KMeansResult(centers, res.labels, res.sqdist, res.inertia, res.n_iter)
        return res

    monkeypatch.setattr(hierarchy, "kmeans", stray)
    X = blobs(seed=1)
    level = hierarchical_kmeans(X, 5, n_resamples=1, random_state=0)[0]
    assert strayed == [5]
    assert np.abs(level.centroids).max() < 1e3
    assert np.bincount(level.labels, minlength=5).min() > 0
    labels, sqdist = naive.assign(X, level.centroids)
    np.testing.assert_array_equal(level.labels, labels)
    np.testing.assert_allclose(level.sqdist, sqdist, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("init", ["random", "k-means||", "k-means++"])
def test_equal_weights_seed_as_no_weights(init):
    """Weights all equal (here 3) draw the same seeds as no weights, for every init."""
    X = blobs(seed=2)
    _, plain = init_centers(resolve(X), 7, init, np.random.default_rng(0))
    _, equal = init_centers(resolve(X).weighted(np.full(len(X), 3.0)), 7, init, np.random.default_rng(0))
    np.testing.assert_array_equal(equal, plain)
    a = KMeans(7, init=init, max_iter=1, random_state=0).fit(X)
    b = KMeans(7, init=init, max_iter=1, random_state=0).fit(X, sample_weight=np.full(len(X), 3.0))
    np.testing.assert_allclose(b.cluster_centers_, a.cluster_centers_, rtol=1e-12)


def test_kmeans_parallel_first_candidate_is_drawn_not_row_zero():
    """k-means|| draws its first candidate at random: a row in the middle of the data
    (the first row, here) is almost never the single seed, as with k-means++."""
    X = np.random.default_rng(0).normal(size=(500, 1))
    X[0] = 0.0
    picks = [init_centers(resolve(X), 1, "k-means||", np.random.default_rng(s))[1][0] for s in range(40)]
    assert sum(p == 0 for p in picks) <= 2


def test_kmeans_parallel_weighs_its_candidates_by_the_rows_nearest_to_them():
    """990 rows near 0 and 10 outliers near 100: the oversampling favours the
    outliers as candidates, but weighted by their rows the final seed is an outlier
    about 1% of the time (k-means++'s odds), not as often as any candidate."""
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(size=(990, 1)), 100 + rng.normal(size=(10, 1))])
    picks = [init_centers(resolve(X), 1, "k-means||", np.random.default_rng(s))[1][0] for s in range(40)]
    assert sum(p >= 990 for p in picks) <= 4


def test_farthest_units_take_a_fractional_weight_as_its_whole_units_then_a_last_part():
    """A row of weight 2.5 is 2.5 repeated rows: three units (1, 1, 0.5) before the
    next-farthest row."""
    sqdist = np.array([9.0, 1.0, 4.0])
    rank = np.arange(3)
    rows, w = farthest_units(sqdist, np.array([2.5, 1.0, 1.0]), 4, rank)
    np.testing.assert_array_equal(rows, [0, 0, 0, 2])
    np.testing.assert_allclose(w, [1.0, 1.0, 0.5, 1.0])
    rows, w = farthest_units(sqdist, np.array([0.25, 1.0, 0.0]), 3, rank)  # weight 0: never
    np.testing.assert_array_equal(rows, [0, 1])
    np.testing.assert_allclose(w, [0.25, 1.0])


def test_cosine_hierarchy_weights_its_rows():
    """With metric="cosine" the weights still weight the means: a single cluster's
    centroid is the normalised weighted mean of the unit rows."""
    X = np.array([[2.0, 0.0], [0.0, 3.0], [1.0, 1.0]])
    w = np.array([9.0, 1.0, 0.0])
    level = hierarchical_kmeans(X, 1, n_resamples=0, metric="cosine", sample_weight=w, random_state=0)[0]
    expected = np.array([0.9, 0.1]) / np.linalg.norm([0.9, 0.1])
    np.testing.assert_allclose(level.centroids[0], expected, rtol=1e-12)
    model = HierarchicalKMeans(1, n_resamples=0, metric="cosine", random_state=0).fit(X, sample_weight=w)
    np.testing.assert_allclose(model.cluster_centers_[0], expected, rtol=1e-12)


def test_verbose_inertia_is_weighted(capsys):
    """The verbose lines show the weighted inertia: weights all 2 double it."""
    X = blobs(seed=3)
    init = X[:5].copy()
    number = re.compile(r"inertia (\d+\.\d+(?:e[-+]\d+)?)")
    KMeans(5, init=init, tol=0.0, verbose=1).fit(X)
    plain = [float(v) for v in number.findall(capsys.readouterr().out)]
    KMeans(5, init=init, tol=0.0, verbose=1).fit(X, sample_weight=np.full(len(X), 2.0))
    doubled = [float(v) for v in number.findall(capsys.readouterr().out)]
    assert len(plain) > 1
    np.testing.assert_allclose(doubled, 2 * np.array(plain), rtol=1e-9)


def test_cluster_table_mean_distance_is_the_mean_of_the_point_distances():
    X = blobs(seed=4)
    model = HierarchicalKMeans((6, 2), n_resamples=0, random_state=0).fit(X)
    table = model.cluster_table()
    leaf = table[table["level"] == 0]
    labels, dist = model.tree_.labels[0], model.tree_.distances
    expected = np.bincount(labels, weights=dist, minlength=6) / np.bincount(labels, minlength=6)
    np.testing.assert_allclose(leaf["mean_distance"], expected, rtol=1e-12)
    top = table[table["level"] == 1]
    up = model.tree_.labels[1][labels]
    np.testing.assert_allclose(
        top["mean_distance"], np.bincount(up, weights=dist, minlength=2) / np.bincount(up, minlength=2), rtol=1e-12
    )


def test_inertia_counts_every_row_of_data_larger_than_a_block():
    """1100 rows of 1000 features: more than one block of rows (2**20 entries)."""
    X = np.random.default_rng(5).normal(size=(1100, 1000)).astype(np.float32)
    model = HierarchicalKMeans(2, n_resamples=0, max_iter=2, random_state=0).fit(X)
    diff = X.astype(np.float64) - model.cluster_centers_[model.labels_].astype(np.float64)
    expected = float(np.sum(diff**2))
    assert model.inertia_ == pytest.approx(expected, rel=1e-5)
    assert model.score(X) == pytest.approx(-expected, rel=1e-5)


def test_a_weighted_resampling_step_with_fewer_rows_than_clusters_is_skipped():
    """Two rows of positive weight for three clusters: the resampling steps would
    cluster fewer rows than clusters, so they are skipped and the level is the
    first k-means."""
    X = blobs(n=60, seed=5)
    w = np.zeros(len(X))
    w[[3, 40]] = 50.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kept = hierarchical_kmeans(X, 3, n_resamples=2, sample_size=10, sample_weight=w, random_state=0)[0]
        first = hierarchical_kmeans(X, 3, n_resamples=0, sample_weight=w, random_state=0)[0]
    np.testing.assert_array_equal(kept.centroids, first.centroids)
    np.testing.assert_array_equal(kept.labels, first.labels)
    assert kept.n_iter == first.n_iter


@given(st.lists(st.floats(-1e30, 1e30, allow_subnormal=False), min_size=1, max_size=20))
def test_float32_rounded_is_the_float32_cast_in_float32s_normal_range(values):
    a = np.array(values, dtype=np.float64)
    a = a[(a == 0) | (np.abs(a) >= np.finfo(np.float32).tiny)]
    np.testing.assert_array_equal(float32_rounded(a), a.astype(np.float32).astype(np.float64))


def test_split_level_sub_centroids_are_weighted_means():
    """The k-means that split each cluster weight their rows: at convergence each
    sub-centroid is the weighted mean of its rows."""
    X = blobs(n=200, seed=6)
    w = np.random.default_rng(6).uniform(0.2, 5.0, len(X))
    level = hierarchical_kmeans(X, 4, n_splits=2, n_resamples=0, sample_weight=w, max_iter=300, random_state=0)[0]
    assert len(level.centroids) == 4
    for c in range(4):
        members = level.labels == c
        np.testing.assert_allclose(level.centroids[c], np.average(X[members], axis=0, weights=w[members]), rtol=1e-9)


@pytest.mark.parametrize("params", [dict(n_splits=3, n_resamples=0), dict(n_resamples=2)])
def test_a_levels_n_iter_counts_every_kmeans_run_it_made(monkeypatch, params):
    import hkmeans.hierarchy as hierarchy

    kmeans, runs = hierarchy.kmeans, []

    def counted(*args, **kw):
        res = kmeans(*args, **kw)
        runs.append(res.n_iter)
        return res

    monkeypatch.setattr(hierarchy, "kmeans", counted)
    level = hierarchical_kmeans(blobs(seed=7), 6, random_state=0, **params)[0]
    assert len(runs) == (1 + 2 if "n_splits" in params else 3)
    assert level.n_iter == sum(runs)


def test_an_init_array_is_taken_in_the_datas_dtype():
    """An array init becomes centres of the rows' dtype, as scikit-learn's
    ``_init_centroids`` returns them."""
    X = np.random.default_rng(8).normal(size=(50, 3)).astype(np.float32)
    init = np.random.default_rng(9).normal(size=(4, 3))  # float64
    centres, rows = init_centers(resolve(X), 4, init, np.random.default_rng(0))
    assert rows is None and centres.dtype == np.float32
    np.testing.assert_array_equal(centres, init.astype(np.float32))
    got = KMeans(4)._init_centroids(X, None, init, 0, None)
    assert got.dtype == np.float32
