"""Micro-benchmarks of the kernels (pytest-benchmark): ``pytest bench/``.

Throughput goes in each benchmark's ``extra_info``: GFLOP/s for the assignment
(2 n k d flops), points per second for the others.
"""

import numpy as np
import pytest

from hkmeans import ClusterTree, hierarchical_sampling
from hkmeans._kernels.cpu import groups, select
from hkmeans._threads import single_threaded_blas
from hkmeans.kmeans import assign, init_centers, lloyd


def data(n, d, dtype=np.float32, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d)).astype(dtype)


@pytest.fixture(autouse=True)
def blas_one_thread():
    with single_threaded_blas():
        yield


def _rate(benchmark, name, work, unit=1.0):
    """Work per second of the median run, as extra info (absent with --benchmark-disable)."""
    if benchmark.stats is not None:
        benchmark.extra_info[name] = work / benchmark.stats.stats.median / unit


@pytest.mark.parametrize("n, d, k", [(100_000, 128, 1000), (30_000, 2, 1000)])
def test_assign(benchmark, n, d, k):
    X = data(n, d)
    C = X[:k].copy()
    benchmark(assign, X, C)
    _rate(benchmark, "GFLOP/s", 2 * n * k * d, 1e9)


@pytest.mark.parametrize("bounds", [False, True])
def test_lloyd(benchmark, bounds):
    """10 Lloyd iterations on a 50-Gaussian mixture (labels keep changing), with and
    without the bounds that skip centroids; rate in searched points per second."""
    rng = np.random.default_rng(4)
    means = rng.normal(size=(50, 128))
    X = (means[rng.integers(0, 50, 50_000)] + rng.normal(size=(50_000, 128))).astype(np.float32)
    C0 = X[rng.choice(len(X), 1000, replace=False)].copy()
    res = benchmark.pedantic(lloyd, args=(X, C0), kwargs=dict(max_iter=10, tol=0.0, bounds=bounds), rounds=3)
    _rate(benchmark, "points/s", len(X) * (res.n_iter + 1))


def test_centroid_update(benchmark):
    X = data(100_000, 128)
    labels = np.random.default_rng(1).integers(0, 1000, len(X))

    def update():
        offsets, order = groups.group_by_label(labels, 1000)
        return groups.cluster_sums(X, offsets, order)

    benchmark(update)
    _rate(benchmark, "points/s", len(X))


def test_resampling_selection(benchmark):
    n, k = 1_000_000, 10_000
    rng = np.random.default_rng(2)
    labels = rng.integers(0, k, n)
    scores = rng.random(n)
    offsets, order = groups.group_by_label(labels, k)
    take = np.minimum(np.diff(offsets), 15)
    benchmark(select.pick_members, offsets, order, scores, take)
    _rate(benchmark, "points/s", n)


def test_hierarchical_sampling(benchmark):
    n = 1_000_000
    rng = np.random.default_rng(3)
    tree = ClusterTree.from_labels(
        [rng.integers(0, 10_000, n), rng.integers(0, 1000, 10_000), rng.integers(0, 100, 1000)],
        distances=rng.random(n),
    )
    tree.members(0)  # the CSR is built once per tree, outside the timing
    benchmark(hierarchical_sampling, tree, 200_000, "closest", 1, 0)
    _rate(benchmark, "points/s", n)


@pytest.mark.parametrize("k", [200, 600])  # 7 candidates per step (row by row), 8 (vector lanes)
def test_kmeans_plusplus(benchmark, k):
    X = data(20_000, 64)
    benchmark.pedantic(init_centers, args=(X, k, "k-means++", np.random.default_rng(0)), rounds=3)
    _rate(benchmark, "points/s", len(X))
