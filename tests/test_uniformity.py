"""Property-based uniformity: curated samples are more balanced over the concepts of a
long-tailed pool than the pool itself."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from hkmeans import HierarchicalKMeans
from hkmeans._kernels.cpu.select import water_fill


def normalised_entropy(counts):
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum() / np.log(len(counts)))


@st.composite
def mixtures(draw):
    """2 to 8 well-separated Gaussian components of long-tailed sizes (largest up to
    100 times the smallest) in 2 to 16 dimensions; returns (X, component of each row)."""
    m = draw(st.integers(2, 8))
    d = draw(st.integers(2, 16))
    ratio = draw(st.floats(5, 100))
    largest = draw(st.integers(400, 1500))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    sizes = np.maximum(np.rint(largest * ratio ** (-np.arange(m) / (m - 1))).astype(int), 4)
    angles = 2 * np.pi * np.arange(m) / m
    centres = np.zeros((m, d))
    centres[:, 0], centres[:, 1] = np.cos(angles), np.sin(angles)
    centres *= 8 * m  # neighbours at least ~25 standard deviations apart
    X = np.concatenate([c + rng.normal(size=(s, d)) for c, s in zip(centres, sizes)])
    return X, np.repeat(np.arange(m), sizes)


@given(mixtures(), st.integers(1, 2), st.integers(0, 2**16))
def test_sampling_is_more_uniform_over_components_than_the_pool(mixture, multiplier, seed):
    X, comp = mixture
    n, m = len(X), comp.max() + 1
    model = HierarchicalKMeans((max(n // 20, m), m), n_resamples=3, random_state=seed).fit(X)
    target = n // 4
    idx = model.sample(target, multiplier=multiplier, random_state=seed)
    pool = np.bincount(comp, minlength=m)
    got = np.bincount(comp[idx], minlength=m)
    assert got.sum() == target
    # the most even split the capacities allow, were the components known
    ideal = water_fill(target, pool * multiplier, np.zeros(m))
    h_pool, h_got, h_ideal = map(normalised_entropy, (pool, got, ideal))
    # the sample closes at least half of the gap between the pool and that ideal
    assert h_got >= h_pool + (h_ideal - h_pool) / 2, (pool, got, ideal)
    # no component gives more than its capacity ...
    assert np.all(got <= pool * multiplier)
    # ... and the largest one's share of the sample never exceeds its share of the pool
    big = np.argmax(pool)
    assert got[big] / target <= pool[big] / n
