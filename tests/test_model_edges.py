"""Edges of the cost model, the checkpoints, the built-in data sets and the demo,
each against an expectation derived by hand (from the docstrings and docs/scaling.md)
or from what a real fit does: nothing here is timed."""

import json

import numpy as np
import pytest

import hkmeans
from hkmeans import HierarchicalKMeans, _config, cost, datasets, demo
from hkmeans._rng import as_generator
from hkmeans.checkpoint import Checkpoints, run_step
from hkmeans.dedup import DedupResult
from hkmeans.seeding import local_trials

#: Rates that make a level's time its work in flops.
UNIT = cost.Rates(search=1.0, seeding=1.0, iteration_seconds=0.0, seeding_seconds=0.0)
#: Rates that make a level's time the count of its calls: one second per Lloyd
#: iteration (or search call), ``SEEDING_SECONDS`` per seeding, the work free.
SEEDING_SECONDS = 1000.0
CALLS = cost.Rates(search=1e30, seeding=1e30, iteration_seconds=1.0, seeding_seconds=SEEDING_SECONDS)


def unit(k, dtype):
    return UNIT


def calls(k, dtype):
    return CALLS


def modelled_calls(level):
    """The calls the cost model counts for ``level`` estimated at :data:`CALLS` rates:
    a Lloyd iteration or search 1, a seeding ``SEEDING_SECONDS``, the work nothing.
    Arithmetic of the model; nothing is timed."""
    return level.seconds


def _rows(n, d, seed=0):
    return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)


def _flops(n, d, **params):
    return sum(c.flops for c in cost.estimate(n, d, rates=unit, **params))


# the work


@pytest.mark.parametrize("k", [16, 23])
def test_work_with_two_bound_groups_is_the_fits(counted, k):
    # 16 to 23 centres: the Lloyd bounds keep 2 groups of centres (k // 8), whose
    # grouping searches count as a fit's with more groups do
    X = _rows(3000, 24)
    params = dict(n_clusters=[k], n_resamples=[0], max_iter=3)
    hkmeans.hierarchical_kmeans(X, random_state=0, **params)
    assert _flops(*X.shape, **params) == pytest.approx(counted["search"] + counted["seeding"], rel=1e-12)


def test_a_training_sample_larger_than_the_rows_is_every_row():
    # 10 clusters of at most 1000 points each: the sample is the 1000 rows
    plain = cost.estimate(1000, 8, rates=unit, n_clusters=[10], n_resamples=[0])
    big = cost.estimate(1000, 8, rates=unit, n_clusters=[10], n_resamples=[0], max_points_per_centroid=1000)
    assert big == plain


def test_the_seeding_rows_are_drawn_from_the_training_sample(counted):
    # 20 rows per centre fitted: a seeding sample of 50 per centre is that sample
    X = _rows(3000, 24)
    common = dict(n_clusters=[10], n_resamples=[0], max_iter=3, max_points_per_centroid=20)
    hkmeans.hierarchical_kmeans(X, random_state=0, init_points_per_centroid=50, **common)
    got = _flops(*X.shape, init_points_per_centroid=50, **common)
    assert got == _flops(*X.shape, init_points_per_centroid=None, **common)
    assert got == pytest.approx(counted["search"] + counted["seeding"], rel=1e-12)


def test_a_resampling_subset_is_at_most_every_row():
    # 10 clusters of 1000 rows: 100 or 500 points per cluster both take every row
    common = dict(n_clusters=[10], n_resamples=[2])
    assert _flops(1000, 8, sample_size=[500], **common) == _flops(1000, 8, sample_size=[100], **common)
    assert _flops(1000, 8, sample_size=[50], **common) < _flops(1000, 8, sample_size=[100], **common)


