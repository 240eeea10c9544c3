"""Reductions in a fixed order: every chunk's object, combined ``SPLIT_EVERY``
consecutive chunks at a time in chunk order, so results depend on the chunking but not
on the workers or the order in which tasks finish; and the per-row operations
(lookup, random scores, counts) on dask arrays."""

from __future__ import annotations

import functools

import dask
import dask.array as da
import numpy as np
from dask.utils import funcname, has_keyword

from ... import _config
from .client import compute
from .storage import read_rows, source_of
from .tasks import count_block, lookup_block, random_block, weighted_count_block

#: Chunks combined per task of a reduction tree.
SPLIT_EVERY = _config.DASK_SPLIT_EVERY


def map_chunks(arrays, fn, *args):
    """``fn`` over the chunks of ``arrays`` (aligned block by block), one object per
    chunk. An array read from files (see :func:`~hkmeans.backends.dask.storage.source_of`)
    is read inside ``fn``'s task, not by a task of its own."""
    sources = [source_of(a) for a in arrays]
    read = tuple(i for i, s in enumerate(sources) if s is not None)
    if read:  # a stand-in of no bytes in its place, its source an argument
        arrays = [
            da.zeros(a.shape[0], chunks=(a.chunks[0],), dtype=np.int8) if s is not None else a
            for a, s in zip(arrays, sources)
        ]
        args = (dask.delayed([sources[i] for i in read]), *args)
        fn = functools.partial(reading, fn, len(arrays), read)
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


def reading(fn, n, read, *values, block_info=None):
    """``fn`` of ``values`` (``n`` chunks, then the sources of those at positions
    ``read``, then the arguments), with those chunks read from their sources."""
    values = list(values)
    sources = values.pop(n)
    start, stop = block_info[0]["array-location"][0]
    for i, source in zip(read, sources):
        values[i] = read_rows(source, start, stop)
    return fn(*values, block_info=block_info) if has_keyword(fn, "block_info") else fn(*values)


def gather_blocks(blocks, client=None) -> list:
    """The chunks' objects of ``blocks``, gathered, in chunk order."""
    return list(compute(blocks, client=client)[0])


def per_row_array(blocks, fn, rows, dtype, *args):
    """A per-row array (chunks ``rows``) drawn from each chunk's object by ``fn``."""
    return blocks.map_blocks(fn, *args, chunks=(rows,), dtype=dtype, meta=np.empty(0, dtype=dtype))


def tree_reduce(blocks, leaf, combine, *args):
    """``combine`` of the chunks' ``leaf`` values, ``SPLIT_EVERY`` consecutive ones at a
    time, in chunk order: a Delayed."""
    parts = [dask.delayed(leaf)(b) for b in blocks.to_delayed().ravel()]
    while len(parts) > 1:
        parts = [dask.delayed(combine)(parts[i : i + SPLIT_EVERY], *args) for i in range(0, len(parts), SPLIT_EVERY)]
    return dask.delayed(combine)(parts, *args) if parts else None


def first_item(block):
    return block[0]


def add_all(parts):
    return functools.reduce(lambda a, b: a + b, parts)


def lloyd_leaf(block):
    return block[0]["summary"]


def lloyd_sum(parts):
    sums, counts = add_all([p[0] for p in parts]), add_all([p[1] for p in parts])
    changed = None if any(p[2] is None for p in parts) else sum(p[2] for p in parts)
    return sums, counts, changed, [v for p in parts for v in p[3]]  # inertia per chunk, in chunk order


def lookup(table: np.ndarray, labels):
    """``table[labels]`` for dask ``labels``, chunk by chunk."""
    return labels.map_blocks(lookup_block, dask.delayed(table), dtype=table.dtype, meta=np.empty(0, table.dtype))


def random_scores(rng, like):
    """One uniform draw per row of the 1-D dask array ``like``, from per-chunk streams
    seeded by one draw from ``rng``."""
    seed = int(rng.integers(2**63))
    return like.map_blocks(random_block, seed, dtype=np.float64, meta=np.empty(0, np.float64))


def counts(labels, k, client=None) -> np.ndarray:
    """Rows per cluster of dask ``labels``."""
    return compute(tree_reduce(map_chunks([labels], count_block, k), first_item, add_all), client=client)[0]


def sums(labels, weights, k, client=None) -> np.ndarray:
    """Per cluster of dask ``labels``, the float64 sum of ``weights`` over its rows,
    chunk by chunk in a fixed order (the same whatever the workers)."""
    blocks = map_chunks([labels, weights], weighted_count_block, k)
    return compute(tree_reduce(blocks, first_item, add_all), client=client)[0]
