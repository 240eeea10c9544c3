"""The CUDA kernels and backend, in Numba's CUDA simulator, against the plain-NumPy
references in ``naive.py`` and the CPU backend.

The simulator must be switched on before numba is first imported, so the tests marked
``cudasim`` run in a process of their own that :func:`test_cuda_simulator_suite`
starts (with ``NUMBA_ENABLE_CUDASIM=1``); the rest of the suite keeps numba's CPU
target. Inputs and thread blocks are tiny: the simulator runs every thread in Python.
"""

import collections
import importlib.util
import math
import os
import subprocess
import sys
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hkmeans
from hkmeans import HierarchicalKMeans, KMeans
from hkmeans.backends import cuda as cuda_backend
from hkmeans.backends.cpu import CPUBackend
from hkmeans.backends.in_memory import group_by_label
from hkmeans.dedup import KEEP

from . import naive
from .conftest import simulate_briskly
from .test_dedup import check_rule, pools

dedup_module = sys.modules["hkmeans.backends.dedup"]

IN_SIMULATOR = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
HAS_NUMBA_CUDA = importlib.util.find_spec("numba_cuda") is not None
cudasim = pytest.mark.cudasim
DTYPES = [np.float32, np.float64]


@pytest.mark.slow(seconds=60)
def test_cuda_simulator_suite():
    """Runs the ``cudasim`` tests of this file and of ``test_cuda_edges.py`` in a process
    with the simulator on (the suite starts it first, and the other worker runs the
    rest meanwhile)."""
    if IN_SIMULATOR:
        pytest.skip("already in the simulator process")
    if not HAS_NUMBA_CUDA:
        pytest.skip("numba-cuda is not installed (pip install 'hkmeans[cuda]'): the CUDA tests did not run")
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    root = Path(__file__).resolve().parents[1]
    simulated = ["-m", "cudasim", "-n", "0", "-p", "no:cacheprovider"]  # in this one process
    files = [str(Path(__file__)), str(Path(__file__).with_name("test_cuda_edges.py"))]
    cmd = [sys.executable, "-m", "pytest", "-q", *simulated, *files]
    proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    assert " passed" in proc.stdout and "skipped" not in proc.stdout.splitlines()[-1], proc.stdout[-3000:]


def test_missing_numba_cuda_is_one_clear_error(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "numba_cuda" else real(name, *a))
    X = np.random.default_rng(0).normal(size=(40, 3))
    for est in (HierarchicalKMeans(4, device="cuda"), KMeans(4, device="cuda")):
        with pytest.raises(RuntimeError, match=r"numba-cuda.*pip install 'hkmeans\[cuda\]'"):
            est.fit(X)


def test_unknown_device_is_rejected():
    with pytest.raises(ValueError, match="device must be one of"):
        KMeans(2, device="tpu").fit(np.zeros((4, 2)))


def test_importing_hkmeans_does_not_import_the_cuda_target():
    code = "import sys, hkmeans, hkmeans.backends; print(any(m.startswith(('numba.cuda', 'numba_cuda.numba')) for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


# --- in the simulator ---------------------------------------------------------------


@pytest.fixture
def small_launch(monkeypatch):
    """Blocks of 8 threads, tiles of 4 centres x 4 features, chunks of 8 rows, pieces
    of the sums of about sqrt(n) positions, scans by tiles of 4: small enough that
    every test crosses block, tile, chunk and piece edges."""
    monkeypatch.setattr(cuda_backend, "THREADS", 8)
    monkeypatch.setattr(cuda_backend, "TILE_K", 4)
    monkeypatch.setattr(cuda_backend, "TILE_D", 4)
    monkeypatch.setattr(cuda_backend, "GROUP_ROWS", 8)
    monkeypatch.setattr(cuda_backend, "SUM_ROWS", 4)
    monkeypatch.setattr(cuda_backend, "SCAN_TILE", 4)


def _host_gemm(A, B, out):
    """The GEMM path's ``out = A @ B.T`` on the host: a stand-in for cuBLAS."""
    out.copy_to_device(A.copy_to_host() @ B.copy_to_host().T)


def _backend(X, **kw):
    return cuda_backend.CUDABackend(X, gemm=kw.pop("gemm", None), **kw)


def _data(seed, n, d, k, dtype):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)).astype(dtype), rng.normal(size=(k, d)).astype(dtype)


@cudasim
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("gemm", [None, _host_gemm], ids=["tiled", "gemm"])
@pytest.mark.parametrize("d", [3, 9])
def test_assign_matches_reference_and_cpu(small_launch, dtype, gemm, d):
    X, C = _data(d, 37, d, 11, dtype)  # 37 rows, 11 centres: partial blocks and tiles
    labels, sqdist = _backend(X, gemm=gemm).assign(C)
    ref_labels, ref_sqdist = naive.assign(X, C)
    assert labels.dtype == np.int64 and sqdist.dtype == np.float64
    np.testing.assert_array_equal(labels, ref_labels)
    np.testing.assert_array_equal(labels, CPUBackend(X).assign(C)[0])
    np.testing.assert_allclose(sqdist, ref_sqdist, rtol=1e-12)


