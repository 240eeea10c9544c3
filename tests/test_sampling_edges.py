"""Edges of balanced sampling, the tree, the advisor and the run configuration that the
broader tests leave open: each test pins one behaviour against an independent
expectation (a plain-NumPy water-filling, explicit messages, hand-worked values)."""

import tomllib
import warnings

import numpy as np
import pytest

from hkmeans import ClusterTree, advise, flat_sampling, hierarchical_kmeans, hierarchical_sampling, hierarchy
from hkmeans.advise import ParameterWarning, far_off
from hkmeans.cli import subsets
from hkmeans.cli.config import MAX_COUNT, ConfigError, check, effective, fit_params, int_list, to_toml
from hkmeans.cli.run_layout import RunDirError
from hkmeans.cli.subsets import load_indices, save_indices


def water_levels(target, caps):
    """Plain NumPy water-filling: the bins that are filled to capacity, and the equal
    share ``fair`` of the others, ``extra`` of which get one more."""
    caps = np.asarray(caps, dtype=np.int64)
    full = np.zeros(len(caps), bool)
    while True:
        open_ = ~full
        share = (target - caps[full].sum()) // max(1, open_.sum())
        newly = open_ & (caps <= share)
        if not newly.any():
            break
        full |= newly
    rest = target - caps[full].sum()
    n_open = int((~full).sum())
    fair = rest // n_open if n_open else 0
    return full, fair, rest - fair * n_open


def assert_water_filled(counts, target, caps):
    full, fair, extra = water_levels(target, caps)
    caps = np.asarray(caps)
    np.testing.assert_array_equal(counts[full], caps[full])
    open_counts = counts[~full]
    assert np.all((open_counts == fair) | (open_counts == fair + 1)), (counts, fair)
    assert int((open_counts == fair + 1).sum()) == extra
    assert counts.sum() == target


# sampling: argument checks


def test_multiplier_true_is_refused_like_target_size_true():
    tree = ClusterTree([np.array([0, 1, 1])])
    for sampler in (hierarchical_sampling, flat_sampling):
        with pytest.raises(ValueError, match=r"^multiplier must be an integer from 1 to 2\*\*62, got True\.$"):
            sampler(tree, 2, multiplier=True)


def test_furthest_without_distances_is_one_clear_error():
    tree = ClusterTree([np.array([0, 1, 1])])
    for strategy in ("closest", "furthest"):
        with pytest.raises(ValueError, match=f"^strategy='{strategy}' needs each point's distance"):
            hierarchical_sampling(tree, 2, strategy=strategy)
        with pytest.raises(ValueError, match=f"^strategy='{strategy}' needs each point's distance"):
            flat_sampling(tree, 2, strategy=strategy)


def test_flat_sampling_refuses_what_is_not_a_tree():
    with pytest.raises(TypeError, match="^tree must be a ClusterTree, got ndarray"):
        flat_sampling(np.zeros(3, np.int64), 1)


def test_flat_sampling_follows_its_seed():
    rng = np.random.default_rng(0)
    tree = ClusterTree([rng.integers(0, 12, 200), rng.integers(0, 3, 12)])
    for level in (0, 1):
        runs = [flat_sampling(tree, 31, level=level, random_state=s) for s in (5, 5, 6)]
        np.testing.assert_array_equal(runs[0], runs[1])
        assert not np.array_equal(runs[0], runs[2])
    same = [flat_sampling(tree, 31, level=1, random_state=np.random.default_rng(9)) for _ in range(2)]
    np.testing.assert_array_equal(*same)


# sampling: the counts per cluster are a water-filling


@pytest.mark.parametrize(
    "sizes, target, multiplier",
    [
        ([1, 5, 10, 3], 12, 1),
        ([1, 5, 10, 3], 19, 1),
        ([2, 1, 7], 13, 2),
        ([4, 4, 4], 7, 1),
        ([3, 0, 3, 1], 20, 3),
        ([6], 4, 1),
    ],
)
def test_one_level_counts_are_the_plain_water_filling(sizes, target, multiplier):
    labels = np.repeat(np.arange(len(sizes)), sizes)
    tree = ClusterTree([labels])
    caps = np.array(sizes) * multiplier
    for seed in range(5):
        idx = hierarchical_sampling(tree, target, multiplier=multiplier, random_state=seed)
        assert_water_filled(np.bincount(labels[idx], minlength=len(sizes)), min(target, caps.sum()), caps)


# the tree


