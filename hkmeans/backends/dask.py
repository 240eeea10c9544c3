"""The Dask backend: rows of a dask array chunked by rows, on a Dask cluster.

Every pass maps the in-process backend (:mod:`hkmeans.backends.cpu`) over the chunks.
What a pass returns to the engine is reduced chunk by chunk in a fixed order: a tree
of ``SPLIT_EVERY`` consecutive chunks at a time for float64 sums and counts, chunk
order on the client for the small ones (inertia, rows changed, farthest rows), so
results depend on the chunking but not on the workers, their threads or the order in
which tasks finish. Random draws come from one stream per chunk,
``SeedSequence(seed, spawn_key=(chunk,))``, ``seed`` drawn from the caller's generator.

Per-row state (labels, distances, Lloyd bounds, resampling subsets) stays on the
workers: in a scratch folder, one ``.npy`` per chunk read back chunk by chunk, when
there is one (see :func:`scratch_folder`); else as persisted dask arrays in their
memory. The client holds
O(k x d) per pass, plus the rows it gathers.

With ``device="cuda"`` each chunk's kernels run on its worker's GPU
(:class:`~hkmeans.backends.cuda.CUDABackend`, one GPU per worker as
``dask_cuda.LocalCUDACluster`` starts them); a worker keeps the chunks it has copied to
its device, up to half the device's memory, for the next passes.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import contextvars
import copy
import functools
import importlib.util
import os
import shutil
import tempfile
import threading
import weakref
from typing import Any

import dask
import dask.array as da
import numpy as np
from dask.utils import funcname, has_keyword

from .. import _config
from .._threads import usable_cpus
from .cpu import CPUBackend, LloydStep, normalize_rows

#: Chunks combined per task of a reduction tree.
SPLIT_EVERY = 8

# One chunk's kernels at a time in a process: each runs on all of the worker's Numba
# threads (more chunks at once would oversubscribe the cores), and Numba's "workqueue"
# threading layer aborts when two threads launch kernels at once.
_KERNELS = threading.Lock()


# ---------------------------------------------------------------------------
# where the tasks run


def cluster_layout(cores: int) -> tuple[int, int]:
    """``(workers, threads per worker)`` of the embedded cluster on ``cores`` cores:
    workers x threads <= cores, about 4 threads each."""
    threads = min(cores, 4)
    return max(1, cores // threads), threads


# The scratch folders of the clusters hkmeans started (on this machine: every worker sees them).
_LOCAL_SCRATCH: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _own_scratch(client):
    """``client``, given a new folder for the per-row state of its fits (in Dask's
    ``temporary-directory``, else the system's), removed at exit."""
    folder = tempfile.mkdtemp(prefix="hkmeans-scratch-", dir=dask.config.get("temporary-directory", None))
    _LOCAL_SCRATCH[client] = folder
    atexit.register(shutil.rmtree, folder, True)
    return client


def scratch_folder(client=None):
    """Where per-row state goes on ``client``'s cluster (see :func:`pick_client`): the
    folder of Dask's config key ``hkmeans.scratch`` (``dask.config.set``, or
    ``DASK_HKMEANS__SCRATCH`` in the environment) if set, for a folder that every
    worker sees at the same path; None if that key is False (the workers' memory);
    otherwise the temporary folder of a cluster hkmeans started on this machine, or
    None for any other cluster."""
    folder = dask.config.get("hkmeans.scratch", None)
    if folder is False:
        return None
    if folder:
        return os.path.abspath(os.fspath(folder))
    c = pick_client(client)
    return None if c is None else _LOCAL_SCRATCH.get(c)


def local_cuda_client(workers=None):
    """A :class:`distributed.Client` on a new ``dask_cuda.LocalCUDACluster``: one
    worker per visible GPU (``workers`` of them if given). A one-line ImportError
    without dask-cuda. Closed when the process exits."""
    if importlib.util.find_spec("dask_cuda") is None:
        raise ImportError(
            'device="cuda" on Dask starts one worker per GPU with dask-cuda: pip install "hkmeans[dask-cuda]", or use an existing cluster.'
        )
    from dask_cuda import LocalCUDACluster
    from distributed import Client

    cluster = LocalCUDACluster(n_workers=workers, threads_per_worker=1, dashboard_address=None)
    client = Client(cluster, set_as_default=False)
    atexit.register(lambda: (client.close(), cluster.close()))
    return _own_scratch(client)


def check_workers(client, device) -> None:
    """For ``device="cuda"``: a one-line RuntimeError unless every worker of
    ``client`` (this process if None) has numba-cuda and sees a GPU."""
    if device != "cuda":
        return
    from .cuda import check_available

    if client is None:
        check_available()
        return
    for worker, error in client.run(_cuda_error).items():
        if error is not None:
            raise RuntimeError(f"worker {worker}: {error}")


def _cuda_error():
    from .cuda import check_available

    try:
        check_available()
    except RuntimeError as e:
        return str(e)
    return None


def local_client(workers=None, cores=None):
    """A :class:`distributed.Client` on a new :class:`distributed.LocalCluster` of
    ``workers`` worker processes (None: :func:`cluster_layout`'s number) on ``cores``
    cores (None: those this process may use), one task at a time per worker, with
    Numba and BLAS threads set per worker so that workers x threads <= cores, and a
    temporary scratch folder (see :func:`scratch_folder`). Closed when the process
    exits."""
    from distributed import Client, LocalCluster

    cores = usable_cpus() if cores is None else cores
    if workers is None:
        workers, threads = cluster_layout(cores)
    else:
        threads = max(1, cores // workers)
    env = {
        name: str(threads)
        for name in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    }
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None, env=env)
    client = Client(cluster, set_as_default=False)

    def close():
        client.close()
        cluster.close()

    atexit.register(close)
    return _own_scratch(client)


def connect(address, timeout=10):
    """A :class:`distributed.Client` of the scheduler at ``address``; a ValueError of
    one line if it cannot be reached within ``timeout`` seconds."""
    from distributed import Client

    try:
        return Client(address, timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError, ValueError, TypeError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ValueError(f"cannot reach the Dask scheduler at {address!r} ({reason}).") from None


@functools.cache
def _embedded_client(device="cpu"):
    return local_cuda_client() if device == "cuda" else local_client()


_CURRENT = contextvars.ContextVar("hkmeans_client", default=None)


@contextlib.contextmanager
def using(client):
    """Context in which :func:`pick_client` picks ``client`` (None: no change)."""
    token = _CURRENT.set(client)
    try:
        yield
    finally:
        _CURRENT.reset(token)


def pick_client(client=None, device="cpu"):
    """The :class:`distributed.Client` the tasks run on: ``client`` if given, else
    the one of an enclosing :func:`using`, else none if a local scheduler is
    configured (``dask.config.set(scheduler="threads")``, say) or distributed is not
    installed, else the active one (Dask's convention), else an
    embedded cluster started once per process: for ``device="cpu"`` a
    :class:`distributed.LocalCluster` of worker processes sized by
    :func:`cluster_layout` with Numba and BLAS threads set per worker, for "cuda"
    :func:`local_cuda_client`'s."""
    client = client if client is not None else _CURRENT.get()
    if client is not None:
        return client
    if dask.config.get("scheduler", None) not in (None, "dask.distributed"):
        return None
    try:
        from distributed import default_client
    except ImportError:
        return None
    try:
        return default_client()
    except ValueError:
        return _embedded_client(device)


def compute(*collections, client=None):
    """The values of ``collections``, computed on :func:`pick_client`'s scheduler."""
    c = pick_client(client)
    if c is None:
        return dask.compute(*collections)
    return tuple(c.compute(list(collections), sync=True))


def persist(*collections, client=None):
    """``collections`` persisted (kept on the workers) on :func:`pick_client`'s scheduler."""
    c = pick_client(client)
    out = dask.persist(*collections) if c is None else c.persist(list(collections))
    return tuple(out)


# ---------------------------------------------------------------------------
# per-chunk tasks: module-level functions, so that they pickle by reference


def _one(obj) -> np.ndarray:
    """``obj`` as a one-element object array: a chunk's result as one block."""
    out = np.empty(1, dtype=object)
    out[0] = obj
    return out


def _start(block_info) -> int:
    """First row of the chunk of argument 0."""
    return int(block_info[0]["array-location"][0][0])


def _chunk_index(block_info) -> int:
    return int(block_info[0]["chunk-location"][0])


def _finite(x, start):
    if not np.all(np.isfinite(x)):
        bad = start + int(np.flatnonzero(~np.all(np.isfinite(x), axis=1))[0])
        raise ValueError(f"X contains NaN or infinity (row {bad} first): drop or fix those rows.")


# Chunks a worker holds on its GPU, by (array name, chunk): kept for the next passes
# while they take at most half the device's memory (the oldest dropped first).
_ON_DEVICE: collections.OrderedDict = collections.OrderedDict()


def _chunk_backend(x, device, key):
    """The in-process backend of one chunk on ``device``; on "cuda", the chunk's
    device copy from an earlier pass when this worker still holds it."""
    if device == "cpu":
        return CPUBackend(np.ascontiguousarray(x))
    from . import cuda

    if key in _ON_DEVICE:
        _ON_DEVICE.move_to_end(key)
        return _ON_DEVICE[key]
    data = cuda.CUDABackend(np.ascontiguousarray(x))
    if data.resident:
        _ON_DEVICE[key] = data
        budget = cuda.DEVICE_SHARE * data.k.cuda.current_context().get_memory_info().total
        while len(_ON_DEVICE) > 1 and sum(b.X.nbytes for b in _ON_DEVICE.values()) > budget:
            _ON_DEVICE.popitem(last=False)
    return data


def _assign_block(x, centers, routing, device, name, block_info=None):
    start = _start(block_info)
    _finite(x, start)
    with _KERNELS:
        data = _chunk_backend(x, device, (name, _chunk_index(block_info)))
        labels, sqdist = data.assign(centers) if routing is None else data.routed_assign(centers, *routing)
    return _one((labels, sqdist))


def _value(a):
    """A chunk's per-row array, read if it is the path of its file."""
    return np.load(a) if isinstance(a, str) else a


def _lloyd_block(x, prev, centers, group_offsets, bounds, moves, with_sums, device, name, folder, block_info=None):
    start = _start(block_info)
    st = None if prev is None else prev.ravel()[0]
    if st is None:
        _finite(x, start)
        state = None
    else:
        state = {"labels": _value(st["labels"])}
        if st["lower"] is not None:
            state["lower"] = _value(st["lower"])
    with _KERNELS:
        data = _chunk_backend(x, device, (name, _chunk_index(block_info)))
        run = data.lloyd_run(group_offsets, bounds, state)
        for m in moves:
            run.loosen(m)
        step = run.step(centers) if with_sums else (run.search(centers) or None)
        labels, sqdist = np.asarray(run.labels), np.asarray(run.sqdist)
    summary = None if step is None else (step.sums, step.counts, step.changed, [step.inertia])
    rows = dict(labels=labels, sqdist=sqdist, lower=getattr(run, "lower", None))
    if folder is not None:  # the state in files, the task's result small
        from .dask_io import save_scratch

        for key, a in rows.items():
            if a is not None:
                rows[key] = os.path.join(folder, f"{key}-{start:012d}.npy")
                save_scratch(rows[key], a)
    return _one(dict(start=start, **rows, inertia=float(np.sum(sqdist)), summary=summary))


def _field(block, name, table=None):
    a = _value(block[0][name])
    return a if table is None else table[a]


def _pair(block, i):
    return block[0][i]


def _lookup_block(labels, table):
    return table[labels]


def _random_block(like, seed, block_info=None):
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_chunk_index(block_info),)))
    return rng.random(like.shape[0])


