"""Balanced sampling: property tests over random trees and targets."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hkmeans import ClusterTree, flat_sampling, hierarchical_sampling

from .strategies import trees

targets = st.integers(0, 400)
multipliers = st.integers(1, 3)


def sibling_groups(tree):
    """(level, groups of sibling clusters at that level): top clusters, then the
    children of each cluster above."""
    top = tree.n_levels - 1
    yield top, [np.arange(tree.n_clusters[top])]
    for t in range(top, 0, -1):
        offsets, order = tree.members(t)
        yield t - 1, [order[offsets[c] : offsets[c + 1]] for c in range(tree.n_clusters[t])]


@given(trees(), targets, multipliers, st.sampled_from(["random", "closest", "furthest"]), st.integers(0, 99))
def test_hierarchical_sampling_properties(tree, target, multiplier, strategy, seed):
    idx = hierarchical_sampling(tree, target, strategy, multiplier, random_state=seed)
    assert idx.dtype == np.int64
    assert len(idx) == min(target, tree.n_samples * multiplier)
    assert np.all(np.diff(idx) >= 0)
    copies = np.bincount(idx, minlength=tree.n_samples)
    assert copies.max(initial=0) <= multiplier
    for level, groups in sibling_groups(tree):
        counts = np.bincount(tree.point_labels(level)[idx], minlength=tree.n_clusters[level])
        caps = tree.sizes(level) * multiplier
        for sib in groups:
            if len(sib) < 2:
                continue
            c, cap = counts[sib], caps[sib]
            # if one sibling has 2 or more above another, the other is full
            gap = c[:, None] >= c[None, :] + 2
            assert np.all((c == cap)[None, :].repeat(len(c), 0)[gap])
    np.testing.assert_array_equal(idx, hierarchical_sampling(tree, target, strategy, multiplier, random_state=seed))


@given(trees(), targets, multipliers, st.sampled_from(["closest", "furthest"]), st.integers(0, 99))
def test_closest_and_furthest_pick_by_distance(tree, target, multiplier, strategy, seed):
    idx = hierarchical_sampling(tree, target, strategy, multiplier, random_state=seed)
    copies = np.bincount(idx, minlength=tree.n_samples)
    sign = 1 if strategy == "closest" else -1
    offsets, order = tree.members(0)
    for c in range(tree.n_clusters[0]):
        members = order[offsets[c] : offsets[c + 1]]
        if len(members) == 0:
            continue
        dist, got = sign * tree.distances[members], copies[members]
        # a point picked more often is never farther (closer) than one picked less often
        more = got[:, None] > got[None, :]
        assert np.all((dist[:, None] <= dist[None, :])[more])


def test_sibling_counts_on_a_capped_tree():
    # leaf sizes 1, 5, 10 under one top cluster: 9 points split as 1, 4, 4
    tree = ClusterTree.from_labels([np.repeat([0, 1, 2], [1, 5, 10])])
    idx = hierarchical_sampling(tree, 9, random_state=0)
    np.testing.assert_array_equal(np.bincount(tree.labels[0][idx]), [1, 4, 4])


def test_whole_pool_multiplier_times_when_target_exceeds_capacity():
    tree = ClusterTree.from_labels([np.array([0, 0, 1])])
    idx = hierarchical_sampling(tree, 100, multiplier=2, random_state=0)
    np.testing.assert_array_equal(idx, [0, 0, 1, 1, 2, 2])


def test_remainder_goes_to_random_clusters():
    tree = ClusterTree.from_labels([np.repeat(np.arange(10), 5)])
    chosen = {tuple(np.unique(tree.labels[0][hierarchical_sampling(tree, 3, random_state=s)])) for s in range(20)}
    assert len(chosen) > 1  # which three clusters get the remainder varies with the seed


@given(trees(), targets, st.integers(0, 2), st.integers(0, 99))
def test_flat_sampling_balances_one_level(tree, target, level, seed):
    level = min(level, tree.n_levels - 1)
    idx = flat_sampling(tree, target, level=level, random_state=seed)
    assert len(idx) == min(target, tree.n_samples)
    counts = np.bincount(tree.point_labels(level)[idx], minlength=tree.n_clusters[level])
    caps = tree.sizes(level)
    open_ = counts < caps
    if open_.any():
        assert counts.max() <= counts[open_].min() + 1


def test_strategies_that_need_distances_are_refused_without_them():
    tree = ClusterTree.from_labels([np.array([0, 1, 1])])
    with pytest.raises(ValueError, match="distance"):
        hierarchical_sampling(tree, 2, strategy="closest")
    with pytest.raises(ValueError, match="level=0"):
        flat_sampling(
            ClusterTree.from_labels([np.array([0, 1]), np.array([0, 0])], distances=[1.0, 2.0]),
            1,
            level=1,
            strategy="furthest",
        )


@pytest.mark.parametrize(
    "args, error, match",
    [
        (dict(target_size=-1), ValueError, "target_size"),
        (dict(target_size=2.5), ValueError, "target_size"),
        (dict(target_size=2, multiplier=0), ValueError, "multiplier"),
        (dict(target_size=2, strategy="best"), ValueError, "strategy"),
    ],
)
def test_bad_arguments(args, error, match):
    tree = ClusterTree.from_labels([np.array([0, 1, 1])])
    with pytest.raises(error, match=match):
        hierarchical_sampling(tree, **args)


def test_not_a_tree():
    with pytest.raises(TypeError, match="ClusterTree"):
        hierarchical_sampling(np.zeros(3), 1)


@given(trees(), targets, st.integers(0, 3), st.sampled_from(["random", "closest"]), st.integers(0, 99))
def test_huge_multipliers_sample_as_an_unbounded_multiplier_would(tree, target, shift, strategy, seed):
    """Above the target, the multiplier no longer changes anything: 2**62 and friends
    give what ``multiplier = target`` gives, with no int64 overflow on the way."""
    expected = hierarchical_sampling(tree, target, strategy, max(1, target), random_state=seed)
    for multiplier in (2**62 - shift, 2**61 + shift, 3 * 2**60):
        for sampler in (hierarchical_sampling, lambda *a, **k: flat_sampling(a[0], a[1], 0, *a[2:], **k)):
            idx = sampler(tree, target, strategy, multiplier, random_state=seed)
            if sampler is hierarchical_sampling:
                np.testing.assert_array_equal(idx, expected)
            assert len(idx) == target and (target == 0 or 0 <= idx.min() and idx.max() < tree.n_samples)


@pytest.mark.parametrize("name, value", [("target_size", 2**62 + 1), ("multiplier", 2**63 - 1), ("multiplier", 10**20)])
def test_counts_beyond_2_62_are_refused_in_one_line(name, value):
    tree = ClusterTree([np.array([0, 0, 1])])
    kwargs = {"target_size": 2, "multiplier": 1, name: value}
    with pytest.raises(ValueError, match=f"^{name} must be an integer from"):
        hierarchical_sampling(tree, kwargs["target_size"], multiplier=kwargs["multiplier"])


def test_random_strategy_picks_points_at_random():
    """Within a cluster, "random" picks each point about equally often over seeds,
    not the same ones (the first rows, say) every time."""
    tree = ClusterTree.from_labels([np.zeros(100, np.int64)])
    picks = [hierarchical_sampling(tree, 10, random_state=s) for s in range(200)]
    frequency = np.bincount(np.concatenate(picks), minlength=100) / len(picks)
    assert len({tuple(p) for p in picks}) > 190
    assert frequency.min() > 0.02 and frequency.max() < 0.25  # 0.1 each on average


def test_remainder_goes_to_random_clusters_below_the_top():
    """A remainder split among the children of one top cluster goes to children that
    vary with the seed, as at the top level."""
    tree = ClusterTree.from_labels([np.repeat(np.arange(10), 5), np.zeros(10, np.int64)])
    chosen = {tuple(np.unique(tree.labels[0][hierarchical_sampling(tree, 3, random_state=s)])) for s in range(20)}
    assert len(chosen) > 1


def test_flat_sampling_balances_the_level_asked():
    """Level 1 has two clusters of 4 and 2 points over level-0 clusters of 4, 1 and
    1: two points are one per level-1 cluster, whatever the seed (balancing level 0
    would often take both from level-1 cluster 1)."""
    tree = ClusterTree.from_labels([np.array([0, 0, 0, 0, 1, 2]), np.array([0, 1, 1])])
    for seed in range(50):
        idx = flat_sampling(tree, 2, level=1, random_state=seed)
        np.testing.assert_array_equal(np.bincount(tree.point_labels(1)[idx], minlength=2), [1, 1])


def expected_picks(tree, idx, strategy, multiplier):
    """Plain NumPy: given how many points each level-0 cluster gave, the points
    "closest"/"furthest" must pick: whole copies, then the remainder by distance,
    ties to the lower row."""
    labels, sign = tree.labels[0], 1 if strategy == "closest" else -1
    counts = np.bincount(labels[idx], minlength=tree.n_clusters[0])
    picks = []
    for c, need in enumerate(counts):
        members = np.flatnonzero(labels == c)
        if need == 0:
            continue
        ranked = members[np.argsort(sign * tree.distances[members], kind="stable")]
        picks.append(np.tile(members, need // len(members)))
        picks.append(ranked[: need % len(members)])
    return np.sort(np.concatenate(picks)) if picks else np.zeros(0, np.int64)


@pytest.mark.parametrize("strategy", ["closest", "furthest"])
def test_tied_distances_go_to_the_lower_rows_in_large_clusters(strategy):
    # many ties in clusters of ~200 points: an unstable sort would pick other rows
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 600)
    tree = ClusterTree([labels], distances=rng.integers(0, 3, 600).astype(float))
    for target, multiplier in ((301, 1), (1000, 2)):
        idx = hierarchical_sampling(tree, target, strategy, multiplier, random_state=0)
        np.testing.assert_array_equal(idx, expected_picks(tree, idx, strategy, multiplier))


def test_bool_target_size_is_refused():
    tree = ClusterTree([np.array([0, 1, 1])])
    for sampler in (hierarchical_sampling, flat_sampling):
        with pytest.raises(ValueError, match="target_size"):
            sampler(tree, True)