def test_centroids_of_levels_of_other_widths_are_refused():
    with pytest.raises(ValueError, match=r"^centroids\[1\] must be 2-D with 2 columns, got shape \(1, 3\)\.$"):
        ClusterTree([np.array([0, 1, 1]), np.array([0, 0])], centroids=[np.zeros((2, 2)), np.zeros((1, 3))])


def test_a_scalar_sample_weight_is_refused():
    with pytest.raises(ValueError, match=r"^sample_weight must have one entry per data point \(3\), got shape \(\)\.$"):
        ClusterTree([np.array([0, 1, 1])], sample_weight=2.0)


def test_the_top_level_has_as_many_clusters_as_its_centroids():
    tree = ClusterTree([np.array([0, 0, 1])], centroids=[np.zeros((4, 2))])
    assert tree.n_clusters == (4,)
    np.testing.assert_array_equal(tree.sizes(0), [2, 1, 0, 0])


# the advisor


def test_a_top_level_of_exactly_the_fewest_clusters_is_kept():
    # 1920 points: 30 level-0 clusters; top: min(2 sqrt(100), 30 // 3) = 10, the fewest allowed
    assert advise(1920, 100).params == dict(n_clusters=[30, 10], sample_size=[32, 2], n_resamples=[10, 10])


def test_no_resampling_is_a_valid_advice():
    assert advise(1920, 100, n_resamples=0).params["n_resamples"] == [0, 0]
    with pytest.raises(ValueError, match="^n_resamples must be a non-negative integer"):
        advise(1920, 100, n_resamples=-1)


def test_a_target_equal_to_the_pool_needs_no_multiplier():
    assert not any("multiplier" in r for r in advise(100, 100).reasons)
    assert any("multiplier >= 2" in r for r in advise(100, 101).reasons)


def test_a_level0_as_large_as_the_target_by_the_points_rule_says_so():
    # 640 // 64 = 10 = target: the points per cluster decide, not the target
    assert (
        advise(640, 10).reasons[0] == "level 0: 10 clusters of about 64 points each (aim: 64; the paper's pool had 74)"
    )
    assert advise(6400, 10).reasons[0].startswith("level 0: 10 clusters, as many as the target")


@pytest.mark.parametrize(
    "n, target, why",
    [
        (3, 1, "the pool (3 points) is under twice the 64 points per cluster aimed at; the target (1) takes"),
        (127, 50, "the pool (127 points) is under twice the 64 points per cluster aimed at"),
        (6400, 1, "about 3200 points each; the target (1) takes its point from one of them"),
    ],
)
def test_two_clusters_below_the_rules_say_they_are_the_fewest(n, target, why):
    # below 128 points, or for a target of 1, the rules ask for fewer than 2 clusters
    advice = advise(n, target)
    assert advice.params["n_clusters"] == [2]
    assert advice.reasons[0].startswith(f"level 0: 2 clusters, the fewest a k-means has: {why}")
    assert "aim:" not in advice.reasons[0]
    assert ("takes its point" in advice.reasons[0]) == (target < 2)


def test_far_off_edges_follow_its_docstring():
    # exactly 2 points per level-0 cluster, exactly 1.5x fewer clusters: not far off
    assert far_off(100, [50], [0], [None]) == []
    assert far_off(1000, [15, 10], [0, 0], [None, None]) == []
    # a sample exactly the mean cluster size takes whole clusters
    (line,) = far_off(1000, [50], [3], [20])
    assert line.startswith("sample_size=20 at level 0 is at least its mean cluster size (20.0)")


# the run configuration


def test_an_empty_list_of_target_sizes_is_refused():
    with pytest.raises(ConfigError, match=rf"^c.toml: target_size must be an integer from 0 to {MAX_COUNT}, or a list"):
        check("target_size", [], "c.toml")
    assert check("target_size", [0, MAX_COUNT], "c.toml") == [0, MAX_COUNT]


def test_one_target_size_on_the_command_line_is_one_integer():
    assert int_list("100") == 100 and int_list("100,5") == [100, 5]


def test_a_multiplier_of_zero_is_refused_as_the_flag_is_read():
    with pytest.raises(ConfigError, match=r"^--multiplier: multiplier must be an integer from 1 to \d+, got 0\.$"):
        check("multiplier", 0, "--multiplier")


def test_flags_of_zero_override_the_config_file(tmp_path):
    (tmp_path / "c.toml").write_text("seed = 5\nn_resamples = 4\ntarget_size = 7\n")
    config = effective(tmp_path / "c.toml", {"seed": 0, "n_resamples": 0, "target_size": 0, "multiplier": None})
    assert (config["seed"], config["n_resamples"], config["target_size"], config["multiplier"]) == (0, 0, 0, 1)


