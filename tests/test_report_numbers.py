"""Tables, report rows, figures and browser data checked against plain NumPy."""

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from hkmeans import ClusterTree, plot  # noqa: E402
from hkmeans.browser import SNIPPET, cluster_data  # noqa: E402
from hkmeans.report import label_rows, level_rows, subset_rows, target_sizes  # noqa: E402
from hkmeans.tables import assignments, cluster_table  # noqa: E402


def entropy(counts):
    """Normalised entropy by hand: -sum p log p over the non-empty bins / log(bins)."""
    c = np.asarray(counts, dtype=float)
    if c.size < 2 or c.sum() == 0:
        return 0.0
    p = c[c > 0] / c.sum()
    return float(-(p * np.log(p)).sum() / np.log(c.size))


def tree_of(seed=0, n=300, k0=12, k1=4):
    rng = np.random.default_rng(seed)
    labels0 = rng.integers(k0, size=n)
    labels1 = np.arange(k0) % k1
    return ClusterTree([labels0, labels1], distances=rng.random(n)), labels0, labels1


def test_an_export_block_past_the_last_row_stops_at_it():
    """The command line asks for blocks of EXPORT_ROWS: the last one reaches past the pool."""
    tree, labels0, labels1 = tree_of()
    part = assignments(tree, start=290, stop=290 + 1000)
    np.testing.assert_array_equal(part["row"], np.arange(290, 300))
    np.testing.assert_array_equal(part["cluster_level1"], labels1[labels0[290:]])


def test_tables_of_a_tree_without_distances_say_nan_not_zero():
    tree = ClusterTree.from_labels([np.arange(8) % 4, np.arange(4) % 2])
    assert np.isnan(assignments(tree)["distance"]).all()
    assert np.isnan(cluster_table(tree, [0, 1])["mean_distance"]).all()


def test_balance_is_shown_at_every_power_of_ten_up_to_the_pool_and_the_pool_itself():
    assert target_sizes(4000, 300) == [10, 100, 300, 1000]
    assert target_sizes(1000, [5, 1000]) == [5, 10, 100, 1000]
    assert target_sizes(100, 100) == [10, 100]
    tree, _, _ = tree_of(n=100)
    sizes, curated, rand = plot.balance_curve(tree, [10, 100, 101], random_state=0)
    assert sizes == [10, 100]  # the whole pool is a size too; beyond it is not
    assert rand[1] == pytest.approx(entropy(tree.sizes(1)))  # all 100 points: the pool's balance


def test_normalised_entropy_is_that_over_every_bin_and_zero_for_one_bin():
    for counts in ([0, 3, 1, 0], [7], [2, 2, 0], [1, 2, 3, 4, 0, 0, 0], [0, 0, 5, 5]):
        assert plot.normalized_entropy(counts) == pytest.approx(entropy(counts), abs=1e-12), counts
    assert plot.normalized_entropy([7]) == 0.0


def test_the_subsets_row_counts_clusters_reached_and_balances_by_hand():
    tree, labels0, labels1 = tree_of()
    top = labels1[labels0]
    subset = np.flatnonzero(top < 2)[:40]  # reaches 2 of the 4 top clusters
    (row,) = subset_rows(tree, {"s": subset}, random_state=0)
    counts = np.bincount(top[subset], minlength=4)
    assert row["top-level clusters reached (of 4)"] == 2
    assert row["balance, curated"] == f"{entropy(counts):.3f}"
    random = np.random.default_rng(7).choice(300, 40, replace=False)
    (row,) = subset_rows(tree, {"s": subset}, random_rows=random)
    assert row["balance, random"] == f"{entropy(np.bincount(top[random], minlength=4)):.3f}"


def test_a_label_a_subset_misses_is_its_smallest_label_and_shares_are_of_the_subset():
    labels = np.array(["a"] * 5 + ["b"] * 3 + ["c"] * 2)
    rows = np.array([0, 1, 2, 5])  # a, a, a, b: no c
    per_label, summary = label_rows(labels, {"pool": None, "s": rows})
    by = {r["subset"]: r for r in summary}
    assert by["s"]["smallest label"] == 0 and by["s"]["largest label"] == 3
    assert by["s"]["labels covered (of 3)"] == 2 and by["s"]["coverage"] == f"{2 / 3:.3f}"
    assert [r["label"] for r in per_label] == ["a", "b", "c"]
    assert [r["s share"] for r in per_label] == [f"{3 / 4:.4f}", f"{1 / 4:.4f}", f"{0:.4f}"]
    assert [r["pool share"] for r in per_label] == [f"{5 / 10:.4f}", f"{3 / 10:.4f}", f"{2 / 10:.4f}"]


