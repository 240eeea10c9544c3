"""Every backend keeps the declared contract (hkmeans.backends.protocol)."""

import importlib.util

import numpy as np
import pytest
from scipy import sparse

from hkmeans.backends import CPUBackend, SparseBackend, resolve
from hkmeans.backends.cuda import CUDABackend
from hkmeans.backends.protocol import Backend, LloydRunProtocol


def members(protocol):
    return sorted({name for name in vars(protocol) if not name.startswith("_")} | set(protocol.__annotations__))


def backend_classes():
    classes = [CPUBackend, SparseBackend, CUDABackend]
    if importlib.util.find_spec("distributed") is not None:
        from hkmeans.backends.dask import DaskBackend

        classes.append(DaskBackend)
    return classes


@pytest.mark.parametrize("cls", backend_classes(), ids=lambda c: c.__name__)
def test_every_backend_class_has_every_operation(cls):
    missing = [name for name in members(Backend) if name != "weights" and not hasattr(cls, name)]
    assert missing == [], f"{cls.__name__} lacks {missing}"


def test_in_process_backends_are_backends_and_their_runs_are_runs():
    X = np.random.default_rng(0).normal(size=(50, 3))
    for data in (X, sparse.csr_matrix(X)):
        backend = resolve(data)
        assert isinstance(backend, Backend)
        run = backend.lloyd_run(np.array([0, 2]), bounds=True)
        assert isinstance(run, LloydRunProtocol)
        run.search(X[:2].copy())
        labels, sqdist, inertia = run.finish(np.arange(2))
        assert labels.shape == (50,) and inertia == pytest.approx(sqdist.sum())


def per_row_kinds():
    from hkmeans.backends.in_memory import IN_MEMORY

    kinds = [IN_MEMORY]
    if importlib.util.find_spec("distributed") is not None:
        from hkmeans.backends.dask import LAZY

        kinds.append(LAZY)
    return kinds


@pytest.mark.parametrize("arrays", per_row_kinds(), ids=lambda a: type(a).__name__)
def test_every_per_row_kind_has_every_operation(arrays):
    from hkmeans.backends.protocol import PerRowArrays

    assert isinstance(arrays, PerRowArrays)
    missing = [name for name in members(PerRowArrays) if not hasattr(arrays, name)]
    assert missing == []


def test_arrays_of_picks_the_kind_and_both_kinds_agree():
    da = pytest.importorskip("dask.array")
    import dask

    from hkmeans.backends import arrays_of

    rng = np.random.default_rng(1)
    labels = rng.integers(0, 5, 103)
    scores = rng.random(103)
    table = np.arange(5) * 10
    lazy_labels = da.from_array(labels, chunks=20)
    memory, lazy = arrays_of(labels), arrays_of(lazy_labels)
    assert not memory.lazy and lazy.lazy
    sizes = memory.counts(labels, 5)
    with dask.config.set(scheduler="synchronous"):
        np.testing.assert_array_equal(lazy.counts(lazy_labels, 5), sizes)
        np.testing.assert_array_equal(lazy.lookup(table, lazy_labels).compute(), memory.lookup(table, labels))
    for take in (np.array([3, 0, 2, 7, 1]), np.array([3, 0, 50, 7, 1])):  # 50: whole copies of a cluster, and some
        with dask.config.set(scheduler="synchronous"):
            got = lazy.pick(lazy_labels, 5, take, da.from_array(scores, chunks=20), sizes, None)
        want = memory.pick(labels, 5, take, scores, sizes, lambda: memory.members(labels, 5))
        np.testing.assert_array_equal(got, want)
        assert np.all(np.diff(want) >= 0) and np.array_equal(np.bincount(labels[want], minlength=5), take)


READ_ONLY_RUN = """
import sys
import numpy as np
from numba import types
import hkmeans
from hkmeans._kernels.cpu import _common, assign, dedup, groups
from hkmeans._kernels.cpu.seeding import boxed, wide

X = np.load(sys.argv[1], mmap_mode="r")
model = hkmeans.HierarchicalKMeans((20, 4), n_resamples=1, random_state=0).fit(X)
hkmeans.dedup(X, 0.9, random_state=0)
kernels = (assign.assign, groups.cluster_sums, boxed.kmeans_plusplus_boxed, wide.kmeans_plusplus_wide,
           dedup.exact_sq_norms, dedup.nearest_and_borders, dedup.sweep, dedup.pair_scores)
used = [k for k in kernels if k.signatures]
read_only = [k.py_func.__name__ for k in used for sig in k.signatures
             for t in sig if isinstance(t, types.Array) and not t.mutable]
print(len(used), read_only)
"""


@pytest.mark.parametrize("d", [2, 12])
def test_read_only_rows_reach_the_kernels_as_writable_ones(tmp_path, d):
    """A memory-mapped file is read-only: the kernels get an alias of it typed writable,
    so they compile one version for both (the alias is checked for equal results)."""
    import subprocess
    import sys

    X = np.random.default_rng(0).normal(size=(500, d))
    np.save(tmp_path / "x.npy", X)
    done = subprocess.run(
        [sys.executable, "-c", READ_ONLY_RUN, str(tmp_path / "x.npy")], capture_output=True, text=True, check=True
    )
    n_used, read_only = done.stdout.split(maxsplit=1)
    assert int(n_used) >= 6 and read_only.strip() == "[]", done.stdout
    from hkmeans._kernels.cpu._common import kernel_input

    R = np.load(tmp_path / "x.npy", mmap_mode="r")
    alias = kernel_input(R)
    assert alias.flags.writeable and np.shares_memory(alias, R) and np.array_equal(alias, X)
    assert kernel_input(X) is X  # writable arrays pass as they are


@pytest.mark.parametrize("tiny", [1e-310, 1e-300])
def test_closest_ranks_rows_at_zero_before_any_positive_distance(tiny):
    # rows at distance 0 first, by their place in the draw order, then the tiny one
    X = np.array([[1.0], [2.0], [3.0], [4.0]]) * 1e-155
    backend = CPUBackend(X)
    for i in range(4):
        sqdist = np.zeros(4)
        sqdist[i] = tiny
        order = np.argsort(backend.closeness(sqdist), kind="stable")
        zeros = np.delete(np.arange(4), i)
        np.testing.assert_array_equal(order, [*zeros[np.argsort(backend._draw_rank[zeros])], i])
