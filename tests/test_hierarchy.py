"""Hierarchical k-means with resampling: the engine and its parameters."""

import warnings

import numba
import numpy as np
import pytest

from hkmeans import HierarchicalKMeans, hierarchical_kmeans
from hkmeans._threads import layer_takes_threads
from hkmeans.kmeans import assign

from . import naive


def mixture(n=3000, d=2, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    sizes = np.array([0.8, 0.15, 0.05]) * n
    centres = np.array([[0.0] * d, [8.0] * d, [-8.0] + [8.0] * (d - 1)])
    X = np.concatenate([c + rng.normal(size=(int(s), d)) for c, s in zip(centres, sizes)])
    return X.astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_levels_are_consistent(dtype):
    X = mixture(dtype=dtype)
    levels = hierarchical_kmeans(X, (60, 12, 4), n_resamples=3, random_state=0)
    assert [lv.centroids.shape for lv in levels] == [(60, 2), (12, 2), (4, 2)]
    inputs = [X, levels[0].centroids, levels[1].centroids]
    for lv, Y in zip(levels, inputs):
        assert lv.centroids.dtype == dtype
        labels, sqdist = naive.assign(Y, lv.centroids)
        np.testing.assert_array_equal(lv.labels, labels)  # each level ends on a full reassignment
        np.testing.assert_allclose(lv.sqdist, sqdist, rtol=1e-9, atol=1e-9)
        assert np.bincount(lv.labels, minlength=len(lv.centroids)).min() > 0


def test_resampling_spreads_centroids_towards_the_small_components():
    X = mixture(n=4000)
    dense = np.linalg.norm(X[:3200].mean(0))
    plain = hierarchical_kmeans(X, 40, n_resamples=0, random_state=0)[0].centroids
    resampled = hierarchical_kmeans(X, 40, n_resamples=10, sample_size=5, random_state=0)[0].centroids

    def in_big(C):
        return np.sum(np.linalg.norm(C - X[:3200].mean(0), axis=1) < 4 + dense)

    assert in_big(resampled) < in_big(plain)


def test_sample_size_none_or_one_or_no_resamples():
    X = mixture(n=600)
    base = hierarchical_kmeans(X, 10, n_resamples=0, random_state=0)[0]
    for kwargs in (dict(sample_size=1), dict(n_resamples=0, sample_size=30)):
        lv = hierarchical_kmeans(X, 10, random_state=0, **kwargs)[0]
        np.testing.assert_array_equal(lv.centroids, base.centroids)
    auto = hierarchical_kmeans(X, 10, n_resamples=2, sample_size=None, random_state=0)[0]
    explicit = hierarchical_kmeans(X, 10, n_resamples=2, sample_size=30, random_state=0)[0]
    np.testing.assert_array_equal(auto.centroids, explicit.centroids)  # 600 / 10 / 2 = 30


def test_random_resample_strategy_depends_on_seed():
    X = mixture(n=800)
    a = hierarchical_kmeans(X, 8, resample_strategy="random", random_state=0)[0].centroids
    b = hierarchical_kmeans(X, 8, resample_strategy="random", random_state=0)[0].centroids
    c = hierarchical_kmeans(X, 8, resample_strategy="random", random_state=1)[0].centroids
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_cosine_hierarchy_stays_on_the_sphere():
    X = mixture(n=900, d=4) + 20
    levels = hierarchical_kmeans(X, (12, 3), metric="cosine", random_state=0)
    for lv in levels:
        np.testing.assert_allclose(np.linalg.norm(lv.centroids, axis=1), 1, rtol=1e-6)


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs two threads")
def test_same_result_whatever_the_thread_count(monkeypatch):
    from hkmeans import _config

    monkeypatch.setattr(_config, "PARALLEL_WORK", 0)  # every pass on every thread
    X = mixture(n=5000, d=24, dtype=np.float32)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = HierarchicalKMeans((50, 10), n_resamples=3, random_state=0).fit(X)
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        two = HierarchicalKMeans((50, 10), n_resamples=3, random_state=0).fit(X)
    finally:
        numba.set_num_threads(before)
    for a, b in zip(one.levels_, two.levels_):
        np.testing.assert_array_equal(a.centroids, b.centroids)
        np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(one.sample(500, random_state=0), two.sample(500, random_state=0))


def test_predict_through_the_tree():
    X = mixture(n=1200)
    m = HierarchicalKMeans((30, 6, 2), n_resamples=2, random_state=0).fit(X)
    np.testing.assert_array_equal(m.labels_, m.predict(X))
    leaf = assign(X, m.levels_[0].centroids)[0]
    np.testing.assert_array_equal(m.predict(X, level=0), leaf)
    np.testing.assert_array_equal(m.predict(X, level=1), m.levels_[1].labels[leaf])
    np.testing.assert_array_equal(m.predict(X, level=2), m.labels_)
    assert m.inertia_ == pytest.approx(-m.score(X))


@pytest.mark.parametrize(
    "params, match",
    [
        (dict(n_clusters=()), "at least one level"),
        (dict(n_clusters=(10, 0)), "n_clusters entries must each be a positive integer, got 0"),
        (dict(device="tpu"), "device must be one of .cpu."),
        (dict(tol=float("inf")), "tol must be a finite non-negative number"),
        (dict(max_points_per_centroid=0), "max_points_per_centroid must be a positive integer or None"),
        (dict(n_clusters=(10, 20)), "level 1 asks for n_clusters=20 but level 0 has only 10"),
        (dict(n_clusters=(100,)), r"n_samples=\d+ should be >= n_clusters=100"),
        (dict(n_clusters=(10, 5), n_resamples=(1, 2, 3)), "n_resamples has 3 entries"),
        (dict(n_clusters=(10, 5), sample_size=(2,)), "sample_size has 1 entries"),
        (dict(n_resamples=-1), "n_resamples"),
        (dict(sample_size=2.5), "sample_size"),
        (dict(resample_strategy="furthest"), "resample_strategy"),
        (dict(init=np.zeros((8, 2))), "hierarchical"),
        (dict(metric="l1"), "metric"),
        (dict(max_iter=0), "max_iter"),
    ],
)
def test_bad_parameters_raise_before_work(params, match):
    X = mixture(n=50)
    with pytest.raises(ValueError, match=match):
        HierarchicalKMeans(**params).fit(X)


def test_sample_method_and_errors():
    X = mixture(n=600)
    m = HierarchicalKMeans((20, 4), random_state=0).fit(X)
    flat = m.sample(100, method="flat", random_state=0)
    counts = np.bincount(m.levels_[0].labels[flat], minlength=20)
    sizes = np.bincount(m.levels_[0].labels, minlength=20)
    open_ = counts[counts < sizes]
    assert len(open_) > 0 and open_.max() <= open_.min() + 1
    with pytest.raises(ValueError, match="method"):
        m.sample(10, method="tree")
    with pytest.raises(Exception, match="not fitted"):
        HierarchicalKMeans().sample(10)


def routed(X, level):
    """Each row's nearest centroid among those of its nearest parent, in plain NumPy."""
    parent = naive.assign(X, level.parents)[0]
    labels, sqdist = np.empty(len(X), dtype=np.int64), np.empty(len(X))
    for p in range(len(level.parents)):
        rows = parent == p
        a, e = level.child_offsets[p], level.child_offsets[p + 1]
        labels[rows], sqdist[rows] = naive.assign(X[rows], level.centroids[a:e])
        labels[rows] += a
    return labels, sqdist


def test_splitting_reaches_n_clusters_and_stays_consistent():
    X = mixture(n=3000, d=3)
    levels = hierarchical_kmeans(X, (60, 6), n_resamples=(0, 2), n_splits=(10, 1), random_state=0)
    split = levels[0]
    assert len(split.centroids) <= 60 and len(split.centroids) >= 55
    assert split.child_offsets[0] == 0 and split.child_offsets[-1] == len(split.centroids)
    assert np.all(np.diff(split.child_offsets) >= 1) and len(split.parents) == len(split.child_offsets) - 1
    labels, sqdist = routed(X, split)
    np.testing.assert_array_equal(split.labels, labels)
    np.testing.assert_allclose(split.sqdist, sqdist, rtol=1e-12, atol=1e-12)
    assert np.bincount(split.labels).min() > 0  # empty sub-clusters were dropped
    assert levels[1].parents is None  # a level that resamples has none
    m = HierarchicalKMeans((60, 6), n_resamples=(0, 2), n_splits=(10, 1), random_state=0).fit(X)
    np.testing.assert_array_equal(m.labels_, m.predict(X))
    new = mixture(n=600, d=3, seed=1) * 1.5
    np.testing.assert_array_equal(m.predict(new, level=0), routed(new, m.levels_[0])[0])
    assert len(m.sample(300, random_state=0)) == 300


def test_splitting_beats_one_coarse_kmeans():
    X = mixture(n=3000, d=3)
    split = hierarchical_kmeans(X, 60, n_resamples=0, n_splits=10, random_state=0)[0]
    coarse = hierarchical_kmeans(X, 6, n_resamples=0, random_state=0)[0]
    assert split.sqdist.sum() < coarse.sqdist.sum() / 3


def _split_runs(monkeypatch, threads, side_by_side):
    """Level 0 of a split fit, and the Numba thread count each cluster's run saw."""
    from hkmeans import _config, hierarchy

    monkeypatch.setattr(_config, "SPLIT_SIDE_BY_SIDE_WORK", 0 if side_by_side else float("inf"))
    seen, kmeans = [], hierarchy.kmeans

    def spy(Y, k, **kw):
        if isinstance(kw["random_state"], int):  # a cluster's run, not the level's first
            seen.append(numba.get_num_threads())
        return kmeans(Y, k, **kw)

    monkeypatch.setattr(hierarchy, "kmeans", spy)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
        level = hierarchical_kmeans(
            mixture(n=4000, d=8, dtype=np.float32), 60, n_resamples=0, n_splits=6, random_state=0
        )[0]
    finally:
        numba.set_num_threads(before)
    return level, set(seen)


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs two threads")
def test_split_clusters_side_by_side_give_the_same_level(monkeypatch):
    if not layer_takes_threads():
        pytest.skip("Numba's threading layer runs kernels from one thread at a time")
    one_by_one, inner = _split_runs(monkeypatch, 1, side_by_side=False)
    all_threads, inner_all = _split_runs(monkeypatch, 2, side_by_side=False)
    side_by_side, inner_side = _split_runs(monkeypatch, 2, side_by_side=True)
    assert inner == {1} and inner_all == {2} and inner_side == {1}  # the modes ran as named
    for other in (all_threads, side_by_side):
        np.testing.assert_array_equal(one_by_one.centroids, other.centroids)
        np.testing.assert_array_equal(one_by_one.labels, other.labels)
        np.testing.assert_array_equal(one_by_one.sqdist, other.sqdist)
        assert one_by_one.n_iter == other.n_iter


def test_a_failing_cluster_run_fails_the_split_level(monkeypatch):
    from hkmeans import _config, hierarchy

    monkeypatch.setattr(_config, "SPLIT_SIDE_BY_SIDE_WORK", 0)
    numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))  # the runs side by side, where it can
    kmeans, runs = hierarchy.kmeans, []

    def failing(Y, k, **kw):
        runs.append(Y.shape[0])
        if len(runs) == 4:  # the level's first k-means, then the third cluster's run
            raise MemoryError("no room")
        return kmeans(Y, k, **kw)

    monkeypatch.setattr(hierarchy, "kmeans", failing)
    with pytest.raises(MemoryError, match="no room"):
        hierarchical_kmeans(mixture(n=3000, d=3), 60, n_resamples=0, n_splits=10, random_state=0)