@cudasim
def test_launch_shapes_a_card_cannot_run_are_refused():
    """More threads than a block may have, or tiles whose shared memory exceeds a
    block's 48 KiB, are refused before anything runs (the simulator would run them)."""
    X = np.zeros((10, 4), np.float64)
    with pytest.raises(ValueError, match="a power of two up to 1024, got 2048"):
        _backend(X, threads=2048)
    with pytest.raises(ValueError, match="69632 bytes of shared memory per block"):
        _backend(X, threads=512, tile_k=32, tile_d=16)
    assert _backend(X, threads=512, tile_k=32, tile_d=16, gemm=_host_gemm).threads == 512  # no tiles: no limit
    assert _backend(X.astype(np.float32), threads=512, tile_k=32, tile_d=16).threads == 512


@cudasim
def test_normalized_rows_take_the_place_of_the_rows_on_the_device(small_launch, monkeypatch):
    """Cosine rows (a second backend over the normalised rows) are kept on the device
    when the rows were, in their place: one copy at a time (the callers keep the
    first backend), and the first still searches its rows, from the host."""
    from numba.cuda.simulator.cudadrv import devices

    X = np.random.default_rng(0).normal(size=(300, 25)).astype(np.float32)
    free = X.nbytes * 8 // 3  # room for the rows (under half of it), not for both copies
    monkeypatch.setattr(
        devices.FakeCUDAContext, "get_memory_info", lambda self: devices._MemoryInfo(free=free, total=free)
    )
    first = _backend(X)
    assert first.resident
    free -= X.nbytes  # the rows' copy
    second = first.normalized()
    assert second.resident and second._dX is not None
    assert not first.resident and first._dX is None
    np.testing.assert_allclose(np.linalg.norm(second.X, axis=1), 1, rtol=1e-6)
    C = X[:7].copy()
    np.testing.assert_array_equal(first.assign(C)[0], CPUBackend(X).assign(C)[0])


@cudasim
def test_gpu_benchmark_runs_through_in_the_simulator(capsys, monkeypatch, small_launch):
    """``bench/gpu.py`` on tiny sizes (its sections 1-3; section 4 is the fit tested
    above) and small blocks: what a first GPU run would do, minus the card's speed and
    memory."""
    import runpy

    script = Path(__file__).parents[1] / "bench" / "gpu.py"
    monkeypatch.setattr(sys, "argv", [str(script), "--n", "40", "--d", "5", "--k", "3", "--sections", "123"])
    runpy.run_path(str(script), run_name="__main__")
    out = capsys.readouterr().out
    for line in ("1. assignment, 40 x 5", "tiled Numba kernel", "counting sort", "k-means++ draw", "3. one Lloyd"):
        assert line in out
    assert "faiss-gpu:" in out


def _uneven_labels(seed, n, k):
    """Labels of ``n`` rows in ``k`` clusters: cluster 1 takes about two thirds of the
    rows (many blocks, chunks and pieces), 0 and ``k - 1`` none, the rest a few each,
    rows of a cluster spread over the whole range."""
    rng = np.random.default_rng(seed)
    labels = np.where(rng.random(n) < 0.65, 1, rng.integers(2, k - 1, n))
    labels[rng.choice(n, 3, replace=False)] = k - 2
    return labels


@cudasim
@pytest.mark.parametrize("n", [45, 61])
def test_group_is_the_cpu_counting_sort(small_launch, monkeypatch, n):
    """Chunks of 16 rows (two tiles of the 8 threads) and of 8; one cluster of most
    rows, two empty; 45 and 61 rows, not a multiple of the block."""
    monkeypatch.setattr(cuda_backend, "GROUP_ROWS", 16 if n == 61 else 8)
    labels = _uneven_labels(n, n, 7)
    b = _backend(np.zeros((n, 1)))
    offsets, order, counts = b._group(b.k.cuda.to_device(labels), 7)
    ref_offsets, ref_order = group_by_label(labels, 7)
    np.testing.assert_array_equal(offsets.copy_to_host(), ref_offsets)
    np.testing.assert_array_equal(order.copy_to_host(), ref_order)
    np.testing.assert_array_equal(counts, np.diff(ref_offsets))