def fit_config(**overrides):
    return {**effective(None, {"n_clusters": [60, 10]}), **overrides}


def test_fit_params_write_per_level_keys_once_per_level_and_record_the_backend():
    params = fit_params(fit_config(n_resamples=10, sample_size=8))
    assert params["n_resamples"] == [10, 10] and params["sample_size"] == [8, 8]
    assert "backend" not in params and "dedup" not in params
    assert fit_params(fit_config(workers=2))["backend"] == "dask"
    assert fit_params(fit_config(scheduler="tcp://h:8786"))["backend"] == "dask"


def test_a_dedup_threshold_of_zero_is_part_of_the_run():
    params = fit_params(fit_config(dedup=0.0, dedup_metric="euclidean"))
    assert (params["dedup"], params["dedup_metric"], params["dedup_keep"]) == (0.0, "euclidean", "hard")


def test_numbers_read_as_integers_are_kept_as_floats(tmp_path):
    (tmp_path / "c.toml").write_text("tol = 0\ncheckpoint_interval = 5\n")
    config = effective(tmp_path / "c.toml", {"dedup": None})
    assert type(config["tol"]) is float and type(config["checkpoint_interval"]) is float
    assert "tol = 0.0\n" in to_toml(config) and "checkpoint_interval = 5.0\n" in to_toml(config)


def test_config_toml_reads_back_every_string():
    for text in ("a\x7fb", 'q"uote\\back', "tab\tnew\nline", "caf\u00e9 \u2028 \x85\x9f", "\x00\x1f\x7f"):
        assert tomllib.loads(to_toml({"column": text}))["column"] == text


# curated subsets in a run directory


def test_run_subsets_come_by_target_size_as_numbers(tmp_path, monkeypatch):
    for name in ("indices-100.npy", "indices-20.npy", "indices.npy", "indices-3.npy", "indices-x.npy"):
        (tmp_path / name).write_bytes(b"")
    monkeypatch.setattr(subsets, "fitted_rows", lambda run_dir, manifest: None)
    monkeypatch.setattr(subsets, "load_indices", lambda npy, source, tree, rows: npy)
    got = subsets.run_subsets(str(tmp_path), {"input": {}}, None)
    assert list(got) == ["indices.npy", "indices-3.npy", "indices-20.npy", "indices-100.npy"]


def test_an_index_beyond_the_fitted_rows_is_one_line(tmp_path):
    source = {"fingerprint": "f", "shape": [10, 2]}
    tree = ClusterTree([np.array([0, 0, 1])])
    rows = np.array([1, 3, 5])  # the fit's rows of the input
    npy = str(tmp_path / "indices.npy")
    save_indices(npy, [3, 5], source, in_run=True)
    np.testing.assert_array_equal(load_indices(npy, source, tree, rows), [1, 2])
    for bad in ([3, 9], [0], [4]):
        save_indices(npy, bad, source, in_run=True)
        with pytest.raises(RunDirError, match=rf"row {bad[-1]} is not in the subset this run was fitted on"):
            load_indices(npy, source, tree, rows)


# the hierarchy


def test_a_levels_n_iter_counts_the_iterations_of_all_its_k_means_runs(monkeypatch):
    runs = []
    kmeans = hierarchy.kmeans

    def counted(*args, **kwargs):
        res = kmeans(*args, **kwargs)
        runs.append(int(res.n_iter))
        return res

    monkeypatch.setattr(hierarchy, "kmeans", counted)
    X = np.random.default_rng(0).normal(size=(300, 3))
    (level,) = hierarchy.hierarchical_kmeans(X, 6, n_resamples=3, sample_size=10, max_iter=20, random_state=0)
    assert len(runs) == 4  # the first k-means and one per resampling step
    assert level.n_iter == sum(runs) > runs[0]


def test_weights_that_make_the_default_sample_size_one_warn_that_resampling_is_skipped():
    X = np.random.default_rng(1).normal(size=(200, 2))
    w = np.full(200, 0.04)  # weight 8 for 4 clusters: half a cluster's weight is 1
    with pytest.warns(ParameterWarning, match=r"the default sample_size .* is 1 and resampling is skipped"):
        hierarchical_kmeans(X, 4, n_resamples=2, max_iter=5, random_state=0, sample_weight=w)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ParameterWarning)  # weight 16: a sample of 2, no warning
        hierarchical_kmeans(X, 4, n_resamples=2, max_iter=5, random_state=0, sample_weight=2 * w)