def test_kmeans_parallel_counts_its_first_candidate_and_rounds():
    n, d, k, max_iter, rounds = 1000, 8, 10, 4, _config.KMEANS_PARALLEL_ROUNDS
    (level,) = cost.estimate(n, d, rates=unit, n_clusters=[k], n_resamples=[0], max_iter=max_iter, init="k-means||")
    candidates = 1 + rounds * 2 * k  # the first row, then about 2k a round
    lloyd = 2.0 * n * k * d * (max_iter + 1)  # 10 centres: one bound group, no grouping searches
    searches = 2.0 * n * d * candidates  # every row's distance to each candidate
    greedy = 2.0 * min(n, candidates) * d * (k - 1) * local_trials(k)  # k-means++ over the candidates
    assert level.flops == pytest.approx(lloyd + searches + greedy, rel=1e-12)


def test_later_levels_default_sample_size_is_of_their_own_rows():
    # level 1 clusters the 100 centroids of level 0 into 10: half a cluster is 5 points
    # (not the 1000 rows of level 0's 50), so its resampling fits 10 x 5 of them
    params = dict(n_clusters=[100, 10], n_resamples=[0, 1], max_iter=4)
    _, top = cost.estimate(1000, 8, rates=unit, **params)
    (alone,) = cost.estimate(100, 8, rates=unit, n_clusters=[10], n_resamples=[1], sample_size=[5], max_iter=4)
    assert top.rows == 100 and top.flops == alone.flops


def test_each_level_counts_the_clusters_of_the_one_below_as_its_rows():
    levels = cost.estimate(10_000, 8, rates=unit, n_clusters=[100, 10, 2], n_resamples=[0, 0, 0])
    assert [c.rows for c in levels] == [10_000, 100, 10]
    assert [c.clusters for c in levels] == [100, 10, 2]
    (last,) = cost.estimate(10, 8, rates=unit, n_clusters=[2], n_resamples=[0])
    assert levels[2].flops == last.flops


def test_a_sample_size_of_one_resamples_nothing_and_two_does():
    common = dict(n_clusters=[10], max_iter=4)
    none = _flops(1000, 8, n_resamples=[0], **common)
    assert _flops(1000, 8, n_resamples=[3], sample_size=[1], **common) == none
    assert _flops(1000, 8, n_resamples=[3], sample_size=[2], **common) > none
    # nor does it hold a subset in memory
    assert _peak(1000, n_resamples=[3], sample_size=[1]) == _peak(1000, n_resamples=[0])


# the fixed cost of each call


def test_each_seeding_and_iteration_of_a_split_level_has_its_fixed_cost():
    # 200 clusters: a k-means of 50 (max_iter iterations and a last search, one
    # seeding), the parents searched, then 50 k-means of 4, one per cluster (each
    # its iterations and seeding), and the children searched
    max_iter, top = 4, 50
    (level,) = cost.estimate(10_000, 8, rates=calls, n_clusters=[200], n_splits=[4], n_resamples=[0], max_iter=max_iter)
    iterations = (max_iter + 1) + 1 + top * (max_iter + 1) + 1
    seedings = 1 + top
    assert modelled_calls(level) == pytest.approx(iterations + SEEDING_SECONDS * seedings)


def test_each_resampling_step_has_the_fixed_cost_of_its_kmeans_and_reassignment():
    max_iter, steps = 4, 2
    (level,) = cost.estimate(1000, 8, rates=calls, n_clusters=[10], n_resamples=[steps], max_iter=max_iter)
    # the first k-means, then per step a k-means of the subset and every row reassigned
    iterations = (max_iter + 1) + steps * ((max_iter + 1) + 1)
    assert modelled_calls(level) == pytest.approx(iterations + SEEDING_SECONDS * (1 + steps))


def test_kmeans_parallel_has_the_fixed_cost_of_each_rounds_search():
    max_iter, rounds = 4, _config.KMEANS_PARALLEL_ROUNDS
    (level,) = cost.estimate(
        1000, 8, rates=calls, n_clusters=[10], n_resamples=[0], max_iter=max_iter, init="k-means||"
    )
    # Lloyd's iterations and last search; the first candidate's search and one a round;
    # the greedy k-means++ over the candidates
    assert modelled_calls(level) == pytest.approx((max_iter + 1) + (1 + rounds) + SEEDING_SECONDS)


