"""The parameter advisor: its proposals are valid fits and follow the rules of thumb."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hkmeans import HierarchicalKMeans
from hkmeans._validation import check_hierarchy_params
from hkmeans.advise import MAX_LEVELS, MAX_RATIO, MIN_RATIO, TOP_PER_SQRT_TARGET, ParameterWarning, advise, far_off


@given(n=st.integers(2, 10**10), target=st.integers(1, 10**10))
def test_proposals_are_valid_parameters_and_follow_the_rules(n, target):
    a = advise(n, target)
    ks, sizes = a.params["n_clusters"], a.params["sample_size"]
    check_hierarchy_params(n, ks, a.params["n_resamples"], sizes, "closest")  # raises if not valid
    if n >= 4:
        assert far_off(n, ks, a.params["n_resamples"], sizes) == []
    assert 1 <= len(ks) <= MAX_LEVELS
    assert ks[0] <= max(2, target) and ks[0] <= n
    ratios = [hi / lo for hi, lo in zip(ks, ks[1:])]
    assert all(r >= MIN_RATIO * 0.9 for r in ratios), ks  # each level merges (3x, less rounding)
    assert len(ks) == MAX_LEVELS or all(r <= MAX_RATIO * 1.1 for r in ratios), ks
    if len(ks) > 1:  # the top level, sized by the target
        assert ks[-1] <= round(TOP_PER_SQRT_TARGET * math.sqrt(target)) and ks[-1] <= ks[0] // MIN_RATIO
    means = [m / k for m, k in zip([n] + ks[:-1], ks)]
    assert all(s == max(2, round(m / 2)) for s, m in zip(sizes, means))
    assert len(a.reasons) >= 3 and str(a).startswith("n_clusters = ")


def test_a_small_pool_fits_with_the_advice():
    X = np.random.default_rng(0).normal(size=(3000, 4)).astype(np.float32)
    a = advise(len(X), 500)
    m = HierarchicalKMeans(**a.params, max_iter=10, random_state=0).fit(X)
    assert [len(lv.centroids) for lv in m.levels_] == a.params["n_clusters"]
    assert len(m.sample(500)) == 500


def test_the_paper_pool_gets_a_few_levels_of_millions_to_tens_of_thousands():
    a = advise(743_000_000, 142_000_000)
    assert a.params["n_clusters"][0] > 10**6 and len(a.params["n_clusters"]) == MAX_LEVELS
    assert a.params["sample_size"][0] == round(743_000_000 / a.params["n_clusters"][0] / 2)


@pytest.mark.parametrize(
    "args, match",
    [
        ((0, 10), "n_samples must be a positive integer"),
        ((10, 0), "target_size must be a positive integer"),
        ((1, 1), "fewer than 2 points"),
        ((10, True), "target_size must be a positive integer"),
    ],
)
def test_bad_sizes_are_one_line_errors(args, match):
    with pytest.raises(ValueError, match=match):
        advise(*args)


def test_far_off_choices_are_named_and_warned_about_in_fit():
    assert far_off(100, [80], [10], [None])[0].startswith("level 0 has 80 clusters for 100 points")
    assert "level 1 has 40 clusters for the 50 of level 0" in far_off(1000, [50, 40], [0, 0], [None, None])[0]
    assert "sample_size=30 at level 0 is at least its mean cluster size (20.0)" in far_off(1000, [50], [3], [30])[0]
    assert far_off(1000, [50], [0], [30]) == []  # no resampling: the size does not matter
    X = np.random.default_rng(0).normal(size=(400, 3))
    with pytest.warns(ParameterWarning, match="barely merges them"):
        HierarchicalKMeans((20, 18), n_resamples=0, max_iter=5, random_state=0).fit(X)


def test_rows_a_dedup_keeps_size_the_levels_and_say_so():
    a = advise(1_000_000, 10_000, n_kept=600_000)
    assert a.params == advise(600_000, 10_000).params  # the fit sees the rows kept
    assert a.reasons[0] == (
        "dedup keeps 600000 of 1000000 points (400000 removed, 40.0%): the levels are sized for the "
        "600000 kept, which the fit sees"
    )
    assert a.reasons[1:] == advise(600_000, 10_000).reasons
    assert advise(1000, 100, n_kept=1000).params == advise(1000, 100).params
    with pytest.raises(ValueError, match="n_kept must be at most n_samples=1000, got 1001"):
        advise(1000, 100, n_kept=1001)
    with pytest.raises(ValueError, match="n_kept must be a positive integer"):
        advise(1000, 100, n_kept=0)
    with pytest.raises(ValueError, match="n_kept=1: a pool of fewer than 2 points"):
        advise(1000, 100, n_kept=1)


def test_reasons_quote_the_sizes_and_the_edges_hold():
    advice = advise(100_000, 50_000)
    k0 = advice.params["n_clusters"][0]
    assert f"about {100_000 // k0} points each" in advice.reasons[0]
    inputs = [100_000, *advice.params["n_clusters"][:-1]]
    pairs = zip(inputs, advice.params["n_clusters"], advice.params["sample_size"])
    line = next(r for r in advice.reasons if r.startswith("sample_size"))
    assert ", ".join(f"{m // k} -> {s}" for m, k, s in pairs) in line
    assert advise(4, 2).params["n_resamples"] == [0]  # clusters of 2 points: nothing to sample from
    assert any("multiplier >= 3" in r for r in advise(100, 250).reasons)