def _oversample_block(weights, seed, factor, total, block_info=None):
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_chunk_index(block_info),)))
    return _one(_start(block_info) + np.flatnonzero(rng.random(weights.shape[0]) < factor * weights / total))


def _count_block(labels, k):
    return _one(np.bincount(labels, minlength=k))


def _sum_block(values):
    return _one(float(np.sum(values)))


def _moments_block(x, mean):
    if mean is None:
        return _one((x.sum(axis=0, dtype=np.float64), x.shape[0]))
    return _one(float(np.sum((x - mean) ** 2)))


def _farthest_block(sqdist, m, block_info=None):
    idx = np.argsort(-sqdist, kind="stable")[:m]
    return _one((sqdist[idx], _start(block_info) + idx))


def _smallest(labels, scores, rows, r):
    """The ``r[c]`` entries of each cluster ``c`` with the smallest ``(score, row)``,
    in cluster order, then by ``(score, row)``."""
    o = np.lexsort((rows, scores, labels))
    lab = labels[o]
    rank = np.arange(lab.shape[0]) - np.searchsorted(lab, lab, side="left")
    keep = o[rank < r[lab]]
    return labels[keep], scores[keep], rows[keep]


def _smallest_block(labels, scores, r, block_info=None):
    rows = _start(block_info) + np.arange(labels.shape[0], dtype=np.int64)
    return _one(_smallest(labels, scores, rows, r))