def test_gpus_still_pay_this_machines_fixed_cost_of_each_call():
    max_iter = 4
    hw = cost.Hardware(gpus=2, gpu_tflops=1.0)
    (level,) = cost.estimate(1000, 8, rates=calls, hardware=hw, n_clusters=[10], n_resamples=[0], max_iter=max_iter)
    assert modelled_calls(level) == pytest.approx(level.flops / 2e12 + (max_iter + 1) + SEEDING_SECONDS)


# Dask workers


def test_workers_share_only_level_zero():
    params = dict(n_clusters=[100, 10], n_resamples=[2, 1])
    one = cost.estimate(10_000, 16, rates=unit, **params)
    four = cost.estimate(10_000, 16, rates=unit, hardware=cost.Hardware(workers=4), **params)
    assert four[0].seconds < one[0].seconds
    assert [c.seconds for c in four[1:]] == [c.seconds for c in one[1:]]
    assert [c.peak_bytes for c in four[1:]] == [c.peak_bytes for c in one[1:]]


def test_dask_with_one_worker_refuses_a_split_level_zero_and_gpus():
    with pytest.raises(ValueError, match="n_splits > 1 at level 0 is not supported on the dask backend"):
        cost.estimate(
            10_000,
            16,
            rates=unit,
            hardware=cost.Hardware(workers=1, dask=True),
            n_clusters=[100, 10],
            n_splits=[2, 1],
            n_resamples=0,
        )
    with pytest.raises(ValueError, match="give Dask workers or GPUs, not both"):
        cost.Hardware(dask=True, gpus=1)


def test_threads_must_be_positive():
    with pytest.raises(ValueError, match="threads must be a positive integer, got 0"):
        cost.estimate(100, 4, rates=unit, threads=0, n_clusters=[2])


# the peak memory


def _peak(n, d=8, **params):
    params = dict(dict(n_clusters=[10], n_resamples=[0], threads=1), **params)
    (level,) = cost.estimate(n, d, rates=unit, **params)
    return level.peak_bytes


def test_peak_grows_by_each_rows_state():
    # per row (docstring of cost.peak_bytes): labels and distances (8 + 8 bytes) of the
    # last step and of the running one, the labels of the pass before (8), the Lloyd
    # bounds (4 bytes a group), the seeding's distances, weights and draw order (3 x 8)
    # and its 8-bit copy of the row (d bytes); a cosine fit adds its unit rows (float32)
    d = 8
    per_row = 2 * (8 + 8) + 8 + 4 * _config.BOUND_GROUPS + 3 * 8 + d
    assert _peak(2000, d) - _peak(1000, d) == 1000 * per_row
    assert _peak(2000, d, metric="cosine") - _peak(1000, d, metric="cosine") == 1000 * (per_row + 4 * d)


def test_peak_holds_the_training_sample_or_the_resampling_subset():
    # both float32 rows: 10 x 20 of the training sample, 10 x 50 of a subset, never both
    base = _peak(10_000)
    assert _peak(10_000, max_points_per_centroid=20) - base == 10 * 20 * 8 * 4
    assert _peak(10_000, n_resamples=[1], sample_size=[50]) - base == 10 * 50 * 8 * 4
    both = _peak(10_000, max_points_per_centroid=20, n_resamples=[1], sample_size=[50])
    assert both - base == 10 * 50 * 8 * 4


def test_peak_holds_a_block_of_distances_per_thread():
    # at most CHUNK_BYTES each for few centres
    assert _peak(10_000, threads=4) - _peak(10_000, threads=1) == 3 * _config.CHUNK_BYTES