@pytest.mark.parametrize(
    "params, match",
    [
        (dict(n_clusters=(12,), n_splits=5, n_resamples=0), "divisor"),
        (dict(n_clusters=(12,), n_splits=0, n_resamples=0), "n_splits"),
        (dict(n_clusters=(12,), n_splits=3), "both splitting"),
    ],
)
def test_bad_splits(params, match):
    with pytest.raises(ValueError, match=match):
        HierarchicalKMeans(**params).fit(mixture(n=100))


def test_verbose_reports_each_level_and_shows_bars(capsys):
    HierarchicalKMeans((20, 4), n_resamples=(0, 2), n_splits=(5, 1), verbose=True, random_state=0).fit(mixture(n=400))
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("[hkmeans]")]
    assert len(lines) == 2
    assert "level 0: 400 -> " in lines[0] and "split in 5" in lines[0]
    assert "level 1: " in lines[1] and "2 resamples" in lines[1]
    for name in ("levels", "resampling 4", "k-means 4", "splitting 4"):
        assert name in err


def test_quiet_by_default(capsys, warm_kernels):  # warm: no compile notice either
    HierarchicalKMeans((20, 4), n_resamples=1, random_state=0).fit(mixture(n=400))
    assert capsys.readouterr().err == ""


def test_level_above_a_split_that_lost_clusters_is_refused_clearly():
    X = np.repeat(mixture(n=300, d=2)[:20], 10, axis=0)  # 20 distinct points
    with pytest.warns(Warning), pytest.raises(ValueError, match="kept only"):
        hierarchical_kmeans(X, (40, 40), n_resamples=0, n_splits=(10, 1), random_state=0)