def _merge_smallest(parts, r):
    return _smallest(*(np.concatenate(a) for a in zip(*parts)), r)


def _repeats(labels, scores, start, copies, r, last_score, last_row):
    """How many times each row of a chunk (first row ``start``) is picked:
    ``copies[label]``, once more if it is among its cluster's ``r`` smallest
    ``(score, row)``, those up to ``(last_score, last_row)``."""
    rows = start + np.arange(labels.shape[0], dtype=np.int64)
    s, t = last_score[labels], last_row[labels]
    chosen = (r[labels] > 0) & ((scores < s) | ((scores == s) & (rows <= t)))
    return rows, copies[labels] + chosen


def _picked_block(labels, scores, *picks, block_info=None):
    rows, times = _repeats(labels, scores, _start(block_info), *picks)
    return _one(np.repeat(rows, times))


def _picked_count_block(labels, scores, *picks, block_info=None):
    return _one(int(_repeats(labels, scores, _start(block_info), *picks)[1].sum()))


def _subset_block(x, labels, scores, *picks, block_info=None):
    times = _repeats(labels.ravel(), scores.ravel(), _start(block_info), *picks)[1]
    return _one(np.repeat(x, times, axis=0))


def _last_picks(picked, k):
    """Per cluster, the ``(score, row)`` of the last of its picks in ``picked``
    (``(labels, scores, rows)`` by cluster, then ``(score, row)``); ``(-inf, -1)``
    for a cluster without any."""
    lab, score, rows = picked
    last = np.flatnonzero(np.diff(np.append(lab, -1)))
    last_score = np.full(k, -np.inf)
    last_row = np.full(k, -1, dtype=np.int64)
    last_score[lab[last]], last_row[lab[last]] = score[last], rows[last]
    return last_score, last_row


def _inertia_block(x, labels, centers):
    diff = x - centers[labels.ravel()]
    return _one(float(np.einsum("ij,ij->", diff, diff, dtype=np.float64)))


def _distances_block(x, centers):
    from sklearn.metrics import euclidean_distances

    return euclidean_distances(x, centers)


# ---------------------------------------------------------------------------
# reductions in a fixed order


def _blocks(arrays, fn, *args):
    """``fn`` over the chunks of ``arrays`` (aligned block by block), one object per
    chunk. An array read from files (see :func:`~hkmeans.backends.dask_io.source_of`)
    is read inside ``fn``'s task, not by a task of its own."""
    from .dask_io import source_of

    sources = [source_of(a) for a in arrays]
    read = tuple(i for i, s in enumerate(sources) if s is not None)
    if read:  # a stand-in of no bytes in its place, its source an argument
        arrays = [
            da.zeros(a.shape[0], chunks=(a.chunks[0],), dtype=np.int8) if s is not None else a
            for a, s in zip(arrays, sources)
        ]
        args = (dask.delayed([sources[i] for i in read]), *args)
        fn = functools.partial(_reading, fn, len(arrays), read)
    n = arrays[0].numblocks[0]
    token = funcname(fn.args[0] if read else fn)
    drop = ()
    if arrays[0].ndim == 2:  # 1-D arrays as columns: blocks align by row chunk, not by broadcasting
        arrays = [arrays[0], *(a[:, None] for a in arrays[1:])]
        drop = (1,)
    return da.map_blocks(
        fn,
        *arrays,
        *args,
        chunks=((1,) * n,),
        drop_axis=drop,
        dtype=object,
        meta=np.empty(0, dtype=object),
        token=token,
    )


