"""Per-chunk tasks: module-level functions, so that they pickle by reference.

Each runs the in-process backend (:mod:`hkmeans.backends.cpu`, or
:mod:`hkmeans.backends.cuda` on a worker's GPU) over one chunk of rows and returns its
result as one object (:func:`one_block`)."""

from __future__ import annotations

import collections
import os
import threading

import numpy as np

from .. import cuda
from ..cpu import CPUBackend
from ..in_memory import refuse_out_of_range
from .storage import save_scratch

# One chunk's kernels at a time in a process: each runs on all of the worker's Numba
# threads (more chunks at once would oversubscribe the cores), and Numba's "workqueue"
# threading layer aborts when two threads launch kernels at once.
KERNELS_LOCK = threading.Lock()


def one_block(obj) -> np.ndarray:
    """``obj`` as a one-element object array: a chunk's result as one block."""
    out = np.empty(1, dtype=object)
    out[0] = obj
    return out


def first_row(block_info) -> int:
    """First row of the chunk of argument 0."""
    return int(block_info[0]["array-location"][0][0])


def chunk_index(block_info) -> int:
    return int(block_info[0]["chunk-location"][0])


def check_values(x, start, dtype=None, metric="euclidean"):
    """The rows of a chunk (from row ``start``) as the in-memory checks take them:
    finite, and within ``dtype``'s range (the chunk's by default) and, for
    ``metric="euclidean"`` (the rows the kernels see, normalised for cosine), small
    enough that their squared distances do not overflow it."""
    if not np.all(np.isfinite(x)):
        bad = start + int(np.flatnonzero(~np.all(np.isfinite(x), axis=1))[0])
        raise ValueError(f"X contains NaN or infinity (row {bad} first): drop or fix those rows.")
    refuse_out_of_range(x, x.dtype if dtype is None else dtype, metric)


def cast_checked(x, dtype, metric, block_info=None):
    """A chunk cast to ``dtype`` (a model's) once :func:`check_values` has checked it
    against that dtype: a value beyond its range is named as such, not as infinity."""
    check_values(x, first_row(block_info), dtype, metric)
    return x.astype(dtype, copy=False)


# Chunks a worker holds on its GPU, by (array name, chunk): kept for the next passes
# while they take at most half the device's memory (the oldest dropped first).
ON_DEVICE: collections.OrderedDict = collections.OrderedDict()


def chunk_backend(x, device, key):
    """The in-process backend of one chunk on ``device``; on "cuda", the chunk's
    device copy from an earlier pass when this worker still holds it."""
    if device == "cpu":
        return CPUBackend(np.ascontiguousarray(x))
    if key in ON_DEVICE:
        ON_DEVICE.move_to_end(key)
        return ON_DEVICE[key]
    data = cuda.CUDABackend(np.ascontiguousarray(x))
    if data.resident:
        ON_DEVICE[key] = data
        budget = cuda.DEVICE_SHARE * data.k.cuda.current_context().get_memory_info().total
        while len(ON_DEVICE) > 1 and sum(b.X.nbytes for b in ON_DEVICE.values()) > budget:
            ON_DEVICE.popitem(last=False)
    return data


def assign_block(x, centers, routing, device, name, block_info=None):
    start = first_row(block_info)
    check_values(x, start)
    with KERNELS_LOCK:
        data = chunk_backend(x, device, (name, chunk_index(block_info)))
        labels, sqdist = data.assign(centers) if routing is None else data.routed_assign(centers, *routing)
    return one_block((labels, sqdist))


def read_value(a):
    """A chunk's per-row array, read if it is the path of its file."""
    return np.load(a) if isinstance(a, str) else a


def lloyd_block(x, prev, centers, group_offsets, bounds, moves, with_sums, device, name, folder, block_info=None):
    start = first_row(block_info)
    st = None if prev is None else prev.ravel()[0]
    if st is None:
        check_values(x, start)
        state = None
    else:
        state = {"labels": read_value(st["labels"])}
        if st["lower"] is not None:
            state["lower"] = read_value(st["lower"])
    with KERNELS_LOCK:
        data = chunk_backend(x, device, (name, chunk_index(block_info)))
        run = data.lloyd_run(group_offsets, bounds, state)
        for m in moves:
            run.loosen(m)
        step = run.step(centers) if with_sums else (run.search(centers) or None)
        labels, sqdist = np.asarray(run.labels), np.asarray(run.sqdist)
    summary = None if step is None else (step.sums, step.counts, step.changed, [step.inertia])
    rows = dict(labels=labels, sqdist=sqdist, lower=getattr(run, "lower", None))
    if folder is not None:  # the state in files, the task's result small
        for key, a in rows.items():
            if a is not None:
                rows[key] = os.path.join(folder, f"{key}-{start:012d}.npy")
                save_scratch(rows[key], a)
    return one_block(dict(start=start, **rows, inertia=float(np.sum(sqdist)), summary=summary))


def lloyd_block_first(x, centers, group_offsets, bounds, moves, with_sums, device, name, folder, block_info=None):
    return lloyd_block(
        x, None, centers, group_offsets, bounds, moves, with_sums, device, name, folder, block_info=block_info
    )


def state_field(block, name, table=None):
    a = read_value(block[0][name])
    return a if table is None else table[a]


def item_of(block, i):
    return block[0][i]


def lookup_block(labels, table):
    return table[labels]


def random_block(like, seed, block_info=None):
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(chunk_index(block_info),)))
    return rng.random(like.shape[0])


def oversample_block(weights, seed, factor, total, block_info=None):
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(chunk_index(block_info),)))
    return one_block(first_row(block_info) + np.flatnonzero(rng.random(weights.shape[0]) < factor * weights / total))


def count_block(labels, k):
    return one_block(np.bincount(labels, minlength=k))


def rows_block(a, leaf, args, block_info=None):
    return one_block(leaf(a, first_row(block_info), *args))


def weighted_count_block(labels, weights, k):
    return one_block(np.bincount(labels, weights=weights, minlength=k))


def sum_block(values):
    return one_block(float(np.sum(values)))


def moments_block(x, mean):
    if mean is None:
        return one_block((x.sum(axis=0, dtype=np.float64), x.shape[0]))
    return one_block(float(np.sum((x - mean) ** 2)))


def farthest_block(sqdist, m, block_info=None):
    idx = np.argsort(-sqdist, kind="stable")[:m]
    return one_block((sqdist[idx], first_row(block_info) + idx))


def inertia_block(x, labels, centers):
    diff = x - centers[labels.ravel()]
    return one_block(float(np.einsum("ij,ij->", diff, diff, dtype=np.float64)))


def distances_block(x, centers, block_info=None):
    from sklearn.metrics import euclidean_distances

    check_values(x, first_row(block_info))
    if x.shape[0] == 0:  # an empty chunk (scikit-learn refuses it)
        return np.empty((0, centers.shape[0]), dtype=np.result_type(x.dtype, centers.dtype))
    return euclidean_distances(x, centers)


def sums_block(x, labels, k, device, name, block_info=None):
    with KERNELS_LOCK:
        sums, n = chunk_backend(x, device, (name, chunk_index(block_info))).cluster_sums(labels.ravel(), k)
    return one_block(dict(summary=(sums, n, None, [])))


def inertia_of(block):
    return one_block(block[0]["inertia"])