def test_peak_holds_four_float64_copies_of_the_centres():
    d = 8
    assert _peak(10_000, d, n_clusters=[30]) - _peak(10_000, d, n_clusters=[10]) == 4 * 20 * d * 8


# the calibration's centres (its kernels stubbed: nothing is timed)


@pytest.mark.parametrize("n_clusters, timed", [(1, 2), (2, 2), (63, 32), (64, 64), (65, 64), (5000, 1024)])
def test_calibration_times_the_power_of_two_at_or_below(monkeypatch, n_clusters, timed):
    seen = []
    monkeypatch.setattr(cost, "_measure", lambda d, dtype, k: seen.append(k) or UNIT)
    cost.calibrate(8, np.float32, n_clusters, cache=False)
    assert seen == [timed]


def test_kept_rates_with_no_fixed_cost_are_used(tmp_path):
    path = tmp_path / "rates.json"
    path.write_text(json.dumps(dict(search=1e9, seeding=2e9, iteration_seconds=0.0, seeding_seconds=0.0)))
    assert cost._read_rates(str(path)) == cost.Rates(1e9, 2e9, 0.0, 0.0)


# checkpoints


class Kept(Checkpoints):
    def __init__(self):
        self.kept = {}

    def load(self, key):
        return None if key not in self.kept else dict(self.kept[key])

    def save(self, key, arrays):
        self.kept[key] = dict(arrays)


def test_a_kept_step_returns_what_compute_returned():
    store, rng = Kept(), np.random.default_rng(0)
    first = run_step(store, "s", rng, lambda: {"x": rng.random(2)})
    again = run_step(store, "s", np.random.default_rng(1), lambda: pytest.fail("run again"))
    assert set(again) == set(first) == {"x"}
    assert set(store.kept["s"]) == {"x", "rng_state"}


def test_every_step_of_every_level_is_kept_under_its_own_key():
    X = _rows(600, 3)
    store = Kept()
    params = dict(n_clusters=(20, 4), n_resamples=(2, 1), sample_size=(10, 2), max_iter=5)
    hkmeans.hierarchical_kmeans(X, random_state=0, checkpoints=store, **params)
    # a first k-means and one step per resampling, per level
    assert sorted(store.kept) == [
        "level0/step0000",
        "level0/step0001",
        "level0/step0002",
        "level1/step0000",
        "level1/step0001",
    ]


# random_state


def test_a_numpy_integer_seed_is_the_same_stream_as_the_int():
    assert as_generator(np.int64(7)).random() == as_generator(7).random()
    assert as_generator(np.int32(7)).random() == as_generator(7).random()


def test_a_random_state_seeds_reproducibly_and_none_does_not():
    a = as_generator(np.random.RandomState(3)).random(4)
    b = as_generator(np.random.RandomState(3)).random(4)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(as_generator(None).random(4), as_generator(None).random(4))
    g = np.random.default_rng(0)
    assert as_generator(g) is g


# the built-in data sets


