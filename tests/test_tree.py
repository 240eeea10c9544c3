"""ClusterTree: structure, validation, save and load."""

import numpy as np
import pytest
from hypothesis import given

from hkmeans import ClusterTree

from .strategies import trees


def small_tree():
    # 6 points -> 3 leaf clusters -> 2 top clusters
    return ClusterTree.from_labels(
        [np.array([0, 1, 1, 2, 0, 2]), np.array([1, 0, 1])],
        centroids=[np.arange(6.0).reshape(3, 2), np.arange(4.0).reshape(2, 2)],
        distances=np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6]),
    )


def test_structure_of_a_small_tree():
    tree = small_tree()
    assert tree.n_levels == 2 and tree.n_samples == 6 and tree.n_clusters == (3, 2)
    np.testing.assert_array_equal(tree.sizes(0), [2, 2, 2])
    np.testing.assert_array_equal(tree.sizes(1), [2, 4])
    np.testing.assert_array_equal(tree.point_labels(1), [1, 0, 0, 1, 1, 1])
    offsets, order = tree.members(1)
    np.testing.assert_array_equal(order[offsets[1] : offsets[2]], [0, 2])


@given(trees())
def test_sizes_add_up_through_levels(tree):
    for t in range(tree.n_levels):
        sizes = tree.sizes(t)
        assert sizes.sum() == tree.n_samples
        np.testing.assert_array_equal(sizes, np.bincount(tree.point_labels(t), minlength=tree.n_clusters[t]))
        offsets, order = tree.members(t)
        assert len(order) == len(tree.labels[t])
        for c in range(tree.n_clusters[t]):
            assert np.all(tree.labels[t][order[offsets[c] : offsets[c + 1]]] == c)


def test_save_and_load_round_trip(tmp_path):
    tree = small_tree()
    path = tmp_path / "tree.npz"
    tree.save(path)
    assert [p.name for p in tmp_path.iterdir()] == ["tree.npz"]  # no temporary file left
    back = ClusterTree.load(path)
    assert back.n_clusters == tree.n_clusters
    for a, b in zip(back.labels, tree.labels):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(back.centroids, tree.centroids):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(back.distances, tree.distances)


def test_failed_save_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "tree.npz"
    small_tree().save(path)
    before = path.read_bytes()

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken)
    with pytest.raises(OSError, match="disk full"):
        ClusterTree.from_labels([np.zeros(3, int)]).save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["tree.npz"]


def test_load_refuses_other_files(tmp_path):
    path = tmp_path / "other.npz"
    np.savez(path, a=np.arange(3))
    with pytest.raises(ValueError, match="not a ClusterTree"):
        ClusterTree.load(path)
    np.save(tmp_path / "array.npy", np.arange(5))  # np.load gives an array, not an archive
    (tmp_path / "array.npy").rename(tmp_path / "array.npz")
    np.savez(tmp_path / "shapes.npz", format=np.array([1, 1]), n_levels=np.array(1), labels_0=np.array([0]))
    np.savez(tmp_path / "flat.npz", format=1, n_levels=1, labels_0=np.array([0, 0]), centroids_0=np.zeros(3))
    for name in ("array.npz", "shapes.npz", "flat.npz"):
        with pytest.raises(ValueError, match="not a readable ClusterTree file") as e:
            ClusterTree.load(tmp_path / name)
        assert "\n" not in str(e.value)


def test_flatten_keeps_point_membership():
    tree = small_tree()
    flat = tree.flatten(1)
    assert flat.n_levels == 1 and flat.distances is None
    np.testing.assert_array_equal(flat.labels[0], tree.point_labels(1))
    assert tree.flatten(0).distances is not None


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(level_labels=[]), "at least one level"),
        (dict(level_labels=[np.array([], int)]), "empty"),
        (dict(level_labels=[np.array([0.5, 1.0])]), "integer"),
        (dict(level_labels=[np.array([0, -1])]), "negative"),
        (dict(level_labels=[np.array([0, 3]), np.array([0, 0])]), "refers to cluster 3"),
        (dict(level_labels=[np.array([0, 1])], distances=np.array([1.0])), "one entry per data point"),
        (dict(level_labels=[np.array([0, 1])], distances=np.array([1.0, np.nan])), "finite"),
        (
            dict(level_labels=[np.array([0, 1]), np.array([0, 0])], centroids=[np.zeros((3, 2)), np.zeros((1, 2))]),
            "has 3 rows",
        ),
        (dict(level_labels=[np.array([0, 1])], centroids=[np.zeros((2, 2))] * 2), "levels"),
        (dict(level_labels=[np.array([0, 0])], centroids=[np.zeros(3)]), "must be 2-D"),
        (dict(level_labels=[np.array([2**63], np.uint64)]), "above 2"),
    ],
)
def test_bad_trees_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ClusterTree.from_labels(**kwargs)


def test_bad_level_is_refused():
    with pytest.raises(ValueError, match="level must be"):
        small_tree().sizes(2)
    with pytest.raises(ValueError, match="level must be"):
        small_tree().sizes(True)


def test_flatten_keeps_the_weights():
    w = np.arange(1.0, 7.0)
    tree = ClusterTree([np.array([0, 0, 1, 1, 2, 2]), np.array([0, 0, 1])], sample_weight=w)
    flat = tree.flatten(1)
    np.testing.assert_array_equal(flat.sample_weight, w)
    np.testing.assert_array_equal(flat.weights(0), tree.weights(1))


