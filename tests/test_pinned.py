"""Fixed-seed results pinned across refactors: the labels of every level and the
sampled indices (integers: their digests), and the sum of each level's centroids (to a
relative 1e-6), for each kind of fit. The data are well separated, so no label sits at a
rounding near-tie and the pins hold on any processor: where level 0 has more clusters
than six blobs, the rows come from as many blobs as clusters and more (a row between
two clusters of one blob may go either way with another BLAS kernel's rounding)."""

import hashlib

import numpy as np
import pytest

from hkmeans import HierarchicalKMeans


def blobs(n, d, seed, dtype, n_blobs=None):
    rng = np.random.default_rng(seed)
    if n_blobs is None:  # six blobs along the diagonal
        return (rng.normal(size=(n, d)) + 8 * rng.integers(0, 6, size=(n, 1))).astype(dtype)
    centres = 12 * rng.normal(size=(n_blobs, d))
    return (centres[rng.integers(n_blobs, size=n)] + rng.normal(size=(n, d))).astype(dtype)


CASES = {
    "gemm float32": (
        blobs(3000, 40, 1, np.float32, n_blobs=40),
        dict(n_clusters=(30, 6), n_resamples=3, sample_size=(8, 2)),
    ),
    "direct float64": (
        blobs(3000, 3, 2, np.float64),
        dict(n_clusters=(30, 6), n_resamples=2, resample_strategy="random", n_init=2),
    ),
    "cosine": (blobs(2000, 24, 3, np.float32), dict(n_clusters=(20, 5), n_resamples=2, metric="cosine")),
    "split": (blobs(3000, 8, 4, np.float32), dict(n_clusters=(24, 6), n_resamples=(0, 2), n_splits=(4, 1))),
    "k-means||": (
        blobs(3000, 32, 5, np.float32, n_blobs=40),
        dict(n_clusters=(30, 6), n_resamples=2, init="k-means||"),
    ),
}

PINS = {
    "gemm float32": ("c87f51f1be30b34d", [-315.03676, 15.9387024]),
    "direct float64": ("80e52a2267c06306", [1848.1114, 355.545268]),
    "cosine": ("311c6510e5c884ba", [3.0330387, 2.77830867]),
    "split": ("00174e5688f26440", [3842.6139, 960.744437]),
    "k-means||": ("5fb7dd96410a1ff1", [233.098827, 95.4021507]),
}


def fingerprint(X, params):
    m = HierarchicalKMeans(random_state=0, **params).fit(X)
    h = hashlib.sha256()
    for lv in m.levels_:
        h.update(np.ascontiguousarray(lv.labels, dtype=np.int64).tobytes())
    for kwargs in (dict(random_state=1), dict(strategy="closest", multiplier=2, random_state=2), dict(method="flat")):
        h.update(m.sample(400, **kwargs).tobytes())
    sums = [float(np.sum(lv.centroids, dtype=np.float64)) for lv in m.levels_]
    return h.hexdigest()[:16], sums


@pytest.mark.parametrize("case", CASES)
def test_fixed_seed_results_are_pinned(case):
    digest, sums = fingerprint(*CASES[case])
    assert digest == PINS[case][0]
    assert sums == pytest.approx(PINS[case][1], rel=1e-6, abs=1e-6)