@pytest.mark.parametrize("scale", [2.0**70, 2.0**-70])
def test_float64_rows_beyond_float32s_range_fit_as_the_rows_scaled_back(scale):
    # a power of 2 scales every sum and product exactly: the same labels and samples,
    # though squared distances leave float32's range (the "closest" ranks round to its
    # precision, not its range)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(3000, 6)) + 4 * rng.integers(0, 8, size=(3000, 1))
    params = dict(n_clusters=(40, 8), n_resamples=3, random_state=0)
    a, b = HierarchicalKMeans(**params).fit(X), HierarchicalKMeans(**params).fit(X * scale)
    for la, lb in zip(a.levels_, b.levels_):
        np.testing.assert_array_equal(la.labels, lb.labels)
        np.testing.assert_array_equal(la.centroids * scale, lb.centroids)
    for kwargs in ({"random_state": 1}, {"strategy": "closest"}):
        np.testing.assert_array_equal(a.sample(300, **kwargs), b.sample(300, **kwargs))


def test_the_function_checks_its_input_as_the_estimator_does():
    X = mixture(n=400)
    model = HierarchicalKMeans((12, 4), n_resamples=2, random_state=0).fit(X)
    for rows in (X.tolist(), np.asfortranarray(X)):
        levels = hierarchical_kmeans(rows, (12, 4), n_resamples=2, random_state=0)
        np.testing.assert_array_equal(levels[0].labels, model.levels_[0].labels)
        np.testing.assert_array_equal(levels[1].centroids, model.levels_[1].centroids)
    integers = np.round(X).astype(np.int64)
    got = hierarchical_kmeans(integers, 12, n_resamples=0, random_state=0)[0]  # as scikit-learn: in float64
    np.testing.assert_array_equal(
        got.centroids, hierarchical_kmeans(integers * 1.0, 12, n_resamples=0, random_state=0)[0].centroids
    )
    # a backend made by the caller is taken as it is; a sparse matrix as the sparse backend
    from scipy import sparse

    from hkmeans.backends import CPUBackend

    backend = hierarchical_kmeans(CPUBackend(X), (12, 4), n_resamples=2, random_state=0)
    np.testing.assert_array_equal(backend[1].centroids, model.levels_[1].centroids)
    rows = sparse.random(60, 9, density=0.4, format="csr", random_state=0)
    as_csr = hierarchical_kmeans(rows, 4, n_resamples=1, random_state=0)[0]
    np.testing.assert_array_equal(
        as_csr.labels, hierarchical_kmeans(rows.tocoo(), 4, n_resamples=1, random_state=0)[0].labels
    )
    bad = X.copy()
    bad[7, 1] = np.nan
    for rows, match in ((bad, "NaN"), (X[:, 0], "2D"), (np.full((20, 2), "a"), "convert")):
        with pytest.raises(ValueError, match=match):
            hierarchical_kmeans(rows, 4, random_state=0)