def _reading(fn, n, read, *values, block_info=None):
    """``fn`` of ``values`` (``n`` chunks, then the sources of those at positions
    ``read``, then the arguments), with those chunks read from their sources."""
    from .dask_io import read_rows

    values = list(values)
    sources = values.pop(n)
    start, stop = block_info[0]["array-location"][0]
    for i, source in zip(read, sources):
        values[i] = read_rows(source, start, stop)
    return fn(*values, block_info=block_info) if has_keyword(fn, "block_info") else fn(*values)


def _gather(blocks, client=None) -> list:
    """The chunks' objects of ``blocks``, gathered, in chunk order."""
    return list(compute(blocks, client=client)[0])


def _per_row(blocks, fn, rows, dtype, *args):
    """A per-row array (chunks ``rows``) drawn from each chunk's object by ``fn``."""
    return blocks.map_blocks(fn, *args, chunks=(rows,), dtype=dtype, meta=np.empty(0, dtype=dtype))


def _tree(blocks, leaf, combine, *args):
    """``combine`` of the chunks' ``leaf`` values, ``SPLIT_EVERY`` consecutive ones at a
    time, in chunk order: a Delayed."""
    parts = [dask.delayed(leaf)(b) for b in blocks.to_delayed().ravel()]
    while len(parts) > 1:
        parts = [dask.delayed(combine)(parts[i : i + SPLIT_EVERY], *args) for i in range(0, len(parts), SPLIT_EVERY)]
    return dask.delayed(combine)(parts, *args) if parts else None


def _first(block):
    return block[0]


def _add(parts):
    return functools.reduce(lambda a, b: a + b, parts)


def _lloyd_leaf(block):
    return block[0]["summary"]


def _lloyd_sum(parts):
    sums, counts = _add([p[0] for p in parts]), _add([p[1] for p in parts])
    changed = None if any(p[2] is None for p in parts) else sum(p[2] for p in parts)
    return sums, counts, changed, [v for p in parts for v in p[3]]  # inertia per chunk, in chunk order


def lookup(table: np.ndarray, labels):
    """``table[labels]`` for dask ``labels``, chunk by chunk."""
    return labels.map_blocks(_lookup_block, dask.delayed(table), dtype=table.dtype, meta=np.empty(0, table.dtype))


def random_scores(rng, like):
    """One uniform draw per row of the 1-D dask array ``like``, from per-chunk streams
    seeded by one draw from ``rng``."""
    seed = int(rng.integers(2**63))
    return like.map_blocks(_random_block, seed, dtype=np.float64, meta=np.empty(0, np.float64))


def counts(labels, k, client=None) -> np.ndarray:
    """Rows per cluster of dask ``labels``."""
    return compute(_tree(_blocks([labels], _count_block, k), _first, _add), client=client)[0]


def select(labels, k, take, scores, sizes=None, client=None, sort=False) -> np.ndarray:
    """``take[c]`` rows of each cluster ``c`` (dask ``labels`` and ``scores``):
    ``take[c] // m`` copies of its ``m`` rows, then the ``take[c] % m`` with the
    smallest ``(score, row)``. In cluster order, each by ``(score, row)`` (as the
    in-process :meth:`~hkmeans.backends.cpu.CPUBackend.select`), or sorted with
    ``sort``. Costs a pass for the ``sizes`` if not given, one for the smallest rows of
    each cluster (a tree of merges), and, when some cluster gives whole copies, one
    that picks the rows per chunk against per-cluster thresholds."""
    copies, r, smallest = _smallest_of(labels, k, take, scores, sizes, client)
    lab, score, rows = compute(smallest, client=client)[0]
    if not copies.any():
        return np.sort(rows) if sort else rows
    picks = (copies, r, *_last_picks((lab, score, rows), k))
    picked = _blocks([labels, scores], _picked_block, *map(dask.delayed, picks))
    out = np.concatenate(_gather(picked, client))  # chunk order: sorted
    if not sort:  # cluster order, as the in-process select
        out = out[np.argsort(lookup_np(labels, out, client), kind="stable")]
    return out


def _smallest_of(labels, k, take, scores, sizes, client):
    """``(copies, r, sizes)`` of a selection of ``take[c]`` rows per cluster: whole
    copies of every row and ``r[c]`` more, from clusters of ``sizes`` rows (counted if
    None); then the ``r[c]`` smallest ``(score, row)`` of each cluster (a Delayed:
    ``(labels, scores, rows)`` merged in a tree)."""
    copies, r, sizes = _copies(labels, k, take, sizes, client)
    r_ = dask.delayed(r)
    return copies, r, _tree(_blocks([labels, scores], _smallest_block, r_), _first, _merge_smallest, r_)