def test_level_rows_count_empty_clusters_and_take_the_median_size():
    labels0 = np.array([0] * 10 + [1] * 1 + [2] * 2 + [4] * 3)  # cluster 3 empty
    tree = ClusterTree.from_labels([labels0, np.array([0, 0, 1, 1, 1])])
    for t, row in enumerate(level_rows(tree, None)):
        sizes = np.bincount(tree.point_labels(t), minlength=tree.n_clusters[t])
        assert row["clusters"] == sizes.size and row["empty"] == int(np.sum(sizes == 0))
        assert row["smallest"] == sizes.min() and row["largest"] == sizes.max()
        assert row["median"] == float(np.median(sizes))
    assert level_rows(tree, None)[0]["empty"] == 1 and level_rows(tree, None)[0]["median"] == 2.0


def test_browser_snippets_cut_only_what_is_longer_than_a_snippet():
    tree = ClusterTree.from_labels([np.arange(4) % 2, np.array([0, 0])])
    show = np.array(["x" * SNIPPET, "y" * (SNIPPET + 1), "z", ""], dtype=object)
    data = cluster_data(tree, [0], show=show)
    assert data["values"]["0"] == "x" * SNIPPET
    assert data["values"]["1"] == "y" * (SNIPPET - 1) + "\u2026" and len(data["values"]["1"]) == SNIPPET
    assert data["note"] == ""  # every example member has its snippet: no note


def test_label_figure_shares_are_each_subsets_own():
    labels = np.array(["a"] * 6 + ["b"] * 3 + ["c"] * 1)
    selected = np.array([0, 6, 9, 9])
    fig = plot.label_shares(labels, selected, random_rows=np.array([1, 2]))
    lines = {line.get_label(): line.get_ydata() for line in fig.axes[0].get_lines()}
    np.testing.assert_allclose(lines["pool"], [0.6, 0.3, 0.1])
    np.testing.assert_allclose(lines["curated"], [0.25, 0.25, 0.5])
    np.testing.assert_allclose(lines["random"], [1.0, np.nan, np.nan])


def test_a_smaller_subset_is_compared_with_a_random_subset_of_its_own_size():
    tree, labels0, labels1 = tree_of()
    top = labels1[labels0]
    one_cluster = np.flatnonzero(top == 0)[:50]  # the figures' random subset, all in one top cluster
    rows = subset_rows(tree, {"big": np.arange(50), "small": np.arange(20)}, random_state=0, random_rows=one_cluster)
    assert rows[0]["balance, random"] == "0.000"  # the size of random_rows: that subset
    assert rows[1]["balance, random"] != "0.000"  # 20 points drawn anew over 4 even clusters


def test_browser_clusters_beyond_the_limit_are_listed_largest_first():
    rng = np.random.default_rng(0)
    labels0 = rng.integers(40, size=2000)
    tree = ClusterTree.from_labels([labels0, np.arange(40) % 3])
    level = cluster_data(tree, rng.choice(2000, 50, replace=False), max_clusters=8)["levels"][0]
    sizes = np.bincount(labels0, minlength=40)
    assert len(level["c"]) == 8 and level["n"] == sizes[level["c"]].tolist()
    assert level["n"] == sorted(level["n"], reverse=True)
    assert level["c"][:2] == np.argsort(-sizes, kind="stable")[:2].tolist()


def test_a_subset_with_more_picks_than_the_pool_has_points_gets_a_random_row():
    tree, _, _ = tree_of()
    (row,) = subset_rows(tree, {"twice": np.repeat(np.arange(300), 2)}, random_state=0)
    assert row["points"] == 600 and row["distinct points"] == 300
    assert row["balance, random"] == f"{entropy(tree.sizes(1)):.3f}"  # every point, drawn once


def test_shown_values_that_are_not_all_image_paths_are_text():
    tree = ClusterTree.from_labels([np.arange(6) % 2, np.array([0, 0])])
    show = np.array(["a.png", "plain words", "b.jpg", "c.png", "more words", "d.gif"], dtype=object)
    data = cluster_data(tree, [0, 1], show=show)
    assert data["kind"] == "text"
    assert data["values"] == {str(r): str(show[r]) for r in range(6)}


def test_labels_holding_none_are_one_line_before_any_figure():
    """As the command line refuses a labels column with nulls; np.unique raised a bare
    TypeError from deep inside."""
    from hkmeans.report import curation_report

    tree, _, _ = tree_of(n=60)
    with pytest.raises(ValueError, match=r"^labels holds None: every point needs a label\.$"):
        curation_report(tree, np.arange(10), labels=np.array([None, "a"] * 30, dtype=object))
