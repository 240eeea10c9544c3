"""The Dask backend itself: :class:`DaskBackend` (the engine's passes over the chunks)
and :class:`DaskLloydRun` (a Lloyd run's per-chunk state on the workers)."""

from __future__ import annotations

import copy
import os
import shutil
import tempfile
import weakref
from typing import Any

import dask
import dask.array as da
import numpy as np

from ... import _config
from ..cpu import LloydStep
from ..in_memory import normalize_rows
from .client import check_workers, compute, persist, pick_client, scratch_folder
from .reductions import (
    counts,
    gather_blocks,
    lloyd_leaf,
    lloyd_sum,
    map_chunks,
    per_row_array,
    random_scores,
    tree_reduce,
)
from .selection import gather_rows, lookup_np, select, subset
from .storage import map_rows, spill
from .tasks import (
    assign_block,
    distances_block,
    farthest_block,
    inertia_block,
    inertia_of,
    item_of,
    lloyd_block,
    lloyd_block_first,
    moments_block,
    oversample_block,
    state_field,
    sum_block,
    sums_block,
)


def as_rows(X, cast=None):
    """``X`` (a dask array, or an array to wrap) as a 2-D float32/float64 dask array
    chunked by rows only; a ValueError or TypeError of one line if it cannot be.

    Other numbers are cast to ``cast``, by default chunk by chunk to float32 (float16,
    bool, integers up to 32 bits) or float64 (64-bit integers)."""
    if not isinstance(X, da.Array):
        X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"Expected a 2-D array of shape (n_samples, n_features), got shape {X.shape}.")
    if not isinstance(X, da.Array):
        X = da.from_array(X, chunks=(max(1, (1 << 22) // max(1, X.shape[1] * X.itemsize)), -1))
    if any(np.isnan(c) for c in X.shape) or any(np.isnan(c).any() for c in map(np.array, X.chunks)):
        raise ValueError("X has unknown chunk sizes: call X.compute_chunk_sizes() first.")
    if X.shape[1] == 0:
        raise ValueError(f"Found array with 0 feature(s) (shape={X.shape}) while a minimum of 1 is required.")
    if X.dtype.kind not in "fiub":
        raise TypeError(f"X must hold numbers, got dtype {X.dtype}.")
    if X.dtype not in (np.float32, np.float64):
        X = X.astype(cast or (np.float64 if X.dtype.itemsize >= 8 and X.dtype.kind != "f" else np.float32))
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
        blocks = map_chunks([self.X], assign_block, dask.delayed(centers), routing, self.device, self.X.name)
        labels = per_row_array(blocks, item_of, self.rows, np.int64, 0)
        sqdist = per_row_array(blocks, item_of, self.rows, np.float64, 1)
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
        blocks = map_chunks([self.X, labels], sums_block, k, self.device, self.X.name)
        sums, n, _, _ = self._compute(tree_reduce(blocks, lloyd_leaf, lloyd_sum))[0]
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
        return float(sum(gather_blocks(map_chunks([values], sum_block), self.client)))

    def random_scores(self, rng):
        """One uniform draw per row, from per-chunk streams (see :func:`random_scores`)."""
        like = da.zeros(self.shape[0], chunks=(self.rows,), dtype=np.int8)
        return self._keep(random_scores(rng, like))[0]

    def farthest_rows(self, sqdist, m) -> np.ndarray:
        """The ``m`` rows of largest ``sqdist`` (first rows first on ties)."""
        parts = gather_blocks(map_chunks([sqdist], farthest_block, m), self.client)
        d = np.concatenate([p[0] for p in parts])
        rows = np.concatenate([p[1] for p in parts])
        return rows[np.argsort(-d, kind="stable")[:m]]

    def oversample(self, weights, factor, total, rng) -> np.ndarray:
        """k-means||'s draw, from per-chunk streams seeded by one draw from ``rng``."""
        seed = int(rng.integers(2**63))
        return np.concatenate(gather_blocks(map_chunks([weights], oversample_block, seed, factor, total), self.client))

    def other_rows(self, exclude, m, rng) -> np.ndarray:
        """``m`` distinct random rows not in ``exclude``, drawn without an n-long array."""
        n = self.shape[0]
        got, picked = np.unique(exclude), np.empty(0, dtype=np.int64)
        if n - got.size < m:
            raise ValueError(f"only {n - got.size} rows left to draw {m} from.")
        while picked.size < m:
            # rows drawn uniformly, those not taken yet, then a random few of them (not
            # the smallest: those would all be rows near the start)
            more = np.setdiff1d(rng.integers(n, size=2 * m + 16), got)
            more = rng.permutation(more)[: m - picked.size]
            picked, got = np.union1d(picked, more), np.union1d(got, more)
        return picked

    def mean_variance(self) -> float:
        """Mean of the features' variances, in float64, chunk sums in chunk order."""
        parts = gather_blocks(map_chunks([self.X], moments_block, None), self.client)
        mean = sum(p[0] for p in parts) / self.shape[0]
        parts = gather_blocks(map_chunks([self.X], moments_block, dask.delayed(mean)), self.client)
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
        return self._over(map_rows(self.X, normalize_rows))

    def inertia(self, centers, labels) -> float:
        """Sum of squared distances of the rows to ``centers[labels]``."""
        return float(
            sum(gather_blocks(map_chunks([self.X, labels], inertia_block, dask.delayed(centers)), self.client))
        )

    def distances(self, centers):
        """Euclidean distances of each row to each centre, a lazy dask array."""
        return self.X.map_blocks(
            distances_block,
            dask.delayed(centers),
            chunks=(self.rows, (centers.shape[0],)),
            dtype=np.float64,
            meta=np.empty((0, 0), np.float64),
        )


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
        fn = lloyd_block if prev else lloyd_block_first
        folder = None
        if b.scratch is not None:
            os.makedirs(b.scratch, exist_ok=True)
            folder = tempfile.mkdtemp(prefix="lloyd-", dir=b.scratch)
            self._folders.append(folder)
        self.blocks = persist(
            map_chunks(
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
        sums, counts, changed, inertia = self.backend._compute(tree_reduce(self.blocks, lloyd_leaf, lloyd_sum))[0]
        self._release()
        return LloydStep(sums, counts, float(sum(inertia)), changed)

    def _inertia(self) -> float:
        return float(
            sum(
                gather_blocks(
                    self.blocks.map_blocks(inertia_of, dtype=object, meta=np.empty(0, object)), self.backend.client
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
        sqdist = per_row_array(self.blocks, state_field, self.backend.rows, np.float64, "sqdist")
        labels = per_row_array(self.blocks, state_field, self.backend.rows, np.int64, "labels")
        rows = self.backend.farthest_rows(sqdist, m)
        return self.backend.take(rows), lookup_np(labels, rows, self.backend.client), np.ones(len(rows))

    def finish(self, order):
        """Labels through ``order`` and squared distances (dask arrays kept on the workers) and
        the inertia of the last search."""
        b = self.backend
        labels = per_row_array(self.blocks, state_field, b.rows, np.int64, "labels", dask.delayed(order))
        sqdist = per_row_array(self.blocks, state_field, b.rows, np.float64, "sqdist")
        inertia = self._inertia()
        labels, sqdist = b._keep(labels, sqdist)
        self.blocks = None
        self._release(0)
        return labels, sqdist, inertia

    def state(self) -> dict:
        """The per-chunk state, as the chunks' objects (not gathered)."""
        return {"blocks": self.blocks}


def _remove_all(folders):
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)
