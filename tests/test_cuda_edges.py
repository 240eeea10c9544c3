"""Edges of the CUDA backend's host code that a mutation run found untested (in Numba's
CUDA simulator): launch shapes at their limits, device budgets under one block of
threads, resumed runs, the farthest rows and the labels a run hands back, the rows
selected (int64), sample weights refused, and the dedup's device-memory check at its
limit and its sweeps in blocks of two queries. Each test compares with the CPU backend,
plain NumPy or a hand-worked value."""

import numpy as np
import pytest

import hkmeans
from hkmeans import KMeans
from hkmeans.backends import cuda_dedup
from hkmeans.backends.cpu import CPUBackend

from . import naive
from .test_cuda import _backend, _data, _host_gemm, dedup_module, small_launch  # noqa: F401  (a fixture)
from .test_dedup import check_rule

# run by test_cuda_simulator_suite in the simulator's process; deselected elsewhere (conftest)
pytestmark = [pytest.mark.cudasim, pytest.mark.usefixtures("small_launch")]


def _free_memory(monkeypatch, free):
    """The simulator's device reports ``free`` bytes free."""
    from numba.cuda.simulator.cudadrv import devices

    monkeypatch.setattr(
        devices.FakeCUDAContext, "get_memory_info", lambda self: devices._MemoryInfo(free=free, total=free)
    )


def test_launch_shapes_at_their_limits():
    """1024 threads (the most a block has) and tiles of exactly 48 KiB of shared memory
    are accepted; threads not a power of two and tiles of no centres are refused."""
    X = np.zeros((10, 4), np.float64)
    assert _backend(X, threads=1024, gemm=_host_gemm).threads == 1024
    assert _backend(X, threads=256, tile_k=128, tile_d=16).tile_k == 128  # (256 + 128) * 16 * 8 = 49152 bytes
    with pytest.raises(ValueError, match="a power of two up to 1024, got 12"):
        _backend(X, threads=12, gemm=_host_gemm)
    with pytest.raises(ValueError, match="tile_k=-4, tile_d=4"):
        _backend(X, threads=8, tile_k=-4, tile_d=4)


def test_a_budget_under_one_row_streams_blocks_of_one_thread_block():
    """A device budget smaller than a row: the rows are streamed in blocks of the 8
    threads of a CUDA block, and the search is the reference's."""
    X, C = _data(21, 20, 3, 4, np.float64)
    b = _backend(X, device_bytes=8)
    assert not b.resident and b.block_rows == 8
    labels, sqdist = b.assign(C)
    ref_labels, ref_sqdist = naive.assign(X, C)
    np.testing.assert_array_equal(labels, ref_labels)
    np.testing.assert_allclose(sqdist, ref_sqdist, rtol=1e-12)


def test_resumed_run_counts_the_rows_changed_on_its_first_pass():
    """A run resumed from saved labels (a checkpoint) counts, on its first pass, the
    rows that changed from them, as the CPU run does: no changes mean convergence."""
    X, C = _data(23, 30, 3, 4, np.float64)
    labels = naive.assign(X, C)[0]
    saved = labels.copy()
    saved[:5] = (saved[:5] + 1) % 4
    for state, changed in (({"labels": saved}, 5), ({"labels": labels}, 0)):
        got = _backend(X).lloyd_run(np.array([0, 4]), bounds=False, state=state).step(C)
        ref = CPUBackend(X).lloyd_run(np.array([0, 4]), bounds=False, state=state).step(C)
        assert got.changed == ref.changed == changed


def test_farthest_rows_and_finished_labels_are_the_cpu_runs():
    """After a pass: the farthest rows come with their own labels, and the labels a run
    finishes with go through ``order`` (the run's centre ``j`` is ``order[j]``)."""
    X, C = _data(24, 30, 3, 5, np.float64)
    runs = [b.lloyd_run(np.array([0, 5]), bounds=False) for b in (_backend(X), CPUBackend(X))]
    for run in runs:
        run.step(C)
    (rows, labels, w), (ref_rows, ref_labels, ref_w) = (run.farthest(4) for run in runs)
    np.testing.assert_array_equal(rows, ref_rows)
    np.testing.assert_array_equal(labels, ref_labels)
    np.testing.assert_array_equal(w, ref_w)
    assert len(set(ref_labels.tolist())) > 1  # the rows are not all of one cluster
    order = np.array([3, 0, 4, 1, 2])
    got, ref = (run.finish(order) for run in runs)
    np.testing.assert_array_equal(got[0], ref[0])
    np.testing.assert_array_equal(got[0], order[naive.assign(X, C)[0]])
    assert got[2] == pytest.approx(ref[2], rel=1e-12)