def test_a_label_equal_to_the_number_of_clusters_is_refused():
    with pytest.raises(ValueError, match="refers to cluster 2"):
        ClusterTree([np.array([0, 2]), np.array([0, 0])])  # level 0 has 2 clusters: 0 and 1
    with pytest.raises(ValueError, match="refers to cluster 2"):
        ClusterTree([np.array([0, 2])], centroids=[np.zeros((2, 1))])
    with pytest.raises(ValueError, match="refers to cluster 1"):
        ClusterTree([np.array([0, 1]), np.array([0, 1])], centroids=[np.zeros((2, 1)), np.zeros((1, 1))])


@given(trees())
def test_sizes_are_integer_counts_at_every_level(tree):
    for t in range(tree.n_levels):
        assert tree.sizes(t).dtype == np.int64


def test_sample_weight_of_the_wrong_length_is_refused():
    with pytest.raises(ValueError, match="one entry per data point"):
        ClusterTree([np.array([0, 1, 1])], sample_weight=np.ones(2))


def test_load_refuses_a_file_with_more_levels_than_it_says(tmp_path):
    path = tmp_path / "tree.npz"
    ClusterTree([np.array([0, 1, 1]), np.array([0, 0])]).save(path)
    with np.load(path) as f:
        arrays = dict(f)
    arrays["n_levels"] = np.array(1)  # labels_1 left behind
    np.savez(tmp_path / "cut.npz", **arrays)
    with pytest.raises(ValueError, match="more levels than its n_levels"):
        ClusterTree.load(tmp_path / "cut.npz")


def test_bad_centroids_or_weights_are_one_line_errors():
    with pytest.raises(ValueError, match=r"centroids\[0\] must be 2-D, got shape \(\)"):
        ClusterTree([np.array([0, 0])], centroids=[np.float64(1.0)])
    for w in ([-1.0, 1.0, 1.0], [np.nan, 1.0, 1.0], [np.inf, 1.0, 1.0]):
        with pytest.raises(
            ValueError, match="sample_weight contains NaN|Negative values in data passed to sample_weight"
        ):
            ClusterTree([np.array([0, 1, 1])], sample_weight=w)


def test_members_and_sizes_are_read_only_views_and_samples_stay_whole(monkeypatch):
    """What the tree hands out is a read-only view of what its samples read: a caller
    writing into it is refused (it made later samples repeat a point beyond
    ``multiplier``), and the sampling kernels still get writable arrays (Numba
    compiles a second signature for read-only ones)."""
    from hkmeans import hierarchical_sampling
    from hkmeans._kernels.cpu import select

    passed = []
    for name in ("pick_members", "split_counts"):
        kernel = getattr(select, name)

        def watched(*args, kernel=kernel):
            passed.extend(a.flags.writeable for a in args if isinstance(a, np.ndarray))
            return kernel(*args)

        monkeypatch.setattr(select, name, watched)
    rng = np.random.default_rng(0)
    tree = ClusterTree([rng.integers(0, 5, 60), rng.integers(0, 2, 5)], distances=rng.random(60))
    before = [hierarchical_sampling(tree, 25, multiplier=1, random_state=s) for s in range(3)]
    for t in range(tree.n_levels):
        for a in (*tree.members(t), tree.sizes(t)):
            assert not a.flags.writeable
            with pytest.raises(ValueError, match="read-only"):
                a[0] = 0
    after = [hierarchical_sampling(tree, 25, multiplier=1, random_state=s) for s in range(3)]
    after.append(hierarchical_sampling(tree, 25, strategy="closest"))
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a, b)
        assert np.bincount(a).max() == 1
    assert len(passed) > 20 and all(passed)


def test_flatten_and_save_keep_trailing_empty_clusters(tmp_path):
    # level 0: clusters 0, 1 and an empty 2; level 1: cluster 1 holds only the empty 2
    tree = ClusterTree([np.array([0, 1, 1]), np.array([0, 0, 1])])
    assert tree.n_clusters == (3, 2)
    assert tree.flatten(0).n_clusters == (3,) and tree.flatten(1).n_clusters == (2,)
    np.testing.assert_array_equal(tree.flatten(1).sizes(0), [3, 0])
    top = ClusterTree([np.array([0, 0, 1, 1, 0])], n_clusters=[4])
    np.testing.assert_array_equal(top.sizes(0), [3, 2, 0, 0])
    top.save(tmp_path / "tree.npz")
    assert ClusterTree.load(tmp_path / "tree.npz").n_clusters == (4,)


@pytest.mark.parametrize(
    "n_clusters, match",
    [
        ([3], r"^n_clusters must hold one positive integer per level \(2\), got \[3\]\.$"),
        ([True, 2], "one positive integer per level"),
        ([[3], [2, 1]], "one positive integer per level"),
        ([2, 2], r"^n_clusters\[0\] is 2 but level 0 has 3 clusters\.$"),
        ([3, 1], r"^labels\[1\] refers to cluster 1 but level 1 has 1 clusters \(n_clusters\[1\]\)\.$"),
    ],
)
def test_n_clusters_that_disagree_with_the_labels_are_refused(n_clusters, match):
    with pytest.raises(ValueError, match=match):
        ClusterTree.from_labels([np.array([0, 1, 2]), np.array([0, 0, 1])], n_clusters=n_clusters)