def _copies(labels, k, take, sizes, client):
    take = np.asarray(take, dtype=np.int64)
    sizes = counts(labels, k, client) if sizes is None else np.asarray(sizes, dtype=np.int64)
    if np.any((take > 0) & (sizes == 0)):
        raise ValueError("select asks for rows of an empty cluster.")
    copies = np.where(sizes > 0, take // np.maximum(sizes, 1), 0)
    return copies, take - copies * sizes, sizes


#: Bins per cluster of each round of :func:`thresholds`.
BINS = 16


def thresholds(labels, scores, k, r, sizes, client=None):
    """Per cluster ``c``, the ``(score, row)`` of the ``r[c]``-th smallest
    ``(score, row)`` of its rows (``(-inf, -1)`` where ``r[c]`` is 0), as
    :func:`_last_picks` of the ``r[c]`` smallest, without holding them all: each round
    counts every cluster's rows in ``BINS`` bins of its range of scores still open
    and keeps the bin of its ``r[c]``-th; once the open ranges hold at most a chunk's
    bytes of ``(label, score, row)`` (or after 16 rounds: ties), their rows are
    merged in a tree. Every task holds O(k x BINS) counts or one chunk."""
    r = np.asarray(r, dtype=np.int64)
    active = r > 0
    lo, hi = np.where(active, -np.inf, np.inf), np.full(k, np.inf)  # ranges are [lo, hi)
    below = np.zeros(k, dtype=np.int64)  # rows under lo
    band = np.where(active, sizes, 0)
    cap = max(1, _config.DASK_CHUNK_BYTES // 24)
    frac = np.arange(1, BINS) / BINS
    for round_ in range(16):
        if band.sum() <= cap:
            break
        if round_ == 0:  # the clusters' ranges of scores, only if a round runs
            lo, hi = compute(_tree(_blocks([labels, scores], _range_block, k), _first, _range_merge), client=client)[0]
            lo, hi = np.where(active, lo, np.inf), np.where(active, np.nextafter(hi, np.inf), np.inf)
        width = np.where(active, hi, 0) - np.where(active, lo, 0)
        edges = np.where(active[:, None], lo[:, None] + width[:, None] * frac, np.inf)
        hist = compute(
            _tree(_blocks([labels, scores], _histogram_block, *map(dask.delayed, (lo, hi, edges))), _first, _add),
            client=client,
        )[0].reshape(k, BINS)
        cum = np.cumsum(hist, axis=1)
        b = np.argmax(cum >= (r - below)[:, None], axis=1)  # the bin of the r-th
        at = np.arange(k)
        below = np.where(active, below + cum[at, b] - hist[at, b], below)
        lo = np.where(active & (b > 0), edges[at, np.maximum(b - 1, 0)], lo)
        hi = np.where(active & (b < BINS - 1), edges[at, np.minimum(b, BINS - 2)], hi)
        band = np.where(active, hist[at, b], 0)
    need = np.where(active, r - below, 0)
    need_ = dask.delayed(need)
    leaves = _blocks([labels, scores], _band_block, *map(dask.delayed, (lo, hi)), need_)
    return compute(dask.delayed(_last_picks)(_tree(leaves, _first, _merge_smallest, need_), k), client=client)[0]


def _range_block(labels, scores, k):
    lab, s = labels.ravel(), scores.ravel()
    lo, hi = np.full(k, np.inf), np.full(k, -np.inf)
    np.minimum.at(lo, lab, s)
    np.maximum.at(hi, lab, s)
    return _one((lo, hi))


def _range_merge(parts):
    return np.minimum.reduce([p[0] for p in parts]), np.maximum.reduce([p[1] for p in parts])


def _in_range(labels, scores, lo, hi):
    lab, s = labels.ravel(), scores.ravel()
    return (s >= lo[lab]) & (s < hi[lab])


def _histogram_block(labels, scores, lo, hi, edges):
    inside = _in_range(labels, scores, lo, hi)
    lab, s = labels.ravel()[inside], scores.ravel()[inside]
    b = np.empty(lab.shape[0], dtype=np.int64)
    for a in range(0, lab.shape[0], 1 << 14):  # bins by comparison with the edges themselves, a slice at a time
        b[a : a + (1 << 14)] = np.sum(s[a : a + (1 << 14), None] >= edges[lab[a : a + (1 << 14)]], axis=1)
    return _one(np.bincount(lab * BINS + b, minlength=lo.shape[0] * BINS))


def _band_block(labels, scores, lo, hi, need, block_info=None):
    inside = _in_range(labels, scores, lo, hi)
    rows = _start(block_info) + np.flatnonzero(inside)
    return _one(_smallest(labels.ravel()[inside], scores.ravel()[inside], rows, need))


def subset(X, labels, k, take, scores, client=None):
    """The rows :func:`select` picks, as a dask array in row order to be computed on
    the workers: the per-cluster thresholds are found by :func:`thresholds` (the
    client gets O(k) numbers a round), then each chunk keeps its picked rows."""
    copies, r, sizes = _copies(labels, k, take, None, client)
    picks = (copies, r, *thresholds(labels, scores, k, r, sizes, client))
    picks_ = [dask.delayed(p) for p in picks]
    sizes = _gather(_blocks([labels, scores], _picked_count_block, *picks_), client)
    parts = _blocks([X, labels, scores], _subset_block, *picks_)
    rows = parts.map_blocks(
        _first,
        chunks=(tuple(sizes), (X.shape[1],)),
        new_axis=1,
        dtype=X.dtype,
        meta=np.empty((0, X.shape[1]), dtype=X.dtype),
    )
    return rows.blocks[[i for i, m in enumerate(sizes) if m > 0]]  # no empty chunks


def gather_rows(a, rows, client=None) -> np.ndarray:
    """``a[rows]`` of a dask array for a small set of ``rows`` (sorted, unique),
    gathered; an array read from files (see
    :func:`~hkmeans.backends.dask_io.source_of`) is read by one task per chunk that
    has some of them, which keeps just those."""
    from .dask_io import source_of

    source = source_of(a)
    if source is None:
        return compute(a[rows], client=client)[0]
    starts = np.concatenate([[0], np.cumsum(a.chunks[0])]).astype(np.int64)
    cut = np.searchsorted(rows, starts)  # rows[cut[c]:cut[c + 1]] are in chunk c
    source = dask.delayed(source)
    parts = [
        dask.delayed(_rows_of)(source, int(starts[c]), int(starts[c + 1]), rows[cut[c] : cut[c + 1]] - starts[c])
        for c in range(len(starts) - 1)
        if cut[c + 1] > cut[c]
    ]
    got = compute(*parts, client=client)
    return np.concatenate(got) if got else np.empty((0, *a.shape[1:]), dtype=a.dtype)


def _rows_of(source, start, stop, rows):
    from .dask_io import read_rows

    return read_rows(source, start, stop)[rows]


def lookup_np(labels, rows, client=None):
    """``labels[rows]`` of a dask array, gathered."""
    unique = np.unique(rows)
    return gather_rows(labels, unique, client)[np.searchsorted(unique, rows)]


# ---------------------------------------------------------------------------
# the backend


def as_rows(X):
    """``X`` (a dask array, or an array to wrap) as a 2-D float32/float64 dask array
    chunked by rows only; a ValueError or TypeError of one line if it cannot be."""
    if not isinstance(X, da.Array):
        X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"Expected a 2-D array of shape (n_samples, n_features), got shape {X.shape}.")
    if not isinstance(X, da.Array):
        X = da.from_array(X, chunks=(max(1, (1 << 22) // max(1, X.shape[1] * X.itemsize)), -1))
    if any(np.isnan(c) for c in X.shape) or any(np.isnan(c).any() for c in map(np.array, X.chunks)):
        raise ValueError("X has unknown chunk sizes: call X.compute_chunk_sizes() first.")
    if X.dtype.kind not in "fiub":
        raise TypeError(f"X must hold numbers, got dtype {X.dtype}.")
    if X.dtype not in (np.float32, np.float64):
        X = X.astype(np.float64 if X.dtype.itemsize >= 8 and X.dtype.kind != "f" else np.float32)
    if X.numblocks[1] != 1:
        X = X.rechunk({1: -1})
    return X


class DaskBackend:
    """Rows of a dask array, chunked by rows; the chunks' passes run on a Dask cluster.

    Parameters
    ----------
    X : dask array or array-like of shape (n_samples, n_features)
        Columns are rechunked to one chunk once; an in-memory array is wrapped in
        chunks of about 4 MB.
    client : distributed.Client or None
        See :func:`pick_client`.
    persist : bool, default=True
        Keep per-row results on the workers (for the engine's repeated passes), in
        :func:`scratch_folder` if there is one, else in their memory; with False they
        stay lazy (prediction).
    device : {"cpu", "cuda"}, default="cpu"
        Where each chunk's kernels run: the worker's cores, or its GPU (every worker
        must see one; the embedded cluster is then :func:`local_cuda_client`'s).
    """

    name = "dask"
    #: one pass per centre would be one round trip per centre: k-means++ is k-means||
    greedy_seeding = False
    #: sample weights are not supported on this backend (see :meth:`weighted`)
    weights = None
    #: a run's per-row state stays on the workers: a run stopped midway starts over
    resumable_runs = False

    def __init__(self, X, client=None, persist=True, device="cpu"):
        wrapped = not isinstance(X, da.Array)
        self.X = as_rows(X)
        if device == "cuda" and client is None:
            client = pick_client(None, device)
        check_workers(client, device)
        self.client = client
        self.device = device
        self._persist = persist
        self.scratch = scratch_folder(client) if persist else None
        if wrapped and persist:  # in memory anyway: shipped once, not with every pass
            (self.X,) = self._keep(self.X, memory=True)

    @property
    def shape(self):
        return self.X.shape

    @property
    def dtype(self):
        return self.X.dtype

    def _over(self, X) -> DaskBackend:
        """This backend over rows ``X`` derived from its own (valid as they are, on
        workers already checked)."""
        out = copy.copy(self)
        out.X = X
        return out

    @property
    def rows(self):
        """The row chunks."""
        return self.X.chunks[0]

    def _compute(self, *collections):
        return compute(*collections, client=self.client)

    def _keep(self, *arrays, memory=False):
        """``arrays`` computed and kept on the workers (in their memory with ``memory``,
        else see :func:`scratch_folder`), or as they are (lazy) if the backend is."""
        if not self._persist:
            return arrays
        if self.scratch is not None and not memory:
            from .dask_io import spill

            return spill(self.scratch, *arrays, client=self.client)
        return persist(*arrays, client=self.client)

    def take(self, rows, out=None) -> np.ndarray:
        """Rows ``rows`` of the data (a small set), gathered, into ``out`` if given."""
        rows = np.asarray(rows, dtype=np.int64)
        unique, inverse = np.unique(rows, return_inverse=True)
        got = gather_rows(self.X, unique, self.client)[inverse.reshape(-1)]
        if out is None:
            return got
        out[...] = got
        return out

    def _assign(self, centers, routing=None):
        blocks = _blocks([self.X], _assign_block, dask.delayed(centers), routing, self.device, self.X.name)
        labels = _per_row(blocks, _pair, self.rows, np.int64, 0)
        sqdist = _per_row(blocks, _pair, self.rows, np.float64, 1)
        return self._keep(labels, sqdist)

    def assign(self, centers):
        """Nearest centre of each row: dask arrays ``(labels int64, squared distances
        float64)``, persisted unless the backend is lazy."""
        return self._assign(np.ascontiguousarray(centers, dtype=self.dtype))

    def routed_assign(self, parents, child_offsets, children):
        """As :meth:`CPUBackend.routed_assign`, chunk by chunk."""
        return self._assign(np.ascontiguousarray(parents), (np.asarray(child_offsets), np.ascontiguousarray(children)))

    def cluster_sums(self, labels, k):
        """Per-cluster float64 sums of the rows and counts (chunk sums added in a fixed tree)."""
        blocks = _blocks([self.X, labels], _sums_block, k, self.device, self.X.name)
        sums, n, _, _ = self._compute(_tree(blocks, _lloyd_leaf, _lloyd_sum))[0]
        return sums, n

    def lloyd_run(self, group_offsets, bounds=True, state=None) -> DaskLloydRun:
        """The per-row state of a Lloyd run, kept on the workers."""
        if state is not None:
            raise ValueError("a Lloyd run on the dask backend cannot resume from a saved state.")
        return DaskLloydRun(self, group_offsets, bounds)

    def kmeans_plusplus(self, order, first, rand, weights):
        raise NotImplementedError("greedy k-means++ takes one pass per centre; the dask backend seeds by k-means||.")

    def select(self, labels, k, take, scores):
        """``take[c]`` rows of each cluster ``c``, those with the smallest ``scores``
        (ties: the first rows), in cluster order: see :func:`select`."""
        return select(labels, k, take, scores, client=self.client)

    def counts(self, labels, k) -> np.ndarray:
        return counts(labels, k, self.client)

    def closeness(self, sqdist):
        """``sqdist`` itself: the "closest" selection ranks rows by it, ties by row (the
        in-process backends round it and break ties by content, see
        :meth:`~hkmeans.backends.cpu.HostRows.closeness`; the two differ only on rows
        whose distances agree to float32 rounding)."""
        return sqdist

    def resampling_subset(self, labels, k, take, scores, alloc=None):
        """The rows :meth:`select` picks, as data to cluster on their own, and None (no
        weights): gathered into an array on the client up to
        ``DASK_CLIENT_SUBSET_BYTES``, else a backend over a dask array of them kept on
        the workers (see :func:`subset`); ``alloc`` is not used."""
        if int(np.sum(take)) * self.shape[1] * self.dtype.itemsize <= _config.DASK_CLIENT_SUBSET_BYTES:
            return self.take(self.select(labels, k, take, scores)), None
        (rows,) = self._keep(subset(self.X, labels, k, take, scores, self.client))
        return self._over(rows), None

    def total(self, values) -> float:
        """The sum of a per-row array, chunk sums added in chunk order."""
        return float(sum(_gather(_blocks([values], _sum_block), self.client)))

    def random_scores(self, rng):
        """One uniform draw per row, from per-chunk streams (see :func:`random_scores`)."""
        like = da.zeros(self.shape[0], chunks=(self.rows,), dtype=np.int8)
        return self._keep(random_scores(rng, like))[0]

    def farthest_rows(self, sqdist, m) -> np.ndarray:
        """The ``m`` rows of largest ``sqdist`` (first rows first on ties)."""
        parts = _gather(_blocks([sqdist], _farthest_block, m), self.client)
        d = np.concatenate([p[0] for p in parts])
        rows = np.concatenate([p[1] for p in parts])
        return rows[np.argsort(-d, kind="stable")[:m]]

    def oversample(self, weights, factor, total, rng) -> np.ndarray:
        """k-means||'s draw, from per-chunk streams seeded by one draw from ``rng``."""
        seed = int(rng.integers(2**63))
        return np.concatenate(_gather(_blocks([weights], _oversample_block, seed, factor, total), self.client))

    def other_rows(self, exclude, m, rng) -> np.ndarray:
        """``m`` distinct random rows not in ``exclude``, drawn without an n-long array."""
        n = self.shape[0]
        if n - np.unique(exclude).size < m:
            raise ValueError(f"only {n - np.unique(exclude).size} rows left to draw {m} from.")
        got = np.unique(exclude)
        while True:
            more = np.setdiff1d(rng.integers(n, size=2 * m + 16), got)
            got = np.union1d(got, more)
            if got.size >= np.unique(exclude).size + m:
                return np.setdiff1d(got, exclude)[:m]

    def mean_variance(self) -> float:
        """Mean of the features' variances, in float64, chunk sums in chunk order."""
        parts = _gather(_blocks([self.X], _moments_block, None), self.client)
        mean = sum(p[0] for p in parts) / self.shape[0]
        parts = _gather(_blocks([self.X], _moments_block, dask.delayed(mean)), self.client)
        return sum(parts) / (self.shape[0] * self.shape[1])

    def cluster_weights(self, labels, k) -> np.ndarray:
        """Rows per cluster as float64 (the weights of an unweighted backend)."""
        return self.counts(labels, k).astype(np.float64)

    def weighted(self, weights) -> DaskBackend:
        """This backend: it takes no sample weights (a one-line error for any)."""
        if weights is not None:
            raise ValueError("sample_weight is not supported on the dask backend; fit in memory (backend='cpu').")
        return self

    def normalized(self, alloc=None) -> DaskBackend:
        """A backend over the rows scaled to unit norm (recomputed per pass; ``alloc``
        is not used: nothing is written on the client)."""
        from .dask_io import map_rows

        return self._over(map_rows(self.X, normalize_rows))

    def inertia(self, centers, labels) -> float:
        """Sum of squared distances of the rows to ``centers[labels]``."""
        return float(sum(_gather(_blocks([self.X, labels], _inertia_block, dask.delayed(centers)), self.client)))

    def distances(self, centers):
        """Euclidean distances of each row to each centre, a lazy dask array."""
        return self.X.map_blocks(
            _distances_block,
            dask.delayed(centers),
            chunks=(self.rows, (centers.shape[0],)),
            dtype=np.float64,
            meta=np.empty((0, 0), np.float64),
        )


def _sums_block(x, labels, k, device, name, block_info=None):
    with _KERNELS:
        sums, n = _chunk_backend(x, device, (name, _chunk_index(block_info))).cluster_sums(labels.ravel(), k)
    return _one(dict(summary=(sums, n, None, [])))


class DaskLloydRun:
    """Labels, squared distances and per-group bounds of one Lloyd run, one object per
    chunk persisted on the workers. Each pass is a pure task per chunk (the previous
    state in, a new one out), so a lost chunk is recomputed from its lineage."""

    def __init__(self, backend: DaskBackend, group_offsets, bounds):
        self.backend = backend
        self.group_offsets = np.asarray(group_offsets)
        self.bounds = bounds
        self.blocks: Any = None  # a dask array of per-chunk states, after the first pass
        self._moves: list = []
        self._folders: list = []  # of the passes' state files, the newest last
        if backend.scratch is not None:
            weakref.finalize(self, _remove_all, self._folders)

    def _pass(self, centers, with_sums):
        b = self.backend
        centers = dask.delayed(np.ascontiguousarray(centers, dtype=b.dtype))
        prev = [] if self.blocks is None else [self.blocks]
        fn = _lloyd_block if prev else _lloyd_block_first
        folder = None
        if b.scratch is not None:
            os.makedirs(b.scratch, exist_ok=True)
            folder = tempfile.mkdtemp(prefix="lloyd-", dir=b.scratch)
            self._folders.append(folder)
        self.blocks = persist(
            _blocks(
                [b.X, *prev],
                fn,
                centers,
                dask.delayed(self.group_offsets),
                self.bounds,
                dask.delayed(self._moves),
                with_sums,
                b.device,
                b.X.name,
                folder,
            ),
            client=b.client,
        )[0]
        self._moves = []

    def _release(self, keep=1) -> None:
        """Remove the state files of all passes but the ``keep`` newest (call once the
        newest pass is computed: a pass recomputed later, after a worker is lost,
        recomputes those it reads from the first)."""
        while len(self._folders) > keep:
            shutil.rmtree(self._folders.pop(0), ignore_errors=True)

    def _reduce(self) -> LloydStep:
        sums, counts, changed, inertia = self.backend._compute(_tree(self.blocks, _lloyd_leaf, _lloyd_sum))[0]
        self._release()
        return LloydStep(sums, counts, float(sum(inertia)), changed)

    def _inertia(self) -> float:
        return float(
            sum(
                _gather(
                    self.blocks.map_blocks(_inertia_of, dtype=object, meta=np.empty(0, object)), self.backend.client
                )
            )
        )

    def search(self, centers) -> None:
        """Nearest centres of every row, skipping what the bounds rule out."""
        self._pass(centers, False)

    def step(self, centers) -> LloydStep:
        """One pass: the search, then the clusters' sums and counts."""
        self._pass(centers, True)
        return self._reduce()

    def loosen(self, moves) -> None:
        """Lower the bounds (in the next pass) after the centres moved by ``moves``."""
        if self.bounds:
            self._moves.append(np.asarray(moves))

    def farthest(self, m):
        """The ``m`` rows farthest from their centres (first rows first on ties): their
        data, labels and weights (1: this backend takes no weights)."""
        sqdist = _per_row(self.blocks, _field, self.backend.rows, np.float64, "sqdist")
        labels = _per_row(self.blocks, _field, self.backend.rows, np.int64, "labels")
        rows = self.backend.farthest_rows(sqdist, m)
        return self.backend.take(rows), lookup_np(labels, rows, self.backend.client), np.ones(len(rows))

    def finish(self, order):
        """Labels through ``order`` and squared distances (dask arrays kept on the workers) and
        the inertia of the last search."""
        b = self.backend
        labels = _per_row(self.blocks, _field, b.rows, np.int64, "labels", dask.delayed(order))
        sqdist = _per_row(self.blocks, _field, b.rows, np.float64, "sqdist")
        inertia = self._inertia()
        labels, sqdist = b._keep(labels, sqdist)
        self.blocks = None
        self._release(0)
        return labels, sqdist, inertia

    def state(self) -> dict:
        """The per-chunk state, as the chunks' objects (not gathered)."""
        return {"blocks": self.blocks}


def _lloyd_block_first(x, centers, group_offsets, bounds, moves, with_sums, device, name, folder, block_info=None):
    return _lloyd_block(
        x, None, centers, group_offsets, bounds, moves, with_sums, device, name, folder, block_info=block_info
    )


def _remove_all(folders):
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)


def _inertia_of(block):
    return _one(block[0]["inertia"])
