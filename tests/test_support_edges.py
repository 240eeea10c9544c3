"""Edges of the supporting host code a user sees: the sparse backend's cosine metric and
tolerance, the tables' column types and messages, the cgroup and affinity CPU counts,
and the report browser's data: found by mutation testing."""

import numpy as np
import pytest
import scipy.sparse as sp

from hkmeans import ClusterTree, KMeans
from hkmeans.tables import assignments, positions, selected_table


def test_sparse_cosine_fit_is_the_dense_cosine_fit():
    """metric="cosine" scales a sparse matrix's rows to unit norm, as it does dense rows."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 5)) + 5.0
    X[:, 1:][rng.random((120, 4)) < 0.3] = 0.0  # no row all zeros
    dense = KMeans(4, metric="cosine", random_state=0, n_init=1).fit(X)
    csr = KMeans(4, metric="cosine", random_state=0, n_init=1).fit(sp.csr_matrix(X))
    np.testing.assert_array_equal(csr.labels_, dense.labels_)
    np.testing.assert_allclose(csr.cluster_centers_, dense.cluster_centers_, atol=1e-12)
    assert csr.n_iter_ == dense.n_iter_
    assert np.allclose(np.linalg.norm(csr.cluster_centers_, axis=1), 1.0)


def test_sparse_tolerance_is_relative_to_the_features_variances():
    """tol scales the mean of the features' variances, not of their means: on rows far
    from the origin a sparse fit stops at the dense fit's iteration."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 4)) + 100.0
    X[:, 0] += 3 * rng.integers(0, 4, 300)
    for tol in (1e-3, 1e-2):
        dense = KMeans(4, tol=tol, random_state=0, n_init=1).fit(X)
        csr = KMeans(4, tol=tol, random_state=0, n_init=1).fit(sp.csr_matrix(X))
        assert csr.n_iter_ == dense.n_iter_
        np.testing.assert_array_equal(csr.labels_, dense.labels_)


def test_table_rows_are_int64_whatever_the_rows_given():
    tree = ClusterTree.from_labels([np.arange(6) % 3, np.array([0, 0, 1])])
    for table in (assignments(tree), assignments(tree, rows=np.arange(6, dtype=np.int32) * 2)):
        assert table.dtype["row"] == np.int64
    np.testing.assert_array_equal(assignments(tree, rows=np.arange(6) * 2)["row"], np.arange(0, 12, 2))


def test_an_empty_sample_is_an_empty_selected_table():
    """An empty list of positions (float64 to NumPy) is a sample of no points, not an error."""
    tree = ClusterTree.from_labels([np.arange(6) % 3, np.array([0, 0, 1])])
    table = selected_table(tree, [])
    assert table.size == 0
    assert table.dtype.names == ("row", "times", "cluster_level0", "cluster_level1", "distance")
    assert positions(tree, []).dtype == np.int64 and positions(tree, []).size == 0


def test_a_position_out_of_range_is_named_first_in_the_message():
    tree = ClusterTree.from_labels([np.arange(6) % 3, np.array([0, 0, 1])])
    with pytest.raises(ValueError, match=r"^indices must be positions in the tree, from 0 to 5; got 7\.$"):
        positions(tree, [0, 7, 3, -1])


def test_a_fractional_cgroup_quota_rounds_up_not_to_the_nearest(tmp_path):
    from hkmeans._threads import cgroup_cpus

    quota = tmp_path / "cpu.max"
    for text, cpus in (("120000 100000", 2), ("250000 100000", 3), ("50000 100000", 1)):
        quota.write_text(text + "\n")
        assert cgroup_cpus([str(quota)]) == cpus, text


def test_a_cgroup_quota_caps_the_affinity_mask_and_not_the_reverse(monkeypatch):
    from hkmeans import _threads

    monkeypatch.setattr(_threads.os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    monkeypatch.setattr(_threads, "cgroup_cpus", lambda: 3)
    assert _threads.usable_cpus.__wrapped__() == 3
    monkeypatch.setattr(_threads, "cgroup_cpus", lambda: 16)
    assert _threads.usable_cpus.__wrapped__() == 8
    monkeypatch.setattr(_threads, "cgroup_cpus", lambda: None)
    assert _threads.usable_cpus.__wrapped__() == 8


def test_a_level_of_exactly_max_clusters_is_shown_whole_without_a_note():
    from hkmeans.browser import cluster_data

    labels0 = np.repeat(np.arange(8), np.arange(1, 9))  # sizes 1 ... 8
    tree = ClusterTree.from_labels([labels0, np.arange(8) % 2])
    level = cluster_data(tree, [0, 5], max_clusters=8)["levels"][0]
    assert level["note"] == ""
    assert level["c"] == list(range(7, -1, -1))  # every cluster, largest first


def test_image_paths_are_images_whatever_the_case_of_their_suffix_and_a_null_makes_text():
    from hkmeans.browser import _value_kind

    assert _value_kind(["a.PNG", "b.Jpeg", "c.gif"]) == "image"
    assert _value_kind(["a.png", None, "c.gif"]) == "text"  # not every value a path
    assert _value_kind(["a.png", "", "c.gif"]) == "text"


def test_shown_values_beyond_the_budget_are_the_top_levels_largest_clusters_first(monkeypatch):
    from hkmeans import browser

    labels0 = np.repeat(np.arange(4), [6, 5, 4, 3])  # 18 rows, sizes 6, 5, 4, 3
    tree = ClusterTree.from_labels([labels0, np.array([1, 0, 0, 1])])  # top sizes: 9 (0), 9 (1)
    show = np.array([f"row {i}" for i in range(18)], dtype=object)
    monkeypatch.setattr(browser, "MAX_TEXTS", 5)
    data = browser.cluster_data(tree, [], show=show)
    top = data["levels"][1]
    first = [r for _, _, r in top["e"][0]][:5]  # the top level's first (largest) cluster's examples
    assert sorted(data["values"]) == sorted(str(r) for r in first)
    assert data["values"] == {str(r): f"row {r}" for r in first}
    assert data["note"] == "Snippets of the first 5 of 18 example members (the top level's largest clusters first)."