def test_a_resampling_step_clusters_the_rows_closest_to_each_centroid(monkeypatch):
    """The k-means of a resampling step runs on each cluster's ``min(size,
    sample_size)`` rows nearest its centroid, as the k-means before it labelled them."""
    import hkmeans.hierarchy as hierarchy

    calls = []

    def spy(rows, k, **kwargs):
        result = kmeans(rows, k, **kwargs)
        calls.append((np.array(rows.X if hasattr(rows, "X") else rows), result))
        return result

    kmeans = hierarchy.kmeans
    monkeypatch.setattr(hierarchy, "kmeans", spy)
    X = mixture(n=500)
    hierarchical_kmeans(X, 8, n_resamples=1, sample_size=20, random_state=0)
    (_, first), (subset, _) = calls
    sizes = np.bincount(first.labels, minlength=8)
    expected = np.concatenate(
        [
            np.flatnonzero(first.labels == c)[np.argsort(first.sqdist[first.labels == c], kind="stable")][:20]
            for c in range(8)
        ]
    )
    assert len(subset) == np.minimum(sizes, 20).sum() == len(expected)
    row_of = {X[i].tobytes(): i for i in range(len(X))}
    np.testing.assert_array_equal(np.sort([row_of[r.tobytes()] for r in subset]), np.sort(expected))