def test_rings_are_annuli_of_radius_07_to_1_around_their_centres():
    X, ring = datasets.make_rings(random_state=0)
    assert X.shape == (29_700, 2)
    np.testing.assert_array_equal(np.bincount(ring), [20000, 200, 1000, 500, 8000])
    centres = np.array([(-2.2, 1.0), (0.0, 1.0), (2.2, 1.0), (-1.2, 0.2), (1.2, 0.2)])
    offset = X - centres[ring]
    radius = np.hypot(*offset.T)
    assert radius.min() >= 0.7 and radius.max() <= 1.0
    # uniform radii and angles: the big ring reaches both ends and every quadrant
    big = ring == 0
    assert radius[big].min() < 0.701 and radius[big].max() > 0.999
    angle = np.arctan2(offset[big, 1], offset[big, 0])
    quadrants = np.bincount(((angle + np.pi) // (np.pi / 2)).astype(int) % 4, minlength=4)
    assert quadrants.min() > 0.23 * big.sum()


def test_rings_of_other_sizes_label_each_point():
    X, ring = datasets.make_rings(sizes=(3, 0, 2, 1, 4), random_state=1)
    assert X.shape == (10, 2)
    np.testing.assert_array_equal(ring, [0, 0, 0, 2, 2, 3, 4, 4, 4, 4])


def test_the_uniformity_mixture_has_its_four_components():
    X, comp = datasets.make_uniformity_mixture(random_state=0)
    assert X.shape == (9000, 2)
    np.testing.assert_array_equal(np.bincount(comp), [7000, 1000, 500, 500])
    for c, mean in enumerate([(-1, -1), (1, -1), (0, 1)]):
        part = X[comp == c]
        np.testing.assert_allclose(part.mean(axis=0), mean, atol=0.1)
        np.testing.assert_allclose(part.std(axis=0), 0.5, rtol=0.1)
    uniform = X[comp == 3]
    assert uniform.min() >= -3 and uniform.max() <= 3
    assert uniform.min() < -2.8 and uniform.max() > 2.8


# the demo


def test_planted_copies_are_one_viral_row_and_a_few_hundred_others():
    X, ring = datasets.make_rings(random_state=0)
    Y, yring = demo.plant_copies(X, ring, n_copies=2000, random_state=0)
    n = len(X)
    assert Y.shape == (n + 2000, 2)
    copies = Y[n:]
    # each copy is within JITTER per coordinate of the row it copies
    nearest = np.array([np.abs(X - c).max(axis=1).argmin() for c in copies[::50]])
    assert np.abs(X[nearest] - copies[::50]).max() <= demo.JITTER
    np.testing.assert_array_equal(yring[n:][::50], ring[nearest])
    # the viral row: n_copies // 10 times, plus the few times the others draw it
    rows = np.array([np.abs(X - c).max(axis=1).argmin() for c in copies[:300]])
    viral = np.bincount(rows).argmax()
    count = sum(np.abs(X[viral] - c).max() <= demo.JITTER for c in copies)
    assert 200 <= count <= 230


def test_planted_copies_follow_the_seed():
    X, ring = datasets.make_rings(sizes=(50, 10, 10, 10, 10), random_state=0)
    a = demo.plant_copies(X, ring, n_copies=40, random_state=5)[0]
    b = demo.plant_copies(X, ring, n_copies=40, random_state=5)[0]
    np.testing.assert_array_equal(a, b)


def _dedup_line(n, removed_rows, duplicate_of):
    dup = np.full(n, -1)
    dup[removed_rows] = duplicate_of
    kept = np.setdiff1d(np.arange(n), removed_rows)
    result = DedupResult(kept, dup, np.full(n, np.nan), np.arange(n), np.zeros(n, np.int64), 0)
    return demo.RingsDedup(np.zeros((n, 2)), np.zeros(n, np.int64), 4, result, 0.5).line()


def test_the_dedup_line_counts_rows_removed_and_the_largest_group():
    # rows 6 and 7 copies of row 0, row 8 of row 2, row 9 kept: 3 removed of 10, a group of 3
    line = _dedup_line(10, [6, 7, 8], [0, 0, 2])
    assert line == "dedup: 10 rows (4 near copies planted), 3 removed (30.0%), largest group 3 rows, 0.50 s"
    assert _dedup_line(10, [], []) == (
        "dedup: 10 rows (4 near copies planted), 0 removed (0.0%), largest group 1 rows, 0.50 s"
    )


def test_counts_per_ring_list_every_ring_even_one_not_sampled():
    ring = np.repeat(np.arange(5), [3, 3, 3, 3, 3])
    result = demo.RingsResult(np.zeros((15, 2)), ring, np.array([0, 1, 3]), np.array([0, 4, 5]), 0.0)
    np.testing.assert_array_equal(result.counts(result.curated), [2, 1, 0, 0, 0])
    assert demo.table(result).splitlines()[1:] == [
        f"{20000:>10} {2:>8} {1:>8}",
        f"{200:>10} {1:>8} {2:>8}",
        f"{1000:>10} {0:>8} {0:>8}",
        f"{500:>10} {0:>8} {0:>8}",
        f"{8000:>10} {0:>8} {0:>8}",
    ]


def test_run_rings_random_sample_is_distinct_sorted_and_follows_the_seed(monkeypatch):
    # a smaller model than the paper's (its fit is not what is tested here)
    small = dict(n_clusters=(20, 5), n_resamples=1, sample_size=(5, 2))
    monkeypatch.setattr(demo, "HierarchicalKMeans", lambda **kw: HierarchicalKMeans(**dict(kw, **small)))
    data = datasets.make_rings(sizes=(300, 50, 50, 50, 50), random_state=0)
    a = demo.run_rings(seed=3, target_size=400, data=data)
    b = demo.run_rings(seed=3, target_size=400, data=data)
    assert len(a.random) == 400 and np.all(np.diff(a.random) > 0)  # distinct, sorted
    np.testing.assert_array_equal(a.random, b.random)
    np.testing.assert_array_equal(a.curated, b.curated)
    assert a.counts(a.curated).sum() == a.counts(a.random).sum() == 400


def test_the_demo_dedup_plants_the_copies_of_its_seed():
    got = demo.dedup_rings(seed=1)
    X, ring = demo.plant_copies(*datasets.make_rings(random_state=1), random_state=1)
    np.testing.assert_array_equal(got.X, X)
    np.testing.assert_array_equal(got.ring, ring)
    assert len(got.result.removed) == got.n_planted == demo.COPIES


def test_more_ring_sizes_than_rings_is_a_one_line_error():
    # a real bug: six sizes gave 50 points but 60 labels (X of sum(sizes) rows, as
    # documented, is impossible with five centres)
    with pytest.raises(ValueError, match="6 ring sizes for the 5 rings of RING_CENTRES"):
        datasets.make_rings(sizes=(10,) * 6)


def test_editing_labels_of_a_one_level_fit_leaves_the_model_as_it_was():
    # with one level, labels_ was the tree's own level-0 array: merging two clusters in
    # it changed what sample, cluster_table and assignments return
    X = np.random.default_rng(0).normal(size=(600, 4))
    fitted = HierarchicalKMeans(12, n_resamples=1, random_state=0).fit(X)
    sizes, picks = fitted.cluster_table()["size"].copy(), fitted.sample(60, random_state=0)
    labels = fitted.labels_
    labels[labels == 11] = 0
    np.testing.assert_array_equal(fitted.cluster_table()["size"], sizes)
    np.testing.assert_array_equal(fitted.sample(60, random_state=0), picks)
    assert np.count_nonzero(fitted.tree_.labels[0] == 11) > 0


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_csr_rows_with_entries_stored_twice_are_their_sums(metric):
    # a valid, non-canonical CSR matrix: every value stored as two halves; the cosine
    # norms and the kernels read each stored entry as a value of its own
    sp = pytest.importorskip("scipy.sparse")
    X = np.random.default_rng(0).normal(size=(300, 4))
    A = sp.csr_matrix(X)
    D = sp.csr_matrix((np.repeat(A.data / 2, 2), np.repeat(A.indices, 2), A.indptr * 2), shape=A.shape)
    assert not D.has_canonical_format
    want = hkmeans.KMeans(4, metric=metric, random_state=0).fit(A)
    got = hkmeans.KMeans(4, metric=metric, random_state=0).fit(D)
    np.testing.assert_array_equal(got.labels_, want.labels_)
    assert got.inertia_ == pytest.approx(want.inertia_, rel=1e-12)
    np.testing.assert_allclose(want.transform(D), want.transform(A), rtol=1e-12)
    assert not D.has_canonical_format  # the user's matrix as it was