def _pieced_sums(X, labels, k, block_rows=64, min_piece=4):
    """The clusters' float64 sums in the order of the CUDA backend: blocks of
    ``block_rows`` rows (all rows of a block of threads' multiple), each block's CSR
    positions cut into pieces of ``max(min_piece, isqrt(rows))``, a cluster's members
    in each piece added in order, then its pieces in order, then the blocks in order."""
    sums = np.zeros((k, X.shape[1]))
    for a0 in range(0, X.shape[0], block_rows):
        Xb, lb = X[a0 : a0 + block_rows], labels[a0 : a0 + block_rows]
        piece = max(min_piece, math.isqrt(lb.shape[0]))
        offsets, order = group_by_label(lb, k)
        for c in np.flatnonzero(np.diff(offsets)):
            lo, hi = int(offsets[c]), int(offsets[c + 1])
            cuts = [lo, *range((lo // piece + 1) * piece, hi, piece), hi]
            for f in range(X.shape[1]):
                parts = []
                for a, e in zip(cuts[:-1], cuts[1:]):
                    s = 0.0
                    for p in range(a, e):
                        s += float(Xb[order[p], f])
                    parts.append(s)
                total = parts[0]
                for part in parts[1:]:
                    total += part
                sums[c, f] += total
    return sums


@cudasim
@pytest.mark.parametrize("dtype", DTYPES)
def test_cluster_sums_are_the_segmented_reduction(small_launch, dtype):
    """70 rows, in blocks of 64 and 6 rows (pieces of 8 and 4 positions), one cluster
    of about 45 members (six pieces, some wholly inside it), two empty clusters: the
    sums are those of the same order in NumPy bit for bit (and so the same run after
    run), within rounding of the CPU's row-order sums."""
    X, _ = _data(2, 70, 5, 1, dtype)
    X *= np.exp(np.random.default_rng(2).normal(scale=4, size=(70, 1))).astype(dtype)  # rounding shows
    labels = _uneven_labels(2, 70, 7)
    b = _backend(X)
    sums, counts = b.cluster_sums(labels, 7)
    ref_sums, ref_counts = CPUBackend(X).cluster_sums(labels, 7)
    np.testing.assert_array_equal(counts, ref_counts)
    np.testing.assert_array_equal(sums, _pieced_sums(X, labels, 7))
    np.testing.assert_allclose(sums, ref_sums, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(sums, naive.cluster_sums(X, labels, 7)[0], rtol=1e-12, atol=1e-12)
    if dtype == np.float64:  # the test tells the orders apart: the big cluster's sums differ
        assert not np.array_equal(sums[1], ref_sums[1])
    again, _ = b.cluster_sums(labels, 7)
    np.testing.assert_array_equal(again, sums)


@cudasim
def test_inertia_is_the_segmented_sum_of_the_distances(small_launch):
    X, C = _data(9, 70, 3, 7, np.float64)
    labels = _uneven_labels(9, 70, 7)
    b = _backend(X)
    sqdist = ((X - C[labels]) ** 2).sum(1)
    d_labels, d_sqdist = b.k.cuda.to_device(labels), b.k.cuda.to_device(sqdist)
    _, _, inertia = b._sums(d_labels, 7, d_sqdist)
    assert inertia == np.sum(_pieced_sums(sqdist[:, None], labels, 7))
    assert inertia == pytest.approx(sqdist.sum(), rel=1e-12)


@cudasim
@pytest.mark.parametrize("dtype", [np.int64, np.float64])
@pytest.mark.parametrize("inclusive", [True, False])
def test_scan_by_tiles_is_the_cumulative_sum(small_launch, dtype, inclusive):
    """101 rows by tiles of 4: three levels of tile sums; 3 columns."""
    rng = np.random.default_rng(10)
    a = rng.integers(0, 9, (101, 3)).astype(dtype)
    if dtype == np.float64:
        a *= rng.random((101, 3))
    b = _backend(np.zeros((4, 1)))
    d = b.k.cuda.to_device(a)
    out = b._empty(a.shape, dtype)
    b._scan(d, out, inclusive)
    ref = np.cumsum(a, axis=0) - (0 if inclusive else a)
    got = out.copy_to_host()
    if dtype == np.int64:
        np.testing.assert_array_equal(got, ref)
    else:
        np.testing.assert_allclose(got, ref, rtol=1e-13)  # not always monotone: see the draw
    np.testing.assert_allclose(b._column_sums(d).copy_to_host()[0], a.sum(0), rtol=1e-13)
    b._scan(d, d, inclusive)  # in place
    np.testing.assert_array_equal(d.copy_to_host(), got)


def _gpu_draw(b, vals, chunk, u, slack):
    """The draw kernel on values ``vals`` taken in row order, blocks of ``chunk``."""
    cuda, k = b.k.cuda, b.k.seeding
    n = vals.shape[0]
    order = cuda.to_device(np.arange(n))
    closest, w = cuda.to_device(vals), cuda.to_device(np.ones(n))
    nb = -(-n // chunk)
    bsums = b._empty((nb, 1), np.float64)
    k.draw_sums[b._grid(nb)](order, closest, w, chunk, bsums)
    bcum = b._empty((nb, 1), np.float64)
    b._scan(bsums, bcum, True)
    out = b._empty(u.shape[0], np.int64)
    k.draw[b._grid(u.shape[0])](bsums, bcum, order, closest, w, chunk, cuda.to_device(u), slack, out)
    return out.copy_to_host()


def _cpu_draw(vals, chunk, u):
    """The CPU's draw over the same values and blocks (block sums in row order)."""
    from hkmeans._kernels.cpu.seeding.draws import draw

    n = vals.shape[0]
    sums = np.array([sum(vals[a : a + chunk].tolist(), 0.0) for a in range(0, n, chunk)])
    return draw(np.arange(n), vals, np.ones(n), sums, chunk, u)


@cudasim
def test_draw_falls_back_to_the_running_sum_where_the_scan_rounds_otherwise(small_launch):
    """Block sums ``1, e, ..., e`` (``e = 2^-53``): the running sum stays at 1, the scan
    by tiles of 4 ends at ``1 + 2^-51``; at ``u = 1 - 2^-53`` the CPU draws row 0 and the
    scan alone a row of value ``e``. The draw notices the target is within rounding and
    redoes it with the running sum."""
    vals = np.full(9, 2.0**-53)
    vals[0] = 1.0
    u = np.array([1 - 2.0**-53, 0.5, 0.0])
    b = _backend(np.zeros((4, 1)))
    cpu = _cpu_draw(vals, 1, u)
    assert cpu[0] == 0
    assert _gpu_draw(b, vals, 1, u, 0.0)[0] != 0  # the scan alone
    np.testing.assert_array_equal(_gpu_draw(b, vals, 1, u, cuda_backend.DRAW_SLACK), cpu)


@cudasim
@pytest.mark.parametrize("slack", [0.0, 2.0, 1e300])
def test_draw_is_the_cpu_draw(small_launch, slack):
    """130 rows in blocks of 3 (44 blocks: three levels of the scan), zeros among
    them: the scan alone, the usual slack, and the running sum every time."""
    rng = np.random.default_rng(11)
    vals = rng.random(130) * (rng.random(130) < 0.7)
    u = np.concatenate([rng.random(20), [0.0]])
    b = _backend(np.zeros((4, 1)))
    np.testing.assert_array_equal(_gpu_draw(b, vals, 3, u, slack), _cpu_draw(vals, 3, u))


@cudasim
@pytest.mark.parametrize("n", [40, 61])
def test_pick_members_matches_reference(small_launch, n):
    """Many ties among the scores; a cluster of most rows (more than a block), two
    empty; whole copies, nothing, and all but one taken; 40 and 61 rows."""
    rng = np.random.default_rng(3)
    labels = _uneven_labels(n, n, 7)
    scores = rng.integers(0, 4, n).astype(np.float64)
    counts = np.bincount(labels, minlength=7)
    take = np.minimum(counts, 3)
    take[1] = counts[1] - 1
    take[labels[0]] = 2 * counts[labels[0]] + 1  # whole copies, then the smallest
    take[labels[1] if labels[1] != 1 else labels[2]] = 0
    got = _backend(np.zeros((n, 1))).select(labels, 7, take, scores)
    np.testing.assert_array_equal(got, naive.pick_members(labels, 7, scores, take))
    np.testing.assert_array_equal(got, CPUBackend(np.zeros((n, 1))).select(labels, 7, take, scores))


@cudasim
@pytest.mark.parametrize("n", [1, 2, 37, 64])
def test_rank_is_the_sort_by_cluster_score_row(small_launch, n):
    """The bitonic sort over lengths that are and are not powers of two, with ties,
    NaN scores (last in their cluster, as NumPy sorts them) and -0.0 == 0.0."""
    rng = np.random.default_rng(n)
    labels = rng.integers(0, 4, n)
    scores = rng.choice([0.0, -0.0, 1.0, 2.5, np.nan, -3.0], n)
    b = _backend(np.zeros((n, 1)))
    got = b._rank(b.k.cuda.to_device(labels), b.k.cuda.to_device(scores)).copy_to_host()
    np.testing.assert_array_equal(got, np.lexsort((np.arange(n), scores, labels)))


@cudasim
@pytest.mark.parametrize("dtype", DTYPES)
def test_kmeans_plusplus_matches_reference(small_launch, dtype):
    X, _ = _data(4, 45, 3, 1, dtype)
    rand = np.random.default_rng(4).random((6, 3))
    order = np.random.default_rng(5).permutation(45)
    got = _backend(X).kmeans_plusplus(order, 5, rand, np.ones(45))
    np.testing.assert_array_equal(got, naive.kmeans_plusplus(X, 5, rand, order))
    np.testing.assert_array_equal(got, CPUBackend(X).kmeans_plusplus(order, 5, rand, np.ones(45)))


@cudasim
def test_weighted_kmeans_plusplus_is_seeding_with_repeated_rows(small_launch):
    rng = np.random.default_rng(5)
    X = rng.normal(size=(30, 2))
    w = rng.integers(1, 4, 30).astype(float)
    rand = rng.random((5, 3))
    order = rng.permutation(30)
    rows = np.repeat(np.arange(30), w.astype(int))
    rep_order = np.argsort(np.argsort(order)[rows], kind="stable")
    ref = naive.kmeans_plusplus(X[rows], int(np.searchsorted(rows, 7)), rand, rep_order)
    np.testing.assert_array_equal(_backend(X).kmeans_plusplus(order, 7, rand, w), rows[ref])


@cudasim
def test_streamed_blocks_give_the_resident_results(small_launch):
    """A device budget of a few rows: the data stay on the host and go up in blocks of
    16 rows each pass; the results are those of the resident copy."""
    X, C = _data(6, 45, 3, 5, np.float32)
    resident, streamed = _backend(X), _backend(X, device_bytes=64, block_rows=16)
    assert resident.resident and not streamed.resident and streamed.block_rows == 16
    labels, sqdist = streamed.assign(C)
    np.testing.assert_array_equal(labels, resident.assign(C)[0])
    sums, counts = streamed.cluster_sums(labels, 5)
    ref_sums, ref_counts = resident.cluster_sums(labels, 5)
    np.testing.assert_allclose(sums, ref_sums, rtol=1e-12)
    np.testing.assert_array_equal(counts, ref_counts)
    rand = np.random.default_rng(6).random((4, 3))
    order = np.arange(45)[::-1].copy()
    np.testing.assert_array_equal(
        streamed.kmeans_plusplus(order, 3, rand, np.ones(45)), resident.kmeans_plusplus(order, 3, rand, np.ones(45))
    )


@cudasim
def test_routed_assign_matches_cpu(small_launch):
    X, _ = _data(7, 40, 3, 1, np.float64)
    parents = np.array([[-1.0, 0, 0], [1.0, 0, 0]])
    children = np.random.default_rng(7).normal(size=(5, 3))
    child_offsets = np.array([0, 2, 5])
    got = _backend(X).routed_assign(parents, child_offsets, children)
    ref = CPUBackend(X).routed_assign(parents, child_offsets, children)
    np.testing.assert_array_equal(got[0], ref[0])
    np.testing.assert_allclose(got[1], ref[1], rtol=1e-12)


@cudasim
def test_lloyd_steps_match_the_cpu_and_keep_state_on_the_device(small_launch):
    X, C = _data(8, 40, 3, 4, np.float64)
    runs = [b.lloyd_run(np.array([0, 4]), bounds=False) for b in (_backend(X), CPUBackend(X))]
    for first in (True, False):
        got, ref = (run.step(C) for run in runs)
        np.testing.assert_allclose(got.sums, ref.sums, rtol=1e-13)  # pieces of 6: other rounding
        np.testing.assert_array_equal(got.counts, ref.counts)
        assert got.inertia == pytest.approx(ref.inertia, rel=1e-12)
        assert got.changed == ref.changed and (got.changed is None) == first
        C = ref.sums / ref.counts[:, None]
    state = runs[0].state()
    assert not isinstance(state["labels"], np.ndarray)  # read from the device only when used
    np.testing.assert_array_equal(np.asarray(state["labels"]), runs[1].labels)


def _blobs(seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.uniform(-20, 20, size=(6, 3))
    return (centres[rng.integers(0, 6, 90)] + rng.normal(scale=0.3, size=(90, 3))).astype(np.float32)


@cudasim
def test_hierarchical_fit_on_cuda_equals_the_cpu_fit_and_repeats(small_launch):
    X = _blobs()
    params = dict(n_clusters=(6, 2), n_resamples=1, max_iter=10, random_state=0)
    cpu = HierarchicalKMeans(**params).fit(X)
    fits = [HierarchicalKMeans(**params, device="cuda").fit(X) for _ in range(2)]
    for lv_cpu, lv_gpu in zip(cpu.levels_, fits[0].levels_):
        np.testing.assert_array_equal(lv_gpu.labels, lv_cpu.labels)
        np.testing.assert_allclose(lv_gpu.centroids, lv_cpu.centroids, rtol=1e-5)
    for lv_a, lv_b in zip(fits[0].levels_, fits[1].levels_):  # the same seed, the same result
        np.testing.assert_array_equal(lv_a.centroids, lv_b.centroids)
        np.testing.assert_array_equal(lv_a.sqdist, lv_b.sqdist)


@cudasim
def test_kmeans_on_cuda_equals_the_cpu_fit(small_launch):
    X = _blobs(1)
    cpu = KMeans(6, random_state=0).fit(X)
    gpu = KMeans(6, random_state=0, device="cuda").fit(X)
    np.testing.assert_array_equal(gpu.labels_, cpu.labels_)
    assert gpu.inertia_ == pytest.approx(cpu.inertia_, rel=1e-5)


@cudasim
def test_no_visible_gpu_is_one_clear_error(monkeypatch):
    from hkmeans._kernels.cuda._common import cuda

    monkeypatch.setattr(cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="no CUDA GPU is visible"):
        HierarchicalKMeans(4, device="cuda").fit(_blobs())


@cudasim
def test_dask_chunks_on_cuda_equal_the_dask_cpu_fit_and_stay_on_the_device(small_launch):
    """Level 0 on Dask with each chunk's kernels on the GPU (the local synchronous
    scheduler here; one GPU per worker on a cluster) gives the fit on the workers' cores."""
    dask = pytest.importorskip("dask")
    import dask.array as da

    from hkmeans.backends.dask import tasks as dask_tasks

    X = da.from_array(_blobs(2), chunks=(30, 3))  # three chunks
    params = dict(n_clusters=(6, 2), n_resamples=1, max_iter=10, init="random", random_state=0, backend="dask")
    with dask.config.set(scheduler="synchronous"):
        cpu = HierarchicalKMeans(**params).fit(X)
        dask_tasks.ON_DEVICE.clear()
        gpu = HierarchicalKMeans(**params, device="cuda").fit(X)
        assert {key[1] for key in dask_tasks.ON_DEVICE} == {0, 1, 2}  # each chunk copied once, kept
        for lv_cpu, lv_gpu in zip(cpu.levels_, gpu.levels_):
            np.testing.assert_array_equal(np.asarray(lv_gpu.labels), np.asarray(lv_cpu.labels))
            np.testing.assert_allclose(lv_gpu.centroids, lv_cpu.centroids, rtol=1e-5)
        np.testing.assert_array_equal(gpu.sample(40, random_state=1), cpu.sample(40, random_state=1))
        np.testing.assert_array_equal(gpu.predict(X).compute(), cpu.predict(X).compute())


@cudasim
def test_dask_workers_each_run_cuda_kernels(small_launch):
    """Two worker processes (each in the simulator, as a GPU each): the result is the
    one-process result."""
    distributed = pytest.importorskip("distributed")
    import dask
    import dask.array as da

    X = da.from_array(_blobs(3), chunks=(30, 3))
    params = dict(
        n_clusters=(6, 2), n_resamples=1, max_iter=5, init="random", random_state=0, backend="dask", device="cuda"
    )
    with dask.config.set(scheduler="synchronous"):
        alone = HierarchicalKMeans(**params).fit(X)
    env = {"NUMBA_ENABLE_CUDASIM": "1", "NUMBA_NUM_THREADS": "1"}
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None, env=env
        ) as c,
        distributed.Client(c) as client,
    ):
        # the workers run the kernels with the launch sizes of this test
        client.run(
            lambda: [
                setattr(cuda_backend, k, v)
                for k, v in dict(THREADS=8, TILE_K=4, TILE_D=4, GROUP_ROWS=8, SUM_ROWS=4, SCAN_TILE=4).items()
            ]
        )
        client.run(simulate_briskly)
        m = HierarchicalKMeans(**params, client=client).fit(X)
        for lv_a, lv_m in zip(alone.levels_, m.levels_):
            np.testing.assert_array_equal(lv_m.centroids, lv_a.centroids)
            np.testing.assert_array_equal(np.asarray(client.compute(lv_m.labels, sync=True)), np.asarray(lv_a.labels))


# --- dedup: the block similarities on the GPU ----------------------------------------


@cudasim
@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_dedup_on_cuda_equals_the_rule_over_all_pairs_and_the_cpu(data):
    """Blocks of 4 queries x 8 candidates, so that every sweep crosses block edges."""
    metric = data.draw(st.sampled_from(["cosine", "euclidean"]))
    X, t = data.draw(pools(metric))
    kw = dict(
        metric=metric,
        keep=data.draw(st.sampled_from(KEEP)),
        n_clusters=data.draw(st.integers(1, len(X))),
        random_state=0,
    )
    with (
        mock.patch.multiple(dedup_module, QUERY_ROWS=4, CANDIDATE_ROWS=8),
        mock.patch.object(cuda_backend, "THREADS", 8),
        mock.patch("hkmeans.backends.cuda_dedup.SCALE_ROWS", 3),
    ):
        gpu = hkmeans.dedup(X, t, device="cuda", **kw)
        cpu = hkmeans.dedup(X, t, **kw)
    check_rule(X, t, metric, gpu)
    for name in ("kept", "duplicate_of", "similarity", "order", "labels", "n_compared"):
        np.testing.assert_array_equal(getattr(gpu, name), getattr(cpu, name), err_msg=name)


@cudasim
def test_dedup_of_rows_the_gpu_cannot_hold_is_one_clear_error(monkeypatch):
    """The search keeps every row on the device: rows over half its free memory are
    refused before the clustering starts."""
    from numba.cuda.simulator.cudadrv import devices

    X = np.random.default_rng(0).normal(size=(200, 8)).astype(np.float32)
    free = X.nbytes  # the rows fit, not within half of it
    monkeypatch.setattr(
        devices.FakeCUDAContext, "get_memory_info", lambda self: devices._MemoryInfo(free=free, total=free)
    )
    monkeypatch.setattr(sys.modules["hkmeans.dedup"], "_own_centroids", None)  # not reached
    with pytest.raises(ValueError, match="dedup on the GPU keeps the rows on it: .* use device='cpu'"):
        hkmeans.dedup(X, 0.9, device="cuda")


@cudasim
def test_dedup_on_dask_with_cuda_equals_the_cpu(small_launch, monkeypatch):
    dask = pytest.importorskip("dask")
    import dask.array as da

    from hkmeans import _config

    monkeypatch.setattr(_config, "CHUNK_ROWS", 8)
    monkeypatch.setattr(dedup_module, "QUERY_ROWS", 4)
    rng = np.random.default_rng(7)
    X = rng.normal(size=(60, 5)).astype(np.float32)
    X[30:] = X[:30] + np.float32(0.02) * rng.normal(size=(30, 5)).astype(np.float32)
    cpu = hkmeans.dedup(X, 0.995, n_clusters=6, random_state=0)
    with dask.config.set(scheduler="synchronous"):
        gpu = hkmeans.dedup(da.from_array(X, chunks=(13, 5)), 0.995, n_clusters=6, random_state=0, device="cuda")
    for name in ("kept", "duplicate_of", "similarity", "order", "labels", "n_compared"):
        np.testing.assert_array_equal(getattr(gpu, name), getattr(cpu, name), err_msg=name)
    assert 0 < len(cpu.removed) <= 30


# --- edges: sub-blocks, ties, exact draw targets, budgets, the chunks kept ---------


@cudasim
@pytest.mark.usefixtures("small_launch")
def test_gemm_sub_blocks_write_the_rows_they_searched(monkeypatch):
    """Few rows per GEMM (the dot products of many centres take ``GEMM_BYTES``): a block
    of 32 rows is searched 5 rows at a time, each piece's labels at its own rows."""
    X, C = _data(12, 37, 3, 11, np.float64)
    monkeypatch.setattr(cuda_backend, "GEMM_BYTES", 5 * 11 * 8)
    labels, sqdist = _backend(X, gemm=_host_gemm).assign(C)
    ref_labels, ref_sqdist = naive.assign(X, C)
    np.testing.assert_array_equal(labels, ref_labels)
    np.testing.assert_allclose(sqdist, ref_sqdist, rtol=1e-12)


@cudasim
@pytest.mark.usefixtures("small_launch")
@pytest.mark.parametrize("gemm", [None, _host_gemm], ids=["tiled", "gemm"])
def test_assign_ties_go_to_the_first_centre(gemm):
    """Centres repeated (as when two centres are the same row), within a tile of 4
    centres and across tiles: the first of equals wins, as on the CPU."""
    X, C = _data(13, 21, 5, 7, np.float32)
    C = np.concatenate([C, C[[1, 6, 1, 3]]])  # 7 = 9 = 1, 8 = 6, 10 = 3
    labels, sqdist = _backend(X, gemm=gemm).assign(C)
    ref_labels, ref_sqdist = naive.assign(X, C)
    assert np.isin(ref_labels, [1, 3, 6]).any()  # ties do arise
    np.testing.assert_array_equal(labels, ref_labels)
    np.testing.assert_allclose(sqdist, ref_sqdist, rtol=1e-12)


def _naive_routed(X, parents, child_offsets, children):
    p, _ = naive.assign(X, parents)
    D = naive.sqdist_matrix(X, children)
    lo, hi = child_offsets[p], child_offsets[p + 1]
    labels = np.array([a + np.argmin(D[i, a:e]) for i, (a, e) in enumerate(zip(lo, hi))])
    return labels, D[np.arange(len(X)), labels]


@cudasim
@pytest.mark.usefixtures("small_launch")
@pytest.mark.parametrize("streamed", [False, True], ids=["resident", "streamed"])
def test_routed_assign_over_several_blocks_with_tied_children(streamed):
    """45 rows (blocks of 40 and 5 resident, of 16 streamed): each block's rows are
    routed at their own places; children repeated within a parent's range: the first
    of equals wins."""
    X, _ = _data(14, 45, 3, 1, np.float64)
    kids = np.random.default_rng(14).normal(size=(3, 3))
    parents = np.array([[-1.0, 0, 0], [1.0, 0, 0]])
    children = kids[[0, 1, 0, 2, 2]]
    child_offsets = np.array([0, 3, 5])
    b = _backend(X, device_bytes=64, block_rows=16) if streamed else _backend(X)
    assert b.resident != streamed and b.block_rows == (16 if streamed else 40)
    got = b.routed_assign(parents, child_offsets, children)
    ref = _naive_routed(X, parents, child_offsets, children)
    assert np.isin(ref[0], [0, 3]).any()  # ties do arise
    np.testing.assert_array_equal(got[0], ref[0])
    np.testing.assert_array_equal(got[0], CPUBackend(X).routed_assign(parents, child_offsets, children)[0])
    np.testing.assert_allclose(got[1], ref[1], rtol=1e-12)


@cudasim
@pytest.mark.usefixtures("small_launch")
def test_lloyd_rows_changed_are_counted_afresh_each_pass():
    """Four passes: each pass's count of changed rows is that pass's alone."""
    X, C = _data(15, 40, 3, 4, np.float64)
    runs = [b.lloyd_run(np.array([0, 4]), bounds=False) for b in (_backend(X), CPUBackend(X))]
    seen = []
    for _ in range(4):
        got, ref = (run.step(C) for run in runs)
        assert got.changed == ref.changed
        np.testing.assert_array_equal(got.counts, ref.counts)
        seen.append(ref.changed)
        C = ref.sums / ref.counts[:, None]
    assert seen[0] is None and seen[1] > 0  # a later pass then counts on top of it if not reset


@cudasim
@pytest.mark.usefixtures("small_launch")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_streamed_blocks_fit_the_device_budget(dtype):
    """By default a streamed block holds what ``device_bytes`` holds, in bytes of rows."""
    X = np.zeros((200, 5), dtype)
    budget = 40 * X.shape[1] * X.itemsize  # 40 rows
    b = _backend(X, device_bytes=budget)
    assert not b.resident
    assert b.block_rows * X.shape[1] * X.itemsize <= budget
    assert b.block_rows == 40


@cudasim
@pytest.mark.usefixtures("small_launch")
@pytest.mark.parametrize("chunk", [1, 3])
@pytest.mark.parametrize("slack", [0.0, cuda_backend.DRAW_SLACK])
def test_draw_target_on_a_cumulative_sum_takes_the_next_row(chunk, slack):
    """Equal values: the targets ``u * total`` land exactly on cumulative sums, of blocks
    and of rows; the row drawn is the first whose sum passes the target (the CPU's)."""
    vals = np.ones(8)
    u = np.array([0.25, 0.5, 0.75, 0.125, 0.0])
    b = _backend(np.zeros((4, 1)))
    np.testing.assert_array_equal(_gpu_draw(b, vals, chunk, u, slack), _cpu_draw(vals, chunk, u))


@cudasim
@pytest.mark.usefixtures("small_launch")
def test_draw_falls_back_where_the_target_is_just_past_the_previous_block():
    """Block sums ``1, 0, 0, 0, 3e, 3e, 3e, 3e, 0, 0, 0, 0, 1024`` (``e = 2^-53``, tiles
    of 4): the running sum rounds up to ``1 + 16e`` by block 7, the scan's tiles add to
    ``1 + 12e`` before block 12; both totals round to 1025. A target of ``1 + 14e`` is
    past the scan's sum before block 12 by a hair (and far below block 12's own): the
    CPU draws row 7, the scan alone row 12; the draw sees the lower edge is within
    rounding and redoes it with the running sum."""
    e = 2.0**-53
    vals = np.array([1, 0, 0, 0, 3 * e, 3 * e, 3 * e, 3 * e, 0, 0, 0, 0, 1024])
    u = np.array([(1 + 14 * e) / 1025])
    b = _backend(np.zeros((4, 1)))
    cpu = _cpu_draw(vals, 1, u)
    assert cpu[0] == 7
    assert _gpu_draw(b, vals, 1, u, 0.0)[0] == 12  # the scan alone
    np.testing.assert_array_equal(_gpu_draw(b, vals, 1, u, cuda_backend.DRAW_SLACK), cpu)


@cudasim
@pytest.mark.usefixtures("small_launch")
def test_weighted_trial_potentials_read_each_rows_own_weight():
    """Weighted k-means++ over 30 rows (blocks of 24 and 6): the last rows weigh much
    more than the first, so a trial's potential shows whose weight each row took."""
    rng = np.random.default_rng(16)
    X = rng.normal(size=(30, 2))
    w = np.where(np.arange(30) >= 24, 50.0, 1.0)
    order = rng.permutation(30)
    for seed in range(3):
        rand = np.random.default_rng(seed).random((5, 3))
        got = _backend(X).kmeans_plusplus(order, 2, rand, w)
        np.testing.assert_array_equal(got, CPUBackend(X).kmeans_plusplus(order, 2, rand, w))


@cudasim
def test_chunks_on_the_device_are_kept_by_array_and_chunk(monkeypatch):
    """The chunks a worker keeps on its GPU are found by array name and chunk index
    both: chunk 0 of another array is not chunk 0 of this one."""
    pytest.importorskip("dask")
    from hkmeans.backends.dask import tasks

    monkeypatch.setattr(tasks, "ON_DEVICE", collections.OrderedDict())
    rng = np.random.default_rng(17)
    x0, x1, y0 = (rng.normal(size=(6, 3)).astype(np.float32) for _ in range(3))
    a0 = tasks.chunk_backend(x0, "cuda", ("x", 0))
    a1 = tasks.chunk_backend(x1, "cuda", ("x", 1))
    b0 = tasks.chunk_backend(y0, "cuda", ("y", 0))
    assert a0.resident and len(tasks.ON_DEVICE) == 3
    assert tasks.chunk_backend(x0, "cuda", ("x", 0)) is a0  # kept for the next pass
    for data, x in ((a0, x0), (a1, x1), (b0, y0)):
        np.testing.assert_array_equal(data.X, x)
        np.testing.assert_array_equal(data.assign(x[:2])[0][:2], [0, 1])