def test_default_sample_size_is_half_the_average_cluster_rounded():
    from hkmeans.hierarchy import default_sample_size

    assert default_sample_size(300, 8) == 19  # 18.75
    assert default_sample_size(600, 10) == 30


def test_a_level_may_keep_as_many_clusters_as_the_level_below():
    X = np.random.default_rng(0).normal(size=(200, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the advice that such a level barely merges
        levels = hierarchical_kmeans(X, (8, 8), n_resamples=0, random_state=0)
    assert len(levels[1].centroids) == 8
    np.testing.assert_array_equal(np.sort(levels[1].labels), np.arange(8))  # one centroid each


def test_a_split_cluster_smaller_than_n_splits_is_split_in_fewer():
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(size=(200, 2)), rng.normal(size=(200, 2)) + 20, [[500.0, 500.0]]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no k-means asked for more clusters than it has points
        level = hierarchical_kmeans(X, 12, n_resamples=0, n_splits=4, random_state=0)[0]
    assert sorted(np.diff(level.child_offsets)) == [1, 4, 4]  # the outlier's cluster: one centroid
    assert np.sum(level.labels == level.labels[-1]) == 1


def test_split_level_labels_stay_consistent_when_empty_sub_clusters_are_dropped():
    X = np.repeat(np.random.default_rng(0).normal(size=(20, 2)) * 10, 10, axis=0)  # 20 distinct points
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        level = hierarchical_kmeans(X, 40, n_resamples=0, n_splits=10, random_state=0)[0]
    assert len(level.centroids) < 40  # sub-clusters were dropped
    assert 0 <= level.labels.min() and level.labels.max() < len(level.centroids)
    np.testing.assert_array_equal(np.bincount(level.labels, minlength=len(level.centroids)) > 0, True)
    np.testing.assert_array_equal(level.assign(X)[0], level.labels)
    # each row sits on its own centroid (the distinct points are far apart)
    np.testing.assert_allclose(level.centroids[level.labels], X)


def test_a_parent_left_without_children_is_dropped(monkeypatch):
    """A top centroid whose sub-centroids all end up empty after the routing is
    dropped with them: ``child_offsets`` has one entry per parent, plus one."""
    import hkmeans.hierarchy as hierarchy
    from hkmeans.kmeans import KMeansResult

    kmeans = hierarchy.kmeans
    X = np.random.default_rng(0).normal(size=(100, 2))

    def fake_top(rows, k, **kw):
        if isinstance(kw["random_state"], int):  # a cluster's own k-means
            return kmeans(rows, k, **kw)
        labels = np.zeros(len(X), np.int64)
        labels[:5] = 1  # five rows labelled with a centroid far from all of them
        centers = np.array([[0.0, 0.0], [1000.0, 1000.0]])
        return KMeansResult(centers, labels, np.zeros(len(X)), 0.0, 1)

    monkeypatch.setattr(hierarchy, "kmeans", fake_top)
    level = hierarchical_kmeans(X, 4, n_resamples=0, n_splits=2, random_state=0)[0]
    assert len(level.parents) == len(level.child_offsets) - 1 == 1
    np.testing.assert_array_equal(level.assign(X)[0], level.labels)
    np.testing.assert_array_equal(level.assign(np.array([[1000.0, 1000.0]]))[0] < len(level.centroids), True)


def test_tree_distances_are_euclidean_not_squared():
    X = np.random.default_rng(0).normal(size=(300, 3)) * 5
    model = HierarchicalKMeans((10, 3), n_resamples=1, random_state=0).fit(X)
    leaf = model.levels_[0]
    expected = np.linalg.norm(X - leaf.centroids[leaf.labels], axis=1)
    np.testing.assert_allclose(model.tree_.distances, expected, rtol=1e-6, atol=1e-9)