def test_selected_rows_are_int64_row_numbers():
    """The rows picked per cluster (by smallest score) are int64 row numbers, as on the
    CPU: row numbers past 2**31 stay whole."""
    labels = np.array([1, 0, 1, 1, 0])
    scores = np.array([3.0, 1.0, 2.0, 0.0, 5.0])
    got = _backend(np.zeros((5, 1))).select(labels, 2, np.array([1, 2]), scores)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, [1, 3, 2])  # cluster 0: row 1; cluster 1: rows 3 (score 0), 2 (score 2)
    none = _backend(np.zeros((5, 1))).select(labels, 2, np.array([0, 0]), scores)
    assert none.dtype == np.int64 and none.shape == (0,)


def test_sample_weights_are_refused_on_the_gpu():
    X, _ = _data(25, 20, 2, 1, np.float64)
    assert _backend(X).weighted(None).X is X
    with pytest.raises(ValueError, match='sample_weight is not supported on device="cuda"'):
        _backend(X).weighted(np.ones(20))
    with pytest.raises(ValueError, match='sample_weight is not supported on device="cuda"'):
        KMeans(2, device="cuda", random_state=0).fit(X, sample_weight=np.full(20, 2.0))


def test_dedup_rows_of_exactly_half_the_free_memory_fit(monkeypatch):
    """The rows may take half the device's free memory, not more; the refusal says how
    much in GiB (a broadcast array: its size without the memory)."""
    X = np.random.default_rng(26).normal(size=(50, 4)).astype(np.float32)
    _free_memory(monkeypatch, 2 * X.nbytes)
    cuda_dedup.check_fits(X)  # no error
    _free_memory(monkeypatch, 2 * X.nbytes - 1)
    with pytest.raises(ValueError, match="keeps the rows on it"):
        cuda_dedup.check_fits(X)
    big = np.broadcast_to(np.float32(0), (1 << 20, 512))  # 2 GiB
    _free_memory(monkeypatch, 3 << 30)
    with pytest.raises(ValueError, match=r": 2\.00 GiB, more than half its 3\.00 GiB free"):
        cuda_dedup.check_fits(big)


def _pool(seed):
    """A few rows on an integer grid or scattered, some copied with a little noise."""
    rng = np.random.default_rng(seed)
    n, d = int(rng.integers(6, 40)), int(rng.integers(1, 4))
    X = rng.integers(-2, 3, (n, d)).astype(np.float64) if rng.random() < 0.5 else rng.normal(size=(n, d))
    X[:, 0] += 3
    for j in rng.integers(0, n, int(rng.integers(0, n // 2 + 1))):
        X[j] = X[rng.integers(n)] + 0.05 * rng.normal(size=d)
    X[np.all(X == 0, axis=1), 0] = 1
    return X


@pytest.mark.parametrize(
    ("seed", "metric", "threshold", "k"), [(266112162, "cosine", 0.98, 2), (669652944, "euclidean", 0.6, 3)]
)
def test_dedup_in_blocks_of_two_queries_is_the_cpus(monkeypatch, seed, metric, threshold, k):
    """Blocks of 2 queries x 3 candidates over 12 and 27 rows in 2 and 3 clusters with
    border rows: rows a first sweep leaves open, imports grouped by source cluster;
    every field, the pairs compared included, is the CPU's."""
    monkeypatch.setattr(dedup_module, "QUERY_ROWS", 2)
    monkeypatch.setattr(dedup_module, "CANDIDATE_ROWS", 3)
    X = _pool(seed)
    kw = dict(metric=metric, keep="first", n_clusters=k, random_state=0)
    gpu = hkmeans.dedup(X, threshold, device="cuda", **kw)
    cpu = hkmeans.dedup(X, threshold, **kw)
    check_rule(X, threshold, metric, gpu)
    assert 0 < len(cpu.removed) < len(X)
    for name in ("kept", "duplicate_of", "similarity", "order", "labels", "n_compared"):
        np.testing.assert_array_equal(getattr(gpu, name), getattr(cpu, name), err_msg=name)
